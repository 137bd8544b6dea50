"""Every file under examples/ is run here as a user would run it, so examples cannot rot.

Each runs as a subprocess against a fresh SQLite file; the tests check what it prints and
what it stored.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPTS = sysconfig.get_path("scripts")  # where `microagents-sidecar` is installed
RUN_S = 30.0
AGENT_TURN = [
    "session.init",
    "user.prompt.submit",
    "tool.call",
    "tool.result",
    "assistant.response",
    "session.stop",
]


def run(command: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """Run an example to its end (bounded); the test sees stdout and stderr."""
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=RUN_S,
        cwd=EXAMPLES.parent,
        env={**os.environ, "PATH": SCRIPTS + os.pathsep + os.environ.get("PATH", ""), **env},
    )


def stored(db: Path, session_id: str) -> list[dict[str, Any]]:
    """A session's rows in arrival order, read with plain sqlite3 rather than the daemon."""
    connection = sqlite3.connect(db)
    try:
        rows = connection.execute(
            "SELECT payload FROM events WHERE session_id = ? ORDER BY id", (session_id,)
        )
        return [json.loads(payload) for (payload,) in rows]
    finally:
        connection.close()


def quarantined(db: Path) -> int:
    connection = sqlite3.connect(db)
    try:
        return int(connection.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0])
    finally:
        connection.close()


def test_the_python_agent_records_its_turn_and_prints_the_transcript(db: Path) -> None:
    result = run([sys.executable, "examples/python_agent.py", "--db", str(db), "--session-id", "py"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "recording session py (first event seq 1)",
        "session py (toy-1 via local)",
        "user: What is 6 * 7 + 2?",
        'tool call calculator: {"expression": "6 * 7 + 2"}',
        "tool result Ok: 44",
        "assistant: 6 * 7 + 2 = 44",
        "stop: success=True, 7 tokens in, 5 out",
        "sidecar exited with code 0",
    ]
    events = stored(db, "py")
    assert [event["method"] for event in events] == AGENT_TURN
    call, result_, answer = events[2]["params"], events[3]["params"], events[4]["params"]
    assert call["tool_call_id"] == result_["tool_call_id"]  # protocol 0.4 shapes
    assert answer["content"][1] == {"text": "6 * 7 + 2 = 44"}


def test_the_node_agent_records_a_session_over_pipes_and_exits_0(db: Path) -> None:
    node = shutil.which("node")
    assert node, "node is required to run examples/node_agent.mjs"
    result = run(
        [node, "examples/node_agent.mjs", "--db", str(db), "--session-id", "js"],
        SIDECAR_PYTHON=sys.executable,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "recorded session.init as seq 1 of session js",
        "session.init",
        "user.prompt.submit What is in README.md?",
        "tool.call read_file",
        "tool.result # microagents-sidecar",
        "assistant.response It is the sidecar's README.",
        "session.stop",
        "stats: 6 persisted, 0 rejected",
        "a typo is answered with error -32602 naming session",
        "sidecar exited with code 0",
    ]
    assert [event["method"] for event in stored(db, "js")] == AGENT_TURN


def test_the_tee_script_stores_every_event_of_a_headless_stream_and_reads_them_back(db: Path) -> None:
    lines = [json.loads(line) for line in (EXAMPLES / "headless_stream.jsonl").read_text().splitlines()]
    *events, last = lines
    assert "method" not in last and "error" in last  # the stream ends with the runtime's error object
    result = run(["bash", "examples/tee_stream.sh", str(db)])
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # the error object is no reason for a warning
    summary, answer = result.stdout.splitlines()
    session_id = events[0]["params"]["session_id"]
    assert summary == f"stored 10 events of session {session_id} in {db}"
    assert json.loads(answer) == {"jsonrpc": "2.0", "id": 1, "result": events}
    assert stored(db, session_id) == events
    # A response object on stdin is not an error: ignored, not quarantined (PROTOCOL.md §3).
    assert quarantined(db) == 0


def test_the_quickstart_prints_the_prompts_and_responses_of_its_session(db: Path) -> None:
    with (EXAMPLES / "quickstart.jsonl").open("rb") as stdin:
        result = subprocess.run(
            [sys.executable, "-m", "sidecar", "--db", str(db)],
            stdin=stdin,
            capture_output=True,
            timeout=RUN_S,
        )
    assert result.returncode == 0, result.stderr
    (answer,) = result.stdout.splitlines()
    assert [event["method"] for event in json.loads(answer)["result"]] == [
        "user.prompt.submit",
        "assistant.response",
    ]


def test_the_example_events_are_all_stored(db: Path) -> None:
    lines = (EXAMPLES / "events.jsonl").read_bytes()
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "--db", str(db)], input=lines, capture_output=True, timeout=RUN_S
    )
    assert (result.returncode, result.stdout) == (0, b""), result.stderr
    session_id = json.loads(lines.splitlines()[0])["params"]["session_id"]
    assert stored(db, session_id) == [json.loads(line) for line in lines.splitlines()]


def test_every_file_under_examples_is_run_by_a_test() -> None:
    run_here = {
        "python_agent.py",
        "node_agent.mjs",
        "tee_stream.sh",
        "headless_stream.jsonl",  # by tee_stream.sh
        "quickstart.jsonl",
        "events.jsonl",
    }
    assert {path.name for path in EXAMPLES.iterdir() if path.is_file()} == run_here
