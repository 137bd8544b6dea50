"""The viewer's app in-process over a real SQLite store: who may read (token, cookie, Host),
the headers every page carries, and what each page shows; no server, no browser."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from events import events, init, notification, prompt, response, stop, tool_call, tool_result

from sidecar.clock import Clock
from sidecar.config import Settings
from sidecar.core import compose
from sidecar.store.sqlite import SqliteStore
from sidecar.web.app import Viewer, build_app
from sidecar.web.guard import Guard, allowed_hosts
from sidecar.web.listing import PAGE
from sidecar.web.live import Live
from sidecar.web.serve import _NoOutput

TOKEN = "the-token"
PORT = 8765
BASE = f"http://127.0.0.1:{PORT}"


def at(second: int, minute: int = 0) -> str:
    return f"2026-06-07T14:{minute:02}:{second:02}Z"


class Viewed:
    """The app over a store, and a client that has (or has not) the token."""

    def __init__(self, store: SqliteStore, app: Guard) -> None:
        self.store = store
        self.app = app

    def client(self, *, host: str = f"127.0.0.1:{PORT}", cookie: str | None = None) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app)
        cookies = {"token": cookie} if cookie is not None else None
        return httpx.AsyncClient(transport=transport, base_url=BASE, headers={"host": host}, cookies=cookies)

    @contextlib.asynccontextmanager
    async def signed_in(self) -> AsyncIterator[httpx.AsyncClient]:
        async with self.client() as client:
            assert (await client.get(f"/?token={TOKEN}")).status_code == 303
            yield client

    async def write(self, *messages: dict[str, Any]) -> None:
        await self.store.write(events(*messages), [])


@pytest.fixture
async def viewed(db: Path) -> AsyncIterator[Viewed]:
    store = SqliteStore(db)
    await store.open()
    settings = Settings(db_path=db)
    core = compose(store, settings, output=_NoOutput())
    viewer = Viewer(core.handlers, Live(core.hub), Clock(utc=True))
    app = Guard(build_app(viewer), TOKEN, allowed_hosts("127.0.0.1", PORT), cookie="token")
    try:
        yield Viewed(store, app)
    finally:
        assert core.hub is not None
        await core.hub.close()
        await store.close()


async def test_a_request_without_the_token_is_refused(viewed: Viewed) -> None:
    async with viewed.client() as client:
        for path in ("/", "/session?id=a", "/search?q=x", "/static/viewer.js", "/live/sessions"):
            assert (await client.get(path)).status_code == 403
        assert (await client.get("/?token=wrong")).status_code == 403
    async with viewed.client(cookie="wrong") as client:
        assert (await client.get("/")).status_code == 403


async def test_the_token_in_the_url_becomes_a_strict_http_only_cookie_and_leaves_the_url(
    viewed: Viewed,
) -> None:
    async with viewed.client() as client:
        answer = await client.get(f"/search?q=word&token={TOKEN}")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/search?q=word"
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith(f"token={TOKEN};") and "HttpOnly" in cookie
        assert "samesite=strict" in cookie.lower()
        assert (await client.get("/")).status_code == 200  # the cookie is enough now


async def test_a_forged_host_is_refused_even_with_the_token(viewed: Viewed) -> None:
    async with viewed.client(host=f"attacker.example:{PORT}") as client:
        assert (await client.get(f"/?token={TOKEN}")).status_code == 403
    async with viewed.client(host=f"localhost:{PORT}") as client:
        assert (await client.get(f"/?token={TOKEN}")).status_code == 303


def test_a_viewer_bound_to_every_address_leaves_the_host_to_the_token() -> None:
    assert allowed_hosts("0.0.0.0", PORT) is None
    assert allowed_hosts("::1", PORT) == frozenset(
        {f"localhost:{PORT}", f"127.0.0.1:{PORT}", f"[::1]:{PORT}"}
    )


async def test_every_answer_forbids_inline_script_framing_and_caching(viewed: Viewed) -> None:
    async with viewed.signed_in() as client:
        for path in ("/", "/search?q=x", "/session?id=none", "/static/viewer.css"):
            headers = (await client.get(path)).headers
            policy = headers["content-security-policy"]
            assert "script-src 'self'" in policy and "unsafe-inline" not in policy
            assert "frame-ancestors 'none'" in policy
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["cache-control"] == "no-store"
            assert headers["referrer-policy"] == "no-referrer"
    async with viewed.client() as stranger:
        refused = await stranger.get("/")
        assert "content-security-policy" in refused.headers


async def test_the_sessions_page_lists_sessions_newest_first_with_their_facts(viewed: Viewed) -> None:
    await viewed.write(init("old", at(1)), prompt("old", at(2), text="first question"), stop("old", at(3)))
    await viewed.write(init("new", at(4)), prompt("new", at(5), text="second question"))
    await viewed.write(
        notification("session.fork", session_id="child", parent_session_id="old", timestamp=at(6))
    )
    async with viewed.signed_in() as client:
        page = (await client.get("/")).text
    assert page.index("child") < page.index("second question") < page.index("first question")
    assert 'href="/session?id=old"' in page  # the fork links to its parent
    assert "success" in page and "active" in page and "stopped" in page


async def test_the_sessions_page_pages_by_the_before_cursor_through_every_session(viewed: Viewed) -> None:
    total = PAGE * 2 + 7
    for n in range(total):
        await viewed.write(init(f"s{n:03}", at(n % 60, n // 60)))
    seen: list[str] = []
    async with viewed.signed_in() as client:
        path: str | None = "/"
        while path is not None:
            page = (await client.get(path)).text
            seen += re.findall(r'href="/session\?id=(s\d+)"', page)
            older = re.search(r'id="older" href="([^"]+)"', page)
            path = older[1].replace("&amp;", "&") if older else None
    assert seen == [f"s{n:03}" for n in reversed(range(total))]


async def test_the_sessions_page_filters_by_model_status_and_time(viewed: Viewed) -> None:
    await viewed.write(
        init(
            "a",
            at(1),
        ),
        stop("a", at(2)),
    )
    await viewed.write({**init("b", at(3)), "params": {**init("b", at(3))["params"], "model": "big-model"}})
    await viewed.write(init("c", at(4)))
    async with viewed.signed_in() as client:

        async def listed(query: str) -> list[str]:
            page = (await client.get("/?" + query)).text
            return re.findall(r'href="/session\?id=(\w+)"', page)

        assert await listed("model=BIG") == ["b"]
        assert await listed("status=stopped") == ["a"]
        assert await listed("status=active") == ["c", "b"]
        assert await listed("since=2026-06-07T14:00:03Z") == ["c", "b"]
        assert await listed("until=2026-06-07T14:00:04Z") == ["b", "a"]
        assert (await client.get("/?since=yesterday-ish")).status_code == 400


async def test_a_session_page_shows_prompts_tool_calls_paired_with_results_and_the_stop(
    viewed: Viewed,
) -> None:
    await viewed.write(
        init("s", at(1)),
        prompt("s", at(2), text="read the file"),
        tool_call("s", at(3), path="a.rs"),
        tool_result("s", at(4), result={"Err": "no such file"}),
        response("s", at(5), text="It is **missing**."),
        stop("s", at(6)),
    )
    async with viewed.signed_in() as client:
        answer = await client.get("/session?id=s")
    page = answer.text
    assert answer.status_code == 200
    assert "read the file" in page and "<strong>missing</strong>" in page
    call = page[page.index('id="e-2"') : page.index('id="e-4"')]
    assert "a.rs" in call and 'class="result err" id="e-3"' in call and "no such file" in call
    assert 'id="end"' in page and "input_chars" in page
    assert 'data-live="/live/session?id=s&amp;after=6&amp;page=' in page


async def test_raw_json_of_events_is_served_indented_and_a_bad_position_is_not_found(viewed: Viewed) -> None:
    await viewed.write(init("s", at(1)), prompt("s", at(2), text="<b>hi</b>"))
    async with viewed.signed_in() as client:
        raw = await client.get("/raw?id=s&i=0-1")
        assert raw.headers["content-type"].startswith("application/json")
        assert '"method": "session.init"' in raw.text and '"prompt": "<b>hi</b>"' in raw.text
        assert (await client.get("/raw?id=s&i=2")).status_code == 404
        assert (await client.get("/raw?id=s&i=x")).status_code == 404


async def test_an_unknown_session_is_not_found(viewed: Viewed) -> None:
    async with viewed.signed_in() as client:
        answer = await client.get("/session?id=<script>")
    assert answer.status_code == 404
    assert "&lt;script&gt;" in answer.text and "<script>" not in answer.text


async def test_search_marks_the_match_and_its_link_leads_to_the_event(viewed: Viewed) -> None:
    await viewed.write(
        init("s", at(1)),
        prompt("s", at(2), text="nothing here"),
        response("s", at(2), text="the albatross flies"),
    )
    async with viewed.signed_in() as client:
        page = (await client.get("/search?q=albatross")).text
        assert "<mark>albatross</mark>" in page
        link = re.search(r'<a href="(/hit\?[^"]+)"', page)
        assert link is not None
        answer = await client.get(link[1].replace("&amp;", "&"))
    assert answer.status_code == 303
    target = urlsplit(answer.headers["location"])
    assert parse_qs(target.query) == {"id": ["s"]} and target.fragment == "e-2"


async def test_a_search_without_words_says_so(viewed: Viewed) -> None:
    async with viewed.signed_in() as client:
        page = (await client.get("/search?q=%2B%2B")).text
    assert "no words" in page
