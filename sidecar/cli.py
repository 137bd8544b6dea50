"""Command line: options, logging to stderr, the event loop, and exit codes."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sidecar import __version__, terminal
from sidecar.config import (
    BACKENDS,
    DEFAULT_MAX_LINE_BYTES,
    Settings,
    default_db_path,
    default_dsn,
    default_jsonl_dir,
)
from sidecar.loop import run

EXIT_USAGE = 2
EXAMPLES = "2h, 7d, 2026-06-07, 2026-06-07 16:03:21 +02:00"
FORMATS = ("table", "json", "nl", "csv", "markdown")
SHOW_FORMATS = ("text", "json", "nl", "markdown")
COMMAND_NAMES = frozenset(
    {
        "serve",
        "list",
        "show",
        "export",
        "import",
        "search",
        "fork",
        "delete",
        "prune",
        "stats",
        "tail",
        "web",
        "mcp",
    }
)
INSTALL = "pip install 'microagents-sidecar[{extra}]'"
# command: (module with `main(args, settings) -> exit code`, the extra it needs)
FRONT_ENDS = {"web": ("sidecar.web", "web"), "mcp": ("sidecar.mcp_server", "mcp")}
TTY_HINT = (
    "microagents-sidecar: reading JSON-RPC 2.0 messages from stdin, one per line (Ctrl-D ends); "
    "see microagents-sidecar --help for the commands (list, show, search, tail...)"
)
SESSION_HELP = "a session id, a unique start of one, or @last (the latest active)"

DESCRIPTION = """\
Store microagents session events. Reads newline-delimited JSON-RPC 2.0 from stdin
(events as notifications, storage.* requests), answers requests on stdout, logs on
stderr. Ends on end of input, SIGTERM, SIGINT or storage.shutdown, after committing
everything received.
"""


SUBCOMMANDS_HELP = """\
commands (serve is the default):
  serve            the daemon: events on stdin, answers on stdout
  list             sessions, newest activity first
  show SESSION     a session as a transcript (an id, its start, or @last)
  export [ID ...]  sessions as the NDJSON the daemon reads (all without ids)
  import FILE ...  NDJSON event files (- for stdin) into the store
  search QUERY     events whose text holds every word
  fork SESSION     copy a session under a new id, as `microag --fork`
  delete SESSION   remove a session (asks first on a terminal)
  prune            delete sessions idle longer than --older-than
  stats            what the store holds
  tail [SESSION]   follow what is written, as tail -f (--json: the events)
  web              a live viewer in the browser (extra: web)
  mcp              a Model Context Protocol server for editors and agents (extra: mcp)

exit codes: 0 success, 1 not found (or the daemon could not store everything),
2 usage, 3 the store failed
"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse builds a formatter for every option it adds, and the stock one asks shutil
    for the terminal width: shutil (with bz2 and lzma) would be imported by every start of
    the daemon, which never prints help. os answers the same question."""

    def __init__(
        self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None
    ) -> None:
        if width is None:
            width = terminal.columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


def build_parser(with_commands: bool = True) -> argparse.ArgumentParser:
    """The whole command line; without `with_commands`, the daemon's options only (each
    command's parser costs start-up time, and the daemon is spawned per agent run)."""
    parser = argparse.ArgumentParser(
        prog="microagents-sidecar",
        description=DESCRIPTION,
        epilog=SUBCOMMANDS_HELP,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_store_options(parser)
    _add_serve_options(parser)
    if not with_commands:  # the daemon's start: its options only (the epilog lists the commands)
        parser.set_defaults(command=None)
        return parser
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    # Each command takes the store options too, before or after its name; SUPPRESS keeps
    # a command's parser from overwriting what was given before the name. Parents hold
    # them (copying options is cheaper than adding them anew to each command, and the
    # daemon builds all of this at every start), in a group printed after the command's
    # own options; read-only commands leave out --durability.
    reading = argparse.ArgumentParser(add_help=False, formatter_class=_Formatter)
    _add_store_options(reading.add_argument_group("store options"), defaults=False, writes=False)
    writing = argparse.ArgumentParser(add_help=False, formatter_class=_Formatter)
    _add_store_options(writing.add_argument_group("store options"), defaults=False)

    def command(name: str, text: str, *, writes: bool = False) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            help=text,
            description=text,
            parents=[writing if writes else reading],
            formatter_class=_Formatter,
        )

    _add_serve_options(
        command("serve", "the daemon: events on stdin, answers on stdout (the default)", writes=True),
        defaults=False,
    )
    listing = command("list", "sessions, newest activity first")
    listing.add_argument(
        "--limit", type=_count, default=20, metavar="N", help="at most N sessions, 0 for all (default 20)"
    )
    listing.add_argument(
        "--since", metavar="WHEN", type=_time, help=f"only sessions active since then ({EXAMPLES})"
    )
    listing.add_argument("--before", metavar="WHEN", type=_time, help="only sessions last active before then")
    listing.add_argument("--model", metavar="TEXT", help="only sessions whose model holds it")
    listing.add_argument("--status", choices=("active", "stopped"), help="only active or stopped sessions")
    listing.add_argument("--query", metavar="TEXT", help="only sessions whose id, model, title... hold it")
    show = command("show", "a session as a transcript: turns, tool calls and results, usage")
    show.add_argument("session_id", metavar="SESSION", help=SESSION_HELP)
    show.add_argument("--full", action="store_true", help="tool output and long text uncut")
    export = command("export", "sessions as the NDJSON notifications the daemon reads")
    export.add_argument(
        "session_ids", metavar="SESSION", nargs="*", default=[], help="default: every session"
    )
    export.add_argument(
        "--html",
        metavar="DIR",
        type=Path,
        help="instead, a static site in DIR: an index and a page per session, opened from disk "
        "(needs the web extra)",
    )
    imports = command("import", "NDJSON event files into the store; rejected lines are reported", writes=True)
    imports.add_argument("files", metavar="FILE", nargs="+", help="files of events, - for stdin")
    search = command("search", "events whose text (prompts, answers, tool results) holds every word")
    search.add_argument("query", metavar="QUERY")
    search.add_argument("--session", dest="session_id", metavar="SESSION", help="search one session")
    search.add_argument(
        "--limit", type=_positive_int, default=20, metavar="N", help="at most N hits (default 20)"
    )
    fork = command("fork", "copy a session under a new id, then a session.fork event", writes=True)
    fork.add_argument("session_id", metavar="SESSION", help=SESSION_HELP)
    fork.add_argument("--new-id", dest="new_session_id", metavar="ID", help="default: a new UUID")
    delete = command("delete", "remove a session's events, summary and search entries", writes=True)
    delete.add_argument("session_id", metavar="SESSION", help=SESSION_HELP)
    delete.add_argument("-y", "--yes", action="store_true", help="do not ask (it asks only on a terminal)")
    prune = command("prune", "delete sessions last active longer ago than a duration", writes=True)
    prune.add_argument(
        "--older-than", metavar="DURATION", type=_duration, required=True, help="e.g. 30d, 12h, 2w"
    )
    prune.add_argument("--dry-run", action="store_true", help="list what would be deleted; delete nothing")
    stats = command("stats", "what the store holds")
    tail = command("tail", "follow the events any process writes to the store, until Ctrl-C")
    tail.add_argument("session_id", metavar="SESSION", nargs="?", help="default: every session")
    tail.add_argument(
        "--from",
        dest="from_seq",
        type=_seq,
        metavar="SEQ",
        help="start after this seq (0: from the first the store can replay); default: from now",
    )
    tail.add_argument("--deltas", action="store_true", help="print stream.delta text as it streams")
    web = command("web", "a local, read-only viewer in the browser, live (needs the web extra)")
    web.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    web.add_argument("--port", type=_port, default=8765, help="port (default 8765; 0 picks a free one)")
    web.add_argument("--open", action="store_true", help="open the viewer in the browser")
    command("mcp", "a Model Context Protocol server on stdio, read-only (needs the mcp extra)")
    for sub in (listing, search, stats, show):
        formats = "table|json|nl|csv|markdown" if sub is not show else "text|json|nl|markdown"
        sub.add_argument(
            "--format",
            choices=FORMATS if sub is not show else SHOW_FORMATS,
            metavar="FORMAT",
            help=f"{formats} (default {'table' if sub is not show else 'text'})",
        )
    for sub in (listing, search, stats, show, fork, delete, tail, prune):
        sub.add_argument(
            "--json", action="store_true", default=False, help="JSON for programs (--format json)"
        )
    for sub in (listing, search, stats, show, tail, prune, delete, fork):
        sub.add_argument("--utc", action="store_true", help="times in UTC (default: local time with offset)")
    for sub in (listing, search, stats, show):
        sub.add_argument(
            "--color",
            choices=("auto", "always", "never"),
            default="auto",
            help="colour (default auto: a terminal without NO_COLOR)",
        )
        sub.add_argument("--no-pager", dest="pager", action="store_false", help="never page long output")
    tail.add_argument(
        "--color", choices=("auto", "always", "never"), default="auto", help="colour (default auto)"
    )
    return parser


def _add_store_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, defaults: bool = True, writes: bool = True
) -> None:
    """The options naming and tuning the store. Without `defaults` (on a command's own
    parser), an option not repeated after the command name keeps its earlier value;
    without `writes`, only those that matter to a command that only reads."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=default("sqlite"),
        help="where sessions are kept: sqlite (one database file, the default), jsonl (one "
        "<session_id>.jsonl file per session, the Rust crate's layout), memory (gone at exit) "
        "or postgres (a server many sidecars share; see --dsn)",
    )
    parser.add_argument(
        "--db",
        type=Path,
        default=default(None),
        metavar="PATH",
        help="SQLite database file (env MICROAGENTS_DB; default ~/.microagents/sessions.db). "
        "Created 0600, with missing directories 0700.",
    )
    parser.add_argument(
        "--jsonl-dir",
        type=Path,
        default=default(None),
        metavar="DIR",
        help="directory of the jsonl backend (env MICROAGENTS_JSONL_DIR; default "
        "~/.microagents/sessions). Created 0700; files 0600.",
    )
    parser.add_argument(
        "--dsn",
        default=default(None),
        metavar="URI",
        help="PostgreSQL server of the postgres backend, postgresql://user@host/database "
        "(env MICROAGENTS_DSN; default: libpq's PG* variables). Tables are created there.",
    )
    if writes:
        parser.add_argument(
            "--durability",
            choices=("normal", "full"),
            default=default("normal"),
            help="normal: a committed event survives the process being killed (sqlite: WAL with "
            "synchronous=NORMAL, as the Rust crate). full: it also survives power loss "
            "(sqlite: synchronous=FULL; jsonl: one fsync per file per batch).",
        )
    parser.add_argument(
        "--lock-timeout",
        type=float,
        default=default(5.0),
        metavar="SECONDS",
        help="how long a write waits for another process's lock before the store counts as "
        "unavailable (-32001; the events are kept and retried) (default 5)",
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default=default("warning"),
        help="stderr log verbosity (default warning)",
    )


def _add_serve_options(parser: argparse.ArgumentParser, *, defaults: bool = True) -> None:
    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument(
        "--max-line-bytes",
        type=_positive_int,
        default=default(DEFAULT_MAX_LINE_BYTES),
        metavar="N",
        help="longest input line accepted; longer lines are skipped and answered -32003 "
        f"(default {DEFAULT_MAX_LINE_BYTES})",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=float,
        default=default(10.0),
        metavar="SECONDS",
        help="at exit, how long to keep retrying a failing store before giving up and "
        "exiting 1 with the events not stored named on stderr (default 10)",
    )


def _positive_int(text: str) -> int:
    value = _whole_number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, such as 50, not {text!r}")
    return value


def _count(text: str) -> int:
    value = _whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number (0 for all), such as 50, not {text!r}")
    return value


def _seq(text: str) -> int:
    value = _whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a seq of 0 or more, such as 1200, not {text!r}")
    return value


def _port(text: str) -> int:
    value = _whole_number(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, such as 8765, not {text!r}")
    return value


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, such as 50, not {text!r}") from None


def _time(text: str) -> str:
    """Checked now (the error names the option); read by the command with its clock."""
    from sidecar.clock import Clock

    try:
        Clock().parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _duration(text: str) -> int:
    """A duration such as 30d, as seconds."""
    from sidecar.clock import duration_s

    try:
        return duration_s(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def settings_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Settings:
    """Settings from parsed options; an option meant for another backend is a usage error
    (exit 2) rather than silently ignored."""
    if args.db is not None and args.backend != "sqlite":
        parser.error(f"--db is an option of the sqlite backend, not of {args.backend}")
    if args.jsonl_dir is not None and args.backend != "jsonl":
        parser.error(f"--jsonl-dir is an option of the jsonl backend, not of {args.backend}")
    if args.dsn is not None and args.backend != "postgres":
        parser.error(f"--dsn is an option of the postgres backend, not of {args.backend}")
    if args.backend == "postgres":
        try:
            import asyncpg  # noqa: F401  (imported here only to say what is missing)
        except ImportError:
            parser.error("the postgres backend needs asyncpg: pip install 'microagents-sidecar[postgres]'")
    return Settings(
        backend=args.backend,
        db_path=(args.db or default_db_path()).expanduser(),
        jsonl_dir=(args.jsonl_dir or default_jsonl_dir()).expanduser(),
        dsn=args.dsn or default_dsn(),
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


# glibc gives each thread that allocates an arena of its own, and what is freed in one
# stays there: the store's thread and the stdio threads each kept megabytes the others
# could not reuse (peak RSS through 5 M events 101 MB; one arena for all: 89 MB). But with
# one arena, the event loop's allocations and the store's thread's (SQLite's, while it
# inserts) wait for each other on its lock: two arenas cost 2.5 MB of peak and bring 9 %
# more events/s and 7 % less CPU per event (bench/README.md).
ARENAS = 2
M_ARENA_MAX = -8  # mallopt's parameter numbers, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
# glibc raises its mmap threshold to the size of each mmapped block freed (up to 32 MiB),
# after which large buffers come from the heap and their holes stay resident. A fixed
# threshold (which also keeps the trim threshold at its 128 KiB) maps them and gives them
# back on free: peak RSS through 5 M events 68.8 -> 55.4 MB at the same ingest rate.
MMAP_THRESHOLD_BYTES = 64 * 1024


def tune_malloc(arenas: int = ARENAS, mmap_threshold: int = MMAP_THRESHOLD_BYTES) -> None:
    """At most `arenas` glibc malloc arenas and a fixed mmap threshold, each unless its
    MALLOC_*_ variable already chose. Before the threads start: a thread keeps the arena
    its first allocation got."""
    if sys.platform != "linux":
        return
    import ctypes  # here, not at the top: the commands need no tuning

    with contextlib.suppress(OSError, AttributeError):  # a libc without mallopt
        mallopt = ctypes.CDLL(None).mallopt
        if "MALLOC_ARENA_MAX" not in os.environ:
            mallopt(M_ARENA_MAX, arenas)
        if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
            mallopt(M_MMAP_THRESHOLD, mmap_threshold)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(with_commands=not COMMAND_NAMES.isdisjoint(arguments))
    args, unknown = parser.parse_known_args(arguments)
    if unknown:  # the whole command line says what is wrong (an unknown command, say)
        parser = build_parser()
        args = parser.parse_args(arguments)
    configure_logging(args.log_level)
    settings = settings_from(args, parser)
    try:
        if args.command in (None, "serve"):
            from sidecar.server import serve

            if sys.stdin.isatty():  # a person, not a runtime: say what it waits for
                print(TTY_HINT, file=sys.stderr)
            tune_malloc()

            return run(lambda: serve(settings))
        if args.command in FRONT_ENDS:  # servers of their own, each behind its extra
            module, extra = FRONT_ENDS[args.command]
            try:
                front_end = importlib.import_module(module)
            except ImportError as exc:
                parser.error(f"{args.command} needs the {extra} extra ({exc}): {INSTALL.format(extra=extra)}")
            code: int = front_end.main(args, settings)
            return code
        from sidecar.commands import run_command

        return run(lambda: run_command(args, settings))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130
    finally:
        logging.shutdown()
