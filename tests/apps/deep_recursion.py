"""Recursion 150 calls deep, then a spin at the bottom for argv[1] seconds (fixture source)."""
import sys, time
def deep(n):
    if n == 0:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        end = time.time() + float(sys.argv[1])
        while time.time() < end:
            pass
        return
    return deep(n - 1)
deep(150)
