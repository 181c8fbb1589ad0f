# Light load, a CPU spike, light load again: LIGHT seconds in which `light` works 3 ms every
# 100 ms (about 3% of a core), SPIKE seconds busy in `spike`, then LIGHT seconds of `light`
# again (defaults 3, 4, 3). Prints "spike START END" (unix ns, the spike's wall time) and
# "cpu NS" (this process's CPU time at the end, as the kernel counts it).
import os
import sys
import time

light_s, spike_s = (float(a) for a in (sys.argv[1:3] if len(sys.argv) > 2 else (3, 4)))


def busy_for(seconds):
    end = time.time() + seconds
    x = 0
    while time.time() < end:
        for i in range(200):
            x += i
    return x


def light(seconds):
    end = time.time() + seconds
    while time.time() < end:
        busy_for(0.003)
        time.sleep(0.097)


def spike(seconds):
    return busy_for(seconds)


light(light_s)
start = time.time_ns()
spike(spike_s)
print("spike", start, time.time_ns(), flush=True)
light(light_s)
t = os.times()
print("cpu", int((t.user + t.system) * 1e9), flush=True)
