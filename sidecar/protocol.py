"""JSON-RPC 2.0 envelope: error codes, the exception for each, and response encoding.

Knows the wire shapes only; nothing about events, stores or what a method does.
"""

from __future__ import annotations

from typing import Any

import msgspec

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
STORAGE_UNAVAILABLE = -32001
MESSAGE_TOO_LARGE = -32003
SESSION_NOT_FOUND = -32004


class RpcError(Exception):
    """An error that becomes a JSON-RPC error response; `data` is an object of details."""

    code = INTERNAL_ERROR
    message = "Internal error"

    def __init__(self, reason: str = "", **data: Any) -> None:
        super().__init__(reason or self.message)
        self.data: dict[str, Any] = {"reason": reason, **data} if reason else dict(data)


class ParseError(RpcError):
    code = PARSE_ERROR
    message = "Parse error"


class InvalidRequest(RpcError):
    code = INVALID_REQUEST
    message = "Invalid Request"


class MethodNotFound(RpcError):
    code = METHOD_NOT_FOUND
    message = "Method not found"


class InvalidParams(RpcError):
    code = INVALID_PARAMS
    message = "Invalid params"


class InternalError(RpcError):
    code = INTERNAL_ERROR
    message = "Internal error"


class StorageUnavailable(RpcError):
    code = STORAGE_UNAVAILABLE
    message = "Storage unavailable"


class MessageTooLarge(RpcError):
    code = MESSAGE_TOO_LARGE
    message = "Message too large"


class SessionNotFound(RpcError):
    code = SESSION_NOT_FOUND
    message = "Session not found"


class Envelope(msgspec.Struct, gc=False):  # decoded JSON: no cycles, untracked
    """One decoded message. Loose types on purpose: wrong types become -32600, not a crash.

    `id` stays UNSET when absent, so a notification differs from `"id": null`;
    `params` stays raw bytes so the method's own decoder validates it and events keep
    their exact bytes. An empty Raw means the key was absent.
    """

    jsonrpc: Any = msgspec.UNSET
    method: Any = msgspec.UNSET
    params: msgspec.Raw = msgspec.Raw()
    id: Any = msgspec.UNSET
    result: msgspec.Raw = msgspec.Raw()
    error: msgspec.Raw = msgspec.Raw()


envelope_decoder = msgspec.json.Decoder(Envelope)
batch_decoder = msgspec.json.Decoder(list[msgspec.Raw])
_encode = msgspec.json.Encoder().encode


def is_valid_id(value: Any) -> bool:
    """JSON-RPC ids are strings, numbers or null (booleans are not numbers here)."""
    return value is None or (isinstance(value, str | int | float) and not isinstance(value, bool))


def result_response(request_id: Any, result: Any) -> bytes:
    return _encode({"jsonrpc": "2.0", "id": request_id, "result": result})


# A line to write: one bytes object, or pieces written one after another (never joined:
# a session read is megabytes, and a copy of it costs fresh pages each time).
Line = bytes | list[bytes]


def elements_result_response(request_id: Any, chunks: list[bytes]) -> list[bytes]:
    """A response whose result is an array of already encoded elements, in `chunks` that
    joined by commas are its inside."""
    pieces = [b'{"jsonrpc":"2.0","id":' + _encode(request_id) + b',"result":[']
    for chunk in chunks:
        pieces += (chunk, b",")
    if chunks:
        pieces.pop()
    pieces.append(b"]}")
    return pieces


def joined(line: Line) -> bytes:
    """A line as one bytes object (a batch's answers are elements of one line)."""
    return line if isinstance(line, bytes) else b"".join(line)


def error_response(request_id: Any, error: RpcError) -> bytes:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.data:
        body["data"] = error.data
    return _encode({"jsonrpc": "2.0", "id": request_id, "error": body})


def event_notification(subscription: int, seq: int, event: bytes) -> bytes:
    """storage.event: one committed event for a subscription, `event` as stored (JSON text)."""
    return b'{"jsonrpc":"2.0","method":"storage.event","params":{"subscription":%d,"seq":%d,"event":%b}}' % (
        subscription,
        seq,
        event,
    )


def lagged_notification(subscription: int, last_seq: int) -> bytes:
    """storage.subscription_lagged: the subscription fell too far behind and has ended;
    every matching event up to `last_seq` was sent."""
    return _encode(
        {
            "jsonrpc": "2.0",
            "method": "storage.subscription_lagged",
            "params": {"subscription": subscription, "last_seq": last_seq},
        }
    )
