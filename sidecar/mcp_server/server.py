"""The MCP wire, on the official SDK: tools, session resources and their subscriptions,
over stdio, until the client closes stdin. Translates only: the tools, paging and
watching are the sibling modules', the store and hub the core's.

The SDK negotiates the protocol revision: the initialize handshake (2024-11-05 to
2025-11-25) and the stateless 2026-07-28 revision, whose resource updates arrive on
`subscriptions/listen` streams rather than after `resources/subscribe`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any
from urllib.parse import unquote

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.session import ServerSession
from mcp.server.stdio import stdio_server
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ResourceUpdated
from mcp.shared.exceptions import MCPError

from sidecar import __version__
from sidecar.config import Settings, missing_store
from sidecar.core import Core, compose
from sidecar.handlers import ListSessionsParams
from sidecar.mcp_server.paging import BadCursor, SessionsCursor, decode_cursor, encode_cursor, page_sessions
from sidecar.mcp_server.tools import (
    CLOCK,
    EVERYTHING,
    RESOURCE_TOKENS,
    TOOLS,
    URI_PREFIX,
    ToolError,
    Tools,
    ToolSpec,
    UnknownTool,
    schema,
    session_uri,
)
from sidecar.mcp_server.watch import Watcher
from sidecar.store import StoreFailure, open_store
from sidecar.store.base import SessionSummary

log = logging.getLogger("sidecar")

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_STORE_FAILED = 3
RESOURCE_NOT_FOUND = -32002  # the MCP specification's code for a resource that does not exist
RESOURCES_PER_PAGE = 50
TEMPLATE = URI_PREFIX + "{session_id}"
MARKDOWN = "text/markdown"
INSTRUCTIONS = (
    "Recorded sessions of coding agents (microagents): prompts, answers, tool calls and their "
    "results. Find sessions with list_sessions or search_sessions, then read_session (paged: "
    "follow next_cursor) or session_info. Read-only."
)

Context = ServerRequestContext[Any]


class _NoLines:
    """The hub's output: every notice here is an MCP notification, sent by the watcher."""

    def write_line(self, line: bytes) -> None:  # never called: the watcher's render writes nothing
        pass

    @property
    def pending_bytes(self) -> int:
        return 0


def main(args: argparse.Namespace, settings: Settings) -> int:
    """`microagents-sidecar mcp`: 0 once the client closes stdin, 1 without a store, 3 if it fails."""
    missing = missing_store(settings)
    if missing is not None:
        sys.stderr.write(f"microagents-sidecar: no store at {missing}\n")
        return EXIT_NOT_FOUND
    from sidecar.loop import run

    return run(lambda: serve(settings))


async def serve(settings: Settings) -> int:
    store = open_store(settings)
    try:
        await store.open()
    except StoreFailure as exc:
        await store.close()
        sys.stderr.write(f"microagents-sidecar: {exc}\n")
        return EXIT_STORE_FAILED
    core = compose(store, settings, output=_NoLines())  # the ingest is never started: nothing is written
    assert core.hub is not None
    watcher = Watcher(core.hub)
    app = McpApp(core, watcher)
    try:
        async with stdio_server() as (read_stream, write_stream), anyio.create_task_group() as tasks:
            tasks.start_soon(watcher.run, app.deliver)
            await app.server.run(read_stream, write_stream, app.server.create_initialization_options())
            tasks.cancel_scope.cancel()
    finally:
        await core.hub.close()
        await store.close()
    return EXIT_OK


class McpApp:
    """The SDK's server with this store's tools and resources."""

    def __init__(self, core: Core, watcher: Watcher) -> None:
        self.tools = Tools(core.handlers)
        self.handlers = core.handlers
        self.watcher = watcher
        self.bus = InMemorySubscriptionBus()
        self._listen = ListenHandler(self.bus)
        self._subscribers: dict[str, set[ServerSession]] = {}  # session_id: sessions of 2025 clients
        self.server: Server[Any] = Server(
            "microagents-sidecar",
            version=__version__,
            title="Agent sessions (microagents)",
            instructions=INSTRUCTIONS,
            on_list_tools=self.list_tools,
            on_call_tool=self.call_tool,
            on_list_resources=self.list_resources,
            on_list_resource_templates=self.list_resource_templates,
            on_read_resource=self.read_resource,
            on_subscribe_resource=self.subscribe,
            on_unsubscribe_resource=self.unsubscribe,
            on_subscriptions_listen=self.listen,
        )

    # --- tools --------------------------------------------------------------------------------

    async def list_tools(self, _: Context, __: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=TOOL_LIST)

    async def call_tool(self, _: Context, params: types.CallToolRequestParams) -> types.CallToolResult:
        try:
            output = await self.tools.call(params.name, params.arguments)
        except UnknownTool as exc:
            raise MCPError(types.INVALID_PARAMS, str(exc)) from None
        except ToolError as exc:
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=str(exc))], is_error=True
            )
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=output.text)], structured_content=output.structured
        )

    # --- resources ----------------------------------------------------------------------------

    async def list_resources(
        self, _: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        after = None
        if params is not None and params.cursor is not None:
            try:
                after = decode_cursor(params.cursor, SessionsCursor)
            except BadCursor as exc:
                raise MCPError(types.INVALID_PARAMS, str(exc)) from None
        summaries = await self.handlers.list_sessions(ListSessionsParams(limit=EVERYTHING))
        page, last = page_sessions(summaries, after, RESOURCES_PER_PAGE)
        cursor = None if last is None else encode_cursor(SessionsCursor(last[0], last[1]))
        return types.ListResourcesResult(resources=[_resource(s) for s in page], next_cursor=cursor)

    async def list_resource_templates(
        self, _: Context, __: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        template = types.ResourceTemplate(
            name="session",
            title="Agent session transcript",
            uri_template=TEMPLATE,
            description="A recorded agent session as a markdown transcript (tool output cut at "
            f"2,000 characters). A long session gives its latest events (about {RESOURCE_TOKENS:,} "
            "tokens) and says so; read_session pages through all of it.",
            mime_type=MARKDOWN,
        )
        return types.ListResourceTemplatesResult(resource_templates=[template])

    async def read_resource(
        self, _: Context, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        session_id = _session_of(params.uri)
        try:
            text = await self.tools.resource_text(session_id)
        except ToolError as exc:  # a session id the handlers refuse
            raise MCPError(types.INVALID_PARAMS, str(exc), {"uri": params.uri}) from None
        if text is None:
            raise MCPError(RESOURCE_NOT_FOUND, f"no session {session_id!r}", {"uri": params.uri})
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=params.uri, mime_type=MARKDOWN, text=text)]
        )

    # --- resource updates ---------------------------------------------------------------------

    async def subscribe(self, ctx: Context, params: types.SubscribeRequestParams) -> types.EmptyResult:
        """A 2025 client's subscription (a session not started yet may be watched too)."""
        session_id = _session_of(params.uri)
        sessions = self._subscribers.setdefault(session_id, set())
        if ctx.session not in sessions:
            sessions.add(ctx.session)  # before the wait: a subscribe meanwhile holds nothing more
            try:
                await self._hold(session_id)
            except BaseException:
                sessions.discard(ctx.session)
                raise
            if ctx.session not in sessions:  # unsubscribed while it waited
                self.watcher.release(session_id)
        return types.EmptyResult()

    async def unsubscribe(self, ctx: Context, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        session_id = _session_of(params.uri)
        sessions = self._subscribers.get(session_id, set())
        if ctx.session in sessions:
            sessions.discard(ctx.session)
            self.watcher.release(session_id)
        return types.EmptyResult()

    async def listen(
        self, ctx: Context, params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        """A 2026 client's stream of updates: its sessions watched while the stream lasts."""
        held: list[str] = []
        try:
            for uri in params.notifications.resource_subscriptions or ():
                if uri.startswith(URI_PREFIX):
                    session_id = _session_of(uri)
                    await self._hold(session_id)
                    held.append(session_id)
            return await self._listen(ctx, params)
        finally:
            for session_id in held:
                self.watcher.release(session_id)

    async def _hold(self, session_id: str) -> None:
        try:
            await self.watcher.hold(session_id)
        except StoreFailure as exc:
            raise MCPError(types.INTERNAL_ERROR, f"cannot follow the store: {exc}") from None

    async def deliver(self, session_id: str) -> None:
        uri = session_uri(session_id)
        await self.bus.publish(ResourceUpdated(uri))
        for session in list(self._subscribers.get(session_id, ())):
            await session.send_resource_updated(uri)


def _tool(spec: ToolSpec) -> types.Tool:
    return types.Tool(
        name=spec.name,
        title=spec.title,
        description=spec.description,
        input_schema=schema(spec.arguments),
        output_schema=schema(spec.result),
        annotations=types.ToolAnnotations(
            title=spec.title,
            read_only_hint=True,
            destructive_hint=False,
            idempotent_hint=True,
            open_world_hint=False,
        ),
    )


TOOL_LIST = [_tool(spec) for spec in TOOLS]


def _resource(summary: SessionSummary) -> types.Resource:
    what = summary.title or "(no prompt)"
    count = f"{summary.event_count:,} event{'' if summary.event_count == 1 else 's'}"
    facts = f"{count}, last active {CLOCK.show(summary.last_timestamp) or '?'}"
    return types.Resource(
        name=summary.session_id,
        title=what,
        uri=session_uri(summary.session_id),
        description=f"{facts}; {summary.status}; model {summary.model or '?'}",
        mime_type=MARKDOWN,
    )


def _session_of(uri: str) -> str:
    """The session id a resource URI names; INVALID_PARAMS for any other URI."""
    rest = uri[len(URI_PREFIX) :] if uri.startswith(URI_PREFIX) else ""
    session_id = unquote(rest)
    if not rest or "/" in rest or not session_id:
        raise MCPError(types.INVALID_PARAMS, f"not a session resource: {uri!r} (expected {TEMPLATE})")
    return session_id
