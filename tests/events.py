"""Builders of valid events, one per method and protocol generation, for tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parent / "data" / "events.ndjson"  # a copy of the shared vectors

USAGE_CHARS = {
    "latency": 10,
    "input_chars": 1,
    "estimated_input_tokens": 1,
    "output_chars": 1,
    "estimated_output_tokens": 1,
}
USAGE_TOKENS = {
    "latency": 10,
    "input_tokens": 1,
    "output_tokens": 1,
    "cache_write_tokens": 0,
    "cache_read_tokens": 0,
}


def notification(method: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


def init(session_id: str, timestamp: str = "2026-06-07T14:03:21.000000001Z", **extra: Any) -> dict[str, Any]:
    return notification(
        "session.init",
        session_id=session_id,
        model="m",
        provider="p",
        system="s",
        init_type="Start",
        timestamp=timestamp,
        **extra,
    )


def prompt(session_id: str, timestamp: str, text: str = "hi", turn_id: str = "t1") -> dict[str, Any]:
    return notification(
        "user.prompt.submit", session_id=session_id, turn_id=turn_id, prompt=text, timestamp=timestamp
    )


def response(session_id: str, timestamp: str, text: str = "hello") -> dict[str, Any]:
    return notification(
        "assistant.response",
        session_id=session_id,
        turn_id="t1",
        full_text=text,
        tool_calls=None,
        timestamp=timestamp,
    )


def stop(session_id: str, timestamp: str, result: Any = "hello") -> dict[str, Any]:
    return notification(
        "session.stop",
        session_id=session_id,
        success=True,
        result=result,
        error=None,
        timestamp=timestamp,
        usage=USAGE_CHARS,
    )


def vectors() -> list[bytes]:
    """The shared example lines of every protocol generation, exactly as written."""
    return [line for line in VECTORS.read_bytes().splitlines() if line.strip()]


def line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
