"""The viewer's app in-process over a real SQLite store: who may read (token, cookie, Host),
the headers every page carries, and what each page shows; no server, no browser."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import re
import signal
import stat
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from events import events, init, notification, prompt, response, stop, tool_call, tool_result
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from sidecar.clock import Clock
from sidecar.config import Settings
from sidecar.core import compose
from sidecar.html.pages import CHUNK_TURNS
from sidecar.store.base import Page, SeqUnavailable, SessionQuery, StoreFailure
from sidecar.store.sqlite import SqliteStore
from sidecar.web import main as web_main
from sidecar.web.app import Viewer, build_app
from sidecar.web.drawing import Drawing
from sidecar.web.guard import Guard, allowed_hosts
from sidecar.web.listing import PAGE
from sidecar.web.live import Live
from sidecar.web.serve import _NoOutput, redirect_page

TOKEN = "the-token"
PORT = 8765
BASE = f"http://127.0.0.1:{PORT}"
WAIT_S = 10.0  # a bound on every wait for a live update


def at(second: int, minute: int = 0) -> str:
    return f"2026-06-07T14:{minute:02}:{second:02}Z"


class Viewed:
    """The app over a store, and a client that has (or has not) the token."""

    def __init__(self, store: SqliteStore, app: Guard, viewer: Viewer) -> None:
        self.store = store
        self.app = app
        self.viewer = viewer

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
        yield Viewed(store, app, viewer)
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


# --- the open redirect, the cursor, big and live pages


async def test_the_token_redirect_stays_on_this_host_whatever_the_path(viewed: Viewed) -> None:
    async with viewed.client() as client:
        for path in ("//evil.example", "/\\evil.example"):
            answer = await client.get(f"{BASE}{path}?token={TOKEN}&q=x")
            assert answer.status_code == 303
            assert answer.headers["location"] == "/evil.example?q=x"


async def test_the_sessions_page_pages_through_sessions_tied_on_one_instant(viewed: Viewed) -> None:
    total = PAGE * 2 + 7
    await viewed.write(*(init(f"s{n:03}", at(5)) for n in range(total)), init("early", at(1)))
    seen: list[str] = []
    async with viewed.signed_in() as client:
        path: str | None = "/"
        while path is not None:
            page = (await client.get(path)).text
            seen += re.findall(r'href="/session\?id=(\w+)"', page)
            older = re.search(r'id="older" href="([^"]+)"', page)
            path = older[1].replace("&amp;", "&") if older else None
    assert seen == [*(f"s{n:03}" for n in reversed(range(total))), "early"]


def turns(session_id: str, count: int) -> list[dict[str, Any]]:
    """A session of `count` turns, each a prompt and its answer, a second apart."""
    found = [init(session_id, at(0))]
    for n in range(count):
        found.append(prompt(session_id, at(n % 60, 1 + n // 60), text=f"question {n}"))
        found.append(response(session_id, at(n % 60, 1 + n // 60), text=f"answer {n}"))
    return found


async def test_a_big_session_page_shows_its_latest_turns_and_serves_the_others_on_demand(
    viewed: Viewed,
) -> None:
    await viewed.write(*turns("big", 3 * CHUNK_TURNS))
    async with viewed.signed_in() as client:
        page = (await client.get("/session?id=big")).text
        assert f"question {3 * CHUNK_TURNS - 1}" in page and 'id="e-1"' not in page
        assert 'id="chunk-0" data-src="/chunk?id=big&amp;n=0"' in page
        by_event = await client.get("/chunk?id=big&e=1")  # the permalink #e-1: its chunk
        assert by_event.status_code == 200
        assert by_event.text.lstrip().startswith('<section class="chunk" id="chunk-0">')
        assert 'id="e-1"' in by_event.text and "question 0" in by_event.text
        assert (await client.get("/chunk?id=big&n=0")).text == by_event.text
        assert (await client.get("/chunk?id=big&e=99999")).status_code == 404
        assert (await client.get("/chunk?id=nobody&n=0")).status_code == 404


def request_for(path: str) -> Request:
    target = urlsplit(path.replace("&amp;", "&"))
    scope = {"type": "http", "method": "GET", "path": target.path, "query_string": target.query.encode()}
    return Request({**scope, "headers": []})


class Stream:
    """A live page's Server-Sent Events, read one event at a time (each wait bounded)."""

    def __init__(self, response: Response) -> None:
        assert isinstance(response, StreamingResponse)
        self.body = response.body_iterator

    async def next(self, kind: str) -> Any:
        """The data of the next event of `kind` (keep-alives and others skipped)."""
        async with asyncio.timeout(WAIT_S):
            async for chunk in self.body:
                text = chunk if isinstance(chunk, str) else bytes(chunk).decode()
                if text.startswith(f"event: {kind}\n"):
                    return json.loads(text.split("data: ", 1)[1])
        raise AssertionError(f"the stream ended before an event {kind!r}")

    async def started(self) -> None:
        """Read the stream's first line: from then on it is subscribed."""
        async with asyncio.timeout(WAIT_S):
            first = await anext(aiter(self.body))
        assert (first if isinstance(first, str) else bytes(first).decode()).startswith("retry:")

    async def close(self) -> None:
        await self.body.aclose()  # type: ignore[attr-defined]


def live_url(page: str) -> str:
    found = re.search(r'data-live="([^"]+)"', page)
    assert found is not None
    return found[1]


async def session_stream(viewed: Viewed, session_id: str) -> Stream:
    """The live stream a session page opens, as its script would."""
    async with viewed.signed_in() as client:
        url = live_url((await client.get(f"/session?id={session_id}")).text)
    return Stream(await viewed.viewer.session_live(request_for(url)))


async def test_the_live_sessions_page_misses_no_session_written_while_it_loads(viewed: Viewed) -> None:
    await viewed.write(init("a", at(1)))
    async with viewed.signed_in() as client:
        url = live_url((await client.get("/")).text)
    await viewed.write(init("b", at(2)))  # after the page was read, before its stream began
    stream = Stream(await viewed.viewer.sessions_live(request_for(url)))
    try:
        [rows] = await stream.next("parts")
        assert rows["id"] == "rows" and "/session?id=b" in rows["html"]
    finally:
        await stream.close()


async def test_live_streams_of_a_session_share_one_redraw_that_draws_only_the_changed_turn(
    viewed: Viewed, monkeypatch: pytest.MonkeyPatch
) -> None:
    await viewed.write(*turns("s", 3))
    async with viewed.signed_in() as client:
        first, second = [live_url((await client.get("/session?id=s")).text) for _ in range(2)]
    drawn: list[int] = []
    macros = viewed.viewer.pages._parts
    turn = macros.turn

    def counted(*args: Any) -> Any:
        drawn.append(args[1])
        return turn(*args)

    monkeypatch.setattr(macros, "turn", counted)
    streams = [Stream(await viewed.viewer.session_live(request_for(url))) for url in (first, second)]
    try:
        await viewed.write(tool_call("s", at(30, 9), path="late.rs"))
        for stream in streams:
            updates = await stream.next("parts")
            assert {update["id"] for update in updates} >= {"turn-2"}
            assert not {"turn-0", "turn-1"} & {update["id"] for update in updates}
            assert "late.rs" in next(u["html"] for u in updates if u["id"] == "turn-2")
        assert drawn == [2]  # once, for both streams
    finally:
        for stream in streams:
            await stream.close()


async def test_a_stream_the_hub_drops_takes_a_new_subscription_and_redraws(
    viewed: Viewed, monkeypatch: pytest.MonkeyPatch
) -> None:
    await viewed.write(*turns("s", 1))
    stream = await session_stream(viewed, "s")
    events_after = viewed.store.events_after
    failed = False

    async def forgotten(after: int, limit: int, max_bytes: int | None = None) -> Page:
        nonlocal failed
        if not failed:
            failed = True
            raise SeqUnavailable("compacted")  # the hub drops the subscriptions at this cursor
        return await events_after(after, limit, max_bytes)

    try:
        await stream.started()  # subscribed before the store forgets
        monkeypatch.setattr(viewed.store, "events_after", forgotten)
        await viewed.write(response("s", at(40, 9), text="written while dropped"))
        updates = await stream.next("parts")
        assert failed and any("written while dropped" in u["html"] for u in updates)
    finally:
        await stream.close()


async def test_a_redraw_the_store_fails_is_said_to_the_page_and_the_stream_goes_on(
    viewed: Viewed, monkeypatch: pytest.MonkeyPatch
) -> None:
    await viewed.write(*turns("s", 1))
    stream = await session_stream(viewed, "s")
    read_session = viewed.store.read_session
    broken = True

    async def failing(session_id: str, query: SessionQuery) -> list[bytes]:
        if broken:
            raise StoreFailure("disk on fire")
        return await read_session(session_id, query)

    monkeypatch.setattr(viewed.store, "read_session", failing)
    try:
        await viewed.write(response("s", at(41, 9), text="first try"))
        assert await stream.next("failed") == "disk on fire"
        broken = False
        await viewed.write(response("s", at(42, 9), text="second try"))
        updates = await stream.next("parts")
        assert any("second try" in u["html"] for u in updates)
    finally:
        await stream.close()


async def test_other_requests_are_answered_while_a_big_session_is_drawn(
    viewed: Viewed, monkeypatch: pytest.MonkeyPatch
) -> None:
    await viewed.write(*turns("s", 2))
    entered, release = threading.Event(), threading.Event()
    update = Drawing._update

    def slow(self: Drawing, payloads: list[bytes]) -> None:
        entered.set()
        release.wait(WAIT_S)
        update(self, payloads)

    monkeypatch.setattr(Drawing, "_update", slow)
    async with viewed.signed_in() as client:
        drawing = asyncio.create_task(client.get("/session?id=s"))
        async with asyncio.timeout(WAIT_S):
            await asyncio.to_thread(entered.wait, WAIT_S)
            assert (await client.get("/")).status_code == 200  # served while the drawing waits
        release.set()
        assert (await drawing).status_code == 200


def test_a_signal_right_after_the_url_ends_the_viewer_with_exit_0(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncio.run(_one_session(db))

    class Signalling(io.StringIO):
        def write(self, text: str) -> int:
            os.kill(os.getpid(), signal.SIGINT)  # whoever read the URL signals at once
            return super().write(text)

    out = Signalling()
    monkeypatch.setattr(sys, "stdout", out)
    args = argparse.Namespace(host="127.0.0.1", port=0, open=False)
    try:
        code = web_main(args, Settings(db_path=db))
    except KeyboardInterrupt:
        code = 130
    assert code == 0 and out.getvalue().startswith("http://127.0.0.1:")


async def _one_session(db: Path) -> None:
    store = SqliteStore(db)
    await store.open()
    await store.write(events(init("s", at(1))), [])
    await store.close()


def test_open_goes_through_a_private_file_that_redirects_and_is_removed(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{PORT}/?token=secret&x=<1>"
    with redirect_page(url) as page:
        assert "secret" not in page.as_uri()
        assert stat.S_IMODE(page.stat().st_mode) == 0o600
        html = page.read_text()
        assert 'http-equiv="refresh"' in html and "token=secret&amp;x=&lt;1&gt;" in html
    assert not page.exists()
