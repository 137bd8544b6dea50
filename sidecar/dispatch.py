"""One line in, at most one response out: the only place exceptions become error responses.

Events are validated and queued for group commit; storage requests run in arrival order,
so each sees every message before it. Whatever cannot be answered (a failing
notification, a line that is not a message) is kept in the quarantine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import Any, Protocol

import msgspec

from sidecar import protocol
from sidecar.events import EVENT_METHODS, InvalidEvent, decode_event, describe
from sidecar.framing import Oversize
from sidecar.handlers import EncodedElements, Handlers, Method
from sidecar.protocol import (
    Envelope,
    InternalError,
    InvalidParams,
    InvalidRequest,
    MessageTooLarge,
    MethodNotFound,
    ParseError,
    RpcError,
    StorageUnavailable,
)
from sidecar.store.base import Event, EventRefused, Rejected, StoreFailure

log = logging.getLogger("sidecar")

# The stored event: the envelope rebuilt compactly around `params` exactly as received.
_STORED_HEAD = b'{"jsonrpc":"2.0","method":"'
_PAYLOAD_HEAD = {m: _STORED_HEAD + m.encode() + b'","params":' for m in EVENT_METHODS}
# A notification already in that form, with nothing else in it (as the runtime writes them),
# takes a shorter path: its params are validated where they are and the line itself is the
# payload, byte for byte what the rebuild would give, with no envelope decode and no copy.
_PARAMS_KEY = b'","params":{'  # no space before the brace: the rebuild would drop it
_PARAMS_AT = len(_PARAMS_KEY) - 1  # where the params start, from where the key does
_METHOD_NAMES = {m.encode(): m for m in EVENT_METHODS}

# What a line gives back: nothing; a response line now; a Future of the line, for answers
# that wait on a commit (the reader goes on meanwhile); or a coroutine the reader awaits
# before the next line (storage requests, which must see every earlier message).
Reply = protocol.Line | asyncio.Future[bytes | None] | Coroutine[Any, Any, protocol.Line | None] | None

_REJECT_LOG_EVERY_S = 10.0
_REJECT_LOG_BURST = 10


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode()
    except UnicodeDecodeError:
        return False
    return True


class Queue(Protocol):
    """Where accepted events and quarantined lines go: the ingest, or (the import command)
    a filter in front of it."""

    def add(self, event: Event, acknowledged: bool = False) -> asyncio.Future[int] | None: ...

    def add_all(self, events: list[Event]) -> None:
        """Queue events no one waits on (notifications), in order."""

    def reject(self, rejected: Rejected) -> None: ...


class Dispatcher:
    def __init__(
        self,
        handlers: Handlers,
        ingest: Queue,
        on_reject: Callable[[str], None] | None = None,
        *,
        max_batch_answer_bytes: int | None = None,
    ) -> None:
        """`on_reject` hears the reason of every quarantined line instead of stderr (the
        import command reports them with line numbers). A batch's answers are one line,
        held until its last: past `max_batch_answer_bytes` its remaining requests are
        answered -32003 instead of run."""
        self._on_reject = on_reject
        self._max_batch_answer_bytes = max_batch_answer_bytes
        # Awaited before each storage request runs, so its answer is counted against the
        # output's bound before it is built (the daemon waits while stdout is full).
        self.wait_for_output: Callable[[], Awaitable[None]] | None = None
        self.handlers = handlers
        self.ingest = ingest
        self.stats = handlers.stats
        self._methods = handlers.methods
        self._log_window_start = 0.0
        self._logged_in_window = 0
        self._suppressed = 0

    def replies(self, lines: Sequence[bytes | Oversize]) -> Iterator[Reply]:
        """Each line in order, the reply of each that has one. Runs of notifications in
        their stored form (most lines) are queued together; a caller awaits a reply before
        asking for the next, so a request sees every message before it."""
        index = 0
        while index < len(lines):
            index += self.queue_notifications(lines, index)
            if index == len(lines):
                return
            reply = self.handle_line(lines[index], after_run=True)
            index += 1
            if reply is not None:
                yield reply

    def handle_line(self, line: bytes | Oversize, *, after_run: bool = False) -> Reply:
        """The reply to one line, if it has one. `after_run`: the line ended a run of
        `queue_notifications`, which has tried it in stored form already."""
        if not isinstance(line, bytes):
            self.stats.received += 1
            error = MessageTooLarge(f"line of {line.size} bytes is over the limit", size=line.size)
            self._quarantine(line.head, error)
            return self._error(None, error)
        if line[-1:] == b"\r":
            line = line[:-1]
            after_run = False  # it was tried with its \r
        if not line or line.isspace():
            return None
        if not after_run and self.queue_notifications([line]):
            return None
        if not line.isascii():
            try:
                line.decode()
            except UnicodeDecodeError as exc:
                self.stats.received += 1
                return self._unreadable(line, ParseError(f"not valid UTF-8: {exc.reason}"))
        first = line[:1]
        if first in (b" ", b"\t", b"\r"):  # JSON's whitespace (a \n ended the line)
            first = line.lstrip(b" \t\r")[:1]
        if first == b"[":
            return self._batch(line)
        self.stats.received += 1
        try:
            envelope = protocol.envelope_decoder.decode(line)
        except msgspec.ValidationError:
            return self._unreadable(line, InvalidRequest("not a JSON-RPC message object"))
        except (msgspec.DecodeError, RecursionError) as exc:
            return self._unreadable(line, ParseError(str(exc)))
        return self._message(envelope, line)

    def queue_notifications(self, lines: Sequence[bytes | Oversize], start: int = 0) -> int:
        """Queue the lines from `start` on that are notifications already in their stored
        form, up to the first that is not; how many were queued (that line is for
        `handle_line`, which answers or quarantines it as any other).

        The stored form is exactly `{"jsonrpc":"2.0","method":"<event method>","params":{...}}`,
        as runtimes write their events: the params are validated where they are and the
        line itself is the payload, with no envelope decode and no copy. A flood is such
        lines one after another, so they are taken here as a run, in one call: the
        per-line work is the validation alone.
        """
        queued: list[Event] = []
        append = queued.append
        head, head_size, params_key = _STORED_HEAD, len(_STORED_HEAD), _PARAMS_KEY
        try:
            for index in range(start, len(lines)):  # by index: a run starts where the last ended
                line = lines[index]
                if not (isinstance(line, bytes) and line.startswith(head) and line.endswith(b"}}")):
                    break
                if not line.isascii() and not _is_utf8(line):
                    break
                end = line.find(params_key, head_size)
                method = _METHOD_NAMES.get(line[head_size:end]) if end > 0 else None
                if method is None:
                    break
                # The rest is the params up to the closing brace: if they decode as one JSON
                # object with nothing after it, the envelope decode would give exactly these bytes.
                try:
                    event, instant = decode_event(method, line[end + _PARAMS_AT : -1])
                except InvalidEvent:
                    break
                append(Event(event.session_id, line, instant, method))
        finally:  # even if the run ends in an exception (MemoryError): what was validated is kept
            if queued:
                self.stats.received += len(queued)
                self.ingest.add_all(queued)
        return len(queued)

    async def _batch(self, line: bytes) -> bytes | None:
        try:
            elements = protocol.batch_decoder.decode(line)
        except (msgspec.DecodeError, RecursionError) as exc:
            self.stats.received += 1
            return self._unreadable(line, ParseError(str(exc)))
        if not elements:
            self.stats.received += 1
            return self._unreadable(line, InvalidRequest("empty batch"))
        responses: list[bytes] = []
        acks: list[asyncio.Future[bytes | None]] = []
        answered = 0  # bytes of the responses held for this batch's line
        for element in elements:
            self.stats.received += 1
            raw = bytes(element)
            try:
                envelope = protocol.envelope_decoder.decode(raw)
            except msgspec.ValidationError:
                responses.append(self._unreadable(raw, InvalidRequest("not a JSON-RPC message object")))
                continue
            reply = self._message(envelope, raw)
            if isinstance(reply, Coroutine):
                limit = self._max_batch_answer_bytes
                if limit is not None and answered > limit:
                    reply.close()  # not run: its answer could not go out with the batch's
                    if (refused := self._batch_full(raw, envelope, limit)) is not None:
                        responses.append(refused)
                    continue
                answer = await reply
                reply = None if answer is None else protocol.joined(answer)  # a part of the batch's line
                answered += 0 if reply is None else len(reply)
            if self.handlers.shutting_down:  # what follows storage.shutdown is not read
                if reply is not None and not isinstance(reply, asyncio.Future):
                    responses.append(protocol.joined(reply))
                break
            if isinstance(reply, asyncio.Future):
                acks.append(reply)
            elif reply is not None:
                responses.append(protocol.joined(reply))
        for ack in acks:  # the whole batch is answered once its events are committed
            response = await ack
            if response is not None:
                responses.append(response)
        return b"[" + b",".join(responses) + b"]" if responses else None

    def _batch_full(self, raw: bytes, envelope: Envelope, limit: int) -> bytes | None:
        """A request not run: answered -32003, or as a notification quarantined."""
        error = MessageTooLarge(
            f"the batch's answers passed {limit} bytes; this request was not run: send it on its own line",
            size=limit,
        )
        is_request = envelope.id is not msgspec.UNSET
        return self._failed(raw, error, envelope.id if is_request else None, is_request)

    def _message(self, envelope: Envelope, raw: bytes) -> Reply:
        request_id = envelope.id
        is_request = request_id is not msgspec.UNSET
        method = envelope.method
        if method is msgspec.UNSET and (envelope.result or envelope.error):
            log.debug("ignored a response object on stdin: %.200r", raw)
            return None
        if is_request and not protocol.is_valid_id(request_id):
            return self._unreadable(raw, InvalidRequest("id must be a string, number or null"))
        if envelope.jsonrpc != "2.0":
            error = InvalidRequest('"jsonrpc" must be "2.0"')
            return self._unreadable(raw, error, request_id if is_request else None)
        if not isinstance(method, str):
            error = InvalidRequest('"method" must be a string')
            return self._unreadable(raw, error, request_id if is_request else None)
        if method in EVENT_METHODS:
            try:
                return self._event(method, envelope.params, request_id, is_request)
            except RpcError as error:
                return self._failed(raw, error, request_id, is_request)
        return self._request(method, envelope.params, raw, request_id, is_request)

    async def _request(
        self, method: str, params: msgspec.Raw, raw: bytes, request_id: Any, is_request: bool
    ) -> protocol.Line | None:
        try:
            handler = self._methods.get(method)
            if handler is None:
                raise MethodNotFound(f"unknown method {method!r}", method=method)
            if self.wait_for_output is not None:
                await self.wait_for_output()
            result = await self._call(handler, params)
        except RpcError as error:
            return self._failed(raw, error, request_id, is_request)
        except StoreFailure as exc:
            return self._failed(raw, StorageUnavailable(str(exc)), request_id, is_request)
        except Exception:
            log.exception("internal error handling %s", method)
            internal = InternalError("see the daemon's stderr")
            return self._failed(raw, internal, request_id, is_request)
        if not is_request:
            return None
        if isinstance(result, EncodedElements):
            return protocol.elements_result_response(request_id, result.chunks)
        return protocol.result_response(request_id, result)

    def _event(self, method: str, params: msgspec.Raw, request_id: Any, is_request: bool) -> Reply:
        if not params:
            raise InvalidParams("params are required", field="params")
        try:
            event, instant = decode_event(method, params)
        except InvalidEvent as exc:
            raise InvalidParams(exc.reason, field=exc.field) from None
        payload = b"".join((_PAYLOAD_HEAD[method], params, b"}"))
        ack = self.ingest.add(Event(event.session_id, payload, instant, method), is_request)
        if ack is None:
            return None
        return asyncio.ensure_future(self._acknowledge(ack, request_id, event.session_id))

    async def _acknowledge(self, ack: asyncio.Future[int], request_id: Any, session_id: str) -> bytes | None:
        try:
            seq = await ack
        except EventRefused as exc:  # the store cannot hold this event: it is quarantined
            return self._error(request_id, InvalidParams(f"refused by the store: {exc}", field="params"))
        except StoreFailure as exc:
            error = StorageUnavailable(str(exc), retained=True, note="the event is kept and retried")
            return self._error(request_id, error)
        return protocol.result_response(request_id, {"session_id": session_id, "seq": seq})

    async def _call(self, method: Method, params: msgspec.Raw) -> Any:
        raw = bytes(params) if params else b"{}"
        try:
            if method.positional and raw.lstrip()[:1] == b"[":
                values = msgspec.json.decode(raw, type=list[Any])
                if len(values) != 1:
                    raise InvalidParams("expected an object or a one-element array", field="params")
                raw = msgspec.json.encode({method.positional: values[0]})
            decoded = msgspec.json.decode(raw, type=method.params)
        except msgspec.ValidationError as exc:
            raise InvalidParams(str(exc), field=describe(exc).field) from None
        except (msgspec.DecodeError, RecursionError) as exc:
            raise InvalidParams(str(exc), field="params") from None
        return await method.run(decoded)

    def _failed(self, raw: bytes, error: RpcError, request_id: Any, is_request: bool) -> bytes | None:
        if is_request:
            return self._error(request_id, error)
        self._quarantine(raw, error)
        return None

    def _unreadable(self, raw: bytes, error: RpcError, request_id: Any = None) -> bytes:
        """A line that is not a valid message: answered (id null unless known) and kept."""
        self._quarantine(raw, error)
        return self._error(request_id, error)

    def _error(self, request_id: Any, error: RpcError) -> bytes:
        self.stats.errors += 1
        return protocol.error_response(request_id, error)

    def _quarantine(self, raw: bytes, error: RpcError) -> None:
        reason = f"{error.code} {error.message}: {error}"
        if error.data.get("field"):
            reason += f" (field {error.data['field']})"
        self.ingest.reject(Rejected(raw, reason, int(time.time() * 1000)))
        self.stats.rejected += 1
        if self._on_reject is not None:
            self._on_reject(reason)
        else:
            self._log_rejection(reason)

    def _log_rejection(self, reason: str) -> None:
        """At most a burst of lines per window on stderr, then one count of the rest."""
        now = time.monotonic()
        if now - self._log_window_start >= _REJECT_LOG_EVERY_S:
            if self._suppressed:
                log.warning("%d more rejected lines were not logged", self._suppressed)
            self._log_window_start, self._logged_in_window, self._suppressed = now, 0, 0
        if self._logged_in_window < _REJECT_LOG_BURST:
            self._logged_in_window += 1
            log.warning("rejected input kept in quarantine: %s", reason)
        else:
            self._suppressed += 1
