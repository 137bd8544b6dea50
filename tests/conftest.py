from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from backends import BACKENDS, Backend
from daemon import Daemon


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "sessions.db"


@pytest.fixture
def daemon(db: Path) -> Iterator[Daemon]:
    """The real daemon on a fresh SQLite file, talked to over pipes."""
    with Daemon(db) as running:
        yield running


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each store backend in turn, on a fresh location: the conformance suite runs on all."""
    return BACKENDS[request.param](tmp_path)
