"""A session as people read it, built once from its stored events for every renderer: turns,
prompts, assistant text with `stream.delta` folded in, tool calls paired with their results.

Pure: decoded events in, frozen Structs out. No I/O, no store, no markup; escaping is the
renderers' last step.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import msgspec
from msgspec import Struct

log = logging.getLogger("sidecar")

TOOL_CALL_METHODS = ("tool.call", "tool.any_call")


class Prompt(Struct, frozen=True, kw_only=True):
    text: str
    timestamp: str | None
    turn_id: str | None
    index: int  # of the `user.prompt.submit` event in the input


class _Item(Struct, frozen=True, kw_only=True, tag_field="kind"):
    timestamp: str | None
    index: int  # of the event the item came from (the first one, when several were)


class AssistantText(_Item, frozen=True, kw_only=True, tag="text"):
    text: str  # markdown, as the model wrote it
    indexes: tuple[int, ...]  # every event the text came from: deltas, or the response
    partial: bool = False  # folded deltas no response followed: a live or cut-off turn
    usage: dict[str, Any] | None = None  # of the response, when it carries one


class Thinking(_Item, frozen=True, kw_only=True, tag="thinking"):
    text: str
    indexes: tuple[int, ...]
    partial: bool = False


class ToolResult(Struct, frozen=True, kw_only=True):
    ok: bool
    text: str  # the `Ok` or the `Err` text
    tool_call_id: str | None
    timestamp: str | None
    index: int


class ToolCall(_Item, frozen=True, kw_only=True, tag="tool_call"):
    id: str | None  # `tool_call_id`; 0.1-0.3A `tool.call` events have none
    name: str
    input: Any  # a JSON value; a response's `arguments` text decoded when it is JSON
    indexes: tuple[int, ...]  # the call events and the responses that named this call
    result: ToolResult | None = None


class OrphanResult(_Item, frozen=True, kw_only=True, tag="orphan_result"):
    """A `tool.result` whose call is not in the transcript (or already had its result)."""

    result: ToolResult


class SkillLoad(_Item, frozen=True, kw_only=True, tag="skill"):
    name: str


class TaskUpdate(_Item, frozen=True, kw_only=True, tag="task"):
    name: str
    status: str


class Marker(_Item, frozen=True, kw_only=True, tag="marker"):
    """A `session.init` (start or resume) or a `session.fork`."""

    what: Literal["start", "resume", "fork"]
    model: str | None = None
    provider: str | None = None
    parent_session_id: str | None = None


class Stop(_Item, frozen=True, kw_only=True, tag="stop"):
    success: bool | None
    error: str | None = None
    result: str | None = None  # the text of `result`, whichever generation's shape
    usage: dict[str, Any] | None = None
    incomplete_tasks: tuple[str, ...] = ()


Item: TypeAlias = AssistantText | Thinking | ToolCall | OrphanResult | SkillLoad | TaskUpdate | Marker | Stop


class Turn(Struct, frozen=True, kw_only=True):
    prompt: Prompt | None  # None for what came before the first prompt
    turn_id: str | None
    items: tuple[Item, ...]


class Transcript(Struct, frozen=True, kw_only=True):
    session_id: str | None
    model: str | None
    provider: str | None
    parent_session_id: str | None
    started: str | None  # the first event's timestamp, as stored
    ended: str | None  # the final `session.stop`'s timestamp; None while the session runs
    last_activity: str | None  # the last event's timestamp
    header: tuple[Marker | Stop, ...]  # what came before any turn: init, resume, fork markers
    turns: tuple[Turn, ...]
    stop: Stop | None  # the stop nothing but events of the same run followed


def decoded(payloads: Iterable[bytes]) -> list[dict[str, Any]]:
    """Stored events decoded for `build`. One that cannot be decoded (a number no reader
    can hold, written before such events were refused, or by another program) is skipped
    with a warning, keeping its place: the others keep their index."""
    events: list[dict[str, Any]] = []
    for index, payload in enumerate(payloads):
        try:
            event = msgspec.json.decode(payload)
        except msgspec.DecodeError as exc:
            log.warning("stored event %d is not readable (%s); skipped", index, exc)
            event = {}
        events.append(event if isinstance(event, dict) else {})
    return events


def build(events: Sequence[dict[str, Any]]) -> Transcript:
    """The transcript of one session's decoded events, given in session order."""
    builder = _Builder()
    for index, event in enumerate(events):
        if isinstance(event, dict):
            builder.add(index, event.get("method"), _dict(event.get("params")))
    return builder.finish()


# --- building -----------------------------------------------------------------------------------


@dataclass
class _Fold:
    """Consecutive `stream.delta` events of one kind, while they are being folded."""

    thinking: bool
    timestamp: str | None
    indexes: list[int]
    fragments: list[str]
    answered: bool = False  # a response followed, so the text is whole


Slot: TypeAlias = "Item | _Fold | None"  # None: superseded or moved out


@dataclass
class _Turn:
    prompt: Prompt | None
    turn_id: str | None
    slots: list[Slot] = field(default_factory=list)
    open_folds: list[int] = field(default_factory=list)
    anonymous_calls: list[int] = field(default_factory=list)  # id-less calls awaiting a result


class _Builder:
    def __init__(self) -> None:
        self.session_id: str | None = None
        self.model: str | None = None
        self.provider: str | None = None
        self.parent: str | None = None
        self.started: str | None = None
        self.last: str | None = None
        self.header: list[Marker | Stop] = []
        self.turns: list[_Turn] = []
        self.by_turn_id: dict[str, _Turn] = {}
        self.calls: dict[str, tuple[_Turn, int]] = {}
        self.orphans: dict[str, tuple[_Turn, int]] = {}
        self.folding: tuple[_Turn, _Fold] | None = None
        self.last_stop: tuple[_Turn | None, Stop] | None = None

    def add(self, index: int, method: Any, p: dict[str, Any]) -> None:
        handler = _HANDLERS.get(method) if isinstance(method, str) else None
        if handler is None:
            return  # a method of a later protocol, or no method at all
        if self.session_id is None:
            self.session_id = _str(p.get("session_id"))
        timestamp = _str(p.get("timestamp"))
        if timestamp is not None:
            self.started = self.started or timestamp
            self.last = timestamp
        if method != "stream.delta":
            self.folding = None
        if method not in ("session.stop", "session.fork"):
            self.last_stop = None  # the session went on: that stop did not end it
        handler(self, index, p, timestamp)

    # --- one method each

    def init(self, index: int, p: dict[str, Any], timestamp: str | None) -> None:
        model, provider = _str(p.get("model")), _str(p.get("provider"))
        self.model, self.provider = self.model or model, self.provider or provider
        self.parent = self.parent or _str(p.get("parent_session_id"))
        what: Literal["start", "resume"] = "resume" if p.get("init_type") == "Resume" else "start"
        self.mark(Marker(what=what, model=model, provider=provider, timestamp=timestamp, index=index))

    def fork(self, index: int, p: dict[str, Any], timestamp: str | None) -> None:
        parent = _str(p.get("parent_session_id"))
        self.parent = parent or self.parent
        self.mark(Marker(what="fork", parent_session_id=parent, timestamp=timestamp, index=index))

    def prompt(self, index: int, p: dict[str, Any], timestamp: str | None) -> None:
        turn_id = _str(p.get("turn_id"))
        text = _text(p.get("prompt"))
        turn = _Turn(Prompt(text=text, timestamp=timestamp, turn_id=turn_id, index=index), turn_id)
        self.turns.append(turn)
        if turn_id is not None:
            self.by_turn_id[turn_id] = turn

    def delta(self, index: int, p: dict[str, Any], timestamp: str | None) -> None:
        turn = self.turn(p)
        thinking = p.get("delta_type") == "Thinking"
        if self.folding is not None:
            folding_turn, fold = self.folding
            if folding_turn is turn and fold.thinking == thinking and not fold.answered:
                fold.fragments.append(_text(p.get("delta")))
                fold.indexes.append(index)
                return
        fold = _Fold(thinking, timestamp, [index], [_text(p.get("delta"))])
        turn.open_folds.append(len(turn.slots))
        turn.slots.append(fold)
        self.folding = (turn, fold)

    def response(self, index: int, p: dict[str, Any], timestamp: str | None) -> None:
        turn = self.turn(p)
        parts = list(_response_parts(p))
        has = {kind for kind, value in parts if kind != "call" and value}
        for position in turn.open_folds:
            fold = turn.slots[position]
            assert isinstance(fold, _Fold)
            if ("thinking" if fold.thinking else "text") in has:
                turn.slots[position] = None  # the response holds the whole text
            else:
                fold.answered = True
        turn.open_folds.clear()
        usage = _usage(p.get("usage"))
        last_text = max((i for i, (kind, _) in enumerate(parts) if kind == "text"), default=None)
        if usage is not None and last_text is None:
            parts.append(("text", ""))  # an empty text to carry the usage
            last_text = len(parts) - 1
        for i, (kind, value) in enumerate(parts):
            if kind == "call":
                call_id, name, arguments = value
                self.call(turn, call_id, name, _arguments(arguments), timestamp, index, from_response=True)
            elif kind == "thinking":
                turn.slots.append(Thinking(text=value, indexes=(index,), timestamp=timestamp, index=index))
            else:
                text = AssistantText(
                    text=value,
                    indexes=(index,),
                    usage=usage if i == last_text else None,
                    timestamp=timestamp,
                    index=index,
                )
                turn.slots.append(text)

    def tool_call(self, index: int, p: dict[str, Any], timestamp: str | None) -> None:
        call_id, name = _str(p.get("tool_call_id")), _text(p.get("name"))
        self.call(self.turn(p), call_id, name, p.get("input"), timestamp, index, from_response=False)

    def tool_result(self, index: int, p: dict[str, Any], timestamp: str | None) -> None:
        turn = self.turn(p)
        call_id = _str(p.get("tool_call_id"))
        ok, text = _result(p.get("result"))
        result = ToolResult(ok=ok, text=text, tool_call_id=call_id, timestamp=timestamp, index=index)
        known = self.calls.get(call_id) if call_id is not None else None
        if known is not None:
            call_turn, position = known
            call = call_turn.slots[position]
            if isinstance(call, ToolCall) and call.result is None:
                call_turn.slots[position] = msgspec.structs.replace(call, result=result)
                return
        elif turn.anonymous_calls:  # a call sent without its id (before 0.4)
            position = turn.anonymous_calls.pop(0)
            call = turn.slots[position]
            assert isinstance(call, ToolCall)
            turn.slots[position] = msgspec.structs.replace(call, id=call_id or call.id, result=result)
            if call_id is not None:
                self.calls[call_id] = (turn, position)
            return
        if call_id is not None and known is None:
            self.orphans.setdefault(call_id, (turn, len(turn.slots)))
        turn.slots.append(OrphanResult(result=result, timestamp=timestamp, index=index))

    def skill(self, index: int, p: dict[str, Any], timestamp: str | None) -> None:
        self.turn(p).slots.append(
            SkillLoad(name=_text(p.get("skill_name")), timestamp=timestamp, index=index)
        )

    def task(self, index: int, p: dict[str, Any], timestamp: str | None) -> None:
        name, status = _text(p.get("task_name")), _text(p.get("task_status"))
        self.turn(p).slots.append(TaskUpdate(name=name, status=status, timestamp=timestamp, index=index))

    def stop(self, index: int, p: dict[str, Any], timestamp: str | None) -> None:
        success = p.get("success")
        tasks = p.get("incomplete_tasks")
        stop = Stop(
            success=success if isinstance(success, bool) else None,
            error=_str(p.get("error")),
            result=_stop_result(p.get("result")),
            usage=_usage(p.get("usage")),
            incomplete_tasks=tuple(_text(t) for t in tasks) if isinstance(tasks, list) else (),
            timestamp=timestamp,
            index=index,
        )
        turn = self.turns[-1] if self.turns else None
        (turn.slots if turn else self.header).append(stop)
        self.last_stop = (turn, stop)

    # --- helpers

    def turn(self, p: dict[str, Any]) -> _Turn:
        """The turn an event belongs to: the latest of its `turn_id`, else the current one."""
        turn_id = _str(p.get("turn_id"))
        if turn_id is not None and turn_id in self.by_turn_id:
            return self.by_turn_id[turn_id]
        if not self.turns:
            self.turns.append(_Turn(None, turn_id))
            if turn_id is not None:
                self.by_turn_id[turn_id] = self.turns[-1]
        return self.turns[-1]

    def mark(self, marker: Marker) -> None:
        (self.turns[-1].slots if self.turns else self.header).append(marker)

    def call(
        self,
        turn: _Turn,
        call_id: str | None,
        name: str,
        arguments: Any,
        timestamp: str | None,
        index: int,
        *,
        from_response: bool,
    ) -> None:
        known = self.calls.get(call_id) if call_id is not None else None
        if known is None and call_id is not None and from_response:
            known = self._adopt(turn, call_id, name)
        if known is not None:  # one call named twice: by a response and by its tool event
            call_turn, position = known
            call = call_turn.slots[position]
            assert isinstance(call, ToolCall)
            call_turn.slots[position] = msgspec.structs.replace(
                call,
                name=call.name or name,
                input=_merged_input(call.input, arguments, from_response=from_response),
                indexes=(*call.indexes, index),
            )
            return
        position = len(turn.slots)
        result = None
        if call_id is not None and call_id in self.orphans:  # its result came first
            orphan_turn, orphan_position = self.orphans.pop(call_id)
            orphan = orphan_turn.slots[orphan_position]
            assert isinstance(orphan, OrphanResult)
            orphan_turn.slots[orphan_position] = None
            result = orphan.result
        turn.slots.append(
            ToolCall(
                id=call_id,
                name=name,
                input=arguments,
                indexes=(index,),
                result=result,
                timestamp=timestamp,
                index=index,
            )
        )
        if call_id is not None:
            self.calls[call_id] = (turn, position)
        elif result is None:
            turn.anonymous_calls.append(position)

    def _adopt(self, turn: _Turn, call_id: str, name: str) -> tuple[_Turn, int] | None:
        """The id-less call of this turn that a response names by id, now known by it."""
        for position in turn.anonymous_calls:
            call = turn.slots[position]
            if isinstance(call, ToolCall) and call.name == name:
                turn.anonymous_calls.remove(position)
                turn.slots[position] = msgspec.structs.replace(call, id=call_id)
                self.calls[call_id] = (turn, position)
                return turn, position
        return None

    def finish(self) -> Transcript:
        stop = None
        if self.last_stop is not None:  # nothing but a fork marker after it: it ended the session
            turn, stop = self.last_stop
            slots: list[Any] = turn.slots if turn is not None else self.header
            slots[next(i for i, slot in enumerate(slots) if slot is stop)] = None
        return Transcript(
            session_id=self.session_id,
            model=self.model,
            provider=self.provider,
            parent_session_id=self.parent,
            started=self.started,
            ended=stop.timestamp if stop else None,
            last_activity=self.last,
            header=tuple(item for item in self.header if item is not None),
            turns=tuple(
                Turn(prompt=turn.prompt, turn_id=turn.turn_id, items=tuple(_items(turn.slots)))
                for turn in self.turns
            ),
            stop=stop,
        )


def _items(slots: list[Slot]) -> Iterator[Item]:
    for slot in slots:
        if isinstance(slot, _Fold):
            text, partial = "".join(slot.fragments), not slot.answered
            indexes, timestamp, index = tuple(slot.indexes), slot.timestamp, slot.indexes[0]
            if slot.thinking:
                yield Thinking(text=text, indexes=indexes, partial=partial, timestamp=timestamp, index=index)
            else:
                yield AssistantText(
                    text=text, indexes=indexes, partial=partial, timestamp=timestamp, index=index
                )
        elif slot is not None:
            yield slot


_HANDLERS = {
    "session.init": _Builder.init,
    "session.fork": _Builder.fork,
    "session.stop": _Builder.stop,
    "user.prompt.submit": _Builder.prompt,
    "stream.delta": _Builder.delta,
    "assistant.response": _Builder.response,
    "tool.call": _Builder.tool_call,
    "tool.any_call": _Builder.tool_call,
    "tool.result": _Builder.tool_result,
    "skill.load": _Builder.skill,
    "assistant.task": _Builder.task,
}


# --- reading stored fields, which may be of any generation or none -------------------------------


def _response_parts(p: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """("thinking"|"text", text) and ("call", (id, name, arguments)) in the response's order."""
    content = p.get("content")
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, dict):
            continue
        if "thinking" in part:
            yield "thinking", _text(part["thinking"])
        elif "text" in part:
            yield "text", _text(part["text"])
        elif "name" in part or "arguments" in part:
            yield "call", (_str(part.get("id")), _text(part.get("name")), part.get("arguments"))
    if p.get("full_text") is not None:
        yield "text", _text(p["full_text"])
    tool_calls = p.get("tool_calls")
    for call in tool_calls if isinstance(tool_calls, list) else ():
        if isinstance(call, dict):
            function = _dict(call.get("function"))
            yield "call", (_str(call.get("id")), _text(function.get("name")), function.get("arguments"))


def _merged_input(known: Any, new: Any, *, from_response: bool) -> Any:
    """The tool event's input is what ran; a response's arguments only proposed it."""
    if from_response:
        return new if known is None else known
    return known if new is None else new


def _arguments(value: Any) -> Any:
    """A response's `arguments` JSON text as its value; text that is not JSON stays text."""
    if isinstance(value, str):
        try:
            return msgspec.json.decode(value)
        except msgspec.DecodeError:
            return value
    return value


def _result(value: Any) -> tuple[bool, str]:
    if isinstance(value, dict):
        if "Err" in value:
            return False, _text(value["Err"])
        if "Ok" in value:
            return True, _text(value["Ok"])
    return True, _text(value)


def _stop_result(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):  # 0.3B+ parts: their text
        return "\n\n".join(_text(part["text"]) for part in value if isinstance(part, dict) and "text" in part)
    return _text(value)


def _usage(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _text(value: Any) -> str:
    """Text to show for a field that should be a string and may not be."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, default=str)
