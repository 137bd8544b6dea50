"""The eleven microagents event methods as msgspec Structs, across protocol 0.1 to 0.4.

Validation only: the stored event keeps the bytes of `params` as received, so these
Structs ignore (and never drop) unknown keys. Each field is checked on its own, which
accepts any mix of generations, as the contract asks. No I/O here.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, NamedTuple

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from sidecar.timestamps import TimestampError, parse_instant, parse_ns

NonEmpty = Annotated[str, Meta(min_length=1)]
# A session id every backend can key and index: PostgreSQL's btree takes index rows of at
# most 2,704 bytes, and 512 characters are at most 2,048 bytes of UTF-8.
MAX_SESSION_ID_CHARS = 512
SessionId = Annotated[str, Meta(min_length=1, max_length=MAX_SESSION_ID_CHARS)]
Count = Annotated[int, Meta(ge=0)]


# gc=False: decoded from JSON, these never form reference cycles, and untracked objects
# keep the collector away from the hot path.
class Base(Struct, gc=False):
    session_id: SessionId
    timestamp: str


class TurnBase(Base):
    turn_id: str


class FunctionCall(Struct, gc=False):
    name: str
    arguments: str


class ToolCall(Struct, gc=False):
    """0.1-0.3A `tool_calls` element; the key really is `call_type`."""

    id: str
    call_type: str
    function: FunctionCall


class Part(Struct, gc=False):
    """0.3B+ untagged AssistantMessagePart: text, thinking, or a tool call."""

    text: str | UnsetType = UNSET
    thinking: str | UnsetType = UNSET
    signature: str | None = None
    id: str | UnsetType = UNSET
    name: str | UnsetType = UNSET
    arguments: str | UnsetType = UNSET

    def __post_init__(self) -> None:
        is_text = self.text is not UNSET
        is_thinking = self.thinking is not UNSET
        is_call = self.id is not UNSET and self.name is not UNSET and self.arguments is not UNSET
        if not (is_text or is_thinking or is_call):
            raise ValueError("a part needs `text`, `thinking`, or `id`, `name` and `arguments`")


class Usage(Struct, gc=False):
    """Either the 0.1-0.3A character counts or the 0.3B+ token counts, all integers."""

    latency: int
    input_chars: Count | UnsetType = UNSET
    estimated_input_tokens: Count | UnsetType = UNSET
    output_chars: Count | UnsetType = UNSET
    estimated_output_tokens: Count | UnsetType = UNSET
    input_tokens: Count | UnsetType = UNSET
    output_tokens: Count | UnsetType = UNSET
    cache_write_tokens: Count | UnsetType = UNSET
    cache_read_tokens: Count | UnsetType = UNSET

    def __post_init__(self) -> None:
        chars = (
            self.input_chars,
            self.estimated_input_tokens,
            self.output_chars,
            self.estimated_output_tokens,
        )
        tokens = (
            self.input_tokens,
            self.output_tokens,
            self.cache_write_tokens,
            self.cache_read_tokens,
        )
        if UNSET in chars and UNSET in tokens:
            raise ValueError(
                "usage needs input_chars, estimated_input_tokens, output_chars and "
                "estimated_output_tokens, or input_tokens, output_tokens, "
                "cache_write_tokens and cache_read_tokens"
            )


class ToolResult(Struct, gc=False):
    """Externally tagged: exactly one of `Ok` or `Err`."""

    Ok: str | UnsetType = UNSET
    Err: str | UnsetType = UNSET

    def __post_init__(self) -> None:
        if (self.Ok is UNSET) == (self.Err is UNSET):
            raise ValueError('a tool result is {"Ok": str} or {"Err": str}')


class SessionInit(Base):
    model: str
    provider: str
    system: str
    init_type: Literal["Start", "Resume"]


class SessionStop(Base):
    success: bool
    usage: Usage
    result: str | list[Part] | None = None
    error: str | None = None
    incomplete_tasks: list[str] | None = None


class SessionFork(Base):
    parent_session_id: str


class UserPromptSubmit(TurnBase):
    prompt: str


class StreamDelta(TurnBase):
    delta: str
    delta_type: Literal["Text", "Thinking"]


class ToolCallEvent(TurnBase):
    name: str
    input: Any = None
    tool_call_id: str | UnsetType = UNSET


class ToolResultEvent(TurnBase):
    result: ToolResult
    tool_call_id: str


class SkillLoad(TurnBase):
    skill_name: str


class AssistantResponse(TurnBase):
    full_text: str | UnsetType = UNSET
    tool_calls: list[ToolCall] | None = None
    content: list[Part] | UnsetType = UNSET

    def __post_init__(self) -> None:
        if self.full_text is UNSET and self.content is UNSET:
            raise ValueError("an assistant response needs `full_text` (0.1-0.3A) or `content`")


class AssistantTask(TurnBase):
    task_name: str
    task_status: Literal["Queued", "InProgress", "Done"]


EVENT_TYPES: dict[str, type[Base]] = {
    "session.init": SessionInit,
    "session.stop": SessionStop,
    "session.fork": SessionFork,
    "user.prompt.submit": UserPromptSubmit,
    "stream.delta": StreamDelta,
    "tool.call": ToolCallEvent,
    "tool.any_call": ToolCallEvent,
    "tool.result": ToolResultEvent,
    "skill.load": SkillLoad,
    "assistant.response": AssistantResponse,
    "assistant.task": AssistantTask,
}
EVENT_METHODS = frozenset(EVENT_TYPES)
PROTOCOL_VERSIONS = ("0.1", "0.2", "0.3A", "0.3B", "0.4")


# The same shapes refusing keys they do not name. The typed decode above skips an unknown
# key's value unread, so an accepted event is decoded whole a second time (a number beyond
# a float64 there must not be stored); an event these decode has no key unread, and needs
# no second pass. Almost every event is one: half the validation's cost. Any failure here
# (an unknown key or a real fault) goes the lenient way, which also words the error.
class _StrictFunctionCall(FunctionCall, forbid_unknown_fields=True):
    pass


class _StrictToolCall(ToolCall, forbid_unknown_fields=True):
    function: _StrictFunctionCall


class _StrictPart(Part, forbid_unknown_fields=True):
    pass


class _StrictUsage(Usage, forbid_unknown_fields=True):
    pass


class _StrictToolResult(ToolResult, forbid_unknown_fields=True):
    pass


class _StrictSessionInit(SessionInit, forbid_unknown_fields=True):
    pass


# (mypy sees a list of twins as another type than a list of the originals: it is the same
# shape, and msgspec decodes the twin's.)
class _StrictSessionStop(SessionStop, forbid_unknown_fields=True):
    usage: _StrictUsage
    result: str | list[_StrictPart] | None = None  # type: ignore[assignment]


class _StrictSessionFork(SessionFork, forbid_unknown_fields=True):
    pass


class _StrictUserPromptSubmit(UserPromptSubmit, forbid_unknown_fields=True):
    pass


class _StrictStreamDelta(StreamDelta, forbid_unknown_fields=True):
    pass


class _StrictToolCallEvent(ToolCallEvent, forbid_unknown_fields=True):
    pass


class _StrictToolResultEvent(ToolResultEvent, forbid_unknown_fields=True):
    result: _StrictToolResult


class _StrictSkillLoad(SkillLoad, forbid_unknown_fields=True):
    pass


class _StrictAssistantResponse(AssistantResponse, forbid_unknown_fields=True):
    tool_calls: list[_StrictToolCall] | None = None  # type: ignore[assignment]
    content: list[_StrictPart] | UnsetType = UNSET  # type: ignore[assignment]


class _StrictAssistantTask(AssistantTask, forbid_unknown_fields=True):
    pass


STRICT_EVENT_TYPES: dict[str, type[Base]] = {
    "session.init": _StrictSessionInit,
    "session.stop": _StrictSessionStop,
    "session.fork": _StrictSessionFork,
    "user.prompt.submit": _StrictUserPromptSubmit,
    "stream.delta": _StrictStreamDelta,
    "tool.call": _StrictToolCallEvent,
    "tool.any_call": _StrictToolCallEvent,
    "tool.result": _StrictToolResultEvent,
    "skill.load": _StrictSkillLoad,
    "assistant.response": _StrictAssistantResponse,
    "assistant.task": _StrictAssistantTask,
}


class _Decoders(dict[str, msgspec.json.Decoder[Base]]):
    """Each method's decoder, built on its first event: all of them at import cost every
    start of the daemon about a millisecond."""

    def __init__(self, types: dict[str, type[Base]]) -> None:
        super().__init__()
        self._types = types

    def __missing__(self, method: str) -> msgspec.json.Decoder[Base]:
        decoder = self[method] = msgspec.json.Decoder(self._types[method])
        return decoder


_decoders = _Decoders(EVENT_TYPES)
_strict_decoders = _Decoders(STRICT_EVENT_TYPES)
_PATH = re.compile(r" - at `\$\.?(.*)`$")
_MISSING = re.compile(r"(?:missing required|unknown) field `(.+)`")  # a field named by the message


class InvalidEvent(ValueError):
    """The params do not match any generation's shape; `field` names where, `reason` why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


def describe(error: msgspec.ValidationError) -> InvalidEvent:
    """Where a msgspec validation failed (a dotted field path) and why."""
    text = str(error)
    path_match = _PATH.search(text)
    path = path_match.group(1) if path_match else ""
    reason = text[: path_match.start()] if path_match else text
    missing = _MISSING.search(reason)
    if missing:
        path = f"{path}.{missing.group(1)}" if path else missing.group(1)
    return InvalidEvent(path or "params", reason)


def decode_event(method: str, params: bytes | msgspec.Raw) -> tuple[Base, int]:
    """Validate `params` of an event method; the event and its instant in ns.

    InvalidEvent names the field on failure.
    """
    try:
        event = _strict_decoders[method].decode(params)  # no key unread: nothing more to check
    except (msgspec.DecodeError, RecursionError):
        return _decode_leniently(method, params)
    try:
        return event, parse_ns(event.timestamp)
    except TimestampError as exc:
        raise InvalidEvent("timestamp", str(exc)) from None


def _decode_leniently(method: str, params: bytes | msgspec.Raw) -> tuple[Base, int]:
    """decode_event for params with keys no generation names (or at fault: the error)."""
    try:
        event = _decoders[method].decode(params)
        instant = parse_ns(event.timestamp)
    except msgspec.ValidationError as exc:
        raise describe(exc) from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise InvalidEvent("params", str(exc)) from None
    except TimestampError as exc:
        raise InvalidEvent("timestamp", str(exc)) from None
    # The typed decode skips unknown keys unread: decoded whole once more, so nothing is
    # stored that no reader could decode (a number beyond a float64, nesting too deep).
    try:
        _whole.decode(params)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise InvalidEvent("params", f"no reader could decode it: {exc}") from None
    return event, instant


_whole = msgspec.json.Decoder()


class _StoredParams(Struct):
    session_id: str
    timestamp: str


class _Stored(Struct):
    method: str
    params: _StoredParams


_stored_decoder = msgspec.json.Decoder(_Stored)


class StoredKeys(NamedTuple):
    session_id: str
    method: str
    timestamp_ns: int  # clamped to int64, as stored


def stored_keys(payload: str | bytes) -> StoredKeys | None:
    """What orders and finds a stored notification (one another writer wrote); None if
    the payload is not a readable notification."""
    try:
        stored = _stored_decoder.decode(payload)
        return StoredKeys(stored.params.session_id, stored.method, parse_ns(stored.params.timestamp))
    except (msgspec.DecodeError, RecursionError, TimestampError):
        return None


def stored_instant(payload: str | bytes) -> int | None:
    """The exact, unclamped instant of a stored notification; None if it is unreadable."""
    try:
        return parse_instant(_stored_decoder.decode(payload).params.timestamp)
    except (msgspec.DecodeError, RecursionError, TimestampError):
        return None
