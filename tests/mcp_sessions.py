"""Sessions for the MCP server's tests: a long one whose every turn says its number once, so a
reader of its pages can tell that nothing was lost or repeated. No I/O."""

from __future__ import annotations

from typing import Any

from events import changed, init, prompt, response, stop, tool_call, tool_result


def at(n: int) -> str:
    """The n-th instant of a session: one microsecond apart."""
    seconds, micros = divmod(n, 1_000_000)
    return f"2026-06-07T14:{seconds // 60:02}:{seconds % 60:02}.{micros:06}Z"


def long_session(session_id: str, turns: int) -> list[dict[str, Any]]:
    """init, then per turn a prompt, a tool call, its result and an answer, then a stop:
    4 * turns + 2 events. Turn n's prompt holds `question-n` and its answer `answer-n`."""
    messages = [init(session_id, at(0))]
    for n in range(1, turns + 1):
        first = 4 * n - 3
        turn = f"t{n}"
        call = f"call-{n}"
        messages += [
            prompt(session_id, at(first), text=f"question-{n} about the kestrel config", turn_id=turn),
            changed(
                tool_call(session_id, at(first + 1), path=f"src/{n}.rs"), turn_id=turn, tool_call_id=call
            ),
            changed(
                tool_result(session_id, at(first + 2), {"Ok": f"contents of file {n}"}),
                turn_id=turn,
                tool_call_id=call,
            ),
            changed(response(session_id, at(first + 3), f"answer-{n}: the config is fine."), turn_id=turn),
        ]
    messages.append(stop(session_id, at(4 * turns + 1)))
    return messages
