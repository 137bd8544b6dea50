"""Fixtures of the in-process tests: the composed core over the stores run in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from wire import Wire, running

from sidecar.store.base import Store
from sidecar.store.memory import MemoryStore
from sidecar.store.sqlite import SqliteStore


@pytest.fixture
async def wire() -> AsyncIterator[Wire]:
    async with running(MemoryStore()) as running_wire:
        yield running_wire


@pytest.fixture(params=["memory", "sqlite"])
async def any_wire(request: pytest.FixtureRequest, db: Path) -> AsyncIterator[Wire]:
    """Each in-process store whose quarantine can be read back: what is answered and kept is
    the same over both."""
    store: Store = MemoryStore() if request.param == "memory" else SqliteStore(db)
    async with running(store) as running_wire:
        yield running_wire
