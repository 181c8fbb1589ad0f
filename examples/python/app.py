"""Example app with a known CPU split: slow_function does 3x the work of fast_function,
so a CPU profile should show about 75% / 25% between them. A background thread that only
sleeps (idle_sleeper) must not appear in a CPU profile at all.

Runs on CPython 2.7 and 3.x. Optional argument: seconds to run (default: forever).
"""
import sys
import threading
import time

WORK = 20000


def work(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def slow_function():
    # Three calls rather than work(3 * WORK): past 2**15, i * i needs a second 30-bit digit in
    # CPython's ints and each step costs more, which would skew the split above 3:1.
    return work(WORK) + work(WORK) + work(WORK)


def fast_function():
    return work(WORK)


def idle_sleeper():
    # Sleeps all the time: never on CPU, so never in a CPU profile.
    while True:
        time.sleep(0.05)


def main():
    sleeper = threading.Thread(target=idle_sleeper, name="sleeper")
    sleeper.daemon = True
    sleeper.start()
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else None
    start = time.time()
    rounds = 0
    while seconds is None or time.time() - start < seconds:
        slow_function()
        fast_function()
        rounds += 1
    print("done: %d rounds" % rounds)


if __name__ == "__main__":
    main()
