"""The terminal's size, as shutil.get_terminal_size gives it ($COLUMNS/$LINES, else the
terminal on stdout, else 80 x 24) without importing shutil, which the daemon's start-up
(argparse's help formatter asks for the width) must not pay for."""

from __future__ import annotations

import contextlib
import os
import sys


def columns() -> int:
    return _size("COLUMNS", 0, 80)


def rows() -> int:
    return _size("LINES", 1, 24)


def _size(variable: str, index: int, fallback: int) -> int:
    value = 0
    with contextlib.suppress(KeyError, ValueError):
        value = int(os.environ[variable])
    if value <= 0 and sys.__stdout__ is not None:
        with contextlib.suppress(AttributeError, ValueError, OSError):
            value = os.get_terminal_size(sys.__stdout__.fileno())[index]
    return value if value > 0 else fallback
