"""Property-based: random lines and mutated events, mixed with valid events, never crash
the daemon or corrupt its store, and every valid event of the mix is stored and served.

Each example is a batch of lines fed to one long-running daemon (spawning one per example
would be too slow); a daemon an example killed is replaced, and the test then fails.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from events import vectors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability import PolledDaemon, SqliteReader, complete_notification

pytestmark = pytest.mark.reliability

EXAMPLES = 300  # per test; each is 10 to 60 lines

# Methods a generated message may name: every kind but storage.shutdown, which would end
# the run the examples share.
METHODS = [
    *(json.loads(vector)["method"] for vector in vectors()),
    "session.fork",
    "tool.any_call",
    "assistant.task",
    "skill.load",
    "storage.get_session",
    "storage.flush",
    "storage.info",
    "storage.stats",
    "no.such.method",
    "",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
messages = st.dictionaries(
    st.sampled_from(["jsonrpc", "method", "params", "id", "result", "error"]),
    st.sampled_from(["2.0", *METHODS]) | json_values,
    max_size=5,
)
random_lines = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=100).map(str.encode),
    json_values.map(lambda value: json.dumps(value).encode()),
    messages.map(lambda value: json.dumps(value).encode()),
    st.lists(messages, max_size=4).map(lambda value: json.dumps(value).encode()),
)


@st.composite
def mutated_events(draw: st.DrawFn) -> bytes:
    """A valid event of any generation with one to three mutations, in bytes or in JSON."""
    line = draw(st.sampled_from(vectors()))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(line)))
        size = draw(st.integers(1, 16))
        operation = draw(
            st.sampled_from(["delete", "insert", "replace", "cut", "repeat", "value", "drop", "method", "id"])
        )
        if operation == "delete":
            line = line[:at] + line[at + size :]
        elif operation == "insert":
            line = line[:at] + draw(st.binary(min_size=1, max_size=size)) + line[at:]
        elif operation == "replace":
            line = line[:at] + draw(st.binary(min_size=1, max_size=size)) + line[at + size :]
        elif operation == "cut":
            line = line[:at]
        elif operation == "repeat":
            line = line[:at] + line[at : at + size] + line[at:]
        else:
            try:
                message = json.loads(line)
                params = message["params"]
                if operation == "value":
                    params[draw(st.sampled_from(sorted(params) or ["x"]))] = draw(json_values)
                elif operation == "drop" and params:
                    del params[draw(st.sampled_from(sorted(params)))]
                elif operation == "method":
                    message["method"] = draw(st.sampled_from(METHODS))
                else:
                    message["id"] = draw(json_values)
                line = json.dumps(message, ensure_ascii=draw(st.booleans())).encode()
            except (ValueError, TypeError, KeyError):  # no longer JSON, or params not an object
                pass
    return line


# A mix: valid events (prompt text, escaped or raw UTF-8, sent as a request or not) and junk.
valid_events = st.tuples(st.text(max_size=40), st.booleans(), st.booleans())


def mixes(junk: st.SearchStrategy[bytes]) -> st.SearchStrategy[list[tuple[str, bool, bool] | bytes]]:
    return st.lists(st.one_of(valid_events, junk), min_size=10, max_size=60)


class Run:
    """One daemon for every example of a test, and the valid events they sent."""

    def __init__(self, directory: Path) -> None:
        self.db = directory / "sessions.db"
        self.daemon = PolledDaemon(self.db)
        self.restarts = 0
        self.examples = 0
        self.valid: list[bytes] = []

    def feed(self, mix: list[tuple[str, bool, bool] | bytes]) -> None:
        """Send one example's lines; its valid events must all be acknowledged and served."""
        if self.daemon.process.poll() is not None:  # an earlier example killed it
            self.daemon.kill()
            self.daemon = PolledDaemon(self.db)
            self.restarts += 1
        self.examples += 1
        session = f"fuzz-{self.examples}"
        lines, valid, acks = [], [], []
        for position, item in enumerate(mix):
            if isinstance(item, bytes):
                lines.append(item.replace(b"\n", b" "))
                continue
            text, ascii_only, acknowledged = item
            event = {
                "jsonrpc": "2.0",
                "method": "user.prompt.submit",
                "params": {
                    "session_id": session,
                    "turn_id": "t",
                    "prompt": text,
                    "timestamp": f"2026-06-07T14:03:21.{position:09d}Z",
                },
            }
            stored = json.dumps(event, separators=(",", ":"), ensure_ascii=ascii_only).encode()
            valid.append(stored)
            if acknowledged:
                acks.append(f"{session}-{position}")
                stored = stored[:-1] + b',"id":"' + acks[-1].encode() + b'"}'
            lines.append(stored)
        read = f"{session}-read"
        lines.append(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": read,
                    "method": "storage.get_session",
                    "params": {"session_id": session},
                }
            ).encode()
        )
        self.daemon.send_raw(b"\n".join(lines) + b"\n")
        for request_id in acks:
            assert self.daemon.response(request_id)["result"]["session_id"] == session
        assert self.daemon.response(read)["result"] == [json.loads(event) for event in valid]
        assert "Traceback" not in self.daemon.stderr
        self.valid += valid

    def finish(self) -> None:
        with self.daemon as daemon:
            assert daemon.close() == 0
        stored = SqliteReader(self.db)
        stored.check_integrity()
        counts = Counter(payload for _, payload in stored.events())
        assert all(counts[payload] == 1 for payload in self.valid)
        for payload in counts:
            complete_notification(payload)
        assert self.restarts == 0, "an example killed the daemon"
        assert self.examples >= EXAMPLES
        print(f"\n{self.examples} examples, {len(self.valid)} valid events, {len(counts)} stored")


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # nothing written into the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_random_lines_among_valid_events_never_crash_the_daemon_and_every_valid_event_is_stored(
    tmp_path: Path,
) -> None:
    run = Run(tmp_path)

    @FUZZ
    @given(mixes(random_lines))
    def feed(mix: list[Any]) -> None:
        run.feed(mix)

    feed()
    run.finish()


def test_mutated_events_among_valid_ones_never_crash_the_daemon_and_every_valid_event_is_stored(
    tmp_path: Path,
) -> None:
    run = Run(tmp_path)

    @FUZZ
    @given(mixes(mutated_events()))
    def feed(mix: list[Any]) -> None:
        run.feed(mix)

    feed()
    run.finish()
