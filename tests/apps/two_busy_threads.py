# Two threads burn CPU in pure Python, competing for the GIL, for SECONDS (default 3).
import sys
import threading
import time

stop = time.time() + float(sys.argv[1] if len(sys.argv) > 1 else 3)


def alpha():
    x = 0
    while time.time() < stop:
        for i in range(1000):
            x += i


def beta():
    x = 0
    while time.time() < stop:
        for i in range(1000):
            x += i


t = threading.Thread(target=beta)
t.start()
alpha()
t.join()
