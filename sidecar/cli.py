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
from sidecar.config import BACKENDS, DEFAULT_MAX_LINE_BYTES, Settings, default_db_path, default_jsonl_dir

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
        "--backend",
        choices=BACKENDS,
        default="sqlite",
        help="where sessions are kept: sqlite (one database file, the default), jsonl (one "
        "<session_id>.jsonl file per session, the Rust crate's layout) or memory (gone at exit)",
    )
    parser.add_argument(
        "--db",
        type=Path,
        default=None,
        metavar="PATH",
        help="SQLite database file (env MICROAGENTS_DB; default ~/.microagents/sessions.db). "
        "Created 0600, with missing directories 0700.",
    )
    parser.add_argument(
        "--jsonl-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="directory of the jsonl backend (env MICROAGENTS_JSONL_DIR; default "
        "~/.microagents/sessions). Created 0700; files 0600.",
    )
    parser.add_argument(
        "--durability",
        choices=("normal", "full"),
        default="normal",
        help="normal: a committed event survives the process being killed (sqlite: WAL with "
        "synchronous=NORMAL, as the Rust crate). full: it also survives power loss "
        "(sqlite: synchronous=FULL; jsonl: one fsync per file per batch).",
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


def settings_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Settings:
    """Settings from parsed options; an option meant for another backend is a usage error
    (exit 2) rather than silently ignored."""
    if args.db is not None and args.backend != "sqlite":
        parser.error(f"--db is an option of the sqlite backend, not of {args.backend}")
    if args.jsonl_dir is not None and args.backend != "jsonl":
        parser.error(f"--jsonl-dir is an option of the jsonl backend, not of {args.backend}")
    return Settings(
        backend=args.backend,
        db_path=(args.db or default_db_path()).expanduser(),
        jsonl_dir=(args.jsonl_dir or default_jsonl_dir()).expanduser(),
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
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    settings = settings_from(args, parser)
    from sidecar.server import serve

    try:
        return run(lambda: serve(settings))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130
    finally:
        logging.shutdown()
