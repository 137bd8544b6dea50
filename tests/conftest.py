from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# Before they are imported, so that the helpers' checks explain a failure as a test's own asserts do.
pytest.register_assert_rewrite("backends", "events", "wire")

from backends import BACKENDS, Backend, PostgresBackend  # noqa: E402  (after the registration)
from daemon import Daemon  # noqa: E402
from pg_server import PostgresServer  # noqa: E402


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
    kind = BACKENDS[request.param]
    if kind is PostgresBackend:  # a fresh database on the one test server
        return PostgresBackend(tmp_path, request.getfixturevalue("postgres_dsn"))
    return kind(tmp_path)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole run, started on first use. Durability is off:
    these tests restart it cleanly, never crash it."""
    server = PostgresServer({"fsync": "off", "full_page_writes": "off"})
    try:
        yield server.start()
    finally:
        server.destroy()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A new empty database on the test server, dropped after the test."""
    dsn = postgres_server.create_database()
    yield dsn
    postgres_server.drop_database(dsn)
