"""The jsonl backend's own promises: the Rust crate's layout, safe file names, whole lines."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import stat
import threading
from pathlib import Path

import pytest
from daemon import Daemon
from events import init, line, prompt, response, stop

from sidecar.store.jsonl import file_name

HOSTILE_IDS = [
    "../escape",
    "../../../../etc/passwd",
    "/absolute/path",
    "a/b",
    "a_b",  # plain: what a naive sanitiser would turn a/b, a\b and a:b into
    "a\\b",
    "a:b",
    "a\x00b",
    "nul-at-end\x00",
    "\x01control",
    "tab\tid",
    "new\nline",
    "del\x7f",
    ".hidden",
    ".",
    "..",
    "a..b",
    "a/../b",
    ".jsonl",
    "~tilde",
    "~~looks-hashed",
    "x" * 201,
    "é" * 150,  # 150 characters, 300 bytes
    "y" * 512,  # the longest id any backend takes: hashed, as too long for a file name
    "space in id",
    'quote"and*star?',
    "emoji😀",
    "\u202eright-to-left",
    "CON",
    "con",
]


def directory_args(directory: Path) -> list[str]:
    return ["--backend", "jsonl", "--jsonl-dir", str(directory)]


def jsonl_daemon(directory: Path, *extra: str) -> Daemon:
    return Daemon(None, *directory_args(directory), *extra)


def test_plain_ids_keep_the_rust_crate_file_name_and_files_are_private(tmp_path: Path) -> None:
    directory = tmp_path / "new" / "sessions"
    with jsonl_daemon(directory) as daemon:
        daemon.send(init("9b2f0c64-1d2e-4f7a-8c11-3e5d7a9b0c21"), init("run_1.2"))
        assert daemon.close() == 0
    files = sorted(p.name for p in directory.glob("*.jsonl"))
    assert files == ["9b2f0c64-1d2e-4f7a-8c11-3e5d7a9b0c21.jsonl", "run_1.2.jsonl"]
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in directory.iterdir())


def test_hostile_ids_are_stored_apart_inside_the_directory_and_read_back(tmp_path: Path) -> None:
    directory = tmp_path / "sessions"
    with jsonl_daemon(directory) as daemon:
        daemon.send(
            *(
                prompt(session_id, "2026-01-01T00:00:00Z", text=str(i))
                for i, session_id in enumerate(HOSTILE_IDS)
            )
        )
        for i, session_id in enumerate(HOSTILE_IDS):
            events = daemon.result("storage.get_session", {"session_id": session_id})
            assert [e["params"]["prompt"] for e in events] == [str(i)], session_id
        assert daemon.result("storage.stats")["sessions"] == len(HOSTILE_IDS)
        assert daemon.close() == 0
    everything = [p for p in tmp_path.rglob("*")]
    assert all(p.parent == directory and p.is_file() for p in everything if p != directory)
    session_files = [p for p in directory.iterdir() if not p.name.startswith(".")]
    assert len(session_files) == len(HOSTILE_IDS)  # no two ids share a file


@pytest.mark.parametrize("session_id", HOSTILE_IDS)
def test_a_file_name_is_one_safe_component_that_gives_the_id_back(session_id: str) -> None:
    name = file_name(session_id)
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert not name.startswith(".") and name.isprintable() and len(name.encode()) <= 255
    assert name.endswith(".jsonl")
    stem = name.removesuffix(".jsonl")
    if stem.startswith("~~"):
        assert len(session_id.encode()) > 120  # only ids too long to encode are hashed
    elif stem.startswith("~"):
        padded = stem[1:].upper() + "=" * (-len(stem[1:]) % 8)
        assert base64.b32decode(padded).decode() == session_id
    else:
        assert stem == session_id


def test_a_directory_written_by_the_rust_crate_is_served_as_it_is(tmp_path: Path) -> None:
    directory = tmp_path / "sessions"
    directory.mkdir()
    sent = [init("rust", "2026-01-01T00:00:00Z"), prompt("rust", "2026-01-01T00:00:02Z")]
    late = response("rust", "2026-01-01T00:00:01Z")
    (directory / "rust.jsonl").write_bytes(
        b"".join(line(m) + b"\n" for m in sent) + b"{torn\n" + line(late) + b"\n"
    )
    with jsonl_daemon(directory) as daemon:
        events = daemon.result("storage.get_session", {"session_id": "rust"})
        assert events == [sent[0], late, sent[1]]
        assert daemon.close() == 0
    assert "rust.jsonl line 3 is not a readable notification; skipped" in daemon.stderr


def test_what_the_sidecar_writes_is_one_compact_notification_per_line(tmp_path: Path) -> None:
    directory = tmp_path / "sessions"
    sent = [
        init("s", "2026-01-01T00:00:00Z"),
        prompt("s", "2026-01-01T00:00:01Z"),
        stop("s", "2026-01-01T00:00:02Z"),
    ]
    with jsonl_daemon(directory) as daemon:
        daemon.send_raw(b"".join(json.dumps(m, indent=None).encode() + b"\n" for m in sent))
        assert daemon.close() == 0
    lines = (directory / "s.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 4
    assert [json.loads(raw) for raw in lines[:-1]] == sent  # what the Rust crate's reader does
    assert all(raw.startswith(b'{"jsonrpc":"2.0","method":') for raw in lines[:-1])


def test_an_append_after_a_torn_last_line_starts_on_a_line_of_its_own(tmp_path: Path) -> None:
    directory = tmp_path / "sessions"
    directory.mkdir()
    (directory / "t.jsonl").write_bytes(
        line(init("t", "2026-01-01T00:00:00Z")) + b"\n" + b'{"jsonrpc":"2.0","meth'
    )
    with jsonl_daemon(directory) as daemon:
        daemon.send(prompt("t", "2026-01-01T00:00:01Z"))
        events = daemon.result("storage.get_session", {"session_id": "t"})
        assert [e["method"] for e in events] == ["session.init", "user.prompt.submit"]
        assert daemon.close() == 0


def test_several_daemons_appending_to_one_directory_never_interleave_lines(tmp_path: Path) -> None:
    directory = tmp_path / "sessions"
    per_daemon, sessions = 3000, ["shared-a", "shared-b"]
    daemons = [jsonl_daemon(directory) for _ in range(4)]

    def feed(n: int, daemon: Daemon) -> None:
        daemon.send_raw(
            b"".join(
                line(prompt(sessions[i % 2], "2026-01-01T00:00:00Z", text=f"{n}-{i}-" + "z" * 300)) + b"\n"
                for i in range(per_daemon)
            )
        )

    feeders = [threading.Thread(target=feed, args=(n, d)) for n, d in enumerate(daemons)]
    for feeder in feeders:
        feeder.start()
    for feeder, daemon in zip(feeders, daemons, strict=True):
        feeder.join()
        assert daemon.close() == 0, daemon.stderr
    prompts = []
    for session_id in sessions:
        for raw in (directory / f"{session_id}.jsonl").read_bytes().splitlines():
            prompts.append(json.loads(raw)["params"]["prompt"])
    assert len(prompts) == len(set(prompts)) == 4 * per_daemon


def test_a_batch_that_fails_part_way_is_undone_and_stored_once_when_retried(tmp_path: Path) -> None:
    directory = tmp_path / "sessions"
    (directory / "bad.jsonl").mkdir(parents=True)  # appending to this session fails
    batch = [prompt("good", "2026-01-01T00:00:00Z"), prompt("bad", "2026-01-01T00:00:00Z")]
    with jsonl_daemon(directory) as daemon:
        daemon.send(batch)  # one JSON-RPC batch: both events go in one store write
        failed = daemon.request("storage.flush")
        assert failed["error"]["code"] == -32001
        assert not (directory / "good.jsonl").exists()  # undone: the failed write created it
        (directory / "bad.jsonl").rmdir()
        assert daemon.result("storage.flush")["seq"] >= 2
        assert daemon.close() == 0
    assert (directory / "good.jsonl").read_bytes() == line(batch[0]) + b"\n"
    assert (directory / "bad.jsonl").read_bytes() == line(batch[1]) + b"\n"


def test_a_lock_held_too_long_is_storage_unavailable_and_the_events_wait(tmp_path: Path) -> None:
    directory = tmp_path / "sessions"
    directory.mkdir()
    holder = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        with jsonl_daemon(directory, "--lock-timeout", "0.2") as daemon:
            daemon.send(prompt("l", "2026-01-01T00:00:00Z"))
            failed = daemon.request("storage.flush")
            assert failed["error"]["code"] == -32001
            assert "locked by another process" in failed["error"]["data"]["reason"]
            fcntl.flock(holder, fcntl.LOCK_UN)
            assert daemon.result("storage.flush") == {"seq": 1}
            assert daemon.close() == 0
    finally:
        os.close(holder)
    assert len((directory / "l.jsonl").read_bytes().splitlines()) == 1


def test_a_reader_sees_lines_another_process_appends_and_a_file_rewritten_under_it(tmp_path: Path) -> None:
    directory = tmp_path / "sessions"
    with jsonl_daemon(directory) as reader:
        reader.send(init("w", "2026-01-01T00:00:00Z"))
        assert len(reader.result("storage.get_session", {"session_id": "w"})) == 1
        with jsonl_daemon(directory) as writer:
            writer.send(prompt("w", "2026-01-01T00:00:01Z"))
            assert writer.close() == 0
        assert len(reader.result("storage.get_session", {"session_id": "w"})) == 2
        (directory / "w.jsonl").write_bytes(line(response("w", "2026-01-01T00:00:05Z")) + b"\n")
        events = reader.result("storage.get_session", {"session_id": "w"})
        assert [e["method"] for e in events] == ["assistant.response"]
        assert reader.close() == 0
