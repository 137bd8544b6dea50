"""Live tail: notification latency under a 10,000 events/s writer, and idle CPU.

A separate feeder process writes events paced at --rate per second for --seconds into a
writer daemon's stdin, each event carrying its send time; a watcher daemon on the same
store is subscribed, and this script reads its stdout. Latency = when the notification
is read here - when the feeder sent the event (so it includes the writer's parse and
commit). Then the watcher, still subscribed, idles for 5 s: its CPU time is measured,
beside a daemon with no subscription. Target: median latency < 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import OUT, fresh_db, report, spawn_with, verdict

IDLE_S = 5.0
TICK_S = 0.001


def feed(rate: int, seconds: float) -> None:
    """The feeder: `rate` events a second on stdout, in small groups every millisecond."""
    out = sys.stdout.buffer
    total = int(rate * seconds)
    padding = "p" * 200
    start = time.perf_counter()
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        lines = []
        for i in range(sent, due):
            params = {
                "session_id": f"bench-{i % 8}",
                "turn_id": "t1",
                "prompt": padding,
                "timestamp": "2026-06-07T14:03:21.000000001Z",
                "sent_at": time.time(),
            }
            lines.append(json.dumps({"jsonrpc": "2.0", "method": "user.prompt.submit", "params": params}))
        if lines:
            out.write(("\n".join(lines) + "\n").encode())
            out.flush()
            sent = due
        time.sleep(TICK_S)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def store_args(backend: str) -> list[str]:
    if backend == "sqlite":
        return ["--db", str(fresh_db("subscribe.db"))]
    directory = OUT / "subscribe_jsonl.d"
    shutil.rmtree(directory, ignore_errors=True)
    return ["--backend", "jsonl", "--jsonl-dir", str(directory)]


def run(backend: str, rate: int, seconds: float) -> None:
    args = store_args(backend)
    watcher = spawn_with(args)
    idle = spawn_with(args)  # the same daemon with no subscription, for comparison
    assert watcher.stdin is not None and watcher.stdout is not None
    watcher.stdin.write(b'{"jsonrpc":"2.0","id":1,"method":"storage.subscribe"}\n')
    watcher.stdin.flush()
    if b'"subscription"' not in watcher.stdout.readline():
        raise SystemExit("subscribe failed")

    total = int(rate * seconds)
    latencies: list[float] = []
    received = threading.Event()

    def read() -> None:
        assert watcher.stdout is not None
        for raw in watcher.stdout:
            now = time.time()
            latencies.append(now - json.loads(raw)["params"]["event"]["params"]["sent_at"])
            if len(latencies) == total:
                received.set()

    threading.Thread(target=read, daemon=True).start()
    feeder = subprocess.Popen(
        [sys.executable, __file__, "--feed", str(rate), str(seconds)], stdout=subprocess.PIPE
    )
    writer = subprocess.Popen([sys.executable, "-m", "sidecar", *args], stdin=feeder.stdout)
    assert feeder.stdout is not None
    feeder.stdout.close()
    started = time.perf_counter()
    if feeder.wait() != 0 or writer.wait(60) != 0:
        raise SystemExit("the feeder or the writer failed")
    feeding_s = time.perf_counter() - started
    if not received.wait(30):
        raise SystemExit(f"the watcher sent {len(latencies)} of {total} events")

    time.sleep(1.0)  # let both daemons settle before measuring idle
    watcher_cpu, idle_cpu, idle_start = cpu_seconds(watcher.pid), cpu_seconds(idle.pid), time.perf_counter()
    time.sleep(IDLE_S)
    elapsed = time.perf_counter() - idle_start
    watcher_share = (cpu_seconds(watcher.pid) - watcher_cpu) / elapsed
    idle_share = (cpu_seconds(idle.pid) - idle_cpu) / elapsed
    for proc in (watcher, idle):
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(30)

    ordered = sorted(latencies)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    median_ms = statistics.median(ordered) * 1000
    report(
        f"subscribe ({backend}): {total} events at {rate}/s, {len(latencies)} notified",
        [
            ("writer fed in", f"{feeding_s:.2f} s ({total / feeding_s:,.0f} events/s)"),
            ("latency median", f"{median_ms:.1f} ms"),
            ("latency p99", f"{p99 * 1000:.1f} ms"),
            ("latency max", f"{ordered[-1] * 1000:.1f} ms"),
            ("idle CPU, subscribed", f"{watcher_share * 100:.2f}% of a core over {elapsed:.1f} s"),
            ("idle CPU, no subscription", f"{idle_share * 100:.2f}% of a core"),
        ],
    )
    verdict("median latency ms", median_ms, "< 100", median_ms < 100)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--feed":
        feed(int(sys.argv[2]), float(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=10_000, help="events per second (default 10,000)")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long the writer writes (default 5)")
    parser.add_argument("--backend", choices=("sqlite", "jsonl", "both"), default="both")
    options = parser.parse_args()
    for backend in ("sqlite", "jsonl") if options.backend == "both" else (options.backend,):
        run(backend, options.rate, options.seconds)


if __name__ == "__main__":
    main()
