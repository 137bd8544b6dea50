"""storage.subscribe end to end: real daemons over pipes on real files, several processes
on one store, the Rust crate writing beside them, slow readers, a killed writer, `tail`."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import deque
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import rust_crate
from backends import BACKENDS, Backend, PostgresBackend
from daemon import WAIT_S, Daemon
from events import init, line, notification, prompt, response, stop
from pg_server import fetch


def ts(i: int) -> str:
    return f"2026-06-07T14:{i // 60000 % 60:02d}:{i // 1000 % 60:02d}.{i % 1000:03d}Z"


class Watcher(Daemon):
    """A daemon whose notifications are kept apart from its responses, and whose stdout
    can be left unread for a while (`pause_reading`) to play a slow subscriber."""

    def __init__(self, args: list[str]) -> None:
        self._reading = threading.Event()
        self._reading.set()
        self.notes: deque[dict[str, Any]] = deque()
        super().__init__(None, *args)

    def __enter__(self) -> Watcher:
        return self

    def _pump_stdout(self) -> None:
        assert self.process.stdout is not None
        while self._reading.wait():
            raw = self.process.stdout.readline()
            self._lines.put(raw)
            if not raw:
                return

    def pause_reading(self) -> None:
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    def response(self, request_id: Any, timeout: float = WAIT_S) -> Any:
        while True:
            message = self.read_line(timeout)
            if "method" in message:
                self.notes.append(message)
            elif message.get("id") == request_id:
                return message
            else:
                raise AssertionError(f"unexpected line {message}")

    def subscribe(self, **params: Any) -> int:
        subscription: int = self.result("storage.subscribe", params)["subscription"]
        return subscription

    def notification(self, timeout: float = WAIT_S) -> dict[str, Any]:
        message: dict[str, Any] = self.notes.popleft() if self.notes else self.read_line(timeout)
        assert "method" in message, message
        return message

    def events(self, count: int, subscription: int | None = None) -> list[tuple[int, dict[str, Any]]]:
        """The next `count` storage.event notifications, as (seq, event)."""
        got = []
        for _ in range(count):
            note = self.notification()
            assert note["method"] == "storage.event", note
            if subscription is not None:
                assert note["params"]["subscription"] == subscription, note
            got.append((note["params"]["seq"], note["params"]["event"]))
        return got


def backend_named(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if name == "postgres":  # a fresh database on the suite's server
        return PostgresBackend(tmp_path, request.getfixturevalue("postgres_dsn"))
    return BACKENDS[name](tmp_path)


@pytest.fixture(params=["sqlite", "jsonl", "postgres"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """A store several processes can share."""
    return backend_named(request.param, request, tmp_path)


@pytest.fixture(params=["sqlite", "jsonl", "memory", "postgres"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return backend_named(request.param, request, tmp_path)


def seqs(events: list[tuple[int, dict[str, Any]]]) -> list[int]:
    return [seq for seq, _ in events]


def test_a_subscriber_gets_every_event_another_daemon_commits_once_in_order(shared: Backend) -> None:
    sent = [prompt(f"s{i % 3}", ts(i), text=str(i)) for i in range(300)]
    with Watcher(shared.args()) as watcher, shared.daemon() as writer:
        watcher.subscribe()
        writer.send(*sent[:100])
        assert writer.result("storage.flush") == {"seq": 100}
        writer.send(*sent[100:])
        got = watcher.events(300)
        assert seqs(got) == list(range(1, 301))
        assert [event for _, event in got] == sent
        ack = writer.result("session.stop", stop("s0", ts(300))["params"])
        assert watcher.events(1) == [(ack["seq"], stop("s0", ts(300)))]  # nothing else came first
        assert writer.close() == 0 and watcher.close() == 0


def test_rows_the_rust_crate_inserts_are_sent_in_commit_order(db: Path) -> None:
    with Watcher(["--db", str(db)]) as watcher, Daemon(db) as writer:
        watcher.subscribe()
        assert writer.result("session.init", init("w", ts(0))["params"])["seq"] == 1
        crate = rust_crate.open_like_the_crate(db)
        rust_crate.insert(crate, prompt("r", ts(1)))
        rust_crate.insert(crate, stop("r", ts(2)))
        crate.close()
        writer.send(prompt("w", ts(3)))
        got = watcher.events(4)
        assert seqs(got) == [1, 2, 3, 4]
        assert [event for _, event in got] == [
            init("w", ts(0)),
            prompt("r", ts(1)),
            stop("r", ts(2)),
            prompt("w", ts(3)),
        ]
        assert writer.close() == 0 and watcher.close() == 0


def test_lines_the_rust_crate_appends_to_a_jsonl_directory_are_sent_once(tmp_path: Path) -> None:
    directory = tmp_path / "sessions"
    args = ["--backend", "jsonl", "--jsonl-dir", str(directory)]

    def crate_appends(session_id: str, *messages: dict[str, Any]) -> None:
        with (directory / f"{session_id}.jsonl").open("ab") as file:
            file.write(b"".join(line(m) + b"\n" for m in messages))

    with Watcher(args) as watcher, Daemon(None, *args) as writer:
        watcher.subscribe()  # starts the directory's log
        crate_appends("shared", init("shared", ts(0)))  # to a file the writer then appends to
        writer.send(prompt("shared", ts(1)))
        assert writer.result("storage.flush") == {"seq": 2}  # the crate's line was logged first
        crate_appends("crate-only", init("crate-only", ts(2)), prompt("crate-only", ts(3)))  # found by a scan
        got = watcher.events(4)
        expected = [init("shared", ts(0)), prompt("shared", ts(1)), init("crate-only", ts(2))]
        assert [event for _, event in got] == [*expected, prompt("crate-only", ts(3))]
        assert seqs(got) == [1, 2, 3, 4]
        writer.send(stop("shared", ts(4)))
        assert watcher.events(1) == [(5, stop("shared", ts(4)))]
        assert writer.close() == 0 and watcher.close() == 0


def test_a_subscription_from_a_seq_replays_what_followed_then_goes_on_live(any_store: Backend) -> None:
    with Watcher(any_store.args()) as daemon:
        daemon.send(*(prompt("a", ts(i), text=str(i)) for i in range(10)))
        assert daemon.result("storage.flush") == {"seq": 10}
        replay = daemon.subscribe(**{"from": 4})
        assert not daemon.notes  # the response comes before the first notification
        assert seqs(daemon.events(6, replay)) == [5, 6, 7, 8, 9, 10]
        live = daemon.subscribe()  # "now": after everything received before it
        daemon.send(prompt("a", ts(10), text="10"))
        notes = [daemon.notification()["params"] for _ in range(2)]
        assert sorted((n["subscription"], n["seq"]) for n in notes) == [(replay, 11), (live, 11)]
        assert daemon.close() == 0


def test_session_and_method_filters_choose_what_each_subscription_is_sent(any_store: Backend) -> None:
    with Watcher(any_store.args()) as daemon:
        only_a = daemon.subscribe(session_id="a", methods=["user.*", "session.stop"])
        inits = daemon.subscribe(methods=["session.init"])
        daemon.send(init("a", ts(0)), prompt("a", ts(1)), response("a", ts(2)))
        daemon.send(init("b", ts(3)), prompt("b", ts(4)), stop("a", ts(5)))
        notes = [daemon.notification()["params"] for _ in range(4)]
        by_sub = {
            sub: [(n["seq"], n["event"]["method"]) for n in notes if n["subscription"] == sub]
            for sub in (only_a, inits)
        }
        assert by_sub == {
            only_a: [(2, "user.prompt.submit"), (6, "session.stop")],
            inits: [(1, "session.init"), (4, "session.init")],
        }
        assert daemon.close() == 0


def test_unsubscribe_ends_a_subscription_and_bad_params_are_refused(db: Path) -> None:
    with Watcher(["--db", str(db)]) as daemon:
        first, second = daemon.subscribe(), daemon.subscribe()
        assert daemon.result("storage.unsubscribe", {"subscription": first}) == {"unsubscribed": True}
        daemon.send(init("u", ts(0)))
        assert daemon.events(1, second) == [(1, init("u", ts(0)))]
        assert daemon.result("storage.unsubscribe", [second]) == {"unsubscribed": True}
        for method, params, field in [
            ("storage.unsubscribe", {"subscription": first}, "subscription"),
            ("storage.subscribe", {"from": -1}, "from"),
            ("storage.subscribe", {"from": "later"}, "from"),
            ("storage.subscribe", {"methods": ["not a pattern"]}, "methods"),
        ]:
            error = daemon.request(method, params)["error"]
            assert error["code"] == -32602 and error["data"]["field"].startswith(field), error
        assert not daemon.notes
        assert daemon.close() == 0


def test_a_subscriber_that_stops_reading_does_not_slow_ingest_and_then_gets_every_event_once(
    db: Path,
) -> None:
    """Whether the stopped reader has lagged by the time it reads on depends on how far the
    daemon got with the flood meanwhile (the rule itself is proven in-process, in
    tests/unit/test_subscriptions.py). Either way it gets every event once, in order:
    directly, or after one storage.subscription_lagged, from a subscription at the seq it names."""
    total = 20_000
    with Watcher(["--db", str(db)]) as daemon:
        subscription = daemon.subscribe()
        daemon.pause_reading()
        flood = b"".join(line(prompt("f", ts(i), text=f"{i}:" + "x" * 1000)) + b"\n" for i in range(total))
        sender = threading.Thread(
            target=daemon.send, args=(flood, {"jsonrpc": "2.0", "id": "f", "method": "storage.flush"})
        )
        sender.start()
        sender.join(WAIT_S)
        assert not sender.is_alive()  # stdin was read on although nobody read stdout
        daemon.resume_reading()
        assert daemon.response("f")["result"] == {"seq": total}  # notifications before it are kept
        delivered: list[tuple[int, dict[str, Any]]] = []
        lags = 0
        while len(delivered) < total:
            note = daemon.notification()
            if note["method"] == "storage.subscription_lagged":
                assert note["params"] == {"subscription": subscription, "last_seq": len(delivered)}, note
                lags += 1
                subscription = daemon.subscribe(**{"from": len(delivered)})
                continue
            assert note["method"] == "storage.event" and note["params"]["subscription"] == subscription, note
            assert note["params"]["seq"] == len(delivered) + 1, note  # no gap, no repeat
            delivered.append((note["params"]["seq"], note["params"]["event"]))
        assert [int(event["params"]["prompt"].split(":")[0]) for _, event in delivered] == list(range(total))
        assert lags <= 1  # everything was committed before the new subscription: it cannot lag
        assert daemon.result("storage.flush") == {"seq": total} and not daemon.notes
        assert daemon.close() == 0


def test_a_writer_killed_mid_stream_leaves_the_watcher_exactly_what_was_committed(shared: Backend) -> None:
    last = stop("k", ts(99_999))
    with Watcher(shared.args()) as watcher:
        watcher.subscribe()
        with shared.daemon() as writer:

            def feed() -> None:
                with contextlib.suppress(OSError):  # the pipe breaks when the writer is killed
                    for start in range(0, 50_000, 50):
                        writer.send(*(prompt("k", ts(i), text=str(i)) for i in range(start, start + 50)))

            feeder = threading.Thread(target=feed)
            feeder.start()
            delivered = watcher.events(1)  # the stream is flowing
            writer.process.kill()
            writer.process.wait(WAIT_S)
            feeder.join(WAIT_S)
        with shared.daemon() as fence:  # on jsonl it first logs any lines the killed writer left unlogged
            fence.send(last)
            assert fence.close() == 0
        while (event := watcher.events(1)[0])[1] != last:
            delivered.append(event)
        committed = committed_events(shared, "k")
        assert len(committed) - 1 < 50_000  # killed mid-stream
        assert [e for _, e in delivered] == committed[:-1] and committed[-1] == last
        assert seqs(delivered) == sorted(set(seqs(delivered)))
        assert watcher.close() == 0


def committed_events(backend: Backend, session_id: str) -> list[dict[str, Any]]:
    """What the store holds after the fact, in commit order, read without the daemon."""
    if isinstance(backend, PostgresBackend):
        rows = fetch(backend.dsn, "SELECT payload FROM events ORDER BY seq")
        return [json.loads(payload) for (payload,) in rows]
    if backend.name == "sqlite":
        with closing(sqlite3.connect(backend.root / "sessions.db")) as db:
            return [json.loads(p) for (p,) in db.execute("SELECT payload FROM events ORDER BY id")]
    lines = (backend.root / "sessions" / f"{session_id}.jsonl").read_bytes().splitlines()
    readable = []
    for raw in lines:
        with contextlib.suppress(ValueError):  # the killed writer's torn last line
            readable.append(json.loads(raw))
    return readable


class Tail:
    """`microagents-sidecar tail ...` as a subprocess, its stdout read here, line by line."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sidecar", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert self.process.stdout is not None
        self._fd = self.process.stdout.fileno()
        self._buffer = b""

    def read_until(self, text: str) -> list[str]:
        """Lines up to the first that holds `text`."""
        seen: list[str] = []
        deadline = time.monotonic() + WAIT_S
        while True:
            while b"\n" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\n", 1)
                seen.append(raw.decode())
                if text in seen[-1]:
                    return seen
            ready, _, _ = select.select([self._fd], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(self._fd, 65536) if ready else b""
            if not chunk:
                raise AssertionError(f"no {text!r} within {WAIT_S}s; got {seen}")
            self._buffer += chunk

    def close_stdout(self) -> None:
        assert self.process.stdout is not None
        self.process.stdout.close()

    def wait(self) -> int:
        try:
            return self.process.wait(WAIT_S)
        finally:
            self.process.kill()
            self.process.communicate()


def test_tail_follows_the_store_as_a_transcript_and_ends_on_sigint_with_0(db: Path) -> None:
    with Daemon(db) as writer:
        writer.send(init("t", ts(0)), prompt("t", ts(1), text="what is the kestrel config?"))
        writer.result("storage.flush")
        tail = Tail("--db", str(db), "tail", "--from", "0")
        assert "session t" in "\n".join(tail.read_until("kestrel config"))
        writer.send(response("t", ts(2), text="it lives in kestrel.toml"))
        assert "assistant" in "\n".join(tail.read_until("kestrel.toml"))
        tail.process.send_signal(signal.SIGINT)
        assert tail.wait() == 0
        assert writer.close() == 0


def delta(session_id: str, second: int, text: str) -> dict[str, Any]:
    return notification(
        "stream.delta",
        session_id=session_id,
        turn_id="t1",
        delta=text,
        delta_type="Text",
        timestamp=ts(second),
    )


def test_tail_deltas_prints_the_text_as_it_streams_and_the_response_does_not_repeat_it(db: Path) -> None:
    with Daemon(db) as writer:
        writer.send(init("d", ts(0)), prompt("d", ts(1), text="go"))
        writer.result("storage.flush")
        tail = Tail("--db", str(db), "tail", "d", "--deltas", "--from", "0")
        tail.read_until("go")
        writer.send(delta("d", 2, "Let me "), delta("d", 3, "look\n"))
        seen = tail.read_until("Let me look")  # before any response: live
        writer.send(response("d", ts(4), text="Let me look\n"), prompt("d", ts(5), text="next"))
        seen += tail.read_until("next")
        assert "\n".join(seen).count("Let me look") == 1
        tail.process.send_signal(signal.SIGINT)
        assert tail.wait() == 0
        assert writer.close() == 0


def test_tail_deltas_ends_a_streamed_line_before_another_sessions_events(db: Path) -> None:
    with Daemon(db) as writer:
        writer.send(init("a", ts(0)), init("b", ts(1)))
        writer.result("storage.flush")
        tail = Tail("--db", str(db), "tail", "--deltas", "--from", "0")
        tail.read_until("session b")
        writer.send(delta("a", 2, "Hello wor"), prompt("b", ts(3), text="from b"))
        seen = tail.read_until("from b")
        assert "Hello wor" in seen and not any("wor──" in line_ or "wor─" in line_ for line_ in seen), seen
        tail.process.send_signal(signal.SIGINT)
        assert tail.wait() == 0
        assert writer.close() == 0


def test_tail_json_prints_one_sessions_events_and_exits_0_when_stdout_closes(db: Path) -> None:
    with Daemon(db) as writer:
        writer.send(init("j", ts(0)), init("other", ts(1)))
        writer.result("storage.flush")
        tail = Tail("--db", str(db), "tail", "j", "--json", "--from", "0")
        assert [json.loads(raw) for raw in tail.read_until('"j"')] == [{"seq": 1, "event": init("j", ts(0))}]
        writer.send(prompt("other", ts(2)), prompt("j", ts(3), text="live"))
        live = [json.loads(raw) for raw in tail.read_until("live")]
        assert live == [{"seq": 4, "event": prompt("j", ts(3), text="live")}]  # the seq --from takes
        tail.close_stdout()  # as `| head` does once it has its lines
        writer.send(prompt("j", ts(4)))  # the next line finds stdout closed
        assert tail.wait() == 0
        assert writer.close() == 0
