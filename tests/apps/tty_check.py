"""Reports whether stdin is a TTY, reads one line from it, counts SIGINTs for a second."""
import os
import signal
import sys
import time

count = [0]


def on_int(signum, frame):
    count[0] += 1


signal.signal(signal.SIGINT, on_int)
print("isatty %s" % os.isatty(0))
sys.stdout.flush()
line = sys.stdin.readline().strip()
print("read %s" % line)
sys.stdout.flush()
end = time.time() + 1.5
while time.time() < end:
    time.sleep(0.01)
print("sigint x%d" % count[0])
sys.stdout.flush()
