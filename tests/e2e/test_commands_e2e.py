"""The subcommands through the real entry point (`python -m sidecar ...`) on real stores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from backends import BACKENDS, PostgresBackend
from daemon import Daemon
from events import init, line, notification, prompt, stop

T = "2026-06-07T14:03:2{}Z"


def cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        input=stdin.decode(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def tool_events(session_id: str) -> list[dict[str, object]]:
    call = notification(
        "tool.call", session_id=session_id, turn_id="t1", name="read_file", input={"path": "a.rs"}
    )
    result = notification(
        "tool.result", session_id=session_id, turn_id="t1", result={"Ok": "fn main() {}"}, tool_call_id="c1"
    )
    call["params"]["timestamp"] = T.format(2)
    result["params"]["timestamp"] = T.format(3)
    return [call, result]


@pytest.fixture
def store(db: Path) -> Path:
    """A database with two sessions, written by the daemon."""
    with Daemon(db) as daemon:
        daemon.send(init("alpha", T.format(0)), prompt("alpha", T.format(1), text="Read the albatross file"))
        daemon.send(*tool_events("alpha"), stop("alpha", T.format(4), result="done"))
        daemon.send(init("beta", T.format(5)), prompt("beta", T.format(6), text="second one"))
        assert daemon.close() == 0
    return db


def test_list_shows_a_table_newest_first_and_json_for_programs(store: Path) -> None:
    table = cli("--db", str(store), "list")
    assert table.returncode == 0
    header, first, second = table.stdout.splitlines()
    assert header.split()[:3] == ["SESSION", "EVENTS", "LAST"]
    assert first.startswith("beta") and second.startswith("alpha") and "Read the albatross file" in second
    assert "\033[" not in table.stdout  # no colour when stdout is not a terminal
    listed = json.loads(cli("list", "--db", str(store), "--json", "--limit", "1").stdout)
    assert [s["session_id"] for s in listed] == ["beta"]
    assert [
        s["session_id"]
        for s in json.loads(cli("--db", str(store), "list", "--json", "--query", "ALBA").stdout)
    ] == ["alpha"]


def test_show_prints_a_transcript_with_tool_calls_results_and_usage(store: Path) -> None:
    shown = cli("--db", str(store), "show", "alpha")
    assert shown.returncode == 0
    text = shown.stdout
    for expected in [
        "session alpha",
        "Read the albatross file",
        "read_file",
        "fn main() {}",
        "stopped",
        "usage:",
    ]:
        assert expected in text
    assert text.index("albatross") < text.index("read_file") < text.index("stopped")


def test_show_json_prints_the_stored_events_and_an_unknown_session_exits_1(store: Path) -> None:
    events = [
        json.loads(raw)
        for raw in cli("--db", str(store), "show", "beta", "--format", "nl").stdout.splitlines()
    ]
    assert [e["method"] for e in events] == ["session.init", "user.prompt.submit"]
    missing = cli("--db", str(store), "show", "nobody")
    assert missing.returncode == 1 and "no session 'nobody'" in missing.stderr


def test_export_piped_into_the_daemon_copies_every_session_byte_for_byte(store: Path, tmp_path: Path) -> None:
    exported = cli("--db", str(store), "export")
    assert exported.returncode == 0
    copy = tmp_path / "copy.db"
    with Daemon(copy, stdin=subprocess.PIPE) as daemon:
        daemon.send_raw(exported.stdout.encode())
        assert daemon.close() == 0
    for session_id in ("alpha", "beta"):
        original = cli("--db", str(store), "show", session_id, "--json").stdout
        assert cli("--db", str(copy), "show", session_id, "--json").stdout == original


def test_export_of_named_sessions_then_import_into_a_jsonl_store(store: Path, tmp_path: Path) -> None:
    exported = cli("--db", str(store), "export", "beta").stdout
    assert {json.loads(raw)["params"]["session_id"] for raw in exported.splitlines()} == {"beta"}
    directory = tmp_path / "sessions"
    imported = cli(
        "--backend", "jsonl", "--jsonl-dir", str(directory), "import", "-", stdin=exported.encode()
    )
    assert imported.returncode == 0
    assert "-: 2 events imported, 0 already stored (skipped), 0 lines rejected" in imported.stderr
    assert (directory / "beta.jsonl").read_text() == exported


def test_import_reports_rejected_lines_by_number_and_exits_1(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    request = b'{"jsonrpc":"2.0","id":1,"method":"storage.delete_session","params":{"session_id":"i"}}'
    events.write_bytes(
        b"\n".join([line(init("i", T.format(0))), b"{broken", request, line(prompt("i", T.format(1)))])
    )
    db = tmp_path / "imported.db"
    imported = cli("--db", str(db), "import", str(events))
    assert imported.returncode == 1
    assert f"{events}:2: rejected: -32700" in imported.stderr
    assert f"{events}:3: rejected: a storage.delete_session message, not an event" in imported.stderr
    assert f"{events}: 2 events imported, 0 already stored (skipped), 2 lines rejected" in imported.stderr
    assert [s["event_count"] for s in json.loads(cli("--db", str(db), "list", "--json").stdout)] == [2]


@pytest.fixture(params=["sqlite", "jsonl", "postgres"])
def options(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """The store options of a fresh store of each persistent backend."""
    if request.param == "postgres":
        return PostgresBackend(tmp_path, request.getfixturevalue("postgres_dsn")).args()
    return BACKENDS[request.param](tmp_path / "other").args()


def test_importing_the_same_export_twice_leaves_the_store_as_the_first_import_did(
    store: Path, options: list[str], tmp_path: Path
) -> None:
    export = tmp_path / "export.ndjson"
    export.write_text(cli("--db", str(store), "export").stdout)
    first = cli(*options, "import", str(export))
    assert first.returncode == 0
    stats, exported = cli(*options, "stats", "--json").stdout, cli(*options, "export").stdout
    assert json.loads(stats)["events"] == 7 and json.loads(stats)["sessions"] == 2
    again = cli(*options, "import", str(export), str(export))
    assert again.returncode == 0
    assert cli(*options, "stats", "--json").stdout == stats
    assert cli(*options, "export").stdout == exported == export.read_text()
    assert f"{export}: 7 events imported, 0 already stored (skipped), 0 lines rejected" in first.stderr
    skipped = f"{export}: 0 events imported, 7 already stored (skipped), 0 lines rejected"
    assert again.stderr.count(skipped) == 2


def test_search_lists_matches_with_snippets(store: Path) -> None:
    table = cli("--db", str(store), "search", "albatross")
    assert table.returncode == 0 and "[albatross]" in table.stdout and "alpha" in table.stdout
    hits = json.loads(cli("--db", str(store), "search", "main", "--json", "--session", "alpha").stdout)
    assert [(h["method"], h["snippet"]) for h in hits] == [("tool.result", "fn [main]() {}")]
    assert cli("--db", str(store), "search", "!!").returncode == 2  # no word to search: usage


def test_fork_prints_the_new_session_and_delete_removes_it(store: Path) -> None:
    forked = cli("--db", str(store), "fork", "alpha", "--new-id", "alpha-2")
    assert forked.returncode == 0 and "alpha-2" in forked.stdout and "5 events copied" in forked.stdout
    as_json = json.loads(cli("--db", str(store), "fork", "beta", "--json").stdout)
    assert as_json["copied"] == 2 and len(as_json["session_id"]) == 36
    deleted = cli("--db", str(store), "delete", "alpha-2")
    assert deleted.returncode == 0 and "6 events" in deleted.stdout
    assert cli("--db", str(store), "delete", "alpha-2").returncode == 1
    assert cli("--db", str(store), "fork", "nobody").returncode == 1


def test_stats_counts_sessions_events_and_usage(store: Path) -> None:
    figures = json.loads(cli("--db", str(store), "stats", "--json").stdout)
    assert (figures["backend"], figures["sessions"], figures["events"]) == ("sqlite", 2, 7)
    assert figures["active_sessions"] == 1 and figures["usage"]["latency"] == 10
    assert "sessions" in cli("--db", str(store), "stats").stdout


def test_usage_errors_exit_2_and_an_unopenable_store_exits_3(tmp_path: Path) -> None:
    assert cli("list", "--limit", "-1").returncode == 2
    assert cli("frobnicate").returncode == 2
    assert cli("--backend", "memory", "--db", "x.db", "list").returncode == 2
    blocker = tmp_path / "file"
    blocker.write_text("")
    failed = cli("--db", str(blocker / "x.db"), "import", "-")
    assert failed.returncode == 3 and "cannot open" in failed.stderr
