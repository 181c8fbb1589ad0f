#!/usr/bin/env python3
"""Counts the work pyroscope does per sample, in units machine noise cannot move: system calls
(strace -c) and instructions (valgrind's callgrind), for one or more pyroscope binaries attached
with `connect` to the same target (bench/cpu_bound.py: a 10-deep CPU-bound stack and one sleeping
thread; or bench/cpu_bound.rb with --runtime ruby).

Each binary is run for a short and a long time; the figures are marginal, per extra sample:
(count of the long run - count of the short run) / (samples long - samples short), so attaching
(parsing the interpreter's binary) is left out. Under valgrind every sample takes much longer, so
fewer are taken: the count per sample is what matters, not the number of samples.

Usage: python3 scripts/count_work.py [--runtime python|ruby] [--repeat N] [--flags=FLAGS] [BINARY ...]
(default: this tree's release build). With --repeat, the binaries' runs are interleaved and the
median and range of each figure are printed (a run reads a different mix of stacks: the
instruction count moves by a few percent from run to run of the same binary). Example,
before/after a change:
  python3 scripts/count_work.py ~/.cache/pyroscope-bench/pyroscope-main target/x86_64-unknown-linux-gnu/release/pyroscope
"""
import argparse
import math
import os
import statistics
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYROSCOPE = os.path.join(ROOT, "target", "x86_64-unknown-linux-gnu", "release", "pyroscope")


def start_target(runtime, python, ruby):
    if runtime == "ruby":
        cmd = [ruby, os.path.join(ROOT, "bench", "cpu_bound.rb"), "1000000"]
    else:
        cmd = [python, os.path.join(ROOT, "bench", "cpu_bound.py"), "1000000"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    time.sleep(1.0)  # past the target's settle time: it is busy from now on
    return p


FLAGS = []


def profile(wrapper, binary, pid, seconds, tmp):
    """Runs `wrapper + [binary, connect ...]` for `seconds`, then SIGINT; returns (samples, stderr)."""
    cmd = wrapper + [binary, "connect", "--pid", str(pid)] + FLAGS + ["--output", os.path.join(tmp, "out.txt")]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(seconds)
    # The agent ends on SIGINT (connect); under strace/valgrind the wrapper passes it on.
    agent = [c for c in children(p.pid)] or [p.pid]
    for a in agent:
        os.kill(a, signal.SIGINT)
    _, err = p.communicate(timeout=120)
    m = re.search(r"(\d+) samples of (\d+) stacks", err)
    if not m:
        sys.exit("no summary from %s:\n%s" % (binary, err))
    return int(m.group(1)), err


def children(pid):
    """The agent under a wrapper: the wrapper's child processes (strace), or the wrapper itself."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def syscalls(binary, pid, seconds, tmp):
    out = os.path.join(tmp, "strace.txt")
    samples, _ = profile(["strace", "-f", "-c", "-o", out], binary, pid, seconds, tmp)
    counts = {}
    with open(out) as f:
        for line in f:
            fields = line.split()
            # % time, seconds, usecs/call, calls, [errors,] syscall
            if len(fields) >= 5 and fields[3].isdigit() and not line.startswith("100.00"):
                counts[fields[-1]] = int(fields[3])
    return samples, counts


def instructions(binary, pid, seconds, tmp):
    out = os.path.join(tmp, "callgrind.out")
    samples, err = profile(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out], binary, pid, seconds, tmp)
    m = re.search(r"Collected : (\d+)", err)
    if not m:
        sys.exit("no instruction count from valgrind:\n" + err[-2000:])
    return samples, int(m.group(1))


def marginal(short, long):
    (s1, c1), (s2, c2) = short, long
    if s2 <= s1:
        return float("nan")
    return (c2 - c1) / (s2 - s1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binaries", nargs="*", default=[PYROSCOPE])
    ap.add_argument("--runtime", choices=["python", "ruby"], default="python")
    ap.add_argument("--python", default=os.path.expanduser("~/.pyenv/versions/3.11.7/bin/python3"))
    ap.add_argument("--ruby", default="/usr/bin/ruby")
    ap.add_argument("--seconds", default="2,6", help="short and long run, seconds")
    ap.add_argument("--valgrind-seconds", default="4,12", help="the same under valgrind (slower)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per binary, interleaved")
    ap.add_argument("--flags", default="", help="pyroscope flags, e.g. --flags=--pyspy-blocking")
    args = ap.parse_args()
    FLAGS.extend(args.flags.split())
    short, long = (float(x) for x in args.seconds.split(","))
    vshort, vlong = (float(x) for x in args.valgrind_seconds.split(","))
    runs = {b: [] for b in args.binaries}
    for r in range(args.repeat):
        # Rotate the order so that drift hits every binary.
        order = args.binaries[r % len(args.binaries):] + args.binaries[: r % len(args.binaries)]
        for binary in order:
            target = start_target(args.runtime, args.python, args.ruby)
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    s = [syscalls(binary, target.pid, t, tmp) for t in (short, long)]
                    i = [instructions(binary, target.pid, t, tmp) for t in (vshort, vlong)]
            finally:
                target.kill()
                target.wait()
            names = set(s[0][1]) | set(s[1][1])
            per_call = {n: marginal((s[0][0], s[0][1].get(n, 0)), (s[1][0], s[1][1].get(n, 0))) for n in names}
            total = marginal((s[0][0], sum(s[0][1].values())), (s[1][0], sum(s[1][1].values())))
            runs[binary].append((total, per_call, marginal(i[0], i[1])))
    print("\nper extra sample (%s target, connect %s, 100 Hz), median [min-max] of %d runs"
          % (args.runtime, args.flags, args.repeat))
    print("| binary | syscalls | process_vm_readv | top syscalls | instructions |")
    print("|---|---:|---:|---|---:|")
    spread = lambda xs: "%.1f [%.1f-%.1f]" % (statistics.median(xs), min(xs), max(xs))
    for binary, rs in runs.items():
        per_call = {}
        for _, calls, _ in rs:
            for n, v in calls.items():
                per_call.setdefault(n, []).append(v)
        top = sorted(((statistics.median(v), n) for n, v in per_call.items()
                      if statistics.median(v) > 0.05 and n != "process_vm_readv"), reverse=True)[:4]
        ir = [x[2] for x in rs if not math.isnan(x[2])]
        print("| %s | %s | %s | %s | %s |" % (
            binary, spread([x[0] for x in rs]), spread(per_call.get("process_vm_readv", [0])),
            ", ".join("%s %.1f" % (n, v) for v, n in top),
            "%.0f [%.0f-%.0f]" % (statistics.median(ir), min(ir), max(ir))))


if __name__ == "__main__":
    main()
