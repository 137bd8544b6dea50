"""sidecar/stdio.py: the stdout writer: its pipe, lines written in pieces."""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.stdio import PIPE_BYTES, StdoutWriter, enlarge_pipe

pytestmark = pytest.mark.skipif(not hasattr(fcntl, "F_GETPIPE_SZ"), reason="pipe sizes are Linux's")


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    try:
        yield read_end, write_end
    finally:
        os.close(read_end)
        os.close(write_end)


async def test_the_stdout_writer_enlarges_the_pipe_it_writes_to(pipe: tuple[int, int]) -> None:
    StdoutWriter(pipe[1], asyncio.get_running_loop(), max_pending_bytes=1 << 20)
    assert fcntl.fcntl(pipe[1], fcntl.F_GETPIPE_SZ) == PIPE_BYTES


def test_a_descriptor_that_is_not_a_pipe_is_left_alone(tmp_path: Path) -> None:
    with (tmp_path / "out").open("wb") as file:
        enlarge_pipe(file.fileno())
        file.write(b"still writable")
    assert (tmp_path / "out").read_bytes() == b"still writable"


async def test_a_line_of_more_pieces_than_one_writev_takes_is_written_whole_in_order(
    pipe: tuple[int, int],
) -> None:
    writer = StdoutWriter(pipe[1], asyncio.get_running_loop(), max_pending_bytes=1 << 20)
    writer.start()
    pieces = [b"%d," % n for n in range(5000)]  # many times IOV_MAX
    writer.write_line(pieces)
    writer.write_line(b"next")
    assert await writer.drain(10)
    writer.close()
    expected = b"".join(pieces) + b"\nnext\n"
    received = b""
    while len(received) < len(expected):
        received += os.read(pipe[0], 1 << 16)
    assert received == expected
