"""Where the commands' output goes: formats for records, colour, and the pager.

Records (sessions, hits, stats) print as a table that fits the terminal (rich), JSON, one
JSON object per line (`nl`), CSV or a markdown table. On a terminal, output longer than
the screen goes through the pager as git does: $MICROAGENTS_PAGER, else $PAGER, else
`less -FRX`; `--no-pager` or a pager of "" or "cat" turns it off. Colour follows
`--color auto|always|never`; auto means a terminal and no NO_COLOR. Imported by the
commands only (rich costs start-up time the daemon does not pay).
"""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import msgspec

from sidecar import terminal
from sidecar.render import visible

FORMATS = ("table", "json", "nl", "csv", "markdown")
DEFAULT_PAGER = "less -FRX"
GAP = 2  # spaces between table columns


class Column(msgspec.Struct, frozen=True):
    key: str  # the record's field
    header: str
    # On a narrow terminal a column with a `shrink` rank is cut (with an ellipsis) down to
    # `min_width`, the lowest rank first; the others keep their widest cell.
    shrink: int | None = None
    min_width: int = 8


class Output:
    def __init__(self, fmt: str = "table", color: str = "auto", pager: bool = True) -> None:
        self.format = fmt
        self.terminal = sys.stdout.isatty()
        if color == "auto":
            self.color = self.terminal and not os.environ.get("NO_COLOR")
        else:
            self.color = color == "always"
        self.pager = pager and self.terminal

    def records(
        self,
        columns: Sequence[Column],
        shown: Sequence[dict[str, str]],
        raw: Any,
        *,
        empty: str = "",
        footer: str | None = None,
    ) -> None:
        """`shown`: each record's cells as people read them (table, csv, markdown);
        `raw`: the records as programs read them (json, nl). A table says `empty` when
        there are none, and ends with the `footer` line."""
        if self.format == "json":
            self.text(msgspec.json.encode(raw).decode())
        elif self.format == "nl":  # no records: no line at all (an empty line is not NDJSON)
            if raw:
                self.text("\n".join(msgspec.json.encode(record).decode() for record in raw))
        elif self.format == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow([column.header for column in columns])
            cell = _one_line if self.terminal else str  # a file gets the data as it is
            writer.writerows([[cell(row.get(column.key, "")) for column in columns] for row in shown])
            self.text(buffer.getvalue().rstrip("\n"))
        elif self.format == "markdown":
            self.text(markdown_table(columns, shown))
        elif not shown:
            self.text(empty)
        else:
            self.text(self.table(columns, shown) + ("" if footer is None else "\n" + footer))

    def table(self, columns: Sequence[Column], rows: Sequence[dict[str, str]]) -> str:
        """Columns that fit the terminal's width: cells are cut with an ellipsis, never
        wrapped, never dropped; off a terminal nothing is cut."""
        from rich.table import Table
        from rich.text import Text

        cells = [[_one_line(row.get(column.key, "")) for column in columns] for row in rows]
        widths = [
            max([len(column.header), *(len(row[i]) for row in cells)]) for i, column in enumerate(columns)
        ]
        if self.terminal:
            widths = fitted(columns, widths, terminal.columns() - GAP * (len(columns) - 1))
        table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
        for column, width in zip(columns, widths, strict=True):
            table.add_column(column.header, width=width, no_wrap=True, overflow="ellipsis")
        for row_cells in cells:  # as Text: a cell's brackets are not markup
            table.add_row(*map(Text, row_cells))
        return self.render(table)

    def render(self, renderable: Any) -> str:
        """Rich output as text: the terminal's width there, unbounded elsewhere."""
        from rich.console import Console

        width = terminal.columns() if self.terminal else 1_000_000
        buffer = io.StringIO()
        console = Console(
            file=buffer,
            width=width,
            force_terminal=self.color,
            no_color=not self.color,
            color_system="standard" if self.color else None,
            highlight=False,
            soft_wrap=not self.terminal,
        )
        console.print(renderable)
        return "\n".join(line.rstrip() for line in buffer.getvalue().rstrip("\n").split("\n"))

    def text(self, text: str) -> None:
        """Print `text`; through the pager when on a terminal it is taller than the screen."""
        if self.pager and _rows_of(text, terminal.columns()) >= terminal.rows():
            command = os.environ.get("MICROAGENTS_PAGER", os.environ.get("PAGER", DEFAULT_PAGER))
            if command.strip() not in ("", "cat"):
                _page(command, text)
                return
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def fitted(columns: Sequence[Column], widths: list[int], available: int) -> list[int]:
    """`widths` cut to `available` in all: shrinkable columns first, lowest rank first,
    each down to its minimum."""
    widths = list(widths)
    excess = sum(widths) - available
    ranked = sorted((c.shrink, i) for i, c in enumerate(columns) if c.shrink is not None)
    for _, index in ranked:
        if excess <= 0:
            break
        cut = min(excess, max(0, widths[index] - columns[index].min_width))
        widths[index] -= cut
        excess -= cut
    return widths


def markdown_table(columns: Sequence[Column], rows: Sequence[dict[str, str]]) -> str:
    def cell(text: str) -> str:
        return _one_line(text).replace("\\", "\\\\").replace("|", "\\|")

    lines = ["| " + " | ".join(column.header for column in columns) + " |"]
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    lines += ["| " + " | ".join(cell(row.get(column.key, "")) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def _one_line(text: str) -> str:
    """A cell on one line, its terminal controls shown as escapes (a stored prompt or id
    must not drive the terminal)."""
    return visible(" ".join(text.split()) if "\n" in text or "\r" in text or "\t" in text else text)


def _page(command: str, text: str) -> None:
    """As git pages: through the shell, LESS=FRX unless set (colour shown, short output
    not paged), and Ctrl-C left to the pager."""
    sys.stdout.flush()
    environment = {**os.environ, "LESS": os.environ.get("LESS", "FRX")}
    try:
        pager = subprocess.Popen(command, shell=True, stdin=subprocess.PIPE, env=environment)
    except OSError:
        sys.stdout.write(text + "\n")
        return
    assert pager.stdin is not None
    interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        pager.stdin.write((text + "\n").encode())
        pager.stdin.close()
    except BrokenPipeError:  # the reader quit the pager early
        pass
    finally:
        pager.wait()
        signal.signal(signal.SIGINT, interrupt)


def _rows_of(text: str, columns: int) -> int:
    """The terminal rows `text` takes, its long lines wrapped (escape codes counted: a
    little more paging, never less)."""
    return sum(max(1, -(-len(line) // max(1, columns))) for line in text.split("\n"))
