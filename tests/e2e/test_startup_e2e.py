"""What the daemon imports on its way to work: its own path only (bench/startup.py times it)."""

from __future__ import annotations

from pathlib import Path

from daemon import Daemon
from events import init, prompt

# Only a command, another front-end or another backend needs these; shutil (with bz2 and
# lzma) is what argparse's stock help formatter would pull in.
NOT_ON_THE_DAEMONS_PATH = {
    "sidecar.commands",
    "sidecar.client",
    "sidecar.render",
    "sidecar.output",
    "sidecar.clock",
    "sidecar.transcript",
    "sidecar.markdown",
    "rich",
    "sidecar.store.jsonl",
    "sidecar.store.memory",
    "sidecar.store.postgres",
    "asyncpg",
    "mcp",
    "sidecar.mcp_server",
    "shutil",
    "bz2",
    "lzma",
}


def imported(stderr: str) -> set[str]:
    """The modules named by the interpreter's import profile (-X importtime) on stderr."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and not line.endswith("imported package")
    }


def test_the_daemon_imports_no_command_front_end_or_other_backend(db: Path) -> None:
    with Daemon(db, env={"PYTHONPROFILEIMPORTTIME": "1"}) as daemon:
        assert daemon.result("storage.info")["backend"] == "sqlite"
        daemon.send(init("s"), prompt("s", "2026-06-07T14:03:21.000000002Z"))
        assert daemon.result("storage.stats")["persisted"] == 2
        assert daemon.close() == 0
        modules = imported(daemon.stderr)
    assert {"sidecar.server", "sidecar.store.sqlite"} <= modules  # the profile was read
    assert modules & NOT_ON_THE_DAEMONS_PATH == set()
