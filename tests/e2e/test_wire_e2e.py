"""The wire end to end: what only the real daemon over real pipes can show.

Lines framed across pipe reads (over the maximum, exactly at it, megabytes long), stdin as a
file, a FIFO or a pipe closed mid-line, answers in order on the real stdout, a stdout nobody
reads, and how `storage.shutdown` ends the process. What one line is answered, and what is
stored, is tested in-process in tests/unit/test_dispatch.py and tests/unit/test_handlers.py.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from backends import payloads
from daemon import Daemon
from events import (
    as_request,
    error_of,
    init,
    line,
    params_text,
    prompt,
    result_of,
    rpc,
    stored_form,
    tool_result,
    vectors,
)

T = "2026-06-07T14:03:21Z"


# --- checks over the real pipes ------------------------------------------------------------


_fences = itertools.count(1)


def fence(daemon: Daemon) -> None:
    """Prove nothing was written for what came before: the next line is this request's answer."""
    request_id = f"fence-{next(_fences)}"
    daemon.send(rpc("storage.info", request_id=request_id))
    assert result_of(daemon.read_line(), request_id)["name"] == "microagents-sidecar"
    assert daemon.no_output()


def stdout_ends(daemon: Daemon) -> None:
    with pytest.raises(AssertionError, match="stdout closed"):
        daemon.read_line(timeout=5)


# --- 1. framing: lines over, at and far past the maximum ------------------------------------------


@pytest.mark.parametrize("over", [1, 300_000], ids=["one-byte-over", "over-many-chunks"])
def test_a_line_over_the_maximum_is_answered_message_too_large_with_null_id_and_the_daemon_goes_on(
    db: Path, over: int
) -> None:
    with Daemon(db, "--max-line-bytes", "1000") as daemon:
        base = line(as_request(prompt("big", T, text=""), "big"))
        big = line(as_request(prompt("big", T, text="x" * (1000 - len(base) + over)), "big"))
        assert len(big) == 1000 + over
        daemon.send_raw(big + b"\n")
        error_of(daemon.read_line(), -32003, None)
        fence(daemon)
        ack = daemon.request("user.prompt.submit", prompt("small", T)["params"], id="small")
        assert result_of(ack, "small") == {"session_id": "small", "seq": 1}
        assert daemon.result("storage.get_session", {"session_id": "big"}) == []
        assert daemon.close() == 0


def test_a_line_exactly_at_the_maximum_is_accepted(db: Path) -> None:
    with Daemon(db, "--max-line-bytes", "1000") as daemon:
        base = line(as_request(prompt("edge", T, text=""), "edge"))
        edge = line(as_request(prompt("edge", T, text="x" * (1000 - len(base))), "edge"))
        assert len(edge) == 1000
        daemon.send_raw(edge + b"\n")
        assert result_of(daemon.read_line(), "edge") == {"session_id": "edge", "seq": 1}


def test_a_five_megabyte_line_is_accepted_whole(daemon: Daemon) -> None:
    text = "abcdefghijklmnopqrstuvwxyz" * 200_000
    daemon.send(as_request(tool_result("huge", T, {"Ok": text}), "huge"))
    assert result_of(daemon.response("huge"), "huge") == {"session_id": "huge", "seq": 1}
    (event,) = daemon.result("storage.get_session", {"session_id": "huge"})
    assert event["params"]["result"]["Ok"] == text


# --- 2. answers in order on the real stdout ------------------------------------------------------


def test_garbage_lines_are_answered_in_order_and_the_request_after_them_still_is(daemon: Daemon) -> None:
    garbage = [b"{", b"\xc0\xaf", b"42", b"[]", b'{"jsonrpc":"2.0"}', b"}}}}", b"nul"]
    daemon.send_raw(b"\n".join(garbage) + b"\n")
    daemon.send(rpc("storage.get_session", ["nobody"], "after-garbage"))
    for _ in garbage:
        reply = daemon.read_line()
        assert reply["id"] is None and reply["error"]["code"] in (-32700, -32600)
    assert result_of(daemon.read_line(), "after-garbage") == []
    assert daemon.result("storage.stats")["errors"] == len(garbage)
    assert daemon.close() == 0


# --- 3. transports and end of input ---------------------------------------------------------------


def test_stdin_as_a_regular_file_is_read_to_the_end_and_every_event_stored(tmp_path: Path, db: Path) -> None:
    path = tmp_path / "events.jsonl"
    request = line(rpc("storage.get_session", {"session_id": "9b2f0c64-1d2e-4f7a-8c11-3e5d7a9b0c21"}, "f"))
    path.write_bytes(b"\n".join(vectors()) + b"\n" + request)  # the last line has no newline
    with path.open("rb") as stdin, Daemon(db, stdin=stdin) as daemon:
        assert len(result_of(daemon.read_line(), "f")) == 8
        assert daemon.wait() == 0
    assert payloads(db) == [stored_form(json.loads(v)["method"], params_text(v)) for v in vectors()]


def test_stdin_from_a_fifo_is_read_until_the_writer_closes_it(tmp_path: Path, db: Path) -> None:
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    read_fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    write_fd = os.open(fifo, os.O_WRONLY)
    os.set_blocking(read_fd, True)
    with Daemon(db, stdin=read_fd) as daemon:
        os.close(read_fd)
        with os.fdopen(write_fd, "wb") as writer:
            writer.write(line(init("fifo")) + b"\n" + line(rpc("storage.flush", request_id="f")) + b"\n")
            writer.flush()
            assert result_of(daemon.read_line(), "f") == {"seq": 1}
            writer.write(line(prompt("fifo", "2026-06-07T14:03:22Z")) + b"\n")
        assert daemon.wait() == 0
    assert len(payloads(db)) == 2


def test_an_event_on_a_last_line_without_newline_is_stored_at_end_of_input(daemon: Daemon, db: Path) -> None:
    daemon.send_raw(line(init("last")) + b"\n" + line(prompt("last", "2026-06-07T14:03:22Z")))
    assert daemon.close() == 0
    assert len(payloads(db)) == 2


def test_a_request_on_a_last_line_without_newline_is_answered_at_end_of_input(daemon: Daemon) -> None:
    daemon.send_raw(line(init("last")) + b"\n" + line(rpc("storage.flush", request_id="end")))
    assert daemon.process.stdin is not None
    daemon.process.stdin.close()
    assert result_of(daemon.read_line(), "end") == {"seq": 1}
    assert daemon.wait() == 0


def test_a_closed_stdout_does_not_stop_the_daemon_from_storing_every_event(db: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read the daemon's answers
    process = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "--db", str(db)],
        stdin=subprocess.PIPE,
        stdout=write_end,
        stderr=subprocess.PIPE,
    )
    os.close(write_end)
    requests = [line(as_request(prompt("epipe", f"2026-06-07T14:03:21.{i:09d}Z"), i)) for i in range(200)]
    notifications = [line(prompt("epipe", f"2026-06-07T14:03:22.{i:09d}Z")) for i in range(200)]
    flushes = [line(rpc("storage.flush", request_id=i)) for i in range(10)]
    data = b"\n".join(requests + flushes + notifications + flushes) + b"\n"
    try:
        _, stderr = process.communicate(data, timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert stderr.decode().count("stdout") == 1, stderr  # said once, not per response
    assert len(payloads(db)) == 400


# --- 4. storage.shutdown ends the process ------------------------------------------------------------


def test_storage_shutdown_as_a_notification_exits_0_silently_with_every_event_committed(
    daemon: Daemon, db: Path
) -> None:
    daemon.send(*(prompt("sh", f"2026-06-07T14:03:21.{i:09d}Z") for i in range(50)))
    daemon.send({"jsonrpc": "2.0", "method": "storage.shutdown"})
    assert daemon.wait() == 0
    stdout_ends(daemon)
    assert len(payloads(db)) == 50


def test_storage_shutdown_as_a_request_answers_null_and_exits_0(daemon: Daemon, db: Path) -> None:
    daemon.send(init("sh"), rpc("storage.shutdown", request_id=99))
    assert result_of(daemon.read_line(), 99) is None
    assert daemon.wait() == 0
    stdout_ends(daemon)
    assert len(payloads(db)) == 1
