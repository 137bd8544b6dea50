"""While the search index catches up after a flood, a writer in another process (the Rust
crate's way: a plain connection with a busy timeout, one row per transaction) is never
locked out."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest
import rust_crate
from daemon import Daemon
from events import prompt
from reliability import Feeder, chunked, stored_event

pytestmark = pytest.mark.reliability

EVENTS = 100_000  # indexed in one transaction, as before, this held the lock for seconds
CRATE_TIMEOUT_S = 0.25  # the other writer's busy timeout: well below that, 5x a step's ceiling
BOUND_S = 300.0  # a bound on the whole catch-up, should it never end


def test_a_writer_in_another_process_is_never_locked_out_while_the_index_catches_up(db: Path) -> None:
    with Daemon(db) as daemon:
        lines = (stored_event(f"s{n % 50}", f"flood word{n}", 1, n) for n in range(EVENTS))
        Feeder(daemon, chunked(lines)).finish(timeout=BOUND_S)
        assert "error" not in daemon.request("storage.flush")
        # Before, the first search caught the index up in one transaction holding the lock.
        newest = f"word{EVENTS - 1}"
        daemon.send({"jsonrpc": "2.0", "id": "search", "method": "storage.search", "params": [newest]})
        writes, failures = 0, []
        deadline = time.monotonic() + BOUND_S
        with closing(sqlite3.connect(db, timeout=CRATE_TIMEOUT_S, isolation_level=None)) as crate:
            flood_end = crate.execute("SELECT max(id) FROM events").fetchone()[0]
            assert flood_end >= EVENTS
            while time.monotonic() < deadline:
                try:
                    rust_crate.insert(crate, prompt("crate", "2026-06-07T14:03:21Z", text=f"crate {writes}"))
                    writes += 1
                    [(indexed,)] = crate.execute("SELECT indexed_upto FROM search_progress").fetchall()
                except sqlite3.OperationalError as exc:
                    failures.append(str(exc))
                    continue
                if indexed >= flood_end:
                    break
        assert failures == []
        assert indexed >= flood_end, "the index did not catch up within the bound"
        [hit] = daemon.response("search", timeout=BOUND_S)["result"]
        assert hit["seq"] == EVENTS
        [hit] = daemon.result("storage.search", ["word0"])
        assert hit["seq"] == 1
        assert daemon.close() == 0
