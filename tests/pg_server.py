"""A throwaway PostgreSQL server for tests and benchmarks: initdb in a temporary
directory, listening on a Unix socket only, as an unprivileged user.

PostgreSQL refuses to run as root; as root, the server runs as `postgres` (the Debian
package's user), created if it is missing. Nothing here skips: a server that cannot
start is an error that names the step.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import asyncpg

BIN = Path(os.environ.get("MICROAGENTS_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
USER = "postgres"
WAIT_S = 60


class PostgresServer:
    def __init__(self, settings: dict[str, str] | None = None) -> None:
        """`settings`: server settings beyond the defaults (e.g. fsync=off for tests)."""
        self.settings = settings or {}
        self.root = Path(tempfile.mkdtemp(prefix="sidecar-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._owner = _server_user()

    def start(self) -> PostgresServer:
        """Start the server, creating its cluster the first time."""
        if not self.data.exists():
            if not (BIN / "postgres").exists():
                raise RuntimeError(
                    f"no PostgreSQL server in {BIN} "
                    "(apt-get install postgresql-15, or set MICROAGENTS_TEST_PG_BIN)"
                )
            if self._owner is not None:
                os.chown(self.root, self._owner.pw_uid, self._owner.pw_gid)
            self._run("initdb", "-D", self.data, "-U", USER, "--auth=trust", "-E", "UTF8", "--locale=C", "-N")
        options = " ".join(f"-c {key}={value}" for key, value in self.settings.items())
        options += f" -c listen_addresses='' -k {self.root}"
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", str(WAIT_S), "-o", options, "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; `fast` ends every session, as an administrator's restart does."""
        self._run("pg_ctl", "-D", self.data, "-w", "-t", str(WAIT_S), "-m", mode, "stop")

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@/{database}?host={self.root}"

    def create_database(self) -> str:
        """A new empty database; its DSN."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        self.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def drop_database(self, dsn: str) -> None:
        self.execute(f'DROP DATABASE "{database_of(dsn)}" WITH (FORCE)')

    def execute(self, sql: str) -> None:
        fetch(self.dsn(), sql)

    def _run(self, program: str, *args: str | Path) -> None:
        owner = self._owner
        result = subprocess.run(
            [str(BIN / program), *map(str, args)],
            cwd=self.root,
            capture_output=True,
            text=True,
            user=owner.pw_uid if owner else None,
            group=owner.pw_gid if owner else None,
            extra_groups=[] if owner else None,
            timeout=WAIT_S * 2,
            check=False,
        )
        if result.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(f"{program} failed ({result.returncode}): {result.stderr}\n{log}")


def _server_user() -> pwd.struct_passwd | None:
    """Who runs the server: None for the current user, unless that is root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
            check=True,
        )
        return pwd.getpwnam(USER)


def database_of(dsn: str) -> str:
    """The database a DSN made by PostgresServer.dsn names."""
    return dsn.split("?")[0].rsplit("/", 1)[1]


def fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Run one statement on its own connection, from synchronous code."""

    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn, timeout=WAIT_S)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(run())
