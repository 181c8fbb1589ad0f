#!/usr/bin/env python3
"""Long-session memory check for the .NET spy: does the agent's memory stay flat?

Runs bench/churn.cs (one busy thread, plus a new short-lived thread and a new DynamicMethod
every ~20 ms, so thread ids, JIT events and unloads never stop) under `pyroscope exec`,
uploading every 10 s to a local receiver that accepts everything. Prints the agent's RSS every
minute, its growth over the second half of the run (after start-up has settled), and the
spy's end-of-session counters (from --log-level debug).

Usage: python3 scripts/soak_dotnet.py [--minutes 10] [--sample-rate 100]
Needs CoreCLR 3.1 under $DOTNET31_ROOT (default ~/.cache/dotnet31) and mcs, as the tests do.
"""
import argparse
import http.server
import os
import re
import subprocess
import sys
import threading
import time

from dotnet_env import DOTNET, OUT, PYROSCOPE, build

uploads = {"count": 0, "bytes": 0}


class Accept(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        self.rfile.read(n)
        uploads["count"] += 1
        uploads["bytes"] += n
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--sample-rate", type=int, default=100)
    a = ap.parse_args()
    dll = build("churn")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Accept)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    seconds = a.minutes * 60
    log = open(os.path.join(OUT, "soak.log"), "w+")
    agent = subprocess.Popen(
        [PYROSCOPE, "exec", "--server-address", url, "--application-name", "soak", "--sample-rate", str(a.sample_rate),
         "--log-level", "debug", DOTNET, dll, str(seconds)],
        stdout=open(os.path.join(OUT, "soak.out"), "w"), stderr=log)
    start = time.time()
    points = []  # (seconds, rss kB)
    next_print = 0
    print(f"{'minute':>6} {'agent RSS':>10} {'uploads':>8}")
    while agent.poll() is None:
        t = time.time() - start
        try:
            rss = status_kb(agent.pid, "VmRSS")
        except OSError:
            break
        points.append((t, rss))
        if t >= next_print:
            print(f"{t / 60:6.1f} {rss / 1024:8.1f} MB {uploads['count']:8}", flush=True)
            next_print += 60
        time.sleep(5)
    agent.wait()
    hwm = max(r for _, r in points)
    half = [p for p in points if p[0] >= seconds / 2]
    # Least-squares slope of RSS over the second half, kB per minute.
    n = len(half)
    mt = sum(t for t, _ in half) / n
    mr = sum(r for _, r in half) / n
    slope = sum((t - mt) * (r - mr) for t, r in half) / max(sum((t - mt) ** 2 for t, _ in half), 1e-9) * 60
    log.seek(0)
    text = log.read()
    session = re.findall(r"dotnet session: .*", text)
    report = re.findall(r"\d+ samples of \d+ stacks taken.*", text)
    print(f"exit {agent.returncode}; {uploads['count']} uploads, {uploads['bytes'] / 1e6:.1f} MB")
    settled = next((p for p in points if p[0] >= 30), points[-1])
    print(f"agent RSS: at 30 s {settled[1] / 1024:.1f} MB, at half time {half[0][1] / 1024:.1f} MB, "
          f"last {points[-1][1] / 1024:.1f} MB, peak {hwm / 1024:.1f} MB; "
          f"second-half slope {slope:+.1f} kB/min")
    with open(os.path.join(OUT, "soak.out")) as f:
        print("program:", f.read().strip())
    for line in session + report:
        print(line)
    return 0 if agent.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
