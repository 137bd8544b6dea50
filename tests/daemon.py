"""The real daemon as a subprocess over pipes, for end-to-end tests.

Every wait is bounded; nothing sleeps to wait for readiness: a test waits for a response.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

WAIT_S = 20.0


def encode(message: Any) -> bytes:
    """A message as one compact JSON line; bytes and str are sent as they are."""
    if isinstance(message, bytes):
        return message if message.endswith(b"\n") else message + b"\n"
    if isinstance(message, str):
        return (message if message.endswith("\n") else message + "\n").encode()
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


class Daemon:
    """`python -m sidecar --db DB ARGS...` with stdin, stdout and stderr as pipes."""

    def __init__(
        self,
        db: Path | None,
        *args: str,
        env: dict[str, str] | None = None,
        stdin: Any = subprocess.PIPE,
    ) -> None:
        command = [sys.executable, "-m", "sidecar", *args]
        if db is not None:
            command[3:3] = ["--db", str(db)]
        self.process = subprocess.Popen(
            command,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        self._lines: queue.Queue[bytes] = queue.Queue()
        self._stderr: list[bytes] = []
        self._pending: dict[Any, Any] = {}  # responses read while waiting for another id
        self._next_id = 0
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        self._stderr_thread = threading.Thread(target=self._pump_stderr, daemon=True)
        self._stderr_thread.start()

    def _pump_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(b"")

    def _pump_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line)

    # --- sending -------------------------------------------------------------------------

    def send(self, *messages: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"".join(encode(m) for m in messages))
        self.process.stdin.flush()

    def send_raw(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def request(self, method: str, params: Any = None, **kwargs: Any) -> Any:
        """Send a request and return its whole response object."""
        request_id = kwargs.pop("id", None)
        if request_id is None:
            self._next_id += 1
            request_id = f"req-{self._next_id}"
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        return self.response(request_id)

    def result(self, method: str, params: Any = None) -> Any:
        """The result of a request; fails the test on an error response."""
        response = self.request(method, params)
        assert "error" not in response, response
        return response["result"]

    # --- receiving -----------------------------------------------------------------------

    def read_line(self, timeout: float = WAIT_S) -> Any:
        """The next response line, decoded (an object or a batch array)."""
        return json.loads(self.read_raw_line(timeout))

    def read_raw_line(self, timeout: float = WAIT_S) -> bytes:
        """The next response line as the daemon wrote it."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no response within {timeout}s; stderr: {self.stderr}") from None
        if not line:
            raise AssertionError(f"stdout closed; stderr: {self.stderr}")
        return line

    def response(self, request_id: Any, timeout: float = WAIT_S) -> Any:
        """The response with this id; others read meanwhile are kept for later."""
        if request_id in self._pending:
            return self._pending.pop(request_id)
        while True:
            message = self.read_line(timeout)
            if isinstance(message, dict) and message.get("id") == request_id:
                return message
            key = message.get("id") if isinstance(message, dict) else id(message)
            self._pending[key] = message

    def no_output(self) -> bool:
        """True if stdout has nothing unread (call after a request that fences earlier ones)."""
        return self._lines.empty() and not self._pending

    # --- ending --------------------------------------------------------------------------

    def close(self, timeout: float = WAIT_S) -> int:
        """Close stdin and wait for the exit code."""
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()
        return self.wait(timeout)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = WAIT_S) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"daemon did not exit within {timeout}s; stderr: {self.stderr}") from None
        self._stderr_thread.join(timeout)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT_S)

    @property
    def stderr(self) -> str:
        return b"".join(self._stderr).decode(errors="replace")

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *_: object) -> None:
        self.kill()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream:
                stream.close()
