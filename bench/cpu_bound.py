"""Benchmark target: a fixed amount of CPU-bound work in a realistic 10-deep stack (or DEPTH + 2
frames deep), plus one thread that sleeps (as most services have). Prints "ready", waits for the
profiler to attach, then prints the wall and CPU seconds the work took.

Usage: cpu_bound.py [ROUNDS] [SETTLE_SECONDS] [DEPTH]"""
import sys
import threading
import time


def leaf(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def level(depth, n):
    if depth == 0:
        return leaf(n)
    return level(depth - 1, n)


def sleeper():
    while True:
        time.sleep(0.1)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    settle = float(sys.argv[2]) if len(sys.argv) > 2 else 0.7
    depth = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    t = threading.Thread(target=sleeper)
    t.daemon = True
    t.start()
    print("ready")
    sys.stdout.flush()
    time.sleep(settle)
    w0, c0 = time.time(), time.process_time()
    for _ in range(rounds):
        level(depth, 20000)
    print("work %.4f %.4f" % (time.time() - w0, time.process_time() - c0))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
