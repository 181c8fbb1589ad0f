#!/usr/bin/env python3
"""Overhead benchmark: pyroscope vs py-spy (or rbspy) on the same CPU-bound program, in one run.

For each configuration the target (bench/cpu_bound.py) does a fixed amount of work; runs of all
configurations are interleaved and repeated, and medians are reported:
  * CPU per sample: the profiler's own user+system CPU (rusage from wait4) / samples it took,
    both attached to the running target with connect/--pid at 100 Hz. "all-in" includes attaching
    (parsing the interpreter's binary) and exiting; "steady" is the marginal cost of one more
    sample: (CPU of a long run - CPU of a short run) / (samples long - samples short), what an
    always-on agent costs;
  * process_vm_readv calls per sample: pyroscope counts its own (its summary line); py-spy's are
    counted with `strace -c` in one extra run per configuration;
  * RSS: the profiler's peak resident memory (ru_maxrss);
  * target slowdown: the target's wall time for the work vs. the unprofiled baseline.
Python runs once per --depth (default 8,48: a 10-deep and a 50-deep stack).
"pyroscope [py-spy reader]" is pyroscope reading stacks with py-spy's reader
(PYROSCOPE_PYTHON_READER=pyspy) instead of its own.
"syscall floor (C)" (bench/syscall_floor.c, built with cc) makes exactly the system calls
pyroscope makes per sample in the steady state (the ppoll wake-up, the /proc reads, one
process_vm_readv of as many pages) and nothing else: what a sample costs on this machine before
any stack is walked.

Usage: python3 scripts/bench.py [--runtime python|ruby] [--runs 5] [--rounds N] [--python PATH]
                                [--before PATH] [--depth 8,48]
--before PATH also measures another pyroscope binary (e.g. main's, built before a change) in the
same interleaved runs, as "pyroscope ... (before)", and prints the ratios of the two.
py-spy is installed into target/bench-venv with pip, the rbspy CLI into target/bench-rbspy with
`cargo install`, when missing. For Ruby, samples are on-CPU stacks on both sides (pyroscope's
"stacks", the counts in rbspy's collapsed output), both sampling on-CPU only.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

RUBY = False
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(ROOT, "bench", "cpu_bound.py")
RUBY_TARGET = os.path.join(ROOT, "bench", "cpu_bound.rb")
RBSPY = os.path.join(ROOT, "target", "bench-rbspy", "bin", "rbspy")
PYROSCOPE = os.path.join(ROOT, "target", "x86_64-unknown-linux-gnu", "release", "pyroscope")
FLOOR = "syscall floor (C)"
FLOOR_SRC = os.path.join(ROOT, "bench", "syscall_floor.c")
FLOOR_BIN = os.path.join(ROOT, "target", "bench-floor", "syscall_floor")
BEFORE = None
BEFORE_MARK = " (before)"
VENV = os.path.join(ROOT, "target", "bench-venv")


def ensure_tools():
    if not os.path.exists(PYROSCOPE):
        subprocess.check_call(["cargo", "build", "--release"], cwd=ROOT)
    pyspy = os.path.join(VENV, "bin", "py-spy")
    if not os.path.exists(pyspy):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([os.path.join(VENV, "bin", "pip"), "install", "-q", "py-spy"])
    version = subprocess.check_output([pyspy, "--version"]).decode().strip()
    return pyspy, version


def ensure_rbspy():
    if not os.path.exists(RBSPY):
        subprocess.check_call(["cargo", "install", "--quiet", "--root", os.path.dirname(os.path.dirname(RBSPY)),
                               "--target-dir", os.path.join(ROOT, "target", "bench-rbspy-build"), "rbspy@0.55.0"])
    return RBSPY, subprocess.check_output([RBSPY, "--version"]).decode().strip()


DEPTH = 8
PYSPY_READER = " [py-spy reader]"


def start_target(interpreter, rounds):
    if interpreter.endswith("ruby"):
        cmd = [interpreter, RUBY_TARGET, str(rounds)]
    else:
        cmd = [interpreter, TARGET, str(rounds), "0.7", str(DEPTH)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def cpu_of(ru):
    return ru.ru_utime + ru.ru_stime


def run_profiler(cmd, env=None):
    """Starts a profiler; returns a function that waits for it and returns (cpu_s, output,
    peak RSS in KiB)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=dict(os.environ, **(env or {})))
    # Peak RSS from VmHWM, polled while it runs: wait4's ru_maxrss would count the copy of this
    # script's memory the child had between fork and exec.
    peak = [0]

    def running():
        # Without reaping it (Popen.poll would, racing the wait4 below).
        try:
            return os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        except ChildProcessError:
            return False

    def poll():
        while running():
            try:
                with open("/proc/%d/status" % p.pid) as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            peak[0] = max(peak[0], int(line.split()[1]))
            except OSError:
                pass
            time.sleep(0.05)

    import threading
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()

    def finish():
        out = p.stdout.read()
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        return cpu_of(ru), out, peak[0]

    return finish


def profiler_command(config, pid, pyspy, tmp):
    """(command, extra environment) for a configuration, attached to `pid`; None: baseline."""
    if config.startswith("pyroscope"):
        # "pyroscope [flags][ [py-spy reader]][ (before)]": this build or the --before one.
        binary = BEFORE if config.endswith(BEFORE_MARK) else PYROSCOPE
        flags = config.replace(BEFORE_MARK, "")
        env = {}
        if PYSPY_READER in flags:
            flags = flags.replace(PYSPY_READER, "")
            env["PYROSCOPE_PYTHON_READER"] = "pyspy"
        return [binary, "connect", "--pid", pid] + flags.split()[1:] + ["--output", tmp + ".txt"], env
    if config == FLOOR:
        # The pages pyroscope reads per sample on this target (strace: 40 KiB on the 10-deep
        # one, 44 KiB on the 50-deep one).
        return [FLOOR_BIN, pid, "100", "10" if DEPTH <= 8 else "11"], {}
    if config == "py-spy record":
        return [pyspy, "record", "--pid", pid, "--rate", "100", "-f", "raw", "-o", tmp + ".raw"], {}
    if config == "py-spy record --nonblocking":
        return [pyspy, "record", "--pid", pid, "--rate", "100", "--nonblocking", "-f", "raw", "-o", tmp + ".raw"], {}
    if config.startswith("rbspy record"):
        extra = ["--nonblocking"] if config.endswith("--nonblocking") else []
        return [pyspy, "record", "--pid", pid, "--rate", "100", "--on-cpu", "--silent",
                "--format", "collapsed", "--file", tmp + ".rbspy.txt"] + extra, {}
    return None, {}


def one_run(config, python, rounds, pyspy, tmp, wrapper=()):
    """Returns (target_wall_s, target_cpu_s, profiler_cpu_s or None, samples or None,
    process_vm_readv per sample or None, peak RSS KiB or None)."""
    target = start_target(python, rounds)
    pid = str(target.pid)
    cmd, env = profiler_command(config, pid, pyspy, tmp)
    finish = cmd and run_profiler(list(wrapper) + cmd, env)
    line = target.stdout.readline()
    target.wait()
    m = re.match(r"work ([\d.]+) ([\d.]+)", line)
    wall, cpu = float(m.group(1)), float(m.group(2))
    if not finish:
        return wall, cpu, None, None, None, None
    prof_cpu, out, rss = finish()
    reads = None
    if config.startswith("pyroscope"):
        # Python: sampling ticks; Ruby: on-CPU stacks (rbspy samples on its own schedule).
        m = re.search(r"(\d+) samples of (\d+) stacks", out)
        samples = int(m.group(2 if RUBY else 1)) if m else None
        m = re.search(r"([\d.]+) process_vm_readv per sample", out)
        reads = float(m.group(1)) if m else None
    elif config.startswith("rbspy"):
        with open(tmp + ".rbspy.txt") as f:
            samples = sum(int(l.rsplit(" ", 1)[1]) for l in f if l.strip())
    else:
        m = re.search(r"Samples: (\d+)", out)
        samples = int(m.group(1)) if m else None
    return wall, cpu, prof_cpu, samples, reads, rss


def strace_reads(config, python, rounds, pyspy, tmp):
    """process_vm_readv calls per sample of a profiler that does not count them, from one run
    under `strace -f -c`."""
    counts = tmp + ".strace"
    r = one_run(config, python, rounds, pyspy, tmp,
                wrapper=["strace", "-f", "-c", "-e", "trace=process_vm_readv", "-o", counts])
    calls = None
    with open(counts) as f:
        # "% time  seconds  usecs/call  calls  [errors]  syscall"
        for line in f:
            parts = line.split()
            if parts and parts[-1] == "process_vm_readv":
                calls = int(parts[3])
    return calls / r[3] if calls and r[3] else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--runtime", choices=["python", "ruby"], default="python")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--python", default=os.path.expanduser("~/.pyenv/versions/3.11.7/bin/python3"))
    ap.add_argument("--ruby", default="/usr/bin/ruby")
    ap.add_argument("--before", default=None, help="another pyroscope binary, measured in the same runs")
    ap.add_argument("--depth", default="8,48", help="Python: recursion depths of the target (stack = depth + 2)")
    ap.add_argument("--only", default=None, help="comma-separated configurations to run (besides the baseline)")
    args = ap.parse_args()
    global RUBY, BEFORE, DEPTH
    RUBY = args.runtime == "ruby"
    BEFORE = args.before and os.path.abspath(args.before)
    if RUBY:
        ensure_tools()
        pyspy, pyspy_version = ensure_rbspy()
        args.python = args.ruby
        args.rounds = args.rounds or 10000
        other = "rbspy record"
        configs = ["baseline", "pyroscope", "pyroscope --rbspy-blocking", "rbspy record", "rbspy record --nonblocking"]
        depths = [None]
    else:
        pyspy, pyspy_version = ensure_tools()
        args.rounds = args.rounds or 5000
        other = "py-spy record"
        configs = ["baseline", "pyroscope", "pyroscope --pyspy-blocking", "pyroscope" + PYSPY_READER,
                   "py-spy record", "py-spy record --nonblocking", FLOOR]
        os.makedirs(os.path.dirname(FLOOR_BIN), exist_ok=True)
        subprocess.check_call(["cc", "-O2", "-o", FLOOR_BIN, FLOOR_SRC])
        depths = [int(d) for d in args.depth.split(",")]
    if BEFORE:
        configs += [c + BEFORE_MARK for c in configs if c.startswith("pyroscope")]
    if args.only:
        keep = args.only.split(",")
        configs = [c for c in configs if c == "baseline" or c in keep]
    for depth in depths:
        DEPTH = depth
        measure(args, configs, other, pyspy, pyspy_version)


def measure(args, configs, other, pyspy, pyspy_version):
    results = {c: [] for c in configs}
    tmp = os.path.join(ROOT, "target", "bench-out")
    short = {c: [] for c in configs}
    for r in range(args.runs):
        # Rotate the order each run so drift on a noisy machine hits every configuration.
        order = configs[r % len(configs):] + configs[: r % len(configs)]
        for c in order:
            results[c].append(one_run(c, args.python, args.rounds, pyspy, tmp))
            time.sleep(0.2)
            if c != "baseline":
                short[c].append(one_run(c, args.python, args.rounds // 5, pyspy, tmp))
                time.sleep(0.2)
    # Profilers that do not count their reads: one more (short) run each, under strace.
    straced = {}
    if not RUBY:
        for c in configs:
            if c.startswith("py-spy"):
                straced[c] = strace_reads(c, args.python, args.rounds // 5, pyspy, tmp)
    base_wall = statistics.median(x[0] for x in results["baseline"])
    if RUBY:
        ver = "Ruby " + subprocess.check_output([args.python, "-e", "print RUBY_VERSION"]).decode().strip()
    else:
        ver = "CPython " + subprocess.check_output([args.python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"]).decode().strip()
        ver += ", %d-deep stack" % (DEPTH + 2)
    print("\n%s, %s, %d runs of %d rounds (~%.1f s of work), 100 Hz, medians" % (ver, pyspy_version, args.runs, args.rounds, base_wall))
    print("| profiler | samples | profiler CPU | CPU per sample, all-in | CPU per sample, steady | process_vm_readv per sample | peak RSS | target wall | slowdown |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    per_sample = {}
    for c in configs:
        rs = results[c]
        wall = statistics.median(x[0] for x in rs)
        slow = (wall / base_wall - 1) * 100
        if c == "baseline":
            print("| none (baseline) | | | | | | | %.3f s | |" % wall)
            continue
        samples = statistics.median(x[3] or 0 for x in rs)
        cpu = statistics.median(x[2] for x in rs)
        per = statistics.median(x[2] / x[3] * 1e6 for x in rs if x[3])
        marginal = statistics.median(
            (l[2] - s[2]) / (l[3] - s[3]) * 1e6 for l, s in zip(rs, short[c]) if l[3] and s[3] and l[3] > s[3]
        )
        counted = [x[4] for x in rs if x[4] is not None]
        reads = statistics.median(counted) if counted else straced.get(c)
        rss = statistics.median(x[5] for x in rs) / 1024
        per_sample[c] = (per, marginal)
        print("| %s | %d | %.1f ms | %.0f µs | %.0f µs | %s | %.1f MiB | %.3f s | %+.1f%% |" % (
            c, samples, cpu * 1e3, per, marginal, "%.1f" % reads if reads is not None else "", rss, wall, slow))
    for o in [other, other + " --nonblocking", FLOOR]:
        if "pyroscope" not in per_sample or o not in per_sample:
            continue
        a, b = per_sample["pyroscope"], per_sample[o]
        print("\nCPU per sample, pyroscope / %s: all-in %.2f, steady %.2f" % (o, a[0] / b[0], a[1] / b[1]))
    for c in configs:
        if c.endswith(BEFORE_MARK):
            now, before = per_sample[c[: -len(BEFORE_MARK)]], per_sample[c]
            print("CPU per sample, %s / %s: all-in %.2f, steady %.2f"
                  % (c[: -len(BEFORE_MARK)], c, now[0] / before[0], now[1] / before[1]))
        if c.endswith(PYSPY_READER) and "pyroscope" in per_sample:
            a, b = per_sample["pyroscope"], per_sample[c]
            print("CPU per sample, pyroscope / %s: all-in %.2f, steady %.2f" % (c, a[0] / b[0], a[1] / b[1]))


if __name__ == "__main__":
    main()
