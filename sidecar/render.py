"""What people read on a terminal: tables of sessions and hits, and session transcripts.

Colour only when the output is a terminal and NO_COLOR is unset. Pure functions from
decoded JSON to text; no store, no I/O.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

RESULT_CHARS = 300


class Style:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    @classmethod
    def for_stream(cls, stream: TextIO) -> Style:
        return cls(stream.isatty() and not os.environ.get("NO_COLOR"))

    def _wrap(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.enabled else text

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def green(self, text: str) -> str:
        return self._wrap("32", text)

    def red(self, text: str) -> str:
        return self._wrap("31", text)

    def cyan(self, text: str) -> str:
        return self._wrap("36", text)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], style: Style) -> str:
    """Left-aligned columns; the last column takes what is left of the line."""
    rows = [[cell.replace("\n", " ") for cell in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(headers)]
    widths[-1] = 0

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([style.bold(line(headers)), *(line(row) for row in rows)])


def sessions_table(summaries: Sequence[dict[str, Any]], style: Style) -> str:
    if not summaries:
        return "no sessions"
    rows = [
        [
            s["session_id"],
            str(s["event_count"]),
            (s["last_timestamp"] or "")[:19].replace("T", " "),
            s["status"] + ("" if s["success"] is None else (" ok" if s["success"] else " failed")),
            s["model"] or "",
            s["title"] or "",
        ]
        for s in summaries
    ]
    return table(["SESSION", "EVENTS", "LAST ACTIVITY (UTC)", "STATUS", "MODEL", "TITLE"], rows, style)


def hits_table(hits: Sequence[dict[str, Any]], style: Style) -> str:
    if not hits:
        return "no matches"
    rows = [[h["timestamp"][:19].replace("T", " "), h["session_id"], h["method"], h["snippet"]] for h in hits]
    return table(["TIME", "SESSION", "EVENT", "MATCH"], rows, style)


def transcript(events: Sequence[dict[str, Any]], style: Style) -> str:
    """A session as people read it: who said what, tool calls and results, the end."""
    lines: list[str] = []
    for event in events:
        lines.extend(_event_lines(event.get("method", ""), event.get("params") or {}, style))
    return "\n".join(lines)


def _event_lines(method: str, p: dict[str, Any], style: Style) -> list[str]:
    stamp = style.dim(str(p.get("timestamp", ""))[:19].replace("T", " "))
    if method == "session.init":
        what = "resumed" if p.get("init_type") == "Resume" else "session"
        return [
            style.bold(f"── {what} {p.get('session_id')} · {p.get('model')} · {p.get('provider')}")
            + f"  {stamp}"
        ]
    if method == "session.fork":
        return [style.bold(f"── forked from {p.get('parent_session_id')}") + f"  {stamp}"]
    if method == "user.prompt.submit":
        return ["", style.bold(style.cyan("you")) + f"  {stamp}", str(p.get("prompt", ""))]
    if method == "assistant.response":
        return ["", style.bold(style.green("assistant")) + f"  {stamp}", *_answer(p, style)]
    if method in ("tool.call", "tool.any_call"):
        arguments = json.dumps(p.get("input"), ensure_ascii=False, separators=(",", ":"))
        return [style.dim("  → ") + f"{p.get('name')}({_clip(arguments, RESULT_CHARS)})"]
    if method == "tool.result":
        result = p.get("result") or {}
        if "Err" in result:
            return [style.red("  ← error: ") + _clip(str(result["Err"]), RESULT_CHARS)]
        return [style.dim("  ← ") + _clip(str(result.get("Ok", "")), RESULT_CHARS)]
    if method == "skill.load":
        return [style.dim(f"  ◆ skill {p.get('skill_name')}")]
    if method == "assistant.task":
        return [style.dim(f"  ☐ task {p.get('task_name')}: {p.get('task_status')}")]
    if method == "session.stop":
        return _stop(p, stamp, style)
    return []  # stream.delta: the response that follows holds the whole text


def _answer(p: dict[str, Any], style: Style) -> list[str]:
    if isinstance(p.get("full_text"), str):
        return [p["full_text"]]
    lines = []
    for part in p.get("content") or []:
        if "thinking" in part:
            lines.append(style.dim(f"(thinking) {part['thinking']}"))
        elif "text" in part:
            lines.append(part["text"])
        elif "name" in part:
            lines.append(
                style.dim(f"  → {part['name']}({_clip(str(part.get('arguments', '')), RESULT_CHARS)})")
            )
    return lines


def _stop(p: dict[str, Any], stamp: str, style: Style) -> list[str]:
    ended = style.green("ok") if p.get("success") else style.red("failed")
    usage = " ".join(f"{key}={value}" for key, value in (p.get("usage") or {}).items())
    lines = ["", style.bold("── stopped ") + ended + f"  {stamp}"]
    if p.get("error"):
        lines.append(style.red(f"error: {p['error']}"))
    if usage:
        lines.append(style.dim(f"usage: {usage}"))
    return lines


def _clip(text: str, limit: int) -> str:
    """At most `limit` characters, continuation lines indented under the first."""
    clipped = text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more characters)"
    return clipped.replace("\n", "\n    ")
