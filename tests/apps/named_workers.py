# Two processes (this one and a child it starts), each with two threads named by `threading`,
# "worker-a" burning in burn_a and "worker-b" in burn_b, for SECONDS (default 3). Prints
# "pids PARENT CHILD" first. The names are Python's only: before 3.14 CPython leaves the OS
# thread name as the process's.
import subprocess
import sys
import threading
import time

seconds = float(sys.argv[1] if len(sys.argv) > 1 else 3)
stop = time.time() + seconds


def burn_a():
    x = 0
    while time.time() < stop:
        for i in range(1000):
            x += i


def burn_b():
    x = 0
    while time.time() < stop:
        for i in range(1000):
            x += i


def work():
    threads = [
        threading.Thread(target=burn_a, name="worker-a"),
        threading.Thread(target=burn_b, name="worker-b"),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if len(sys.argv) > 2 and sys.argv[2] == "child":
    work()
else:
    import os

    child = subprocess.Popen([sys.executable, __file__, str(seconds), "child"])
    print("pids", os.getpid(), child.pid, flush=True)
    work()
    sys.exit(child.wait())
