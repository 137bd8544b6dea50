"""The import command in-process on real stores: what it stores, what it skips as already
stored, and what it reports."""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from events import init, line, notification, prompt, stop
from wire import Wire, running

from sidecar import commands
from sidecar.handlers import GetSessionParams, ListSessionsParams
from sidecar.store.base import Store
from sidecar.store.jsonl import JsonlStore
from sidecar.store.memory import MemoryStore
from sidecar.store.sqlite import SqliteStore

T = "2026-06-07T14:03:2{}Z"


@pytest.fixture(params=["memory", "sqlite", "jsonl"])
async def wire(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Wire]:
    stores: dict[str, Store] = {
        "memory": MemoryStore(),
        "sqlite": SqliteStore(tmp_path / "sessions.db"),
        "jsonl": JsonlStore(tmp_path / "sessions"),
    }
    async with running(stores[request.param]) as running_wire:
        yield running_wire


def ndjson(tmp_path: Path, name: str, *lines: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(b"".join(raw + b"\n" for raw in lines))
    return path


async def imported(wire: Wire, capsys: pytest.CaptureFixture[str], *files: Path) -> list[str]:
    """The import's report line of each file (its exit code must be 0)."""
    args = argparse.Namespace(files=[str(path) for path in files])
    assert await commands.import_files(args, wire.handlers, wire.settings) == 0
    return [text.split(": ", 1)[1] for text in capsys.readouterr().err.splitlines()]


async def held(wire: Wire) -> dict[str, list[bytes]]:
    """Every session's stored payloads, as export writes them."""
    summaries = await wire.handlers.list_sessions(ListSessionsParams(limit=commands.EVERYTHING))
    return {
        s.session_id: await wire.handlers.session_events(GetSessionParams(session_id=s.session_id))
        for s in summaries
    }


def two_sessions() -> list[bytes]:
    return [
        line(init("alpha", T.format(0))),
        line(init("beta", T.format(1))),
        line(prompt("alpha", T.format(2), text="read the albatross file")),
        line(stop("alpha", T.format(3))),
        line(prompt("beta", T.format(4))),
    ]


async def test_importing_a_file_again_stores_nothing_and_reports_every_event_as_skipped(
    wire: Wire, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    events = ndjson(tmp_path, "events.ndjson", *two_sessions())
    first = await imported(wire, capsys, events)
    before = await held(wire)
    again = await imported(wire, capsys, events)
    assert await held(wire) == before
    assert {session: len(payloads) for session, payloads in before.items()} == {"alpha": 3, "beta": 2}
    assert first == ["5 events imported, 0 already stored (skipped), 0 lines rejected"]
    assert again == ["0 events imported, 5 already stored (skipped), 0 lines rejected"]


async def test_an_export_imported_into_the_store_it_came_from_adds_nothing(
    wire: Wire, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    await imported(wire, capsys, ndjson(tmp_path, "events.ndjson", *two_sessions()))
    before = await held(wire)
    export = ndjson(tmp_path, "export.ndjson", *(p for payloads in before.values() for p in payloads))
    report = await imported(wire, capsys, export)
    assert await held(wire) == before
    assert report == ["0 events imported, 5 already stored (skipped), 0 lines rejected"]


async def test_only_the_events_a_session_lacks_are_imported(
    wire: Wire, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    everything = two_sessions()
    await imported(wire, capsys, ndjson(tmp_path, "first.ndjson", *everything[:3]))
    report = await imported(wire, capsys, ndjson(tmp_path, "all.ndjson", *everything))
    counts = {session: len(payloads) for session, payloads in (await held(wire)).items()}
    assert counts == {"alpha": 3, "beta": 2}
    assert report == ["2 events imported, 3 already stored (skipped), 0 lines rejected"]


async def test_a_line_is_matched_by_the_form_it_is_stored_in_not_by_its_own_bytes(
    wire: Wire, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    message = init("alpha", T.format(0))
    compact = line(message)
    params = json.dumps(message["params"], separators=(",", ":")).encode()
    reordered = b'{ "params": ' + params + b', "method": "session.init", "jsonrpc": "2.0" }'
    await imported(wire, capsys, ndjson(tmp_path, "compact.ndjson", compact))
    report = await imported(wire, capsys, ndjson(tmp_path, "reordered.ndjson", reordered))
    assert await held(wire) == {"alpha": [compact]}
    assert report == ["0 events imported, 1 already stored (skipped), 0 lines rejected"]


async def test_the_same_event_twice_in_a_file_is_kept_twice_and_skipped_twice_the_next_time(
    wire: Wire, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A session may hold two equal events (two equal deltas in one instant): an export of it
    must come back whole, so a line is a duplicate only of a copy the store already holds."""
    delta = notification(
        "stream.delta", session_id="alpha", turn_id="t1", delta="ok", delta_type="Text", timestamp=T.format(1)
    )
    lines = [line(init("alpha", T.format(0))), line(delta), line(delta)]
    events = ndjson(tmp_path, "events.ndjson", *lines)
    first = await imported(wire, capsys, events)
    assert await held(wire) == {"alpha": lines}
    again = await imported(wire, capsys, events, events)
    assert await held(wire) == {"alpha": lines}
    assert first == ["3 events imported, 0 already stored (skipped), 0 lines rejected"]
    assert again == ["0 events imported, 3 already stored (skipped), 0 lines rejected"] * 2


async def test_a_file_named_twice_in_one_import_is_stored_once(
    wire: Wire, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    events = ndjson(tmp_path, "events.ndjson", *two_sessions())
    report = await imported(wire, capsys, events, events)
    assert sum(map(len, (await held(wire)).values())) == 5
    assert report == [
        "5 events imported, 0 already stored (skipped), 0 lines rejected",
        "0 events imported, 5 already stored (skipped), 0 lines rejected",
    ]
