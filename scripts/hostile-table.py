#!/usr/bin/env python3
"""The hostile suite's JSON (`hostile --json FILE`) as the Markdown table of
docs/public-endpoint.md: one row per attack and server.

    python3 scripts/hostile-table.py benches/load/results/DATE-COMMIT-hostile.json
"""
import json
import sys


def main(path):
    doc = json.load(open(path))
    print("| attack | server | RSS before → peak (growth) | kept a round | CPU (one core) | probe p95 before / during | lost | bounds | what the attack did |")
    print("|---|---|---|---|---|---|---|---|---|")
    for line in doc["hostile"]:
        if "attack" not in line:
            continue
        rounds = line["rounds"]
        first = rounds[0]
        peak = max(r["rss_peak_mib"] for r in rounds)
        cpu = max(r["cpu_share"] for r in rounds)
        got = first["got"]
        closed = first.get("closed_by_end_of_settle")
        did = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in got.items())
        if closed is not None:
            did += f"; closed by the server by the end: {closed if not isinstance(closed, dict) else closed['closed']}"
        held = "held" if all(b["held"] for b in line["bounds"]) else "FAILED: " + "; ".join(
            b["bound"] for b in line["bounds"] if not b["held"])
        before = line["probe_before"]["p95_ms"]
        during = line["probe_during"]["p95_ms"]
        print(f"| {line['attack']} | {line['server']} | {first['rss_before_mib']} → {peak} MiB (+{line['rss_growth_mib']}) "
              f"| {line['rss_kept_mib']} MiB | {cpu * 100:.1f} % | {before} / {during} ms | {line['probe_during']['lost']} | {held} | {did} |")


if __name__ == "__main__":
    main(sys.argv[1])
