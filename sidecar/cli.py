"""Command line: options, logging to stderr, the event loop, and exit codes."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from sidecar import __version__
from sidecar.config import DEFAULT_MAX_LINE_BYTES, Settings, default_db_path

EXIT_USAGE = 2

DESCRIPTION = """\
Store microagents session events. Reads newline-delimited JSON-RPC 2.0 from stdin
(events as notifications, storage.* requests), answers requests on stdout, logs on
stderr. Ends on end of input, SIGTERM, SIGINT or storage.shutdown, after committing
everything received.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="microagents-sidecar",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--db",
        type=Path,
        default=None,
        metavar="PATH",
        help="SQLite database file (env MICROAGENTS_DB; default ~/.microagents/sessions.db). "
        "Created 0600, with missing directories 0700.",
    )
    parser.add_argument(
        "--durability",
        choices=("normal", "full"),
        default="normal",
        help="normal: WAL with synchronous=NORMAL, as the Rust crate; a committed event "
        "survives the process being killed. full: synchronous=FULL, also survives power loss.",
    )
    parser.add_argument(
        "--max-line-bytes",
        type=_positive_int,
        default=DEFAULT_MAX_LINE_BYTES,
        metavar="N",
        help="longest input line accepted; longer lines are skipped and answered -32003 "
        f"(default {DEFAULT_MAX_LINE_BYTES})",
    )
    parser.add_argument(
        "--lock-timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long a write waits for another process's lock before the store counts as "
        "unavailable (-32001; the events are kept and retried) (default 5)",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="at exit, how long to keep retrying a failing store before giving up and "
        "exiting 1 with the events not stored named on stderr (default 10)",
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="warning",
        help="stderr log verbosity (default warning)",
    )
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(
        db_path=(args.db or default_db_path()).expanduser(),
        durability=args.durability,
        max_line_bytes=args.max_line_bytes,
        busy_timeout_ms=int(args.lock_timeout * 1000),
        shutdown_grace_s=args.shutdown_timeout,
    )


def configure_logging(level: str) -> None:
    """Our messages at the chosen level; libraries' (aiosqlite logs every call) at warning."""
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="microagents-sidecar: %(levelname)s: %(message)s",
    )
    logging.getLogger("sidecar").setLevel(level.upper())


def run(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run on uvloop where it is installed, else on the standard loop."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    settings = settings_from(args)
    from sidecar.server import serve

    try:
        return run(lambda: serve(settings))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130
    finally:
        logging.shutdown()
