"""Settings of one daemon run, from options and environment; no parsing of argv here."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024


BACKENDS = ("sqlite", "jsonl", "memory", "postgres")


def default_db_path() -> Path:
    return Path(os.environ.get("MICROAGENTS_DB") or Path.home() / ".microagents" / "sessions.db")


def default_jsonl_dir() -> Path:
    return Path(os.environ.get("MICROAGENTS_JSONL_DIR") or Path.home() / ".microagents" / "sessions")


def default_dsn() -> str | None:
    """The postgres backend's server; None: libpq's PG* environment variables."""
    return os.environ.get("MICROAGENTS_DSN") or None


class Settings(msgspec.Struct, kw_only=True):
    backend: str = "sqlite"  # one of BACKENDS
    db_path: Path = msgspec.field(default_factory=default_db_path)
    jsonl_dir: Path = msgspec.field(default_factory=default_jsonl_dir)
    dsn: str | None = msgspec.field(default_factory=default_dsn)
    durability: str = "normal"  # "normal" (WAL, synchronous=NORMAL) or "full"
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    busy_timeout_ms: int = 5000
    # Backpressure bounds: past them the daemon stops reading stdin until they drain.
    # What is pending is held in memory (with the batch being committed): at the usual
    # ~400-byte event the two bounds meet near 20,000 events (~15 MB of Python objects);
    # the bytes bound keeps a flood of large events from holding more (bench/README.md).
    max_pending_events: int = 20_000
    max_pending_bytes: int = 8 * 1024 * 1024
    max_output_bytes: int = 16 * 1024 * 1024
    shutdown_grace_s: float = 10.0
    # At the end: how long stdout may take nothing at all before the answers left are given
    # up (exit 1); a reader that keeps reading, however slowly, gets them all.
    output_stall_s: float = 10.0


def missing_store(settings: Settings) -> Path | None:
    """The absolute path of a file store that does not exist (None if it does, or if the
    backend keeps no files): commands that only read must not create one."""
    if settings.backend == "sqlite":
        path = settings.db_path
    elif settings.backend == "jsonl":
        path = settings.jsonl_dir
    else:
        return None
    path = Path(os.path.abspath(path))
    return None if path.exists() else path
