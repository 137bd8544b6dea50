"""The viewer's lifecycle: check the store, bind, open the store, compose the core, say the
URL (the first line on stdout), serve until SIGINT/SIGTERM, then end the live streams, the
server, the subscriptions and the store, in that order. Nothing here writes to the store:
the ingest is composed but never started."""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import os
import secrets
import signal
import socket
import sys
import tempfile
import webbrowser
from collections.abc import Callable, Iterator
from pathlib import Path

import uvicorn

from sidecar.clock import Clock
from sidecar.config import Settings, missing_store
from sidecar.core import compose
from sidecar.store import StoreFailure, open_store
from sidecar.web.app import Viewer, build_app
from sidecar.web.guard import Guard, allowed_hosts
from sidecar.web.live import Live

log = logging.getLogger("sidecar")

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_STORE_FAILED = 3
GRACEFUL_S = 5  # what uvicorn waits for open responses at shutdown before cancelling them


class _NoOutput:
    """The hub's output: the viewer's streams take their events in their callbacks."""

    def write_line(self, line: bytes) -> None:
        pass

    @property
    def pending_bytes(self) -> int:
        return 0


class _Server(uvicorn.Server):
    """uvicorn's server with the signal handling of the daemon: a handler that only asks
    for the end (and ends the live streams, which would otherwise hold it open); no signal
    raised again afterwards, so the process exits 0."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # uvicorn's own: taken over by handle_signals, entered before the URL is out

    @contextlib.contextmanager
    def handle_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._exit)
        try:
            yield
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    def _exit(self) -> None:
        self.force_exit = self.should_exit  # a second signal: stop waiting for anything
        self.should_exit = True
        self._on_exit()


async def serve(settings: Settings, host: str, port: int, *, open_browser: bool = False) -> int:
    if (missing := missing_store(settings)) is not None:
        return _fail(f"no store at {missing}", EXIT_NOT_FOUND)
    try:
        sock = bind(host, port)
    except OSError as exc:
        return _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", EXIT_USAGE)
    store = open_store(settings)
    try:
        await store.open()
    except StoreFailure as exc:
        sock.close()
        await store.close()
        return _fail(str(exc), EXIT_STORE_FAILED)
    core = compose(store, settings, output=_NoOutput())
    live = Live(core.hub)
    bound_port = sock.getsockname()[1]
    token = secrets.token_urlsafe(32)
    app = Guard(
        build_app(Viewer(core.handlers, live, Clock())),
        token,
        allowed_hosts(host, bound_port),
        cookie=f"microagents_token_{bound_port}",  # cookies ignore ports: one per viewer
    )
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="off",
        ws="none",
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_S,
    )
    server = _Server(config, on_exit=live.stop)
    url = f"http://{url_host(host)}:{bound_port}/?token={token}"
    try:
        # From before the URL is out: whoever reads it and signals at once gets exit 0.
        with server.handle_signals(), contextlib.ExitStack() as cleanup:
            sys.stdout.write(url + "\n")
            sys.stdout.flush()
            log.info("viewing %s %s (Ctrl-C ends)", store.backend, store.location)
            if open_browser:
                page = cleanup.enter_context(redirect_page(url))
                asyncio.get_running_loop().run_in_executor(None, webbrowser.open, page.as_uri())
            await server.serve(sockets=[sock])
    finally:
        live.stop()
        if core.hub is not None:
            await core.hub.close()
        await store.close()
        sock.close()
    return EXIT_OK


@contextlib.contextmanager
def redirect_page(url: str) -> Iterator[Path]:
    """A file only this user can read that sends the browser to `url`: what `--open` opens,
    so the token is never in another process's arguments (as Jupyter does). Removed after."""
    fd, name = tempfile.mkstemp(prefix="microagents-viewer-", suffix=".html")  # mode 0600
    path = Path(name)
    target = html.escape(url, quote=True)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(
                f'<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url={target}">'
                f'<title>microagents viewer</title><p><a href="{target}">Open the viewer</a></p>\n'
            )
        yield path
    finally:
        path.unlink(missing_ok=True)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on `host`:`port` (0: a free port); OSError if impossible."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def url_host(host: str) -> str:
    """The host to write in the URL: a wildcard address is reached on loopback."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"microagents-sidecar: {message}\n")
    return code
