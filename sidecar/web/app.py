"""The viewer's routes, read-only: each turns a request into calls of the core's handlers
and answers with a page of sidecar.html. Who may ask is the guard's business; how pages
follow the store is the live module's."""

from __future__ import annotations

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
from sidecar.transcript import Transcript, build
from sidecar.web.listing import PAGE, Filters, filters_from, sessions_page
from sidecar.web.live import Live

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
        self.assets = {name: asset(name).encode() for name in ASSETS}

    # --- sessions

    async def sessions(self, request: Request) -> Response:
        form = {key: request.query_params.get(key, "") for key in FILTER_KEYS}
        before = request.query_params.get("before") or None
        try:
            filters = filters_from(form, self.clock)
            page = await sessions_page(self.handlers, filters, before)
        except (ValueError, InvalidParams) as exc:
            return self._message("Not a filter", str(exc), 400)
        older = None
        if page.older is not None:
            older = "/?" + urlencode({**{k: v for k, v in form.items() if v}, "before": page.older})
        note = None
        if page.older is not None and len(page.rows) < PAGE:
            note = f"looked at {page.looked_at} sessions for this page: older ones may match too"
        live = None
        if before is None and self.live.available:
            live = "/live/sessions?" + urlencode({k: v for k, v in form.items() if v})
        html = self.pages.sessions(page.rows, form=form, older_href=older, live_href=live, note=note)
        return HTMLResponse(html)

    async def sessions_live(self, request: Request) -> Response:
        form = {key: request.query_params.get(key, "") for key in FILTER_KEYS}
        try:
            filters = filters_from(form, self.clock)
        except ValueError as exc:
            return PlainTextResponse(str(exc), status_code=400)

        async def redraw(filters: Filters = filters) -> list[Part]:
            page = await sessions_page(self.handlers, filters, None)
            return [self.pages.rows(page.rows)]

        stream = self.live.stream(redraw, after=None)
        return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)

    # --- one session

    async def session(self, request: Request) -> Response:
        session_id = request.query_params.get("id", "")
        after = await self._latest() if self.live.available else None  # before reading: none missed
        parts = await self._parts(session_id)
        if parts is None:
            return self._message("No such session", f"no session {session_id!r} in this store", 404)
        transcript, drawn = parts
        live = None
        if after is not None:
            key = secrets.token_urlsafe(9)
            self.live.remember(key, drawn)
            live = "/live/session?" + urlencode({"id": session_id, "after": after, "page": key})
        return HTMLResponse(self.pages.session(transcript, drawn, live_href=live))

    async def session_live(self, request: Request) -> Response:
        session_id = request.query_params.get("id", "")
        try:
            after: int | None = int(request.query_params.get("after", ""))
        except ValueError:
            after = None

        async def redraw() -> Sequence[Part]:
            parts = await self._parts(session_id)
            return [] if parts is None else parts[1]

        stream = self.live.stream(
            redraw, after=after, session_id=session_id, page=request.query_params.get("page")
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
        terms = query_terms(params.get("q", ""))
        found = None
        for index, payload in enumerate(payloads):
            event = msgspec.json.decode(payload)
            p = event.get("params") if isinstance(event, dict) else None
            if not isinstance(p, dict) or event.get("method") != params.get("method"):
                continue
            if p.get("timestamp") != params.get("timestamp"):
                continue
            text = payload.decode("utf-8", "replace").casefold()
            if found is None or all(term.casefold() in text for term in terms):
                found = index
                if all(term.casefold() in text for term in terms):
                    break
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

    async def _parts(self, session_id: str) -> tuple[Transcript, list[Part]] | None:
        payloads = await self._payloads(session_id)
        if not payloads:
            return None
        transcript = build([msgspec.json.decode(payload) for payload in payloads])
        return transcript, self.pages.session_parts(transcript, len(payloads))

    async def _latest(self) -> int | None:
        try:
            return await self.handlers.store.last_seq()
        except StoreFailure:
            return None

    def _message(self, title: str, text: str, status: int) -> Response:
        return HTMLResponse(self.pages.message(title, text), status_code=status)


def _hit_href(hit: SearchHit, query: str) -> str:
    fields: Mapping[str, str] = {
        "session": hit.session_id,
        "method": hit.method,
        "timestamp": hit.timestamp,
        "q": query,
    }
    return "/hit?" + urlencode(fields)


def build_app(viewer: Viewer) -> Starlette:
    routes = [
        Route("/", viewer.sessions),
        Route("/session", viewer.session),
        Route("/raw", viewer.raw),
        Route("/search", viewer.search),
        Route("/hit", viewer.hit),
        Route("/live/sessions", viewer.sessions_live),
        Route("/live/session", viewer.session_live),
        Route("/static/{name}", viewer.asset),
    ]
    return Starlette(routes=routes)
