"""Session stores: one interface (`base`), one module per backend."""

from __future__ import annotations

from sidecar.config import Settings
from sidecar.store.base import Event, Rejected, SessionQuery, Store, StoreFailure


def open_store(settings: Settings) -> Store:
    """The store the settings name, not yet opened. Backends are imported on demand:
    only the chosen one's dependencies are on the start-up path."""
    full = settings.durability == "full"
    if settings.backend == "memory":
        from sidecar.store.memory import MemoryStore

        return MemoryStore()
    if settings.backend == "jsonl":
        from sidecar.store.jsonl import JsonlStore

        return JsonlStore(settings.jsonl_dir, fsync=full, lock_timeout_s=settings.busy_timeout_ms / 1000)
    if settings.backend == "postgres":
        from sidecar.store.postgres import PostgresStore

        return PostgresStore(
            settings.dsn, durability=settings.durability, lock_timeout_ms=settings.busy_timeout_ms
        )
    from sidecar.store.sqlite import SqliteStore

    return SqliteStore(
        settings.db_path,
        synchronous="FULL" if full else "NORMAL",
        busy_timeout_ms=settings.busy_timeout_ms,
    )


__all__ = ["Event", "Rejected", "SessionQuery", "Store", "StoreFailure", "open_store"]
