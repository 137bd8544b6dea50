"""`microagents-sidecar web`: a local, read-only viewer of the store in the browser, live.
Needs the `web` extra (Starlette, uvicorn); the daemon never imports it."""

from __future__ import annotations

import argparse

from sidecar.config import Settings
from sidecar.loop import run
from sidecar.web.serve import serve


def main(args: argparse.Namespace, settings: Settings) -> int:
    """Serve until SIGINT or SIGTERM; the exit code (0 then)."""
    return run(lambda: serve(settings, args.host, args.port, open_browser=args.open))
