"""Session stores: one interface (`base`), one module per backend."""

from __future__ import annotations

from sidecar.config import Settings
from sidecar.store.base import Event, Rejected, SessionQuery, Store, StoreFailure


def open_store(settings: Settings) -> Store:
    """The store the settings name, not yet opened."""
    from sidecar.store.sqlite import SqliteStore

    return SqliteStore(
        settings.db_path,
        synchronous="FULL" if settings.durability == "full" else "NORMAL",
        busy_timeout_ms=settings.busy_timeout_ms,
    )


__all__ = ["Event", "Rejected", "SessionQuery", "Store", "StoreFailure", "open_store"]
