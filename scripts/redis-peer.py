#!/usr/bin/env python3
"""Measures the Redis peer of the benchmarks: a presence sorted set in a local redis-server.

The Redis way to keep "last seen" per session is one sorted set, `ZADD presence <last_seen_ms>
<session>`, swept with `ZRANGEBYSCORE` for the sessions whose score got old. This script starts a
throwaway `redis-server` on 127.0.0.1 (port 6391, no persistence), and measures

- memory: `used_memory` after adding 10^6 members minus before, per member, with the benchmarks'
  u64 ids (as decimal strings) and with their 36-character UUIDs, loaded with `redis-cli --pipe`;
- throughput: `redis-benchmark` ZADDs over loopback: one client unpipelined (a round trip per
  heartbeat, what one handler calling Redis per heartbeat waits), 50 clients unpipelined (what the
  server does for many handlers), one client pipelined 1024 deep (the analogue of
  `heartbeat_batch`);

then stops the server by its pid and writes JSON for `scripts/bench-report.py`:

    python3 scripts/redis-peer.py > $CARGO_TARGET_DIR/criterion/presence-meta/redis.json
    python3 scripts/redis-peer.py --port 6491 > ...   # if 6391 is taken

It refuses to start when something already listens on the port: its FLUSHALLs must only ever
reach the server it started.

Needs `redis-server`, `redis-cli` and `redis-benchmark` (Debian: `apt-get install -y redis-server`).
"""

import argparse
import datetime
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

PORT = 6391
MEMBERS = 1_000_000
T0 = 1_767_225_600_000
MASK = (1 << 64) - 1


def mix(x):
    """splitmix64's finaliser, as `benches/support::mix`: the benchmarks' u64 ids."""
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def uuid36(i):
    """The benchmarks' 36-character ids (`BenchId for Arc<str>`)."""
    hi = mix(i)
    lo = mix(hi ^ 0x5151515151515151)
    hi = (hi & ~0xF000 & MASK) | 0x4000
    lo = (lo & ~(0xC << 60) & MASK) | (0x8 << 60)
    return "%08x-%04x-%04x-%04x-%012x" % (
        hi >> 32, (hi >> 16) & 0xFFFF, hi & 0xFFFF, lo >> 48, lo & 0xFFFFFFFFFFFF)


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def cli(*args):
    return subprocess.run(["redis-cli", "-p", str(PORT), *map(str, args)], check=True,
                          capture_output=True, text=True).stdout


def used_memory():
    for line in cli("INFO", "memory").splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    raise RuntimeError("no used_memory in INFO")


def wait_for_server(proc):
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError("redis-server exited")
        try:
            with socket.create_connection(("127.0.0.1", PORT), timeout=0.1):
                if cli("PING").strip() == "PONG":
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("redis-server did not answer")


def load(ids):
    cli("FLUSHALL")
    before = used_memory()
    with tempfile.TemporaryFile() as f:
        for i, member in enumerate(ids):
            f.write(resp("ZADD", "presence", T0 + i % 1000, member))
        f.seek(0)
        subprocess.run(["redis-cli", "-p", str(PORT), "--pipe"], stdin=f, check=True,
                       capture_output=True)
    count = int(cli("ZCARD", "presence"))
    if count != MEMBERS:
        raise RuntimeError(f"loaded {count} members, not {MEMBERS}")
    return (used_memory() - before) / MEMBERS


def zadd_rps(n, clients, pipeline):
    out = subprocess.run(
        ["redis-benchmark", "-p", str(PORT), "-c", str(clients), "-P", str(pipeline), "-n", str(n),
         "-r", str(MEMBERS), "--csv", "zadd", "bench", "__rand_int__", "__rand_int__"],
        check=True, capture_output=True, text=True).stdout
    # CSV: a header line, then "test","rps",...
    rows = [line for line in out.splitlines() if line and not line.startswith('"test"')]
    return float(rows[-1].split(",")[1].strip('"'))


def port_in_use(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def main():
    global PORT
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=PORT,
                        help=f"the throwaway server's port on 127.0.0.1 (default {PORT})")
    PORT = parser.parse_args().port
    if port_in_use(PORT):
        sys.exit(f"something already listens on 127.0.0.1:{PORT}: not flushing it; pass --port")
    proc = subprocess.Popen(
        ["redis-server", "--port", str(PORT), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_server(proc)
        version = next((line.split(":")[1] for line in cli("INFO", "server").splitlines()
                        if line.startswith("redis_version:")), "?")
        result = {
            "redis_version": version,
            "port": PORT,
            "members": MEMBERS,
            "bytes_per_member": {
                "u64": load(str(mix(i)) for i in range(MEMBERS)),
                "uuid36": load(uuid36(i) for i in range(MEMBERS)),
            },
        }
        cli("FLUSHALL")
        result["zadd_per_second"] = {
            "one_client_unpipelined": zadd_rps(200_000, 1, 1),
            "50_clients_unpipelined": zadd_rps(1_000_000, 50, 1),
            "one_client_pipelined_1024": zadd_rps(5_000_000, 1, 1024),
        }
        result["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        json.dump(result, sys.stdout, indent=2)
        print()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
