"""The `web` command through the real entry point: what it refuses before serving, and its end."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from daemon import Daemon
from events import init


def test_web_on_a_missing_store_says_so_and_creates_none(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.db"
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "--db", str(missing), "web", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert f"no store at {missing}" in done.stderr
    assert not missing.exists()


def test_web_prints_its_url_first_and_ctrl_c_ends_it_with_exit_0(db: Path) -> None:
    with Daemon(db) as writer:
        writer.send(init("s"))
        assert writer.close() == 0
    with Daemon(db, "web", "--port", "0") as viewer:
        url = viewer.read_raw_line().decode()
        assert url.startswith("http://127.0.0.1:") and "/?token=" in url and url.endswith("\n")
        viewer.signal(signal.SIGINT)
        assert viewer.wait() == 0, viewer.stderr
