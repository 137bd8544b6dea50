"""A PostgreSQL server that can go quiet: a proxy in front of the test server's Unix socket
that stops passing bytes either way when frozen, closing nothing, as a server does that
hangs in the middle of a command (or a network that drops packets without a reset)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

SOCKET = ".s.PGSQL.5432"


class QuietableProxy:
    def __init__(self, server_directory: Path, directory: Path) -> None:
        """Forward `directory`'s socket to the server listening in `server_directory`."""
        self.target = server_directory / SOCKET
        self.directory = directory
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._streams: list[asyncio.StreamWriter] = []

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.directory}"

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._server = await asyncio.start_unix_server(self._client, path=str(self.directory / SOCKET))

    def go_quiet(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def close(self) -> None:
        self._flowing.set()
        if self._server is not None:
            self._server.close()
        for stream in self._streams:
            stream.close()

    async def _client(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_unix_connection(str(self.target))
        self._streams += [client_writer, server_writer]
        await asyncio.gather(
            self._pass(client_reader, server_writer), self._pass(server_reader, client_writer)
        )

    async def _pass(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                await self._flowing.wait()  # quiet: held, nothing closed
                sink.write(data)
                await sink.drain()
        sink.close()
