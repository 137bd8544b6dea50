"""`microagents-sidecar mcp`: a read-only Model Context Protocol server on stdio over the
store. Needs the mcp extra (the SDK); the daemon's start-up never imports this package."""

from sidecar.mcp_server.server import main

__all__ = ["main"]
