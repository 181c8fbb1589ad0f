# The main thread burns CPU in main_work while threads that each live ~40 ms (busy in
# short_lived) start one after another. Prints the CPU the kernel gave the process ("cpu S") and
# the short-lived threads ("short S"), each thread's measured by itself (time.thread_time).
#   thread_churn.py SECONDS
import sys
import threading
import time

short_total = [0.0]
lock = threading.Lock()


def spin(until):
    x = 0
    while time.monotonic() < until:
        for i in range(2000):
            x += i * i
    return x


def short_lived():
    start = time.thread_time()
    spin(time.monotonic() + 0.04)
    used = time.thread_time() - start
    with lock:
        short_total[0] += used


def main_work(until):
    return spin(until)


def spawner(until):
    while time.monotonic() < until:
        t = threading.Thread(target=short_lived)
        t.start()
        t.join()


def main():
    seconds = float(sys.argv[1])
    until = time.monotonic() + seconds
    s = threading.Thread(target=spawner, args=(until,))
    s.start()
    main_work(until)
    s.join()
    print("short %.3f" % short_total[0])
    print("cpu %.3f" % time.process_time())


main()
