"""Newline framing: chunks of bytes in, complete lines out. Knows nothing of JSON-RPC.

A line longer than the limit is skipped up to its newline and reported once as
OVERSIZE, so one runaway line never costs more memory than the limit.
"""

from __future__ import annotations

from typing import Final

HEAD_BYTES = 1024


class Oversize:
    """A skipped line longer than the limit: its size and first bytes, for the quarantine."""

    __slots__ = ("head", "size")

    def __init__(self, size: int, head: bytes) -> None:
        self.size = size
        self.head = head


class LineSplitter:
    """Feed chunks, get back the lines they complete (without `\\n`), in order."""

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes: Final = max_line_bytes
        self._parts: list[bytes] = []  # pieces of the unfinished line, joined once complete
        self._partial_size = 0
        self._skipping = False  # inside an oversize line, discarding up to its newline
        self._head = b""  # first bytes of the oversize line being skipped

    def feed(self, chunk: bytes) -> list[bytes | Oversize]:
        pieces = chunk.split(b"\n")
        tail = pieces.pop()  # the start of a line this chunk does not finish
        lines: list[bytes | Oversize] = list(pieces)
        if lines:
            lines[0] = self._complete(pieces[0])
            if len(chunk) > self.max_line_bytes:  # only then can a whole line be too long
                lines = [self._checked(line) for line in lines]
        self._hold(tail)
        return lines

    def finish(self) -> list[bytes | Oversize]:
        """End of input: a last line without a trailing newline still counts."""
        if not self._parts and not self._skipping:
            return []
        return [self._complete(b"")]

    def _checked(self, line: bytes | Oversize) -> bytes | Oversize:
        if isinstance(line, bytes) and len(line) > self.max_line_bytes:
            return Oversize(len(line), line[:HEAD_BYTES])
        return line

    def _hold(self, piece: bytes) -> None:
        if not piece:
            return
        self._partial_size += len(piece)
        if self._skipping:
            return
        if self._partial_size > self.max_line_bytes:
            self._head = b"".join(self._parts)[:HEAD_BYTES] if self._parts else piece[:HEAD_BYTES]
            self._parts.clear()
            self._skipping = True
        else:
            self._parts.append(piece)

    def _complete(self, tail: bytes) -> bytes | Oversize:
        size = self._partial_size + len(tail)
        skipping = self._skipping
        if self._parts:
            self._parts.append(tail)
            line = b"".join(self._parts)
            self._parts.clear()
        else:
            line = tail
        self._partial_size = 0
        self._skipping = False
        if skipping:
            return Oversize(size, self._head)
        if size > self.max_line_bytes:
            return Oversize(size, line[:HEAD_BYTES])
        return line
