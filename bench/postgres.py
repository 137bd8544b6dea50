"""PostgreSQL's ingest rate beside SQLite's, in one run: the daemon on each, same stream.

A throwaway PostgreSQL server (tests/pg_server.py) runs on a Unix socket with its
default, durable settings: every commit waits for its WAL flush. A second figure has
`synchronous_commit = off` on the database, the closer match to SQLite's
synchronous=NORMAL (a commit survives the daemon being killed, not a power loss).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from backends import ingest_with
from common import BENCH, fresh_db, median, repeat_option, report, stream

sys.path.insert(0, str(BENCH.parent / "tests"))
from pg_server import PostgresServer, database_of


def main() -> None:
    repeat = repeat_option(__doc__ or "", 3)
    path = stream()
    data = path.read_bytes()
    n = data.count(b"\n")
    server = PostgresServer().start()
    try:
        print(f"ingest: {n} events ({len(data) / 1e6:.0f} MB), {repeat} alternating runs each")
        sides: dict[str, Callable[[], list[str]]] = {
            "daemon --backend sqlite": lambda: ["--db", str(fresh_db("postgres_bench_sqlite.db"))],
            "daemon --backend postgres": lambda: postgres_args(server, durable=True),
            "daemon --backend postgres, synchronous_commit=off": lambda: postgres_args(server, durable=False),
        }
        seconds: dict[str, list[float]] = {label: [] for label in sides}
        for _ in range(repeat):
            for label, args in sides.items():
                seconds[label].append(ingest_with(args(), data, n))
        sqlite_rate = n / median(seconds["daemon --backend sqlite"])
        rows = []
        for label in sides:
            rate = n / median(seconds[label])
            rows.append((label, f"{rate:,.0f} events/s  ({rate / sqlite_rate:.2f} x sqlite)"))
        report("ingest, spawn to exit (median)", rows)
    finally:
        server.destroy()


def postgres_args(server: PostgresServer, *, durable: bool) -> list[str]:
    """A fresh database on the bench server, and the daemon's options for it."""
    dsn = server.create_database()
    if not durable:
        server.execute(f'ALTER DATABASE "{database_of(dsn)}" SET synchronous_commit = off')
    return ["--backend", "postgres", "--dsn", dsn]


if __name__ == "__main__":
    main()
