"""Two multiprocessing workers burn CPU in worker_burn; the parent only waits."""
import multiprocessing
import sys
import time


def worker_burn(seconds):
    end = time.time() + seconds
    total = 0
    while time.time() < end:
        for i in range(10000):
            total += i % 3
    return total


if __name__ == "__main__":
    if len(sys.argv) > 1:
        multiprocessing.set_start_method(sys.argv[1])
    pool = multiprocessing.Pool(2)
    print(sum(pool.map(worker_burn, [2.0, 2.0])) > 0)
    pool.close()
    pool.join()
