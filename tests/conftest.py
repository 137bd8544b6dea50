from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from daemon import Daemon


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "sessions.db"


@pytest.fixture
def daemon(db: Path) -> Iterator[Daemon]:
    """The real daemon on a fresh SQLite file, talked to over pipes."""
    with Daemon(db) as running:
        yield running
