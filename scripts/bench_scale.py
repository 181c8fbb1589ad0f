#!/usr/bin/env python3
"""Many processes, one agent; fork-heavy programs. Medians of --runs runs, on this machine.

Scale: `pyroscope exec python tests/apps/busy.py procs N 5` for N in --procs (default 8,32,64):
N forked processes burn CPU for 5 s each, on however many cores there are. Reported: samples,
late ticks (ticks that came after the next one was due and were skipped), the agent's CPU (in
total, per second and per process-second), and whether CPU went missing: the CPU time the
profile holds vs the CPU time the kernel gave the program (a sample lost for a process that ran
is CPU missing from the profile).

Fork: bench/fork_pool.py (multiprocessing.Pool(8, maxtasksperchild=1), 200 tasks of 50 ms, each
in a fresh worker) bare and under `pyroscope exec`: wall times and slowdown.

Usage: python3 scripts/bench_scale.py [--runs 3] [--procs 8,32,64] [--python PATH] [--skip-fork]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYROSCOPE = os.path.join(ROOT, "target", "x86_64-unknown-linux-gnu", "release", "pyroscope")
BUSY = os.path.join(ROOT, "tests", "apps", "busy.py")
FORK = os.path.join(ROOT, "bench", "fork_pool.py")


def agent_run(args):
    """Runs pyroscope with args; returns (stdout, stderr, agent CPU s)."""
    p = subprocess.Popen([PYROSCOPE] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate()
    if p.returncode != 0:
        sys.exit("pyroscope failed: " + err[-2000:])
    m = re.search(r"agent CPU ([\d.]+) ms", err)
    return out, err, float(m.group(1)) / 1e3 if m else None


def scale(python, n, runs):
    rows = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            out_file = os.path.join(tmp, "p.json")
            out, err, agent = agent_run(["exec", "--output", out_file, python, BUSY, "procs", str(n), "5"])
            kernel = float(re.search(r"cpu ([\d.]+)", out).group(1))
            import json
            with open(out_file) as f:
                doc = json.load(f)
            profile = sum(sum(p["weights"]) for p in doc["profiles"]) / 1e9
            m = re.search(r"(\d+) samples of (\d+) stacks taken \(\d+ errors, \d+ spy panics, (\d+) late ticks", err)
            samples, late = int(m.group(1)), int(m.group(3))
            ticks = 5 * 100
            rows.append((samples, late, agent, profile, kernel))
    med = lambda i: statistics.median(r[i] for r in rows)
    samples, late, agent, profile, kernel = (med(i) for i in range(5))
    return ("| %d | %d | %d (%.1f%%) | %.0f ms | %.1f%% of a core | %.0f µs | %.2f s | %.2f s | %.3f |"
            % (n, samples, late, 100.0 * late / 500, agent * 1e3, agent / 5 * 100, agent / (n * 5) * 1e6,
               profile, kernel, profile / kernel))


def fork(python, runs):
    bare, under = [], []
    for _ in range(runs):
        out = subprocess.check_output([python, FORK], text=True)
        bare.append(float(re.search(r"wall ([\d.]+)", out).group(1)))
        with tempfile.TemporaryDirectory() as tmp:
            out, err, agent = agent_run(["exec", "--output", os.path.join(tmp, "p.txt"), python, FORK])
        under.append((float(re.search(r"wall ([\d.]+)", out).group(1)), agent))
    b = statistics.median(bare)
    u = statistics.median(x[0] for x in under)
    a = statistics.median(x[1] for x in under)
    print("\nfork_pool.py (Pool(8, maxtasksperchild=1), 200 tasks of 50 ms), medians of %d runs" % runs)
    print("| | wall | agent CPU |")
    print("|---|---:|---:|")
    print("| bare | %.3f s (%s) | |" % (b, ", ".join("%.2f" % x for x in bare)))
    print("| under `pyroscope exec` | %.3f s (%s) | %.0f ms |" % (u, ", ".join("%.2f" % x[0] for x in under), a * 1e3))
    print("slowdown: %+.1f%%" % ((u / b - 1) * 100))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--procs", default="8,32,64")
    ap.add_argument("--python", default=os.path.expanduser("~/.pyenv/versions/3.11.7/bin/python3"))
    ap.add_argument("--skip-fork", action="store_true")
    args = ap.parse_args()
    cores = os.cpu_count()
    print("busy.py procs N 5 under `pyroscope exec` at 100 Hz (500 ticks), %d cores, medians of %d runs" % (cores, args.runs))
    print("| processes | samples | late ticks | agent CPU | agent CPU / wall | agent CPU per process-second | profile CPU | kernel CPU | profile / kernel |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in [int(x) for x in args.procs.split(",")]:
        print(scale(args.python, n, args.runs))
        sys.stdout.flush()
    if not args.skip_fork:
        fork(args.python, args.runs)


if __name__ == "__main__":
    main()
