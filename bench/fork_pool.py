"""Benchmark target for fork-heavy programs: multiprocessing.Pool(8, maxtasksperchild=1) over 200
tasks of 50 ms of CPU each (every task in a freshly forked worker). Prints "wall SECONDS"."""
import multiprocessing
import sys
import time


def task(i):
    end = time.process_time() + 0.05
    x = 0
    while time.process_time() < end:
        x += i
    return x


def main():
    tasks = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    t0 = time.time()
    with multiprocessing.Pool(8, maxtasksperchild=1) as pool:
        pool.map(task, range(tasks), chunksize=1)
    print("wall %.3f" % (time.time() - t0))


if __name__ == "__main__":
    main()
