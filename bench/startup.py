"""Startup: spawn to the first storage.info response, against a bare interpreter importing the deps.

On a new database (the schema is created) and on an existing one (every later start).
Target: daemon median <= 1.05 x bare median, on a new database.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from common import compile_package, fresh_db, median, repeat_option, report, spawn_daemon, verdict

BARE = [sys.executable, "-c", "import asyncio, uvloop, msgspec, aiosqlite"]
INFO = b'{"jsonrpc":"2.0","id":1,"method":"storage.info"}\n'
TARGET = 1.05


def bare() -> float:
    """Seconds from spawn to exit of an interpreter that only imports the daemon's dependencies."""
    start = time.perf_counter()
    subprocess.run(BARE, check=True)
    return time.perf_counter() - start


def daemon(db: Path) -> float:
    """Seconds from spawn to the storage.info response line."""
    start = time.perf_counter()
    proc = spawn_daemon(db)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(INFO)
    proc.stdin.flush()
    response = proc.stdout.readline()
    elapsed = time.perf_counter() - start
    proc.stdin.close()
    if proc.wait(timeout=30) != 0 or b'"result"' not in response:
        raise SystemExit(f"daemon exited {proc.returncode}; response {response[:200]!r}")
    return elapsed


def main() -> None:
    repeat = repeat_option(__doc__ or "", 10)
    compile_package()
    existing = fresh_db("startup_existing.db")
    daemon(existing)  # creates it
    bare_s: list[float] = []
    new_s: list[float] = []
    existing_s: list[float] = []
    for _ in range(repeat):
        bare_s.append(bare())
        new_s.append(daemon(fresh_db("startup.db")))
        existing_s.append(daemon(existing))
    bare_ms, new_ms, existing_ms = (median(runs) * 1e3 for runs in (bare_s, new_s, existing_s))
    report(
        f"startup ({repeat} alternating runs each, median)",
        [
            ("bare interpreter + imports, to exit", f"{bare_ms:.1f} ms"),
            ("daemon, spawn to storage.info response, new database", f"{new_ms:.1f} ms"),
            ("daemon, spawn to storage.info response, existing database", f"{existing_ms:.1f} ms"),
            ("ratio daemon/bare, existing database", f"{existing_ms / bare_ms:.3f}"),
        ],
    )
    verdict("ratio daemon/bare, new database", new_ms / bare_ms, f"<= {TARGET}", new_ms / bare_ms <= TARGET)


if __name__ == "__main__":
    main()
