"""A transcript as a markdown document: a title, a section per turn, tool calls in fences.

Renders `sidecar.transcript` only; knows no events. Assistant text, thinking and prompts are
markdown already and go in as written (prompts and thinking quoted, an unclosed fence closed);
names, ids, errors, tool input and output go in code spans, fences or escaped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from msgspec import Struct

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
    Turn,
)

OUTPUT_CHARS = 2000  # of a tool's input or output, unless `full`

_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&])")  # what is markup inside a line
_FENCE_LINE = re.compile(r" {0,3}(`{3,}|~{3,})")

TimeFormat = Callable[[str], str]


class Page(Struct, frozen=True, kw_only=True):
    """A transcript that is part of a session: where it lies, and the session's facts from
    its summary (a part's own events would tell them wrongly: its first event is not the
    session's start, its last not the session's end)."""

    number: int | None  # None: not one of a series of pages (the latest part of a session)
    first: int  # the first event shown, counted from 0
    last: int
    total: int  # the session's events (those of the methods asked)
    filtered: bool = False  # only some methods were asked for
    model: str | None = None
    provider: str | None = None
    parent_session_id: str | None = None
    started: str | None = None
    last_activity: str | None = None
    stopped: bool = False
    success: bool | None = None
    usage: dict[str, Any] | None = None


def transcript_markdown(
    t: Transcript,
    *,
    format_time: TimeFormat,
    full: bool = False,
    first_turn: int = 1,
    page: Page | None = None,
) -> str:
    """`first_turn`: the number of the first turn with a prompt (a page of a longer session).
    `page`: the transcript is that part of a session; its title says so and the session's facts."""
    blocks = _title(t, format_time) if page is None else _page_title(t, page, format_time)
    for item in t.header:
        if not (isinstance(item, Marker) and item.what in ("start", "fork")):  # the title says those
            blocks.extend(_item(item, format_time, full, page))
    number = first_turn - 1
    for turn in t.turns:
        if turn.prompt is not None:
            number += 1
        blocks.extend(_turn(turn, number, format_time, full, page))
    if t.stop is not None:
        blocks.append("## End")
        blocks.extend(_stop(t.stop, format_time))
    return "\n\n".join(blocks) + "\n"


def _title(t: Transcript, format_time: TimeFormat) -> list[str]:
    facts = _origin(t.model, t.provider, t.parent_session_id, t.started, format_time)
    if t.ended:
        facts.append(f"- **Ended:** {_escape(format_time(t.ended))}")
    elif t.last_activity:
        facts.append(f"- **Last activity:** {_escape(format_time(t.last_activity))} (not stopped)")
    title = f"# Session {_code(t.session_id)}" if t.session_id else "# Session"
    return [title, "\n".join(facts)] if facts else [title]


def _origin(
    model: str | None, provider: str | None, parent: str | None, started: str | None, format_time: TimeFormat
) -> list[str]:
    """The facts a title starts with: model and provider, the parent, the start."""
    facts = []
    if model or provider:
        facts.append(f"- **Model:** {_code(model or '?')} · **Provider:** {_code(provider or '?')}")
    if parent:
        facts.append(f"- **Forked from:** {_code(parent)}")
    if started:
        facts.append(f"- **Started:** {_escape(format_time(started))}")
    return facts


def _page_title(t: Transcript, page: Page, format_time: TimeFormat) -> list[str]:
    events = (
        f"event {page.first:,}"
        if page.first == page.last
        else f"events {page.first:,}\N{EN DASH}{page.last:,}"
    )
    where = f"{events} of {page.total:,}" + (" (of the methods asked)" if page.filtered else "")
    if page.number is not None:
        where = f"page {page.number:,}: {where}"
    title = f"# Session {_code(t.session_id)} — {where}" if t.session_id else f"# Session — {where}"
    facts = _origin(page.model, page.provider, page.parent_session_id, page.started, format_time)
    if page.stopped:
        outcome = {True: "succeeded", False: "failed", None: "outcome unknown"}[page.success]
        last = f"{_escape(format_time(page.last_activity))}, " if page.last_activity else ""
        facts.append(f"- **Stopped:** {last}{outcome}")
    elif page.last_activity:
        facts.append(f"- **Last activity:** {_escape(format_time(page.last_activity))} (not stopped)")
    if page.usage:
        facts.append(f"- **Usage of the whole session:** {_usage(page.usage)}")
    return [title, "\n".join(facts)] if facts else [title]


def _turn(
    turn: Turn, number: int, format_time: TimeFormat, full: bool, page: Page | None = None
) -> list[str]:
    if turn.prompt is None:
        if page is not None and number >= 1:  # a page that begins inside a turn
            blocks = [f"## Turn {number} (continued)"]
        elif page is not None and page.filtered:
            blocks = ["## Events without their prompt (filtered out)"]
        else:
            blocks = ["## Before the first prompt"]
    else:
        blocks = [f"## Turn {number}"]
        when = _when(turn.prompt.timestamp, format_time)
        blocks.append(f"**You**{when}")
        blocks.append(_quote(turn.prompt.text))
    assistant = False
    for item in turn.items:
        if not assistant and isinstance(item, AssistantText | Thinking | ToolCall):
            blocks.append(f"**Assistant**{_when(item.timestamp, format_time)}")
            assistant = True
        elif isinstance(item, Marker | Stop):
            assistant = False
        blocks.extend(_item(item, format_time, full, page))
    return blocks


def _item(item: Item, format_time: TimeFormat, full: bool, page: Page | None = None) -> list[str]:
    if isinstance(item, AssistantText):
        blocks = [_closed(item.text)] if item.text.strip() else []
        if item.partial:
            blocks.append("*(still streaming, or cut off: no response followed)*")
        if item.usage:
            blocks.append(f"*Usage:* {_usage(item.usage)}")
        return blocks
    if isinstance(item, Thinking):
        heading = "**Thinking**" + (" *(partial)*" if item.partial else "")
        return [_quote(f"{heading}\n\n{_closed(item.text)}")]
    if isinstance(item, ToolCall):
        when = _when(item.timestamp, format_time)
        blocks = [f"**Tool call** {_code(item.name)}{when}", _fenced(_input(item.input, full), "json")]
        if item.result is None:
            blocks.append("*(no result)*")
        else:
            blocks.extend(_result(item.result, full))
        return blocks
    if isinstance(item, OrphanResult):
        call = _code(item.result.tool_call_id) if item.result.tool_call_id else "an unknown call"
        where = (
            "its call is on another page or filtered out"
            if page is not None
            else "its call is not in this session"
        )
        return [f"**Result of {call}** ({where})", *_result(item.result, full)]
    if isinstance(item, SkillLoad):
        return [f"- Skill loaded: {_code(item.name)}"]
    if isinstance(item, TaskUpdate):
        return [f"- Task {_code(item.name)}: {_escape(item.status)}"]
    if isinstance(item, Marker):
        return [_marker(item, format_time)]
    return ["**Stopped**", *_stop(item, format_time)]


def _marker(marker: Marker, format_time: TimeFormat) -> str:
    when = _when(marker.timestamp, format_time)
    if marker.what == "fork":
        return f"*Forked from* {_code(marker.parent_session_id or '?')}{when}"
    what = "Session resumed" if marker.what == "resume" else "Session started"
    model = f" · {_code(marker.model)}" if marker.model else ""
    provider = f" · {_code(marker.provider)}" if marker.provider else ""
    return f"*{what}*{model}{provider}{when}"


def _result(result: ToolResult, full: bool) -> list[str]:
    label = "**Result:**" if result.ok else "**Error:**"
    return [label, _fenced(_clip(result.text, full))]


def _stop(stop: Stop, format_time: TimeFormat) -> list[str]:
    outcome = {True: "**Success**", False: "**Failed**", None: "**Outcome unknown**"}[stop.success]
    lines = [f"- {outcome}{_when(stop.timestamp, format_time)}"]
    if stop.error:
        lines.append(f"- **Error:** {_escape(stop.error)}")
    if stop.incomplete_tasks:
        lines.append(f"- **Incomplete tasks:** {', '.join(_code(task) for task in stop.incomplete_tasks)}")
    if stop.usage:
        lines.append(f"- **Usage:** {_usage(stop.usage)}")
    return ["\n".join(lines)]


# --- making transcript text safe to put in markdown ----------------------------------------------


def _when(timestamp: str | None, format_time: TimeFormat) -> str:
    return f" · {_escape(format_time(timestamp))}" if timestamp else ""


def _input(value: Any, full: bool) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2, default=str)
    return _clip(text, full)


def _usage(usage: dict[str, Any]) -> str:
    return " ".join(_code(f"{key}={value}") for key, value in usage.items())


def _clip(text: str, full: bool) -> str:
    if full or len(text) <= OUTPUT_CHARS:
        return text
    return text[:OUTPUT_CHARS] + f"\n… ({len(text) - OUTPUT_CHARS} more characters; --full shows all)"


def _fenced(text: str, language: str = "") -> str:
    """A fenced code block no line of `text` can close: the fence outruns its backticks."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def _code(text: str | None) -> str:
    """A code span of one line, whatever backticks the text holds."""
    text = " ".join((text or "").split("\n"))
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _escape(text: str) -> str:
    """Plain text of one line with markdown's punctuation escaped."""
    return _SPECIAL.sub(r"\\\1", " ".join(text.splitlines()))


def _quote(text: str) -> str:
    return "\n".join(f"> {line}".rstrip() for line in (text or " ").split("\n"))


def _closed(text: str) -> str:
    """Markdown as written, with a fence it leaves open closed, so it cannot swallow what follows."""
    open_fence = ""
    for line in text.split("\n"):
        match = _FENCE_LINE.match(line)
        if match is None:
            continue
        fence = match.group(1)
        if not open_fence:
            open_fence = fence
        elif fence[0] == open_fence[0] and len(fence) >= len(open_fence) and not line.strip()[len(fence) :]:
            open_fence = ""
    return f"{text}\n{open_fence}" if open_fence else text
