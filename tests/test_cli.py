from __future__ import annotations

import asyncio
import sys

import pytest

from sidecar import cli


async def answer() -> int:
    return 7


def test_the_daemon_runs_on_uvloop_when_it_is_installed() -> None:
    async def loop_module() -> int:
        return 1 if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else 0

    assert cli.run(loop_module) == 1


def test_the_daemon_falls_back_to_the_standard_loop_without_uvloop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` fail
    assert cli.run(answer) == 7


def test_settings_follow_the_options(tmp_path: object) -> None:
    args = cli.build_parser().parse_args(
        ["--db", "~/x.db", "--durability", "full", "--max-line-bytes", "10", "--lock-timeout", "0.5"]
    )
    settings = cli.settings_from(args)
    assert settings.db_path.name == "x.db" and "~" not in str(settings.db_path)
    assert settings.durability == "full"
    assert settings.max_line_bytes == 10
    assert settings.busy_timeout_ms == 500
