"""JsonlStore's file work in-process: every walk of the directory runs in a worker thread,
and what the file system refuses there is a StoreFailure (storage unavailable)."""

from __future__ import annotations

import re
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from events import event, init, prompt

from sidecar.store.base import ListQuery, SearchQuery, SessionQuery, StoreFailure
from sidecar.store.jsonl import JsonlStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JsonlStore]:
    opened = JsonlStore(tmp_path / "sessions")
    await opened.open()
    await opened.write(
        [
            event(init("a")),
            event(prompt("a", "2026-06-07T14:03:22Z", text="find the albatross")),
            event(prompt("b", "2026-06-07T14:03:23Z", text="another albatross")),
        ],
        [],
    )
    yield opened
    await opened.close()


def record_threads(store: JsonlStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The threads the store's file walks ran on: its session-file listing and its
    per-file parse are wrapped to note `threading.get_ident()`."""
    threads: list[int] = []

    def noting(name: str) -> None:
        original: Callable[..., Any] = getattr(store, name)

        def wrapper(*args: Any) -> Any:
            threads.append(threading.get_ident())
            return original(*args)

        monkeypatch.setattr(store, name, wrapper)

    noting("_session_files")
    noting("_new_events")
    return threads


async def test_a_directory_named_like_a_session_file_makes_search_a_store_failure(store: JsonlStore) -> None:
    (store.directory / "x.jsonl").mkdir()
    with pytest.raises(StoreFailure, match=re.escape(f"cannot search {store.directory}")):
        await store.search(SearchQuery(terms=("albatross",)))


async def test_search_of_one_session_is_unaffected_by_an_unreadable_neighbour(store: JsonlStore) -> None:
    (store.directory / "x.jsonl").mkdir()
    hits = await store.search(SearchQuery(terms=("albatross",), session_id="b"))
    assert [(hit.session_id, hit.snippet) for hit in hits] == [("b", "another [albatross]")]


async def test_search_walks_the_directory_off_the_event_loop(
    store: JsonlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = record_threads(store, monkeypatch)
    hits = await store.search(SearchQuery(terms=("albatross",)))
    assert [hit.session_id for hit in hits] == ["b", "a"]
    assert threads and threading.get_ident() not in threads


async def test_search_of_one_session_reads_its_file_off_the_event_loop(
    store: JsonlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = record_threads(store, monkeypatch)
    hits = await store.search(SearchQuery(terms=("albatross",), session_id="a"))
    assert [hit.snippet for hit in hits] == ["find the [albatross]"]
    assert threads and threading.get_ident() not in threads


async def test_reads_lists_and_deletes_touch_files_only_off_the_event_loop(
    store: JsonlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = record_threads(store, monkeypatch)
    assert len(await store.read_session("a", SessionQuery())) == 2
    assert [s.session_id for s in await store.list_sessions(ListQuery())] == ["b", "a"]
    assert await store.count_sessions() == 2
    assert await store.delete_session("b") == 1
    assert threads and threading.get_ident() not in threads


async def test_a_directory_named_like_a_session_file_makes_listing_a_store_failure(
    store: JsonlStore,
) -> None:
    (store.directory / "x.jsonl").mkdir()
    with pytest.raises(StoreFailure, match=re.escape(f"cannot list {store.directory}")):
        await store.list_sessions(ListQuery())
