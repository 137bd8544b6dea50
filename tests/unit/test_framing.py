from __future__ import annotations

from sidecar.framing import LineSplitter, Oversize


def feed_all(splitter: LineSplitter, *chunks: bytes) -> list[bytes | tuple[str, int]]:
    out: list[bytes | Oversize] = []
    for chunk in chunks:
        out += splitter.feed(chunk)
    out += splitter.finish()
    return [("oversize", line.size) if isinstance(line, Oversize) else line for line in out]


def test_lines_split_across_chunks_are_joined() -> None:
    assert feed_all(LineSplitter(100), b"ab", b"c\nde", b"f\n") == [b"abc", b"def"]


def test_a_last_line_without_newline_still_counts() -> None:
    assert feed_all(LineSplitter(100), b"a\nlast") == [b"a", b"last"]


def test_blank_lines_are_passed_through_for_the_dispatcher_to_skip() -> None:
    assert feed_all(LineSplitter(100), b"\n\na\n") == [b"", b"", b"a"]


def test_a_line_over_the_limit_is_skipped_up_to_its_newline_and_reported_once() -> None:
    assert feed_all(LineSplitter(10), b"0123456789", b"0123", b"\nok\n") == [("oversize", 14), b"ok"]


def test_an_oversize_line_inside_one_chunk_is_reported() -> None:
    assert feed_all(LineSplitter(10), b"short\n0123456789ABC\nok\n") == [b"short", ("oversize", 13), b"ok"]


def test_an_oversize_line_keeps_its_first_bytes_for_the_quarantine() -> None:
    splitter = LineSplitter(10)
    (line,) = splitter.feed(b"x" * 5000 + b"\n")
    assert isinstance(line, Oversize) and line.head == b"x" * 1024


def test_a_line_of_exactly_the_limit_is_accepted() -> None:
    assert feed_all(LineSplitter(10), b"0123456789\n") == [b"0123456789"]


def test_memory_for_an_oversize_line_does_not_grow_past_the_limit() -> None:
    splitter = LineSplitter(1000)
    for _ in range(100):
        assert splitter.feed(b"y" * 10_000) == []
    assert sum(len(part) for part in splitter._parts) == 0
    assert feed_all(splitter, b"\nnext\n") == [("oversize", 1_000_000), b"next"]
