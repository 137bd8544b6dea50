"""Reads that must not grow with the store: storage.stats, list_sessions and get_session with
`last`, `after` or `methods`, on a store of 5,100,000 events (one session of 100,000 events,
then the 200 x 1000 stream cycled 25 times, each cycle with its own session ids).

The store is built once through the daemon into bench/out/ and reused while its stamp
matches. `--source DIR` runs the daemon from another copy of the package (a "before" tree).
Targets: stats and list_sessions < 5 ms, get_session last=1 on the 100k session < 2 ms.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common import GEN_STREAM, OUT, count_rows, cycles, feed, median, renamed, report, stream, verdict

CYCLES = 25
BIG = 100_000


def produce(big: Path, cycled: Path) -> Iterator[bytes]:
    """The big session, then the stream's lines CYCLES times, ids prefixed with the cycle."""
    yield from renamed(big, b"big-")
    yield from cycles(cycled, CYCLES)


def spawn(db: Path, source: Path | None, stdout: int | None = subprocess.PIPE) -> subprocess.Popen[bytes]:
    """The daemon on `db`; from `source` (a directory holding `sidecar/`) if given."""
    env = dict(os.environ)
    cwd = None
    if source is not None:
        env["PYTHONPATH"] = str(source)
        cwd = source  # `-m` puts the working directory first on sys.path
    return subprocess.Popen(
        [sys.executable, "-m", "sidecar", "--db", str(db)],
        stdin=subprocess.PIPE,
        stdout=stdout,
        env=env,
        cwd=cwd,
    )


def big_store(source: Path | None) -> Path:
    """bench/out/reads_5m.db, built through the daemon unless its stamp matches."""
    big, cycled = stream(1, BIG, name="one_session_100k.ndjson"), stream()
    db = OUT / "reads_5m.db"
    stamp_path = db.with_name(db.name + ".stamp")
    generator = hashlib.sha256(GEN_STREAM.read_bytes()).hexdigest()
    stamp = f"{generator} {BIG} {CYCLES} {big.stat().st_size} {cycled.stat().st_size}"
    if db.exists() and stamp_path.exists() and stamp_path.read_text() == stamp:
        return db
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    stamp_path.unlink(missing_ok=True)
    print(f"building {db.name}: {BIG:,} + {CYCLES} x 200,000 events through the daemon ...", flush=True)
    start = time.perf_counter()
    proc = spawn(db, source, stdout=subprocess.DEVNULL)
    assert proc.stdin is not None
    producer = threading.Thread(target=feed, args=(proc.stdin, produce(big, cycled)))
    producer.start()
    producer.join()
    if proc.wait() != 0:
        raise SystemExit(f"daemon exited {proc.returncode} while building the store")
    rows = count_rows(db)
    print(f"  {rows:,} events in {time.perf_counter() - start:.0f} s", flush=True)
    stamp_path.write_text(stamp)
    return db


class Client:
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.next_id = 0

    def call(self, method: str, params: dict[str, Any]) -> tuple[float, Any]:
        """(seconds from writing the request to reading its whole response line, result)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.next_id += 1
        line = json.dumps({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        start = time.perf_counter()
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        response = self.proc.stdout.readline()
        elapsed = time.perf_counter() - start
        message = json.loads(response)
        if message.get("id") != self.next_id or "result" not in message:
            raise SystemExit(f"unexpected response to {method}: {response[:300]!r}")
        return elapsed, message["result"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=30, help="requests of each kind (default 30)")
    parser.add_argument("--source", type=Path, help="run the daemon from this copy of the package")
    parser.add_argument("--store", type=Path, help="read this store (a copy of the built one) instead")
    args = parser.parse_args()
    db = args.store or big_store(args.source)
    print(f"store: {db} ({db.stat().st_size / 1e9:.2f} GB); daemon from {args.source or 'this tree'}")
    big_id = "big-sess-00000"
    opened = time.perf_counter()
    proc = spawn(db, args.source)
    client = Client(proc)
    _, info = client.call("storage.info", {})
    print(f"  open (and any migration): {time.perf_counter() - opened:.1f} s")
    _, tail = client.call("storage.get_session", {"session_id": big_id, "last": 3})
    near_end = tail[0]["params"]["timestamp"]
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("storage.stats", "storage.stats", {}),
        ("list_sessions (limit 100)", "storage.list_sessions", {}),
        (
            "list_sessions limit 20, query 'c7-sess-001'",
            "storage.list_sessions",
            {"limit": 20, "query": "c7-sess-001"},
        ),
        ("get_session last=1 (100k session)", "storage.get_session", {"session_id": big_id, "last": 1}),
        (
            "get_session after=<3rd last> (100k)",
            "storage.get_session",
            {"session_id": big_id, "after": near_end},
        ),
        (
            "get_session methods=[session.*] last=1 (100k)",
            "storage.get_session",
            {"session_id": big_id, "methods": ["session.*"], "last": 1},
        ),
    ]
    results: dict[str, Any] = {}
    for _, method, params in requests:  # warm-up, untimed
        results[method + json.dumps(params)] = client.call(method, params)[1]
    times: dict[str, list[float]] = {label: [] for label, _, _ in requests}
    for _ in range(max(1, args.repeat)):
        for label, method, params in requests:
            times[label].append(client.call(method, params)[0])
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=60)
    sessions = results["storage.stats{}"]["sessions"]
    report(
        f"reads on {sessions:,} sessions, backend {info['backend']} (median of {args.repeat}, ms)",
        [(label, f"{median(values) * 1e3:.2f} ms") for label, values in times.items()],
    )
    for label, limit in (
        ("storage.stats", 5.0),
        ("list_sessions (limit 100)", 5.0),
        ("get_session last=1 (100k session)", 2.0),
    ):
        value = median(times[label]) * 1e3
        verdict(f"{label} ms", value, f"< {limit:g}", value < limit)


if __name__ == "__main__":
    main()
