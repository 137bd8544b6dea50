"""The command line run on a pseudo-terminal, as a person at a terminal runs it: what it
prints there, with the answers given to what it asks."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Mapping

WAIT_S = 30.0


def on_terminal(
    *args: str, answer: bytes = b"", env: Mapping[str, str] | None = None, rows: int = 24
) -> tuple[int, str]:
    """Run `python -m sidecar ARGS` with stdin, stdout and stderr on one terminal of
    `rows` lines; type `answer` once it has printed something. (exit code, what the
    terminal showed)."""
    controller, terminal = pty.openpty()
    os.set_blocking(controller, False)
    environment = {**os.environ, "LINES": str(rows), "COLUMNS": "100", **(env or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "sidecar", *args],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=environment,
        close_fds=True,
    )
    os.close(terminal)
    shown = b""
    deadline = time.monotonic() + WAIT_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # the terminal closed: every process on it ended
                    break
                if not chunk:
                    break
                shown += chunk
                if answer:
                    os.write(controller, answer)
                    answer = b""
            elif process.poll() is not None:
                break
        code = process.wait(timeout=WAIT_S)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(controller)
    return code, shown.decode(errors="replace").replace("\r\n", "\n")
