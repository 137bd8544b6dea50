"""Import: `microagents-sidecar import` of a 200,000-event export into a new SQLite store,
then the same export again into that store (every line already stored, so skipped).

Prints the median seconds and events/s of each and the events the store holds after each;
`--source DIR` runs another source tree (one holding `sidecar/`), `--against DIR` a second
one too, alternating.
No target: a figure to compare before and after a change of the import path.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from common import OUT, count_rows, fresh_db, median, report, stream

HERE = Path(__file__).resolve().parents[1]


def cli(
    tree: Path, *args: str, stdout: IO[bytes] | int = subprocess.DEVNULL
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args], env=env, stdout=stdout, stderr=subprocess.PIPE, check=False
    )


def export_file(tree: Path) -> tuple[Path, int]:
    """The 200 x 1000 stream imported once and exported: the stored payloads, one a line."""
    path = OUT / "import_export.ndjson"
    source = stream()
    if not path.exists() or path.stat().st_mtime < source.stat().st_mtime:
        db = fresh_db("import_export_source.db")
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as out:
            if (
                cli(tree, "--db", str(db), "import", str(source)).returncode
                or cli(tree, "--db", str(db), "export", stdout=out).returncode
            ):
                raise SystemExit("could not build the export")
        tmp.replace(path)
    with path.open("rb") as lines:
        return path, sum(1 for _ in lines)


def timed_import(tree: Path, db: Path, export: Path) -> tuple[float, int, str]:
    start = time.perf_counter()
    done = cli(tree, "--db", str(db), "import", str(export))
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"import exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return elapsed, count_rows(db), done.stderr.decode().strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side (default 3)")
    parser.add_argument("--source", type=Path, default=HERE, help="the tree to run (default this one)")
    parser.add_argument("--against", type=Path, help="also run the import from this tree (holding sidecar/)")
    options = parser.parse_args()
    export, events = export_file(options.source)
    trees = {str(options.source): options.source} | (
        {str(options.against): options.against} if options.against else {}
    )
    figures: dict[str, dict[str, list[float]]] = {name: {"first": [], "again": []} for name in trees}
    rows: dict[str, tuple[int, int, str]] = {}
    for _ in range(max(1, options.repeat)):
        for name, tree in trees.items():
            db = fresh_db("import_export.db")
            first, after_first, _ = timed_import(tree, db, export)
            again, after_again, line = timed_import(tree, db, export)
            figures[name]["first"].append(first)
            figures[name]["again"].append(again)
            rows[name] = (after_first, after_again, line.removeprefix(f"{export}: "))
    for name, runs in figures.items():
        after_first, after_again, line = rows[name]
        report(
            f"import of a {events}-event export, {name}",
            [
                (
                    "first import",
                    f"{median(runs['first']):.2f} s ({events / median(runs['first']):,.0f} events/s)",
                ),
                (
                    "same export again",
                    f"{median(runs['again']):.2f} s ({events / median(runs['again']):,.0f} events/s)",
                ),
                ("events stored after each", f"{after_first} / {after_again}"),
                ("second import reported", line),
            ],
        )


if __name__ == "__main__":
    main()
