#!/usr/bin/env python3
"""Runs criterion bench binaries of several builds in rotation and reports what they measured.

This VM's memory-bound costs drift by tens of percent between minutes, so two builds measured
one after the other differ by the drift as much as by the change. Here each round runs every
build once, in turn, and each round's figures are also divided by a baseline benchmark of the
same run (a raw map, a scan), so drift common to a round cancels out of the ratios.

    scripts/interleave.py --rounds 5 \\
        --filter 'heartbeat_1e6/(tracker|hashbrown)/u64' --baseline 'hashbrown/u64' \\
        old=/tmp/old-target/release/deps/heartbeat-0123abcd \\
        new=target/release/deps/heartbeat-4567ef01

Build each binary first (`cargo bench -p presence-benches --bench heartbeat --no-run` in each
checkout, with its own CARGO_TARGET_DIR); criterion's own files go to a scratch directory per
build. Prints a markdown table: per build and benchmark, the median time over the rounds with
its min and max, and the same for the ratio to the baseline of the same run.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

TIME = re.compile(r"time:\s+\[([\d.]+) (\S+) ([\d.]+) (\S+) ([\d.]+) (\S+)\]")
UNIT = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}


def run(binary, filt, extra, scratch):
    """One run of `binary`: {benchmark id: median estimate in ns}."""
    env = dict(os.environ, CARGO_TARGET_DIR=scratch)
    cmd = [binary, "--bench", filt, "--noplot", *extra]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    found, name = {}, None
    for line in out.stdout.splitlines():
        # The id starts a line; its time follows on the same line or the next.
        if line and not line[0].isspace() and "/" in line.split()[0]:
            name = line.split()[0]
        m = TIME.search(line)
        if m and name and "change:" not in line:
            found[name] = float(m.group(3)) * UNIT[m.group(4)]
            name = None
    return found


def spread(values):
    return f"{statistics.median(values):.3g} ({min(values):.3g}–{max(values):.3g})"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--filter", required=True, help="criterion filter (a regex)")
    p.add_argument("--baseline", help="suffix of the benchmark id to divide by, within each run")
    p.add_argument("--criterion-args", default="--warm-up-time 2 --measurement-time 5")
    p.add_argument("builds", nargs="+", help="label=path-to-bench-binary")
    a = p.parse_args()
    builds = [b.split("=", 1) for b in a.builds]
    extra = a.criterion_args.split()
    times = {label: {} for label, _ in builds}
    ratios = {label: {} for label, _ in builds}
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    with tempfile.TemporaryDirectory() as scratch:
        for r in range(a.rounds):
            for label, binary in builds:
                found = run(binary, a.filter, extra, os.path.join(scratch, label))
                base = None
                if a.baseline:
                    base = next((v for k, v in found.items() if k.endswith(a.baseline)), None)
                for bench, ns in found.items():
                    times[label].setdefault(bench, []).append(ns)
                    if base:
                        ratios[label].setdefault(bench, []).append(ns / base)
                print(f"round {r + 1} {label}: " + ", ".join(f"{k} {v:.4g} ns" for k, v in found.items()),
                      file=sys.stderr)
    ended = time.strftime("%H:%M:%S UTC", time.gmtime())
    print(f"{a.rounds} rounds, {started} to {ended}, filter `{a.filter}`, criterion `{a.criterion_args}`\n")
    head = "| build | benchmark | ns per iteration: median (min–max) |"
    if a.baseline:
        head += f" ratio to `{a.baseline}` of the same run |"
    print(head)
    print("|---|---|---|" + ("---|" if a.baseline else ""))
    for label, _ in builds:
        for bench in sorted(times[label]):
            row = f"| {label} | `{bench}` | {spread(times[label][bench])} |"
            if a.baseline:
                rs = ratios[label].get(bench)
                row += f" {spread(rs) if rs else '–'} |"
            print(row)


if __name__ == "__main__":
    main()
