"""Many distinct stacks: N processes each walk random paths 20 calls deep through two
functions (`left`, `right`), spinning briefly at the end of each path, so nearly every sample
is a stack not seen before (2^20 paths).

Usage: many_stacks.py SECONDS [PROCESSES=2]
"""
import multiprocessing
import random
import sys
import time


def left(depth, path):
    return walk(depth, path)


def right(depth, path):
    return walk(depth, path)


def walk(depth, path):
    if depth == 0:
        t = time.perf_counter() + 0.0003
        while time.perf_counter() < t:
            pass
        return
    if path & 1:
        return left(depth - 1, path >> 1)
    return right(depth - 1, path >> 1)


def work(seconds):
    end = time.time() + seconds
    while time.time() < end:
        walk(20, random.getrandbits(20))


if __name__ == "__main__":
    seconds = float(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    others = [multiprocessing.Process(target=work, args=(seconds,)) for _ in range(n - 1)]
    for p in others:
        p.start()
    work(seconds)
    for p in others:
        p.join()
