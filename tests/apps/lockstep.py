"""A loop in lockstep with a 250 Hz sampler: each 4 ms round spends 3 ms in phase_a and 1 ms in
phase_b, to absolute deadlines on the monotonic clock (the one the sampler's timer runs on)."""
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
        phase_a(t + 0.003)
        phase_b(t + 0.004)
        t += 0.004


main()
