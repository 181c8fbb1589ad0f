# Burns CPU for a while, in one thread or in N forked processes, then prints the CPU time the
# kernel gave the program (itself and its waited-for children): "cpu SECONDS".
#   busy.py threads N SECONDS | busy.py procs N SECONDS
import os
import sys
import threading
import time


def burn(seconds):
    end = time.time() + seconds
    x = 0
    while time.time() < end:
        for i in range(20000):
            x += i * i


def main():
    mode, n, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    if mode == "procs":
        pids = []
        for _ in range(n):
            pid = os.fork()
            if pid == 0:
                burn(seconds)
                os._exit(0)
            pids.append(pid)
        for pid in pids:
            os.waitpid(pid, 0)
    else:
        threads = [threading.Thread(target=burn, args=(seconds,)) for _ in range(n - 1)]
        for t in threads:
            t.start()
        burn(seconds)
        for t in threads:
            t.join()
    t = os.times()
    print("cpu %.4f" % (t[0] + t[1] + t[2] + t[3]))


main()
