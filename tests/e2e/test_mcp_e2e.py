"""`microagents-sidecar mcp` as editors run it: the real server spawned by the official MCP
clients (the Python SDK's stdio client, and once the TypeScript SDK's from Node) over a real
store of several sessions written by the real daemon."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from daemon import Daemon
from events import init, prompt, vectors
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.client import Client
from mcp.shared.exceptions import MCPError
from mcp_sessions import at, long_session

from sidecar.mcp_server.paging import estimate_tokens
from sidecar.mcp_server.tools import PAGE_TOKENS

WAIT_S = 20.0  # every wait is bounded
REPO = Path(__file__).resolve().parents[2]
NODE_CLIENT = REPO / "tests" / "mcp_node"
LONG = "long-6002"  # 1,500 turns: 6,002 events
LONG_TURNS = 1_500
EXAMPLE = "9b2f0c64-1d2e-4f7a-8c11-3e5d7a9b0c21"  # a session of tests/data/events.ndjson
URI_PREFIX = "microagents://sessions/"
# resources/subscribe is how clients of the 2025 revisions watch a resource; tested on purpose.
SUBSCRIBE_2025 = pytest.mark.filterwarnings("ignore:resources/subscribe is removed")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every protocol generation's example sessions and a long session, written by the daemon."""
    db = tmp_path_factory.mktemp("mcp") / "sessions.db"
    with Daemon(db) as daemon:
        # The examples last: a search right after a flood sees what the index holds and the
        # newest events it has not reached yet (sidecar/store/sqlite_search.py).
        daemon.send(*long_session(LONG, LONG_TURNS))
        daemon.send(*vectors())
        assert daemon.result("storage.flush")["seq"] >= 4 * LONG_TURNS + 2
        assert daemon.close() == 0
    return db


def server(db: Path) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=["-m", "sidecar", "--db", str(db), "mcp"], env=dict(os.environ), cwd=REPO
    )


@asynccontextmanager
async def connected(
    db: Path, notes: anyio.abc.ObjectSendStream[Any] | None = None
) -> AsyncIterator[ClientSession]:
    async def on_message(message: Any) -> None:
        if notes is not None:
            await notes.send(message)

    with anyio.fail_after(WAIT_S):
        async with (
            stdio_client(server(db)) as (read, write),
            ClientSession(read, write, message_handler=on_message) as session,
        ):
            await session.initialize()
            yield session


def text(result: types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


def rows(db: Path) -> int:
    with sqlite3.connect(db) as connection:
        count: int = connection.execute("SELECT count(*) FROM events").fetchone()[0]
    return count


async def test_a_client_is_offered_four_read_only_tools_and_a_session_template(store: Path) -> None:
    with anyio.fail_after(WAIT_S):
        async with stdio_client(server(store)) as (read, write), ClientSession(read, write) as session:
            initialized = await session.initialize()
            assert initialized.protocol_version == "2025-11-25"
            assert initialized.server_info.name == "microagents-sidecar"
            assert (
                initialized.capabilities.resources is not None
                and initialized.capabilities.resources.subscribe
            )
            tools = (await session.list_tools()).tools
            templates = (await session.list_resource_templates()).resource_templates
    assert [t.name for t in tools] == ["list_sessions", "search_sessions", "read_session", "session_info"]
    assert all(t.annotations is not None and t.annotations.read_only_hint for t in tools)
    assert all(t.output_schema is not None and t.description for t in tools)
    assert [t.uri_template for t in templates] == [URI_PREFIX + "{session_id}"]


async def test_list_sessions_gives_every_session_newest_first_in_pages(store: Path) -> None:
    async with connected(store) as session:
        first = await session.call_tool("list_sessions", {"limit": 2})
        assert first.structured_content is not None
        listed = [s["session_id"] for s in first.structured_content["sessions"]]
        cursor = first.structured_content["next_cursor"]
        while cursor is not None:
            assert f'cursor "{cursor}"' in text(first)
            first = await session.call_tool("list_sessions", {"limit": 2, "cursor": cursor})
            assert first.structured_content is not None
            listed += [s["session_id"] for s in first.structured_content["sessions"]]
            cursor = first.structured_content["next_cursor"]
    ids = {json.loads(line)["params"]["session_id"] for line in vectors()} | {LONG}
    assert sorted(listed) == sorted(ids)
    assert listed[0] == "1d2e3f40-aaaa-4bbb-8ccc-ddddeeeeffff"  # the latest activity of the examples


async def test_search_sessions_finds_every_word_with_session_seq_and_snippet(store: Path) -> None:
    async with connected(store) as session:
        result = await session.call_tool("search_sessions", {"query": "two files"})
    assert result.structured_content is not None
    hits = result.structured_content["hits"]
    assert {h["session_id"] for h in hits} == {EXAMPLE}
    assert all(h["seq"] > 0 and h["timestamp"] and "[" in h["snippet"] for h in hits)
    assert "assistant.response" in text(result)


async def test_read_session_is_a_transcript_with_tool_calls_paired_with_results(store: Path) -> None:
    async with connected(store) as session:
        result = await session.call_tool("read_session", {"session_id": EXAMPLE})
    assert result.structured_content is not None
    assert result.structured_content["next_cursor"] is None
    transcript = text(result)
    assert "> List the files in src/ and summarise them." in transcript
    assert transcript.index("**Tool call** `list_dir`") < transcript.index("lib.rs\nmain.rs")
    assert "There are two files: lib.rs and main.rs" in transcript  # the deltas, folded


async def test_session_info_summarises_a_session_by_the_start_of_its_id(store: Path) -> None:
    async with connected(store) as session:
        result = await session.call_tool("session_info", {"session_id": EXAMPLE[:8]})
    assert result.structured_content is not None
    summary = result.structured_content["session"]
    assert (summary["session_id"], summary["status"], summary["success"]) == (EXAMPLE, "stopped", True)
    assert result.structured_content["uri"] == URI_PREFIX + EXAMPLE


async def test_a_long_session_is_read_page_by_page_to_its_end_and_nothing_is_lost(store: Path) -> None:
    pages: list[dict[str, Any]] = []
    async with connected(store) as session:
        result = await session.call_tool("read_session", {"session_id": LONG})
        while True:
            assert not result.is_error, text(result)
            assert result.structured_content is not None
            pages.append(result.structured_content)
            cursor = result.structured_content["next_cursor"]
            if cursor is None:
                break
            assert f'cursor "{cursor}"' in text(result)  # named where a model reads
            result = await session.call_tool("read_session", {"cursor": cursor})
    assert len(pages) > 3
    assert all(estimate_tokens(page["text"]) <= PAGE_TOKENS for page in pages)
    assert [p["first_event"] for p in pages[1:]] == [p["last_event"] + 1 for p in pages[:-1]]
    assert pages[-1]["last_event"] == pages[-1]["total_events"] - 1 == 4 * LONG_TURNS + 1
    whole = "".join(page["text"] for page in pages)
    for n in range(1, LONG_TURNS + 1):
        assert whole.count(f"question-{n} ") == 1 and whole.count(f"answer-{n}:") == 1, n
        assert whole.count(f"contents of file {n}\n") == 1, n


async def test_a_resource_is_a_session_as_markdown_and_the_list_pages_through_sessions(store: Path) -> None:
    async with connected(store) as session:
        listed = await session.list_resources()
        read = await session.read_resource(URI_PREFIX + EXAMPLE)
        with pytest.raises(MCPError) as unknown:
            await session.read_resource(URI_PREFIX + "no-such-session")
    assert URI_PREFIX + EXAMPLE in {r.uri for r in listed.resources}
    assert listed.next_cursor is None  # six sessions: one page
    contents = read.contents[0]
    assert isinstance(contents, types.TextResourceContents)
    assert contents.mime_type == "text/markdown"
    assert contents.text.startswith(f"# Session `{EXAMPLE}`")
    assert unknown.value.code == -32002


@SUBSCRIBE_2025
async def test_a_subscribed_client_is_told_when_a_daemon_writes_to_the_session(tmp_path: Path) -> None:
    db = tmp_path / "sessions.db"
    send, notes = anyio.create_memory_object_stream[Any](100)
    with Daemon(db) as writer:
        writer.send(init("live"))
        writer.result("storage.flush")
        async with connected(db, send) as session:
            await session.subscribe_resource(URI_PREFIX + "live")
            writer.send(init("elsewhere"), prompt("live", at(5), text="are you there?"))
            writer.result("storage.flush")
            with anyio.fail_after(WAIT_S):
                note = await notes.receive()
            read = await session.read_resource(URI_PREFIX + "live")
        assert writer.close() == 0
    assert isinstance(note, types.ResourceUpdatedNotification)
    assert note.params.uri == URI_PREFIX + "live"
    contents = read.contents[0]
    assert isinstance(contents, types.TextResourceContents) and "are you there?" in contents.text


async def test_a_2026_client_listens_for_updates_to_a_session_a_daemon_writes(tmp_path: Path) -> None:
    db = tmp_path / "sessions.db"
    with Daemon(db) as writer:
        writer.send(init("live"))
        writer.result("storage.flush")
        with anyio.fail_after(WAIT_S):
            async with Client(server(db)) as client:
                assert client.protocol_version == "2026-07-28"
                async with client.listen(resource_subscriptions=[URI_PREFIX + "live"]) as updates:
                    writer.send(prompt("live", at(5), text="still there?"))
                    writer.result("storage.flush")
                    event = await updates.__anext__()
        assert writer.close() == 0
    assert getattr(event, "uri", None) == URI_PREFIX + "live"


async def test_an_unknown_session_is_a_tool_error_a_model_can_act_on(store: Path) -> None:
    async with connected(store) as session:
        result = await session.call_tool("read_session", {"session_id": "no-such-session"})
        bad = await session.call_tool("list_sessions", {"limit": 0})
    assert result.is_error and "list_sessions" in text(result)
    assert bad.is_error and "limit" in text(bad)


async def test_an_unknown_tool_is_a_protocol_error(store: Path) -> None:
    async with connected(store) as session:
        with pytest.raises(MCPError) as error:
            await session.call_tool("delete_session", {"session_id": EXAMPLE})
    assert error.value.code == types.INVALID_PARAMS


@SUBSCRIBE_2025
async def test_nothing_a_client_does_changes_the_store(store: Path) -> None:
    before = rows(store)
    async with connected(store) as session:
        for name, arguments in [
            ("list_sessions", {}),
            ("search_sessions", {"query": "files"}),
            ("read_session", {"session_id": EXAMPLE}),
            ("session_info", {"session_id": EXAMPLE}),
        ]:
            assert not (await session.call_tool(name, arguments)).is_error
        await session.subscribe_resource(URI_PREFIX + EXAMPLE)
    assert rows(store) == before


def test_the_server_exits_0_when_the_client_closes_stdin_and_writes_only_json_rpc(store: Path) -> None:
    with Daemon(store, "mcp") as mcp:
        hello = mcp.request(
            "initialize",
            {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        )
        assert hello["result"]["protocolVersion"] == "2025-06-18"
        assert mcp.no_output()
        assert mcp.close() == 0


def test_a_missing_store_exits_1_naming_it_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "sessions.db"
    with Daemon(missing, "mcp") as mcp:
        assert mcp.close() == 1
        assert f"no store at {missing}" in mcp.stderr
    assert not missing.parent.exists()


def test_the_typescript_sdk_client_lists_the_tools_and_reads_a_session(store: Path) -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to run the TypeScript SDK's client")
    if not (NODE_CLIENT / "node_modules" / "@modelcontextprotocol" / "sdk").exists():
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund"], cwd=NODE_CLIENT, check=True, timeout=300
        )
    done = subprocess.run(
        ["node", "client.mjs", EXAMPLE, sys.executable, "-m", "sidecar", "--db", str(store), "mcp"],
        cwd=NODE_CLIENT,
        capture_output=True,
        timeout=WAIT_S * 3,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr.decode()
    answer = json.loads(done.stdout)
    assert answer["server"]["name"] == "microagents-sidecar"
    assert answer["tools"] == ["list_sessions", "search_sessions", "read_session", "session_info"]
    assert answer["read"]["structuredContent"]["session_id"] == EXAMPLE
    assert "list_dir" in answer["read"]["content"][0]["text"]
    assert answer["unknown"]["isError"] is True
