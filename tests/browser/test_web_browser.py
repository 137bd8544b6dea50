"""The viewer in a real browser: Chromium, driven by Playwright, against the real
`python -m sidecar web` process on a store another real process writes.

Every wait is for something to show, bounded by Playwright's timeouts; nothing sleeps.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from daemon import Daemon
from events import changed, init, prompt, response, stop, tool_call, tool_result
from playwright.sync_api import Browser, Page, expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
REBOUND = "rebinding.example"  # a name the browser resolves to 127.0.0.1, as DNS rebinding would
WAIT_MS = 10_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="no Chromium at /usr/bin/chromium (apt-get install chromium)"
    ),
]


def at(second: int) -> str:
    return f"2026-06-07T14:00:{second:02}Z"


LONG_TURNS = 170  # more than a page shows at first: older turns are fetched when asked for
HOSTILE_PROMPT = '<img src=x onerror="window.pwned=1"> and <script>window.pwned=1</script>'


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database written by the real daemon: a session with a tool call, a hostile one."""
    db = tmp_path_factory.mktemp("viewer") / "sessions.db"
    with Daemon(db) as daemon:
        daemon.send(
            init("tools", at(1)),
            prompt("tools", at(2), text="Read the albatross file"),
            tool_call("tools", at(3), path="src/albatross.rs"),
            tool_result("tools", at(4), result={"Ok": "fn fly() {}"}),
            response("tools", at(5), text="The file defines **fly**."),
            stop("tools", at(6)),
        )
        daemon.send(
            init("hostile", at(7)),
            prompt("hostile", at(8), text=HOSTILE_PROMPT),
            response(
                "hostile", at(9), text='<script>window.pwned=1</script><img src=x onerror="window.pwned=1">'
            ),
        )
        daemon.send(init("long", at(14)))
        for n in range(LONG_TURNS):
            daemon.send(
                prompt("long", at(15), text=f"question {n}"), response("long", at(15), text=f"answer {n}")
            )
        assert daemon.close() == 0
    return db


@pytest.fixture(scope="module")
def viewer(store: Path) -> Iterator[str]:
    """The viewer's URL (token included); at the end, SIGTERM must end it with exit 0."""
    with Daemon(store, "web", "--port", "0") as process:
        url = process.read_raw_line().decode().strip()
        assert url.startswith("http://127.0.0.1:") and "/?token=" in url
        yield url
        process.signal(signal.SIGTERM)
        assert process.wait() == 0, process.stderr


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=[f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    yield context.new_page()
    context.close()


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def test_the_sessions_page_lists_the_sessions_of_a_real_store(viewer: str, page: Page) -> None:
    page.goto(viewer)
    assert "token" not in page.url  # kept in the cookie, out of the address bar
    rows = page.locator("#rows tr")
    expect(rows.filter(has_text="Read the albatross file")).to_have_count(1)
    expect(rows.filter(has_text="hostile")).to_have_count(1)


def test_a_session_page_shows_its_prompts_tool_calls_and_results(viewer: str, page: Page) -> None:
    page.goto(viewer)
    page.get_by_role("link", name="tools", exact=True).click()
    expect(page.locator(".prompt")).to_contain_text("Read the albatross file")
    call = page.locator(".item.tool")
    expect(call).to_contain_text("src/albatross.rs")
    expect(call.locator(".result.ok")).to_contain_text("fn fly() {}")
    expect(page.locator(".markdown strong")).to_have_text("fly")
    raw = page.locator(".prompt details.raw")
    raw.locator("summary").click()
    expect(raw.locator("pre")).to_contain_text('"method": "user.prompt.submit"')


def test_a_hostile_transcript_executes_nothing_and_shows_as_text(viewer: str, page: Page) -> None:
    page.goto(viewer)
    page.get_by_role("link", name="hostile", exact=True).click()
    expect(page.locator(".prompt")).to_contain_text(HOSTILE_PROMPT)
    expect(page.locator("#turn-0 .markdown")).to_contain_text("<script>window.pwned=1</script>")
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.locator("main img, main script").count() == 0


def test_search_finds_the_words_and_links_to_the_event(viewer: str, page: Page) -> None:
    page.goto(viewer)
    page.get_by_label("search every session").fill("albatross")
    page.get_by_label("search every session").press("Enter")
    hit = page.locator(".hit").filter(has_text="user.prompt.submit")
    expect(hit.locator("mark")).to_have_text("albatross")
    hit.get_by_role("link").click()
    expect(page).to_have_url(f"{origin(viewer)}/session?id=tools#e-1")
    expect(page.locator("#e-1")).to_contain_text("Read the albatross file")


def test_a_permalink_into_a_hidden_chunk_loads_it_and_older_turns_open_on_demand(
    viewer: str, page: Page
) -> None:
    page.goto(viewer)
    page.goto(f"{origin(viewer)}/session?id=long#e-1")  # the first prompt: not in the first view
    expect(page.locator("#e-1")).to_contain_text("question 0")
    expect(page.locator("#e-1")).to_be_in_viewport()
    hidden = page.locator("section.chunk.hidden")
    expect(hidden).to_have_count(1)  # chunks 0 and 1 were hidden: 0 is loaded now
    hidden.get_by_role("button").click()
    expect(page.locator("section.chunk.hidden")).to_have_count(0)
    expect(page.locator("#turns")).to_contain_text("question 50")


def test_a_live_session_page_shows_what_another_process_writes_without_reloading(
    viewer: str, store: Path, page: Page
) -> None:
    with Daemon(store) as writer:
        writer.send(init("live", at(10)), prompt("live", at(11), text="first words"))
        writer.result("storage.flush")
        page.goto(viewer)
        page.get_by_role("link", name="live", exact=True).click()
        expect(page.locator("#live-state")).to_have_class("live-state on")
        page.evaluate("window.loadedOnce = true")
        writer.send(response("live", at(12), text="an answer written later"))
        writer.send(changed(stop("live", at(13)), success=False, error="it broke"))
        expect(page.locator("#turns")).to_contain_text("an answer written later")
        expect(page.locator("#end .stop.err")).to_contain_text("it broke")
        expect(page.locator("#facts")).to_contain_text("stopped")
        assert page.evaluate("window.loadedOnce") is True  # the same page: no reload
        assert writer.close() == 0


def test_the_sessions_page_shows_new_sessions_live(viewer: str, store: Path, page: Page) -> None:
    page.goto(viewer)
    expect(page.locator("#live-state")).to_have_class("live-state on")
    with Daemon(store) as writer:
        writer.send(init("arrived", at(20)), prompt("arrived", at(21), text="a session that just began"))
        expect(page.locator("#rows tr").first).to_contain_text("a session that just began")
        assert writer.close() == 0


def test_a_request_without_the_token_is_refused(viewer: str, page: Page) -> None:
    answer = page.goto(origin(viewer) + "/")
    assert answer is not None and answer.status == 403
    answer = page.goto(origin(viewer) + "/?token=guessed")
    assert answer is not None and answer.status == 403


def test_a_page_under_another_host_name_is_refused(viewer: str, page: Page) -> None:
    answer = page.goto(viewer.replace("127.0.0.1", REBOUND))  # the right token, a foreign name
    assert answer is not None and answer.status == 403
    assert "unexpected Host" in page.content()


def test_the_static_export_opens_from_disk_with_its_sessions(store: Path, tmp_path: Path, page: Page) -> None:
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "--db", str(store), "export", "--html", str(site)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto((site / "index.html").as_uri())
    page.get_by_role("link", name="tools", exact=True).click()
    expect(page.locator(".item.tool .result.ok")).to_contain_text("fn fly() {}")
    expect(page.locator("body")).to_have_css("margin", "0px")  # the stylesheet, inline, applied
    assert all(url.startswith("file://") for url in requested), requested
