from __future__ import annotations

from pathlib import Path

import pytest

from sidecar import cli
from sidecar.config import Settings


def parse(*argv: str) -> Settings:
    parser = cli.build_parser()
    return cli.settings_from(parser.parse_args(argv), parser)


def test_settings_follow_the_options() -> None:
    settings = parse("--db", "~/x.db", "--durability", "full", "--max-line-bytes", "9", "--lock-timeout", "1")
    assert settings.backend == "sqlite"
    assert settings.db_path.name == "x.db" and "~" not in str(settings.db_path)
    assert settings.durability == "full"
    assert settings.max_line_bytes == 9
    assert settings.busy_timeout_ms == 1000


def test_the_jsonl_directory_comes_from_the_option_then_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MICROAGENTS_JSONL_DIR", str(tmp_path / "env"))
    assert parse("--backend", "jsonl").jsonl_dir == tmp_path / "env"
    assert parse("--backend", "jsonl", "--jsonl-dir", str(tmp_path / "opt")).jsonl_dir == tmp_path / "opt"


@pytest.mark.parametrize(
    "argv",
    [
        ["--backend", "jsonl", "--db", "x.db"],
        ["--backend", "memory", "--db", "x.db"],
        ["--jsonl-dir", "d"],
        ["--backend", "postgres-someday"],
    ],
)
def test_an_option_of_another_backend_is_a_usage_error(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(*argv)
    assert exited.value.code == 2
