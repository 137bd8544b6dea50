"""The viewer's routes, read-only: each turns a request into calls of the core's handlers
and answers with a page of sidecar.html. Who may ask is the guard's business; how pages
follow the store is the live module's."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Mapping, Sequence
from urllib.parse import urlencode

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from sidecar.clock import Clock
from sidecar.handlers import GetSessionParams, Handlers, SearchParams
from sidecar.html import Pages, Part, Site, markup
from sidecar.html.pages import asset, parse_spans, spans
from sidecar.protocol import InvalidParams
from sidecar.store.base import SearchHit, StoreFailure
from sidecar.store.search import query_terms
from sidecar.web.drawing import Drawings, stamps_of
from sidecar.web.listing import PAGE, Cursor, Filters, filters_from, sessions_page
from sidecar.web.live import Live, Stamps

FILTER_KEYS = ("q", "model", "status", "since", "until")
SEARCH_HITS = 100
ASSETS = {"viewer.css": "text/css; charset=utf-8", "viewer.js": "text/javascript; charset=utf-8"}
SSE_HEADERS = {"cache-control": "no-store", "x-accel-buffering": "no"}


def session_href(session_id: str) -> str:
    return "/session?" + urlencode({"id": session_id})


def raw_href(session_id: str, indexes: Sequence[int]) -> str:
    return "/raw?" + urlencode({"id": session_id, "i": spans(indexes)})


SITE = Site(live=True, index_href="/", session_href=session_href, raw_href=raw_href)


class Viewer:
    def __init__(self, handlers: Handlers, live: Live, clock: Clock) -> None:
        self.handlers = handlers
        self.live = live
        self.clock = clock
        self.pages = Pages(SITE, clock)
        self.drawings = Drawings(self.pages, chunk_href)
        self.assets = {name: asset(name).encode() for name in ASSETS}

    # --- sessions

    async def sessions(self, request: Request) -> Response:
        form = {key: request.query_params.get(key, "") for key in FILTER_KEYS}
        before = request.query_params.get("before") or None
        cursor = None if before is None else Cursor(before, request.query_params.get("before_id"))
        after = await self._latest() if self.live.available else None  # before reading: none missed
        try:
            filters = filters_from(form, self.clock)
            page = await sessions_page(self.handlers, filters, cursor)
        except (ValueError, InvalidParams) as exc:
            return self._message("Not a filter", str(exc), 400)
        older = None
        if page.older is not None:
            cursor_fields = {"before": page.older.before, "before_id": page.older.before_id or ""}
            fields = {**{k: v for k, v in form.items() if v}, **{k: v for k, v in cursor_fields.items() if v}}
            older = "/?" + urlencode(fields)
        note = None
        if page.older is not None and len(page.rows) < PAGE:
            note = f"looked at {page.looked_at} sessions for this page: older ones may match too"
        live = None
        if before is None and after is not None:
            key = secrets.token_urlsafe(9)
            self.live.remember(key, stamps_of([self.pages.rows(page.rows)]))
            fields = {**{k: v for k, v in form.items() if v}, "after": str(after), "page": key}
            live = "/live/sessions?" + urlencode(fields)
        html = self.pages.sessions(page.rows, form=form, older_href=older, live_href=live, note=note)
        return HTMLResponse(html)

    async def sessions_live(self, request: Request) -> Response:
        form = {key: request.query_params.get(key, "") for key in FILTER_KEYS}
        try:
            filters = filters_from(form, self.clock)
        except ValueError as exc:
            return PlainTextResponse(str(exc), status_code=400)

        async def redraw(shown: Stamps | None, filters: Filters = filters) -> tuple[list[Part], Stamps]:
            page = await sessions_page(self.handlers, filters, None)
            rows = self.pages.rows(page.rows)
            stamps = stamps_of([rows])
            return ([rows] if shown != stamps else []), stamps

        stream = self.live.stream(redraw, after=_seq(request), page=request.query_params.get("page"))
        return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)

    # --- one session

    async def session(self, request: Request) -> Response:
        session_id = request.query_params.get("id", "")
        after = await self._latest() if self.live.available else None  # before reading: none missed
        drawing = self.drawings.of(session_id)
        if not await drawing.fresh(lambda: self._payloads(session_id)):
            return self._message("No such session", f"no session {session_id!r} in this store", 404)
        page = await drawing.page()
        live = None
        if after is not None:
            key = secrets.token_urlsafe(9)
            self.live.remember(key, page.stamps)
            live = "/live/session?" + urlencode({"id": session_id, "after": after, "page": key})
        html = self.pages.session(page.transcript, page.parts, live_href=live, hidden=page.hidden)
        return HTMLResponse(html)

    async def chunk(self, request: Request) -> Response:
        """A chunk of turns the session page left out, by its number (`n`) or by an event
        it holds (`e`, for a permalink): HTML the page puts in place of the hidden one."""
        params = request.query_params
        session_id = params.get("id", "")
        try:
            number = int(params["n"]) if "n" in params else None
            event = int(params["e"]) if "e" in params else None
        except ValueError:
            return PlainTextResponse("not a number", status_code=404)
        drawing = self.drawings.of(session_id)
        html = None
        if await drawing.fresh(lambda: self._payloads(session_id)):
            html = await drawing.chunk(number, event)
        if html is None:
            return PlainTextResponse("no such turns", status_code=404)
        return HTMLResponse(html)

    async def session_live(self, request: Request) -> Response:
        session_id = request.query_params.get("id", "")
        drawing = self.drawings.of(session_id)  # held by the stream: shared with the others

        async def redraw(shown: Stamps | None) -> tuple[list[Part], Stamps]:
            await drawing.fresh(lambda: self._payloads(session_id))
            return await drawing.changes(shown)

        stream = self.live.stream(
            redraw, after=_seq(request), session_id=session_id, page=request.query_params.get("page")
        )
        return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)

    async def raw(self, request: Request) -> Response:
        """The stored events at some positions of a session, as indented JSON."""
        payloads = await self._payloads(request.query_params.get("id", ""))
        try:
            indexes = parse_spans(request.query_params.get("i", ""), len(payloads))
        except ValueError as exc:
            return PlainTextResponse(str(exc), status_code=404)
        text = "\n".join(markup.raw_json(payloads[i]) for i in indexes)
        return PlainTextResponse(text, media_type="application/json")

    # --- search

    async def search(self, request: Request) -> Response:
        query = request.query_params.get("q", "").strip()
        hits: list[SearchHit] = []
        note = None
        if query:
            try:
                hits = await self.handlers.search(SearchParams(query=query, limit=SEARCH_HITS))
            except InvalidParams as exc:
                note = str(exc)
        return HTMLResponse(self.pages.search(query, hits, lambda hit: _hit_href(hit, query), note))

    async def hit(self, request: Request) -> Response:
        """The event a search hit names, found in its session: a redirect to its permalink."""
        params = request.query_params
        session_id = params.get("session", "")
        payloads = await self._payloads(session_id)
        exact = await self._event_at(params.get("seq", ""), session_id)
        found = await asyncio.to_thread(
            _find_hit, payloads, exact, params.get("method"), params.get("timestamp"), params.get("q", "")
        )
        fragment = "" if found is None else f"#e-{found}"
        return RedirectResponse(session_href(session_id) + fragment, status_code=303)

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.assets:
            return PlainTextResponse("not found", status_code=404)
        return Response(self.assets[name], media_type=ASSETS[name])

    # --- helpers

    async def _payloads(self, session_id: str) -> list[bytes]:
        return await self.handlers.session_events(GetSessionParams(session_id=session_id))

    async def _event_at(self, seq: str, session_id: str) -> bytes | None:
        """The stored bytes of the event at `seq`, if the store can say (None: it cannot)."""
        try:
            wanted = int(seq)
            page = await self.handlers.store.events_after(wanted - 1, 1)
        except (ValueError, StoreFailure):
            return None
        for at, event in page.events:
            if at == wanted and event.session_id == session_id:
                return event.payload
        return None

    async def _latest(self) -> int | None:
        try:
            return await self.handlers.store.last_seq()
        except StoreFailure:
            return None

    def _message(self, title: str, text: str, status: int) -> Response:
        return HTMLResponse(self.pages.message(title, text), status_code=status)


def _seq(request: Request) -> int | None:
    """The `after` of a live URL: the store's seq read before its page was (None: from now)."""
    try:
        return int(request.query_params.get("after", ""))
    except ValueError:
        return None


def chunk_href(session_id: str, number: int) -> str:
    return "/chunk?" + urlencode({"id": session_id, "n": number})


def _hit_href(hit: SearchHit, query: str) -> str:
    fields: Mapping[str, str] = {
        "session": hit.session_id,
        "method": hit.method,
        "timestamp": hit.timestamp,
        "q": query,
        **({} if hit.seq is None else {"seq": str(hit.seq)}),
    }
    return "/hit?" + urlencode(fields)


def _find_hit(
    payloads: Sequence[bytes], exact: bytes | None, method: str | None, timestamp: str | None, query: str
) -> int | None:
    """The position of a hit's event in its session: by its stored bytes where the store
    gave them, else the first event of its method and instant holding every word."""
    if exact is not None:
        with contextlib.suppress(ValueError):
            return payloads.index(exact)
    terms = [term.casefold() for term in query_terms(query)]
    found = None
    for index, payload in enumerate(payloads):
        event = msgspec.json.decode(payload)
        p = event.get("params") if isinstance(event, dict) else None
        if not isinstance(p, dict) or event.get("method") != method or p.get("timestamp") != timestamp:
            continue
        text = payload.decode("utf-8", "replace").casefold()
        if all(term in text for term in terms):
            return index
        if found is None:
            found = index
    return found


def build_app(viewer: Viewer) -> Starlette:
    routes = [
        Route("/", viewer.sessions),
        Route("/session", viewer.session),
        Route("/chunk", viewer.chunk),
        Route("/raw", viewer.raw),
        Route("/search", viewer.search),
        Route("/hit", viewer.hit),
        Route("/live/sessions", viewer.sessions_live),
        Route("/live/session", viewer.session_live),
        Route("/static/{name}", viewer.asset),
    ]
    return Starlette(routes=routes)
