from __future__ import annotations

from daemon import Daemon
from events import init, prompt, response, stop


def test_rust_crate_scenario_four_events_read_back_in_order(daemon: Daemon) -> None:
    daemon.send(
        init("1", "2026-06-07T14:03:21.000000001Z"),
        prompt("1", "2026-06-07T14:03:21.000000002Z"),
        response("1", "2026-06-07T14:03:21.000000003Z"),
        stop("1", "2026-06-07T14:03:21.000000004Z"),
    )
    events = daemon.result("storage.get_session", {"session_id": "1"})
    assert [e["method"] for e in events] == [
        "session.init",
        "user.prompt.submit",
        "assistant.response",
        "session.stop",
    ]
    assert daemon.close() == 0
