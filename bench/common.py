"""Helpers shared by the benchmark scripts: the event stream, fresh databases, the daemon."""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from itertools import count, islice
from pathlib import Path
from typing import IO

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
GEN_STREAM = BENCH / "gen_stream.py"  # a copy of the shared stream generator


def stream(sessions: int = 200, per_session: int = 1000, name: str = "stream.ndjson") -> Path:
    """The output of `gen_stream.py sessions per_session`, reused when it is already there.

    A stamp beside the file records the generator's hash, the arguments and the size; a
    file without a matching stamp is regenerated (the generator is seeded, so the same
    arguments always give the same bytes).
    """
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    stamp_path = path.with_name(path.name + ".stamp")
    generator = hashlib.sha256(GEN_STREAM.read_bytes()).hexdigest()
    stamp = f"{generator} {sessions} {per_session}"
    if path.exists() and stamp_path.exists() and stamp_path.read_text() == f"{stamp} {path.stat().st_size}":
        return path
    print(f"generating {path.name}: {sessions} sessions x {per_session} events ...", flush=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as out:
        subprocess.run(
            [sys.executable, str(GEN_STREAM), str(sessions), str(per_session)], stdout=out, check=True
        )
    tmp.replace(path)
    stamp_path.write_text(f"{stamp} {path.stat().st_size}")
    return path


def compile_package(tree: Path | None = None) -> None:
    """Byte-compile the package (of `tree`, a directory holding `sidecar/`; by default this
    one), as installing a wheel does: with an editable install and PYTHONDONTWRITEBYTECODE
    set (as on these machines) every start would otherwise compile the daemon's source
    (~50 ms), which no deployed copy does. The dependencies are compiled already."""
    package = (tree or Path(__file__).resolve().parents[1]) / "sidecar"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)


def fresh_db(name: str) -> Path:
    """A path under bench/out/ with no database, WAL or shared-memory file left behind."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


def spawn_daemon(db: Path, stdout: int | None = subprocess.PIPE) -> subprocess.Popen[bytes]:
    """The daemon on `db`, stdin a pipe; stderr is inherited so its logs show up."""
    return spawn_with(["--db", str(db)], stdout)


def spawn_with(args: list[str], stdout: int | None = subprocess.PIPE) -> subprocess.Popen[bytes]:
    """The daemon with these store options, stdin a pipe, stderr inherited."""
    return subprocess.Popen([sys.executable, "-m", "sidecar", *args], stdin=subprocess.PIPE, stdout=stdout)


def count_rows(db: Path) -> int:
    with closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])


def repeat_option(description: str, default: int) -> int:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeat", type=int, default=default, help=f"runs of each side (default {default})")
    repeat: int = parser.parse_args().repeat
    return max(1, repeat)


def median(values: list[float]) -> float:
    return statistics.median(values)


def report(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(label) for label, _ in rows)
    print(f"\n== {title}")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")


def verdict(what: str, value: float, target: str, met: bool) -> None:
    print(f"  {what} = {value:.2f} (target {target}): {'target met' if met else 'target missed'}")


SESSION_KEY = b'"session_id":"sess-'  # how gen_stream.py's session ids begin
LINES_PER_WRITE = 1000


def renamed(path: Path, prefix: bytes) -> Iterator[bytes]:
    """The lines of a stream, each session id prefixed with `prefix`."""
    new_key = b'"session_id":"' + prefix + b"sess-"
    with path.open("rb") as lines:
        for line in lines:
            yield line.replace(SESSION_KEY, new_key, 1)


def cycles(path: Path, times: int | None = None) -> Iterator[bytes]:
    """A stream's lines `times` over (None: for ever), each cycle's session ids its own."""
    for cycle in range(times) if times is not None else count():
        yield from renamed(path, b"c%d-" % cycle)


def feed(pipe: IO[bytes], lines: Iterator[bytes]) -> None:
    """Write lines into a daemon's stdin as they come (blocks while the pipe is full: the
    daemon's backpressure), then close it."""
    while chunk := list(islice(lines, LINES_PER_WRITE)):
        pipe.write(b"".join(chunk))
    pipe.close()
