"""A Python client of the daemon: spawn it (or attach to its pipes), send events, call the
`storage.*` methods, and match each answer to its request by id.

`AsyncSidecar` is the client. `Sidecar` wraps it for scripts: it keeps a private event loop
(`asyncio.Runner`) in the calling thread and runs it for the length of each call. That is
enough because the daemon writes nothing unasked — every response is awaited by the call
that asked for it — so no background thread is needed. Use `AsyncSidecar` inside a running
event loop or from several threads. The daemon never imports this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import IO, Any, Self, TypeVar

import msgspec

from sidecar.protocol import (  # re-exported: compare SidecarError.code with these
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    MESSAGE_TOO_LARGE,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    SESSION_NOT_FOUND,
    STORAGE_UNAVAILABLE,
)

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "MESSAGE_TOO_LARGE",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "SESSION_NOT_FOUND",
    "STORAGE_UNAVAILABLE",
    "Ack",
    "AsyncSidecar",
    "Deleted",
    "Flushed",
    "Forked",
    "Info",
    "SearchHit",
    "Sidecar",
    "SidecarClosed",
    "SidecarError",
    "Stats",
    "Summary",
    "timestamp",
]

log = logging.getLogger("sidecar.client")

T = TypeVar("T")

DEFAULT_COMMAND = (sys.executable, "-m", "sidecar")
# Each step of closing (end of input, then SIGTERM, then SIGKILL) waits this long. The
# daemon's own shutdown may retry a failing store for 10 s (--shutdown-timeout) first.
CLOSE_TIMEOUT_S = 15.0
# After stdout ends, how long to wait for the exit code that explains why.
_EXIT_CODE_WAIT_S = 1.0
_READ_CHUNK = 64 * 1024


# --- results ---------------------------------------------------------------------------------
# Unknown keys are ignored, so a newer daemon that adds fields does not break this client.


class Ack(msgspec.Struct):
    """An event committed to the store: its session and store-wide sequence number."""

    session_id: str
    seq: int


class Flushed(msgspec.Struct):
    """Everything sent before the flush is durable; `seq` is the highest committed."""

    seq: int


class Info(msgspec.Struct):
    name: str
    version: str
    protocol_versions: list[str]
    backend: str
    location: str
    methods: list[str]


class Stats(msgspec.Struct):
    """Counters of the daemon's current run (not of the store), except `sessions`."""

    received: int
    persisted: int
    rejected: int
    errors: int
    sessions: int
    queue_depth: int
    commits: int
    uptime_s: float


class Summary(msgspec.Struct):
    """One session as `list_sessions` describes it, from the store's running tallies."""

    session_id: str
    event_count: int
    first_timestamp: str | None  # UTC, nine fraction digits, `Z`
    last_timestamp: str | None  # the latest instant: the paging cursor for `before`
    model: str | None  # of the latest session.init
    provider: str | None
    parent_session_id: str | None  # from a session.fork event
    status: str  # "active", or "stopped" when the latest init or stop is a stop
    success: bool | None  # of that stop
    usage: dict[str, int]  # summed over every session.stop
    title: str | None  # the first prompt, whitespace collapsed, at most 120 characters


class Deleted(msgspec.Struct):
    """How many events `delete_session` removed; 0 for an unknown session."""

    deleted: int


class Forked(msgspec.Struct):
    """The new session of `fork_session`, and how many parent events it copied (the
    parent's own session.fork events are not copied; one new session.fork is added)."""

    session_id: str
    copied: int


class SearchHit(msgspec.Struct):
    """An event whose text holds every word searched for."""

    session_id: str
    seq: int | None  # the event's store-wide seq; None on the jsonl backend
    method: str
    timestamp: str  # the event's own timestamp text, as it was sent
    snippet: str  # a few words around the first match, matched words in [brackets]


# --- errors ----------------------------------------------------------------------------------


class SidecarError(Exception):
    """The daemon answered with a JSON-RPC error: `code`, `message`, and `data` (details)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        reason = data.get("reason") if isinstance(data, dict) else None
        super().__init__(f"{message} ({code})" + (f": {reason}" if reason else ""))
        self.code = code
        self.message = message
        self.data = data


class SidecarClosed(ConnectionError):
    """No answer can come: the daemon exited or closed its pipes, or the client was closed."""

    def __init__(self, message: str, returncode: int | None = None) -> None:
        super().__init__(message)
        self.returncode = returncode


# --- the wire --------------------------------------------------------------------------------


class _ErrorBody(msgspec.Struct):
    code: int
    message: str
    data: Any = None


class _Incoming(msgspec.Struct):
    """A line from the daemon: a response, or (for later features) a server notification.

    `result` stays raw so each method decodes it into its own type; empty means absent.
    """

    id: Any = msgspec.UNSET
    result: msgspec.Raw = msgspec.Raw()
    error: _ErrorBody | None = None
    method: str | None = None
    params: msgspec.Raw = msgspec.Raw()


_encode = msgspec.json.Encoder().encode
_decode_one = msgspec.json.Decoder(_Incoming).decode
_decode_batch = msgspec.json.Decoder(list[_Incoming]).decode
_decode_events = msgspec.json.Decoder(list[msgspec.Raw]).decode


def timestamp(ns: int | None = None) -> str:
    """RFC 3339 in UTC with nine fraction digits and `Z`, as the Rust runtime writes."""
    seconds, fraction = divmod(time.time_ns() if ns is None else ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


def _ended(returncode: int | None) -> str:
    """Why no answer can come, for SidecarClosed."""
    if returncode is None:
        return "the sidecar closed its stdout"
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"the sidecar was killed by {signal.Signals(-returncode).name}"
    return f"the sidecar exited with code {returncode}"


# --- the async client ------------------------------------------------------------------------


class AsyncSidecar:
    """One daemon, many concurrent calls. `async with AsyncSidecar("--db", path) as sidecar:`.

    Requests get increasing integer ids; one reader task resolves each call's future by id,
    so answers may arrive in any order. A call never hangs on a dead daemon: when stdout
    ends, every waiting call fails with SidecarClosed.
    """

    def __init__(
        self,
        *args: str,
        command: Sequence[str] = DEFAULT_COMMAND,
        env: Mapping[str, str] | None = None,
        stderr: int | IO[Any] | None = None,
        close_timeout: float = CLOSE_TIMEOUT_S,
        on_notification: Callable[[str, Any], None] | None = None,
    ) -> None:
        """Spawn `command + args` on start. `env` adds to this process's environment;
        the daemon's log (stderr) goes to ours unless `stderr` says otherwise."""
        self._argv = [*command, *args]
        self._env = None if env is None else {**os.environ, **env}
        self._stderr = stderr
        self._close_timeout = close_timeout
        self._on_notification = on_notification
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._read_task: asyncio.Task[None] | None = None
        self._pending: dict[int, tuple[str, asyncio.Future[_Incoming]]] = {}
        self._last_id = 0
        self._closing = False
        self._gone: SidecarClosed | None = None  # set once no answer can come any more

    @classmethod
    def attach(
        cls,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        close_timeout: float = CLOSE_TIMEOUT_S,
        on_notification: Callable[[str, Any], None] | None = None,
    ) -> Self:
        """A client for a daemon someone else started: `reader` is its stdout, `writer` its stdin."""
        client = cls(close_timeout=close_timeout, on_notification=on_notification)
        client._reader, client._writer = reader, writer
        return client

    async def start(self) -> Self:
        """Spawn the daemon (unless attached) and start reading its answers."""
        if self._read_task is not None:
            return self
        if self._reader is None:
            self._process = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=self._stderr,
                env=self._env,
            )
            self._reader, self._writer = self._process.stdout, self._process.stdin
        assert self._reader is not None  # both are set: attached, or spawned with pipes
        self._read_task = asyncio.create_task(self._read(self._reader), name="sidecar-client-reader")
        return self

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    # --- events ------------------------------------------------------------------------------

    async def send_event(self, method: str, params: Any) -> None:
        """Send an event as a notification: no answer, the fastest path. The daemon
        quarantines an invalid one silently; `record_event` or `flush` confirm storage."""
        await self.notify(method, params)

    async def record_event(self, method: str, params: Any) -> Ack:
        """Send an event as a request: answered once it is durably committed.
        An invalid event raises SidecarError (-32602, `data["field"]` names the field)."""
        return msgspec.json.decode(await self.call_raw(method, params), type=Ack)

    # --- storage methods: each one line over call_raw ----------------------------------------

    async def get_session(
        self,
        session_id: str,
        *,
        after: str | None = None,
        methods: Sequence[str] | None = None,
        last: int | None = None,
    ) -> list[dict[str, Any]]:
        """A session's events ordered by timestamp, each `{"jsonrpc","method","params"}`;
        [] for an unknown session. Filters apply in order: after, methods, then last."""
        raw = await self.call_raw("storage.get_session", _session_query(session_id, after, methods, last))
        return msgspec.json.decode(raw, type=list[dict[str, Any]])

    async def get_session_raw(
        self,
        session_id: str,
        *,
        after: str | None = None,
        methods: Sequence[str] | None = None,
        last: int | None = None,
    ) -> list[bytes]:
        """As `get_session`, each event as the exact JSON text the daemon stored."""
        raw = await self.call_raw("storage.get_session", _session_query(session_id, after, methods, last))
        return [bytes(event) for event in _decode_events(raw)]

    async def list_sessions(
        self, *, limit: int | None = None, before: str | None = None, query: str | None = None
    ) -> list[Summary]:
        """Sessions, newest activity first: at most `limit` (the daemon's default 100),
        those whose last event is strictly earlier than `before` (RFC 3339), and with
        `query`, those whose id, model, provider, parent or title holds it (any case)."""
        params = _given(limit=limit, before=before, query=query)
        raw = await self.call_raw("storage.list_sessions", params or None)
        return msgspec.json.decode(raw, type=list[Summary])

    async def delete_session(self, session_id: str) -> Deleted:
        """Remove a session's events (those still queued too), summary and search entries."""
        raw = await self.call_raw("storage.delete_session", {"session_id": session_id})
        return msgspec.json.decode(raw, type=Deleted)

    async def fork_session(self, session_id: str, new_session_id: str | None = None) -> Forked:
        """Copy a session's events under a new id (a UUID unless given), then add a
        session.fork event stamped now. SidecarError -32004 for a parent with no events,
        -32602 (`data["field"] == "new_session_id"`) when the new id already has events.
        A -32001 answer may still fork once the store recovers: look before asking again."""
        params = _given(session_id=session_id, new_session_id=new_session_id)
        return msgspec.json.decode(await self.call_raw("storage.fork_session", params), type=Forked)

    async def search(
        self, query: str, *, session_id: str | None = None, limit: int | None = None
    ) -> list[SearchHit]:
        """Events whose text holds every word of `query` (any case), newest first; at most
        `limit` (the daemon's default 20, at most 1000). -32602 for a query with no words."""
        params = _given(query=query, session_id=session_id, limit=limit)
        return msgspec.json.decode(await self.call_raw("storage.search", params), type=list[SearchHit])

    async def subscribe(
        self,
        *,
        session_id: str | None = None,
        methods: Sequence[str] | None = None,
        after_seq: int | None = None,
    ) -> int:
        """Follow committed events (of one session, of some methods); the subscription id.

        They arrive as `storage.event` notifications — `{"subscription", "seq", "event"}` —
        through `on_notification`, and `storage.subscription_lagged` once a subscription
        falls too far behind (resume with `after_seq` = its `last_seq`). From now on unless
        `after_seq` asks for what followed that seq."""
        params = _given(session_id=session_id, methods=methods, **{"from": after_seq})
        result = msgspec.json.decode(await self.call_raw("storage.subscribe", params), type=dict[str, int])
        return result["subscription"]

    async def unsubscribe(self, subscription: int) -> None:
        await self.call_raw("storage.unsubscribe", {"subscription": subscription})

    async def flush(self) -> Flushed:
        return msgspec.json.decode(await self.call_raw("storage.flush"), type=Flushed)

    async def info(self) -> Info:
        return msgspec.json.decode(await self.call_raw("storage.info"), type=Info)

    async def stats(self) -> Stats:
        return msgspec.json.decode(await self.call_raw("storage.stats"), type=Stats)

    async def shutdown(self) -> None:
        """Ask the daemon to commit everything and exit; `aclose` then collects its exit code."""
        await self.call_raw("storage.shutdown")

    # --- any method --------------------------------------------------------------------------

    async def call(self, method: str, params: Any = None) -> Any:
        """Call any method; its result decoded to plain Python values."""
        return msgspec.json.decode(await self.call_raw(method, params))

    async def call_raw(self, method: str, params: Any = None) -> msgspec.Raw:
        """Call any method; the JSON text of its result. SidecarError on an error answer.

        `params` is anything msgspec encodes (a dict, a Struct; msgspec.Raw for exact bytes).
        """
        answer = await self._request(method, params)
        if answer.error is not None:
            raise SidecarError(answer.error.code, answer.error.message, answer.error.data)
        return answer.result

    async def notify(self, method: str, params: Any = None) -> None:
        """Send any notification; the daemon never answers one."""
        self._check_usable(method)
        await self._send(_message(method, params), method)

    async def _request(self, method: str, params: Any) -> _Incoming:
        self._check_usable(method)
        self._last_id += 1
        request_id = self._last_id
        future: asyncio.Future[_Incoming] = asyncio.get_running_loop().create_future()
        # Registered before the line is written: the answer may come before the write returns.
        self._pending[request_id] = (method, future)
        try:
            await self._send(_message(method, params, request_id), method)
            return await future
        finally:  # answered, failed or cancelled: a late answer is logged and dropped
            self._pending.pop(request_id, None)
            if future.done() and not future.cancelled():
                future.exception()  # failed while the write failed: seen, so asyncio stays quiet

    def _check_usable(self, method: str) -> None:
        if self._gone is not None:
            raise SidecarClosed(f"{self._gone}; cannot send {method}", self._gone.returncode)
        if self._closing:
            raise SidecarClosed(f"the client is closing; cannot send {method}")
        if self._read_task is None:
            raise RuntimeError("the client is not started: use `async with` or `await start()`")

    async def _send(self, line: bytes, method: str) -> None:
        assert self._writer is not None
        try:
            self._writer.write(line)
            await self._writer.drain()
        except (ConnectionError, RuntimeError) as exc:  # RuntimeError: writer already closed
            # The daemon is most likely exiting: its stdout ends next, and says how it ended.
            assert self._read_task is not None
            await asyncio.wait({self._read_task}, timeout=_EXIT_CODE_WAIT_S + 1)
            gone = self._gone or SidecarClosed("the sidecar's stdin is closed")
            raise SidecarClosed(f"{gone}; cannot send {method}", gone.returncode) from exc

    # --- reading answers ---------------------------------------------------------------------

    async def _read(self, reader: asyncio.StreamReader) -> None:
        """Split stdout into lines in chunks (a session read may be one line of megabytes,
        past StreamReader's line limit), deliver each answer; at the end fail what waits."""
        returncode = None
        try:
            partial: list[bytes] = []
            while chunk := await reader.read(_READ_CHUNK):
                *lines, tail = chunk.split(b"\n")
                if lines:
                    lines[0] = b"".join((*partial, lines[0]))
                    partial.clear()
                    for line in lines:
                        self._dispatch(line)
                if tail:
                    partial.append(tail)
            returncode = await self._exit_code()
        except ConnectionError as exc:
            log.debug("reading the sidecar's stdout failed: %s", exc)
        finally:
            self._fail_pending(returncode)

    async def _exit_code(self) -> int | None:
        if self._process is None:
            return None
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(self._process.wait(), _EXIT_CODE_WAIT_S)
        return None

    def _fail_pending(self, returncode: int | None) -> None:
        why = _ended(returncode)
        self._gone = SidecarClosed(why, returncode)
        pending, self._pending = self._pending, {}
        for method, future in pending.values():
            if not future.done():
                future.set_exception(SidecarClosed(f"{why} before answering {method}", returncode))

    def _dispatch(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            answers = _decode_batch(line) if line.lstrip()[:1] == b"[" else [_decode_one(line)]
        except msgspec.DecodeError as exc:
            log.warning("ignored a line from the sidecar that is not JSON-RPC (%s): %.200r", exc, line)
            return
        for answer in answers:
            self._deliver(answer)

    def _deliver(self, answer: _Incoming) -> None:
        if answer.id is msgspec.UNSET and answer.method is not None:
            self._notified(answer.method, answer.params)
            return
        waiting = self._pending.pop(answer.id, None) if type(answer.id) is int else None
        if waiting is None:
            if type(answer.id) is int:  # the call was cancelled while the daemon worked on it
                log.debug("dropped the answer to cancelled request %d", answer.id)
            else:  # id null: an error about a line the daemon could not read as a request
                log.warning("the sidecar answered no request (id %r): %s", answer.id, answer.error)
            return
        _, future = waiting
        if not future.done():
            future.set_result(answer)

    def _notified(self, method: str, params: msgspec.Raw) -> None:
        if self._on_notification is None:
            log.debug("ignored a notification from the sidecar: %s", method)
            return
        try:
            self._on_notification(method, msgspec.json.decode(params) if params else None)
        except Exception:  # the reader must survive a faulty callback
            log.exception("on_notification failed for %s", method)

    # --- closing -----------------------------------------------------------------------------

    async def aclose(self) -> int | None:
        """Close stdin (the daemon commits everything received and exits), wait for the exit;
        past `close_timeout` send SIGTERM, then SIGKILL. The exit code; None when attached."""
        self._closing = True
        if self._writer is not None and not self._writer.is_closing():
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
        if self._process is not None:
            await self._wait_for_exit(self._process)
        if self._read_task is not None:
            # Its stdout ends when the daemon exits; an attached daemon gets the same bound.
            await asyncio.wait({self._read_task}, timeout=self._close_timeout)
            self._read_task.cancel()
            await asyncio.gather(self._read_task, return_exceptions=True)
        if self._gone is None:
            self._gone = SidecarClosed("the client is closed", self.returncode)
        return self.returncode

    async def _wait_for_exit(self, process: asyncio.subprocess.Process) -> None:
        steps = ((None, ""), (process.terminate, "SIGTERM"), (process.kill, "SIGKILL"))
        for stop, name in steps:
            if stop is not None:
                log.warning("the sidecar (pid %d) has not exited; sending %s", process.pid, name)
                with contextlib.suppress(ProcessLookupError):
                    stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), self._close_timeout)
                return
        log.error("the sidecar (pid %d) did not exit even after SIGKILL", process.pid)


def _message(method: str, params: Any, request_id: int | None = None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0"}
    if request_id is not None:
        message["id"] = request_id
    message["method"] = method
    if params is not None:
        message["params"] = params
    return _encode(message) + b"\n"


def _session_query(
    session_id: str, after: str | None, methods: Sequence[str] | None, last: int | None
) -> dict[str, Any]:
    """Only the filters given: the daemon rejects unknown keys, and absent means no filter."""
    params: dict[str, Any] = {"session_id": session_id}
    if after is not None:
        params["after"] = after
    if methods is not None:
        params["methods"] = list(methods)
    if last is not None:
        params["last"] = last
    return params


def _given(**params: Any) -> dict[str, Any]:
    """The params that were given: absent means the daemon's default."""
    return {key: value for key, value in params.items() if value is not None}


# --- the blocking client ---------------------------------------------------------------------


class Sidecar:
    """The same client for scripts, blocking: `with Sidecar("--db", path) as sidecar:`.

    Spawns the daemon at once. One thread at a time, and not inside a running event loop.
    """

    def __init__(
        self,
        *args: str,
        command: Sequence[str] = DEFAULT_COMMAND,
        env: Mapping[str, str] | None = None,
        stderr: int | IO[Any] | None = None,
        close_timeout: float = CLOSE_TIMEOUT_S,
    ) -> None:
        self._runner = asyncio.Runner()
        self._closed = False
        self._client = AsyncSidecar(
            *args, command=command, env=env, stderr=stderr, close_timeout=close_timeout
        )
        try:
            self._run(self._client.start())
        except BaseException:
            self._closed = True
            self._runner.close()
            raise

    def _run(self, call: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(call)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        return self._client.pid

    @property
    def returncode(self) -> int | None:
        return self._client.returncode

    def send_event(self, method: str, params: Any) -> None:
        self._run(self._client.send_event(method, params))

    def record_event(self, method: str, params: Any) -> Ack:
        return self._run(self._client.record_event(method, params))

    def get_session(
        self,
        session_id: str,
        *,
        after: str | None = None,
        methods: Sequence[str] | None = None,
        last: int | None = None,
    ) -> list[dict[str, Any]]:
        return self._run(self._client.get_session(session_id, after=after, methods=methods, last=last))

    def get_session_raw(
        self,
        session_id: str,
        *,
        after: str | None = None,
        methods: Sequence[str] | None = None,
        last: int | None = None,
    ) -> list[bytes]:
        return self._run(self._client.get_session_raw(session_id, after=after, methods=methods, last=last))

    def list_sessions(
        self, *, limit: int | None = None, before: str | None = None, query: str | None = None
    ) -> list[Summary]:
        return self._run(self._client.list_sessions(limit=limit, before=before, query=query))

    def delete_session(self, session_id: str) -> Deleted:
        return self._run(self._client.delete_session(session_id))

    def fork_session(self, session_id: str, new_session_id: str | None = None) -> Forked:
        return self._run(self._client.fork_session(session_id, new_session_id))

    def search(
        self, query: str, *, session_id: str | None = None, limit: int | None = None
    ) -> list[SearchHit]:
        return self._run(self._client.search(query, session_id=session_id, limit=limit))

    def flush(self) -> Flushed:
        return self._run(self._client.flush())

    def info(self) -> Info:
        return self._run(self._client.info())

    def stats(self) -> Stats:
        return self._run(self._client.stats())

    def shutdown(self) -> None:
        self._run(self._client.shutdown())

    def call(self, method: str, params: Any = None) -> Any:
        return self._run(self._client.call(method, params))

    def notify(self, method: str, params: Any = None) -> None:
        self._run(self._client.notify(method, params))

    def close(self) -> int | None:
        """As `AsyncSidecar.aclose`; the exit code. Safe to call twice."""
        if self._closed:
            return self.returncode
        self._closed = True
        try:
            return self._run(self._client.aclose())
        finally:
            self._runner.close()
