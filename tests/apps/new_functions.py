"""Keeps making new functions: every ~10 ms a fresh chain of 41 functions (new names, new code
objects) is defined and run, so every sample of it holds frames never seen before.

Usage: new_functions.py SECONDS
"""
import sys
import time

end = time.time() + float(sys.argv[1])
n = 0
while time.time() < end:
    lines = [f"def gen{n}_{i}():\n    return gen{n}_{i + 1}()\n" for i in range(40)]
    lines.append(
        f"def gen{n}_40():\n    t = time.time() + 0.01\n    while time.time() < t:\n        pass\n"
    )
    scope = {"time": time}
    exec("".join(lines), scope)
    scope[f"gen{n}_0"]()
    n += 1
print(f"made {n * 41} functions", flush=True)
