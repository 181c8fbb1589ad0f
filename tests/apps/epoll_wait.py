# A thread blocked in epoll_wait(2) with a 100 ms timeout counts the calls the kernel cut short
# with EINTR (through ctypes: Python's own select.epoll retries EINTR and hides it), while the
# main thread burns CPU. Stopping the process (SIGSTOP, PTRACE_INTERRUPT) cuts such a call
# short; nothing else does here.   epoll_wait.py SECONDS   prints "ready", then "eintr N of M".
import ctypes
import sys
import threading
import time

libc = ctypes.CDLL(None, use_errno=True)
stop = time.time() + float(sys.argv[1])
epfd = libc.epoll_create1(0)
events = ctypes.create_string_buffer(12 * 4)
counts = {"eintr": 0, "calls": 0}


def waiter():
    while time.time() < stop:
        r = libc.epoll_wait(epfd, events, 4, 100)
        counts["calls"] += 1
        if r < 0 and ctypes.get_errno() == 4:
            counts["eintr"] += 1


t = threading.Thread(target=waiter)
t.start()
sys.stdout.write("ready\n")
sys.stdout.flush()
x = 0
while time.time() < stop:
    x += 1
t.join()
print("eintr %d of %d" % (counts["eintr"], counts["calls"]))
