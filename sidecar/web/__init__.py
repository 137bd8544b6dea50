"""`microagents-sidecar web`: a local, read-only viewer of the store in the browser, live.
Needs the `web` extra (Starlette, uvicorn); the daemon never imports it."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable

from sidecar.config import Settings
from sidecar.web.serve import serve


def main(args: argparse.Namespace, settings: Settings) -> int:
    """Serve until SIGINT or SIGTERM; the exit code (0 then)."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(serve(settings, args.host, args.port, open_browser=args.open))
