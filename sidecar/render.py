"""What people read on a terminal: tables of sessions and hits, and session transcripts.

Colour only when the output is a terminal and NO_COLOR is unset. Pure functions from
decoded JSON to text; no store, no I/O. Transcripts are `sidecar.transcript`'s model, drawn.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

from sidecar.transcript import (
    AssistantText,
    Item,
    Marker,
    OrphanResult,
    SkillLoad,
    Stop,
    TaskUpdate,
    Thinking,
    ToolCall,
    ToolResult,
    Transcript,
    build,
)

RESULT_CHARS = 300  # of a tool's arguments or output, unless `full`


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


def stored_time(timestamp: str) -> str:
    """A timestamp as stored, to the second: `2026-06-07 14:03:21`."""
    return timestamp[:19].replace("T", " ")


def transcript(
    events: Sequence[dict[str, Any]],
    style: Style,
    *,
    full: bool = False,
    format_time: Callable[[str], str] = stored_time,
    deltas: bool = False,
) -> str:
    """A session as people read it: who said what, tool calls with their results, the end.

    Events given one at a time (`tail`) render alone; a batch of nothing but `stream.delta`
    renders as nothing, since the response that follows holds the whole text, unless
    `deltas` asks for the streamed text itself.
    """
    if all(isinstance(e, dict) and e.get("method") == "stream.delta" for e in events):
        if not deltas:
            return ""
        items = [item for turn in build(events).turns for item in turn.items]
        return "".join(
            style.dim(visible(item.text)) if isinstance(item, Thinking) else visible(item.text)
            for item in items
            if isinstance(item, AssistantText | Thinking)
        )
    return "\n".join(_Drawing(build(events), style, full, format_time).lines())


class _Drawing:
    def __init__(self, t: Transcript, style: Style, full: bool, format_time: Callable[[str], str]) -> None:
        self.t, self.style, self.format_time = t, style, format_time
        self.limit = None if full else RESULT_CHARS

    def lines(self) -> list[str]:
        style, lines = self.style, []
        for marker in self.t.header:
            lines.extend(self.item(marker))
        for turn in self.t.turns:
            if turn.prompt is not None:
                heading = style.bold(style.cyan("you")) + self.stamp(turn.prompt.timestamp)
                lines.extend(["", heading, visible(turn.prompt.text)])
            # Tool calls of a turn sit under "assistant"; before any prompt, only text needs it.
            under_assistant = False
            for item in turn.items:
                if isinstance(item, Marker | Stop):
                    under_assistant = False
                elif not under_assistant and (
                    turn.prompt is not None or isinstance(item, AssistantText | Thinking)
                ):
                    lines.extend(["", style.bold(style.green("assistant")) + self.stamp(item.timestamp)])
                    under_assistant = True
                lines.extend(self.item(item))
        if self.t.stop is not None:
            lines.extend(self.item(self.t.stop))
        return lines

    def item(self, item: Item) -> list[str]:
        style = self.style
        if isinstance(item, AssistantText):
            lines = [visible(item.text)] if item.text else []
            if item.partial:
                lines.append(style.dim("… (streamed; no response followed)"))
            if item.usage:
                lines.append(style.dim(f"usage: {_usage(item.usage)}"))
            return lines
        if isinstance(item, Thinking):
            partial = " …" if item.partial else ""
            return [style.dim(line) for line in f"(thinking) {visible(item.text)}{partial}".split("\n")]
        if isinstance(item, ToolCall):
            arguments = json.dumps(item.input, ensure_ascii=False, separators=(",", ":"), default=str)
            call = f"{visible(item.name)}({self.clip(visible(arguments))})"
            return [style.dim("  → ") + call, *([] if item.result is None else self.result(item.result))]
        if isinstance(item, OrphanResult):
            return self.result(item.result)
        if isinstance(item, SkillLoad):
            return [style.dim(f"  ◆ skill {visible(item.name)}")]
        if isinstance(item, TaskUpdate):
            return [style.dim(f"  ☐ task {visible(item.name)}: {visible(item.status)}")]
        if isinstance(item, Marker):
            return [self.marker(item)]
        return self.stop(item)

    def marker(self, marker: Marker) -> str:
        if marker.what == "fork":
            text = f"── forked from {visible(marker.parent_session_id or '?')}"
        else:
            what = "resumed" if marker.what == "resume" else "session"
            text = f"── {what} {visible(self.t.session_id or '?')} · {visible(marker.model or '?')}"
            text += f" · {visible(marker.provider or '?')}"
        return self.style.bold(text) + self.stamp(marker.timestamp)

    def result(self, result: ToolResult) -> list[str]:
        if result.ok:
            return [self.style.dim("  ← ") + self.clip(visible(result.text))]
        return [self.style.red("  ← error: ") + self.clip(visible(result.text))]

    def stop(self, stop: Stop) -> list[str]:
        style = self.style
        ended = {True: style.green("ok"), False: style.red("failed"), None: "?"}[stop.success]
        lines = ["", style.bold("── stopped ") + ended + self.stamp(stop.timestamp)]
        if stop.error:
            lines.append(style.red(f"error: {visible(stop.error)}"))
        if stop.incomplete_tasks:
            lines.append(style.dim(f"incomplete tasks: {visible(', '.join(stop.incomplete_tasks))}"))
        if stop.usage:
            lines.append(style.dim(f"usage: {_usage(stop.usage)}"))
        return lines

    def stamp(self, timestamp: str | None) -> str:
        return f"  {self.style.dim(visible(self.format_time(timestamp)))}" if timestamp else ""

    def clip(self, text: str) -> str:
        """At most the limit of characters, continuation lines indented under the first."""
        if self.limit is not None and len(text) > self.limit:
            text = text[: self.limit] + f"… ({len(text) - self.limit} more characters; --full shows all)"
        return text.replace("\n", "\n    ")


def _usage(usage: dict[str, Any]) -> str:
    return visible(" ".join(f"{key}={value}" for key, value in usage.items()))


# Terminal controls in a transcript would drive the terminal (colours, cursor, title), and
# bidirectional overrides would reorder what is shown: both are printed as escapes instead.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """`text` with terminal controls and bidirectional overrides shown as escapes."""
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text.replace("\r\n", "\n"))
