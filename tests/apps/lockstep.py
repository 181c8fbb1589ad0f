"""A loop in lockstep with a 200 Hz sampler: each 5 ms round spends 3.75 ms in phase_a and
1.25 ms in phase_b, to absolute deadlines on the monotonic clock (the one the sampler's timer runs
on). Not 4 ms at 250 Hz: the kernel counts a running thread's CPU time at its own ticks (4 ms
here), and a loop locked to those would skew the CPU time each sample carries."""
import sys
import time


def phase_a(until):
    while time.monotonic() < until:
        pass


def phase_b(until):
    while time.monotonic() < until:
        pass


def main():
    t = time.monotonic()
    end = t + float(sys.argv[1])
    while t < end:
        phase_a(t + 0.00375)
        phase_b(t + 0.005)
        t += 0.005


main()
