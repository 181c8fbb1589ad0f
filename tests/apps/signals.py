"""Counts the signals it receives; prints the counts and exits 3 on SIGTERM."""
import os
import signal
import sys
import time

counts = {}


def handler(signum, frame):
    counts[signum] = counts.get(signum, 0) + 1
    if signum == signal.SIGTERM:
        # Let any duplicate still in flight arrive before reporting.
        time.sleep(0.3)
        for s in sorted(counts):
            print("signal %d x%d" % (s, counts[s]))
        sys.stdout.flush()
        os._exit(3)


for s in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
    signal.signal(s, handler)
print("ready %d" % os.getpid())
sys.stdout.flush()
deadline = time.time() + 30
while time.time() < deadline:
    sum(i for i in range(2000))
    time.sleep(0.001)
print("timeout")
sys.exit(4)
