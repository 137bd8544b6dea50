"""sidecar/loop.py: every front-end's event loop."""

from __future__ import annotations

import asyncio
import sys

import pytest

from sidecar.loop import run


async def answer() -> int:
    return 7


def test_the_daemon_runs_on_uvloop_when_it_is_installed() -> None:
    async def loop_module() -> int:
        return 1 if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else 0

    assert run(loop_module) == 1


def test_the_daemon_falls_back_to_the_standard_loop_without_uvloop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` fail
    assert run(answer) == 7
