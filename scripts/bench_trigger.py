#!/usr/bin/env python3
"""Triggered capture (--trigger-cpu): what it gives and what it costs.

The program (tests/apps/spike.py) runs light load for 3 s (~3% of a core), a 4 s CPU spike, and
light load for 3 s. Configurations, interleaved and repeated:
  * 100 Hz: the default rate, no trigger;
  * trigger: --trigger-cpu 50 (400 Hz while the spike lasts);
  * 400 Hz: the raised rate all the time, for comparison.
For each run: the CPU time in the whole-run profile against the CPU time the kernel counted for
the program (values must stay CPU time at any rate); process samples per second in and out of
the capture, and stacks per CPU-second of the captured spike (from the agent's own lines); the
agent's CPU time.

Usage: python3 scripts/bench_trigger.py [--runs 3] [--python PATH]
Needs go (for `go tool pprof -raw`) and a CPython (default: pyenv's 3.11).
"""
import argparse
import glob
import os
import re
import statistics
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYROSCOPE = os.environ.get(
    "PYROSCOPE_TEST_BIN",
    os.path.join(ROOT, "target/x86_64-unknown-linux-gnu/release/pyroscope"),
)
APP = os.path.join(ROOT, "tests/apps/spike.py")


def pprof_cpu_ns(path):
    """Sum of the CPU ns of a pprof file's samples (go tool pprof -raw)."""
    out = subprocess.run(
        ["go", "tool", "pprof", "-raw", path], capture_output=True, text=True, check=True
    ).stdout
    samples = out.split("cpu/nanoseconds", 1)[1].split("Locations", 1)[0]
    return sum(int(m) for m in re.findall(r"^\s*(\d+):", samples, re.M))


def run(python, flags, tmp):
    out = os.path.join(tmp, "all.pb.gz")
    spikes = os.path.join(tmp, "spikes")
    cmd = [PYROSCOPE, "exec", "--output", out] + [
        f.replace("DIR", spikes) for f in flags
    ] + [python, APP, "3", "4"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYROSCOPE_")}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    kernel = int(re.search(r"^cpu (\d+)", r.stdout, re.M).group(1))
    res = {
        "profiled/kernel": pprof_cpu_ns(out) / kernel,
        "agent ms": float(re.search(r"agent CPU ([\d.]+) ms", r.stderr).group(1)),
    }
    m = re.search(r"([\d-]+) samples per second in them, ([\d-]+) out of them", r.stderr)
    if m:
        res["samples/s in"] = float(m.group(1)) if m.group(1) != "-" else float("nan")
        res["samples/s out"] = float(m.group(2))
    m = re.search(r"the capture's profile \((\d+) samples, ([\d.]+) s\)", r.stderr)
    files = glob.glob(os.path.join(spikes, "*.pb.gz"))
    if m and files:
        captured_cpu = pprof_cpu_ns(files[0]) / 1e9
        res["capture s"] = float(m.group(2))
        res["stacks per CPU-s in capture"] = int(m.group(1)) / captured_cpu
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--python", default=None)
    a = ap.parse_args()
    python = a.python or sorted(
        glob.glob(os.path.expanduser("~/.pyenv/versions/3.11*/bin/python3"))
    )[-1]
    configs = {
        "100 Hz": [],
        "trigger (--trigger-cpu 50)": ["--trigger-cpu", "50", "--trigger-output", "DIR"],
        "400 Hz": ["--sample-rate", "400"],
    }
    results = {c: [] for c in configs}
    for i in range(a.runs):
        for name, flags in configs.items():
            with tempfile.TemporaryDirectory() as tmp:
                results[name].append(run(python, flags, tmp))
    print(f"{a.runs} interleaved runs of spike.py (3 s light, 4 s spike, 3 s light), medians:")
    keys = ["profiled/kernel", "samples/s in", "samples/s out", "capture s",
            "stacks per CPU-s in capture", "agent ms"]
    print("| configuration | " + " | ".join(keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for name, rs in results.items():
        cells = []
        for k in keys:
            vals = [r[k] for r in rs if k in r]
            cells.append(f"{statistics.median(vals):.3g}" if vals else "")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
