"""The command line as people use it, through the real entry point: stores that do not
exist, formats, one clock, short session references, list's width and filters, help and
errors, the pager and colour, confirmation, prune, and the hint on a terminal."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from daemon import Daemon
from events import init, notification, prompt, stop
from terminal import on_terminal

T = "2026-06-07T14:03:2{}Z"
READ_COMMANDS = [
    ["list"],
    ["show", "x"],
    ["export"],
    ["search", "word"],
    ["stats"],
    ["tail"],
    ["delete", "x", "--yes"],
    ["fork", "x"],
    ["prune", "--older-than", "1d"],
]


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def tool_call(session_id: str, second: int) -> dict[str, object]:
    call = notification(
        "tool.call", session_id=session_id, turn_id="t1", name="read_file", input={"path": "a.rs"}
    )
    call["params"]["timestamp"] = T.format(second)
    call["params"]["tool_call_id"] = "c1"
    return call


def tool_result(session_id: str, second: int) -> dict[str, object]:
    result = notification(
        "tool.result", session_id=session_id, turn_id="t1", result={"Ok": "fn main() {}"}, tool_call_id="c1"
    )
    result["params"]["timestamp"] = T.format(second)
    return result


@pytest.fixture
def store(db: Path) -> Path:
    """Three sessions written by the daemon: alpha (stopped), alpine and beta (active)."""
    with Daemon(db) as daemon:
        daemon.send(init("alpha", T.format(0)), prompt("alpha", T.format(1), text="Read the albatross file"))
        daemon.send(tool_call("alpha", 2), tool_result("alpha", 3), stop("alpha", T.format(4), result="done"))
        daemon.send(init("alpine", T.format(5)), prompt("alpine", T.format(6), text="second one"))
        daemon.send(init("beta", T.format(7)), prompt("beta", T.format(8), text="third one"))
        assert daemon.close() == 0
    return db


# --- stores that do not exist ------------------------------------------------------------


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: c[0])
def test_a_read_command_on_a_missing_database_exits_1_naming_it_and_creates_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    missing = tmp_path / "typo" / "sessions.db"
    done = cli("--db", str(missing), *command)
    assert done.returncode == 1
    assert f"no store at {missing}" in done.stderr
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: c[0])
def test_a_read_command_on_a_missing_jsonl_directory_exits_1_and_creates_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    done = cli("--backend", "jsonl", "--jsonl-dir", "sessions", *command, cwd=tmp_path)
    assert done.returncode == 1 and f"no store at {tmp_path / 'sessions'}" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_import_still_creates_the_store(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(init("i", T.format(0))) + "\n")
    assert cli("--db", str(tmp_path / "new" / "s.db"), "import", str(events)).returncode == 0
    assert (tmp_path / "new" / "s.db").exists()


# --- formats -----------------------------------------------------------------------------


def test_list_prints_csv_markdown_and_one_json_object_per_line(store: Path) -> None:
    rows = list(csv.reader(io.StringIO(cli("--db", str(store), "list", "--format", "csv", "--utc").stdout)))
    assert rows[0] == ["SESSION", "EVENTS", "LAST ACTIVITY", "STATUS", "MODEL", "TITLE"]
    assert [row[0] for row in rows[1:]] == ["beta", "alpine", "alpha"]
    assert rows[3][2] == "2026-06-07 14:03:24 +00:00" and rows[3][3] == "stopped ok"
    markdown = cli("--db", str(store), "list", "--format", "markdown").stdout.splitlines()
    assert markdown[0].startswith("| SESSION | EVENTS |") and markdown[1].startswith("|---|")
    assert len(markdown) == 5
    lines = cli("--db", str(store), "list", "--format", "nl").stdout.splitlines()
    assert [json.loads(raw)["session_id"] for raw in lines] == ["beta", "alpine", "alpha"]


def test_search_and_stats_take_every_format(store: Path) -> None:
    hits = [
        json.loads(raw)
        for raw in cli("--db", str(store), "search", "albatross", "--format", "nl").stdout.splitlines()
    ]
    assert [(hit["session_id"], hit["method"]) for hit in hits] == [("alpha", "user.prompt.submit")]
    table = list(
        csv.reader(io.StringIO(cli("--db", str(store), "search", "albatross", "--format", "csv").stdout))
    )
    assert table[0] == ["TIME", "SESSION", "SEQ", "EVENT", "MATCH"] and table[1][1] == "alpha"
    figures = json.loads(cli("--db", str(store), "stats", "--format", "json").stdout)
    assert figures["sessions"] == 3
    assert "| sessions | 3 |" in cli("--db", str(store), "stats", "--format", "markdown").stdout


def test_show_as_markdown_is_a_document_with_the_turn_the_call_and_its_result(store: Path) -> None:
    document = cli("--db", str(store), "show", "alpha", "--format", "markdown").stdout
    assert "Read the albatross file" in document and "read_file" in document
    assert '"path": "a.rs"' in document or '"path":"a.rs"' in document
    assert document.index("albatross") < document.index("read_file") < document.index("fn main() {}")
    assert re.search(r"^#+ ", document, re.MULTILINE)


def test_show_json_is_one_array_and_nl_one_event_per_line(store: Path) -> None:
    events = json.loads(cli("--db", str(store), "show", "beta", "--json").stdout)
    assert [e["method"] for e in events] == ["session.init", "user.prompt.submit"]
    lines = cli("--db", str(store), "show", "beta", "--format", "nl").stdout.splitlines()
    assert [json.loads(raw) for raw in lines] == events


# --- one clock ---------------------------------------------------------------------------


def test_every_command_prints_local_time_with_its_offset_or_utc(store: Path) -> None:
    india = {"TZ": "Asia/Kolkata"}  # +05:30 all year
    local = "2026-06-07 19:33:21 +05:30"
    assert local in cli("--db", str(store), "show", "alpha", env=india).stdout
    assert "2026-06-07 19:33:28 +05:30" in cli("--db", str(store), "list", env=india).stdout
    assert "2026-06-07 19:33:21 +05:30" in cli("--db", str(store), "search", "albatross", env=india).stdout
    assert "2026-06-07 14:03:21 +00:00" in cli("--db", str(store), "show", "alpha", "--utc", env=india).stdout


@pytest.mark.parametrize(
    "before", ["2026-06-07 14:03:25 +00:00", "2026-06-07 19:33:25 +05:30", "2026-06-07T14:03:25Z"]
)
def test_before_takes_the_form_the_table_prints(store: Path, before: str) -> None:
    listed = json.loads(cli("--db", str(store), "list", "--json", "--before", before).stdout)
    assert [s["session_id"] for s in listed] == ["alpha"]


def test_since_takes_dates_and_durations(store: Path) -> None:
    assert len(json.loads(cli("--db", str(store), "list", "--json", "--since", "2026-06-01").stdout)) == 3
    assert (
        json.loads(cli("--db", str(store), "list", "--json", "--since", "2d").stdout) == []
    )  # June was long ago
    listed = json.loads(
        cli("--db", str(store), "list", "--json", "--since", "2026-06-07 14:03:26 +00:00").stdout
    )
    assert [s["session_id"] for s in listed] == ["beta", "alpine"]


# --- short references --------------------------------------------------------------------


def test_a_unique_start_of_an_id_and_at_last_name_a_session(store: Path) -> None:
    assert "albatross" in cli("--db", str(store), "show", "alph").stdout
    assert "third one" in cli("--db", str(store), "show", "@last").stdout
    assert "third one" in cli("--db", str(store), "show", "b").stdout


def test_every_command_taking_a_session_takes_a_reference(store: Path) -> None:
    exported = [
        json.loads(raw) for raw in cli("--db", str(store), "export", "alph", "@last").stdout.splitlines()
    ]
    assert [e["params"]["session_id"] for e in exported] == ["alpha"] * 5 + ["beta"] * 2
    hits = json.loads(cli("--db", str(store), "search", "third", "--session", "@last", "--json").stdout)
    assert [hit["session_id"] for hit in hits] == ["beta"]
    assert "forked alpha as copy" in cli("--db", str(store), "fork", "alph", "--new-id", "copy").stdout
    assert "deleted copy (6 events)" in cli("--db", str(store), "delete", "cop").stdout


def test_an_ambiguous_start_exits_2_listing_the_candidates(store: Path) -> None:
    done = cli("--db", str(store), "show", "al")
    assert done.returncode == 2
    assert "alpha" in done.stderr and "alpine" in done.stderr


def test_an_exact_id_wins_over_longer_ids_it_starts(store: Path) -> None:
    with Daemon(store) as daemon:
        daemon.send(init("alpha-2", T.format(9)))
        assert daemon.close() == 0
    assert "albatross" in cli("--db", str(store), "show", "alpha").stdout


# --- list --------------------------------------------------------------------------------


def test_list_says_how_many_it_left_out_and_limit_0_shows_all(store: Path) -> None:
    shown = cli("--db", str(store), "list", "--limit", "1").stdout.splitlines()
    assert shown[-1] == "1 of 3 sessions (--limit 0 for all)"
    everything = cli("--db", str(store), "list", "--limit", "0").stdout.splitlines()
    assert len(everything) == 4 and "of 3 sessions" not in everything[-1]


def test_list_filters_by_status_and_model(store: Path) -> None:
    stopped = json.loads(cli("--db", str(store), "list", "--json", "--status", "stopped").stdout)
    assert [s["session_id"] for s in stopped] == ["alpha"]
    model = json.loads(cli("--db", str(store), "list", "--json", "--limit", "1").stdout)[0]["model"]
    assert len(json.loads(cli("--db", str(store), "list", "--json", "--model", model.upper()).stdout)) == 3
    assert json.loads(cli("--db", str(store), "list", "--json", "--model", "no-such-model").stdout) == []


def test_list_fits_a_narrow_terminal_cutting_never_wrapping(store: Path) -> None:
    code, shown = on_terminal("--db", str(store), "list", "--no-pager", env={"COLUMNS": "60"})
    assert code == 0
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in shown.splitlines() if line.strip()]
    assert len(lines) == 4 and all(len(line) <= 60 for line in lines)
    assert lines[1].startswith("beta ") and "2026-06-07" in lines[1]  # the title gave way


# --- help and errors ---------------------------------------------------------------------


def test_a_commands_help_shows_its_own_options_first_and_only_the_store_options_that_apply() -> None:
    listing = cli("list", "--help").stdout
    assert listing.index("\n  --limit") < listing.index("store options:") < listing.index("\n  --backend")
    assert "--durability" not in listing
    assert "--durability" in cli("import", "--help").stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["list", "--limit", "abc"], "argument --limit: expected a whole number, such as 50, not 'abc'"),
        (
            ["list", "--before", "yesterday"],
            "argument --before: not a time or duration: 'yesterday' (e.g. 2h",
        ),
        (["prune", "--older-than", "soon"], "argument --older-than: not a duration: 'soon' (e.g. 90s"),
    ],
)
def test_errors_name_the_option_and_show_an_example(args: list[str], expected: str) -> None:
    done = cli(*args)
    assert done.returncode == 2 and expected in done.stderr
    assert "_int" not in done.stderr and "_time" not in done.stderr


# --- pager, colour -----------------------------------------------------------------------


def test_long_output_on_a_terminal_goes_through_the_pager(store: Path, tmp_path: Path) -> None:
    paged = tmp_path / "paged"
    pager = {"PAGER": f"cat > {paged}"}
    code, _ = on_terminal("--db", str(store), "show", "alpha", env=pager, rows=5)
    assert code == 0 and "albatross" in paged.read_text()
    paged.unlink()
    code, shown = on_terminal("--db", str(store), "show", "alpha", "--no-pager", env=pager, rows=5)
    assert code == 0 and "albatross" in shown and not paged.exists()


def test_colour_can_be_forced_for_a_pipe_and_is_off_by_default_or_with_no_color(store: Path) -> None:
    assert "\033[" in cli("--db", str(store), "list", "--color", "always").stdout
    assert "\033[" not in cli("--db", str(store), "list").stdout
    _, shown = on_terminal("--db", str(store), "list", "--no-pager", env={"NO_COLOR": "1"})
    assert "\033[" not in shown


# --- stats, delete, prune, tail ------------------------------------------------------------


def test_stats_show_the_absolute_location_size_quarantine_and_highest_seq(store: Path) -> None:
    figures = json.loads(cli("--db", store.name, "stats", "--json", cwd=store.parent).stdout)
    assert figures["location"] == str(store)
    assert figures["size_bytes"] > 0 and figures["quarantined"] == 0 and figures["highest_seq"] == 9
    assert figures["events"] == 9 and figures["usage"]["latency"] == 10
    assert "MB" in cli("--db", str(store), "stats").stdout


def test_delete_on_a_terminal_asks_first_and_yes_skips_the_question(store: Path) -> None:
    code, shown = on_terminal("--db", str(store), "delete", "beta", answer=b"n\n")
    assert code == 0 and "delete session beta (2 events)?" in shown and "nothing deleted" in shown
    assert "third one" in cli("--db", str(store), "show", "beta").stdout
    code, shown = on_terminal("--db", str(store), "delete", "beta", answer=b"y\n")
    assert code == 0 and "deleted beta (2 events)" in shown
    code, shown = on_terminal("--db", str(store), "delete", "alpine", "--yes")
    assert code == 0 and "?" not in shown and "deleted alpine" in shown


def test_delete_without_a_terminal_does_not_ask(store: Path) -> None:
    done = cli("--db", str(store), "delete", "beta")
    assert done.returncode == 0 and "deleted beta (2 events)" in done.stdout


def test_prune_dry_run_lists_and_prune_deletes_and_reclaims_space(store: Path) -> None:
    dry = cli("--db", str(store), "prune", "--older-than", "1d", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("would delete") == 3
    assert len(json.loads(cli("--db", str(store), "list", "--json").stdout)) == 3
    pruned = cli("--db", str(store), "prune", "--older-than", "1d", "--json")
    assert pruned.returncode == 0
    report = json.loads(pruned.stdout)
    assert sorted(report["sessions"]) == ["alpha", "alpine", "beta"] and report["deleted_events"] == 9
    assert json.loads(cli("--db", str(store), "list", "--json").stdout) == []
    with closing(sqlite3.connect(store)) as db:
        assert db.execute("PRAGMA freelist_count").fetchone() == (0,)  # the space is given back
    kept = cli("--db", str(store), "prune", "--older-than", "100000d")
    assert kept.returncode == 0 and "no session last active before" in kept.stdout


# --- the daemon on a terminal ----------------------------------------------------------------


def test_the_daemon_on_a_terminal_says_what_it_reads_then_serves(tmp_path: Path) -> None:
    code, shown = on_terminal("--db", str(tmp_path / "s.db"), answer=b"\x04")  # Ctrl-D
    assert code == 0
    assert "reading JSON-RPC 2.0 messages from stdin" in shown and "--help" in shown


def test_durations_beyond_any_calendar_and_empty_lists_are_handled_plainly(store: Path) -> None:
    huge = cli("--db", str(store), "prune", "--older-than", "99999999999d")
    assert huge.returncode == 0 and "no session last active before" in huge.stdout, huge.stderr
    listed = cli("--db", str(store), "list", "--before", "99999999999d", "--format", "nl")
    assert listed.returncode == 0 and listed.stdout == "", listed.stderr  # no records: no line
