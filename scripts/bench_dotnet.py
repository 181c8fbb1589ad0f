#!/usr/bin/env python3
""".NET overhead benchmark: what profiling costs a CoreCLR program, and what the agent costs.

The target (bench/cpu_bound.cs, compiled with mcs) does a fixed amount of CPU-bound work on one
thread (plus a sleeping thread). Configurations, interleaved and repeated, medians reported:
  * baseline: the program alone;
  * exec (traced): `pyroscope exec`, the agent is the program's ptrace tracer (follows its
    forks and execs), as for Python and Ruby;
  * exec (untraced): `pyroscope exec` with .NET processes released from ptrace once recognised
    (the default);
  * connect: `pyroscope connect --pid`, no ptrace at all;
each with the runtime's sampler always on (PYROSCOPE_DOTNET_SAMPLING=always, as before issue 12)
or in bursts (the default: 10% of the time at 100 Hz).
For each: the target's wall time for the work (measured inside it) and the agent's own CPU
(from its end-of-run report), per second of profiled work. At 100 Hz (the default rate).

Usage: python3 scripts/bench_dotnet.py [--runs 5] [--rounds N]
Needs CoreCLR 3.1 under $DOTNET31_ROOT (default ~/.cache/dotnet31) and mcs, as the tests do.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

from dotnet_env import DOTNET, OUT, PYROSCOPE, build


def parse_work(text):
    m = re.search(r"work ([\d.]+) ([\d.]+)", text)
    return float(m.group(1)), float(m.group(2))


def agent_cpu(stderr):
    m = re.search(r"agent CPU ([\d.]+) ms", stderr)
    return float(m.group(1)) / 1000 if m else float("nan")


def one(config, dll, rounds):
    args = [DOTNET, dll, str(rounds)]
    if config == "baseline":
        out = subprocess.run(args, capture_output=True, text=True, check=True)
        return parse_work(out.stdout)[0], 0.0
    env = dict(os.environ)
    env["PYROSCOPE_DOTNET_SAMPLING"] = "always" if "always" in config else "bursts"
    m = re.search(r"bursts of (\d+) ms", config)
    if m:
        env["PYROSCOPE_DOTNET_BURST_MS"] = m.group(1)
    if config.startswith("exec"):
        env["PYROSCOPE_DOTNET_RELEASE_PTRACE"] = "true" if "untraced" in config else "false"
        out = subprocess.run([PYROSCOPE, "exec", "--output", "/dev/null.txt", "--log-level", "info"] + args,
                             capture_output=True, text=True, env=env)
        return parse_work(out.stdout)[0], agent_cpu(out.stderr)
    target = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert target.stdout.readline().strip() == "ready"
    agent = subprocess.Popen([PYROSCOPE, "connect", "--pid", str(target.pid), "--output", "/dev/null.txt"],
                             stderr=subprocess.PIPE, text=True, env=env)
    wall, _ = parse_work(target.stdout.read())
    target.wait()
    _, err = agent.communicate()
    return wall, agent_cpu(err)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=1500)
    ap.add_argument("--burst-lengths", default="",
                    help="also run exec (untraced) with bursts of these lengths (ms, comma-separated)")
    ap.add_argument("--only", default="",
                    help="run only the configurations containing one of these words (comma-separated), and the baseline")
    args = ap.parse_args()
    dll = build("cpu_bound")
    ap_only = [c for c in args.only.split(",") if c]
    configs = ["baseline", "exec (untraced, sampler always on)", "exec (untraced, bursts)",
               "exec (traced, bursts)", "connect (sampler always on)", "connect (bursts)"]
    if ap_only:
        configs = ["baseline"] + [c for c in configs if any(o in c for o in ap_only)]
    configs += ["exec (untraced, bursts of %s ms)" % ms for ms in args.burst_lengths.split(",") if ms]
    res = {c: [] for c in configs}
    for r in range(args.runs):
        for c in configs:
            res[c].append(one(c, dll, args.rounds))
            print(r, c, res[c][-1], file=sys.stderr)
    base = statistics.median(w for w, _ in res["baseline"])
    spread = (max(w for w, _ in res["baseline"]) - min(w for w, _ in res["baseline"])) / base * 100
    print("\nCoreCLR 3.1.23, %d runs of %d rounds (~%.1f s of work), 100 Hz, medians" % (args.runs, args.rounds, base))
    print("baseline noise: its %d runs spread over %.1f%% of their median" % (args.runs, spread))
    print("| configuration | target wall | slowdown | agent CPU | agent CPU per second of work |")
    print("|---|---:|---:|---:|---:|")
    for c in configs:
        wall = statistics.median(w for w, _ in res[c])
        cpu = statistics.median(a for _, a in res[c])
        slow = "" if c == "baseline" else "%+.1f%%" % ((wall / base - 1) * 100)
        agent = "" if c == "baseline" else "%.1f ms" % (cpu * 1000)
        per = "" if c == "baseline" else "%.1f ms/s" % (cpu * 1000 / wall)
        print("| %s | %.3f s | %s | %s | %s |" % (c, wall, slow, agent, per))


if __name__ == "__main__":
    main()
