"""Sessions as HTML, in-process: the transcript model drawn by the templates, escaped at the
last step whatever a transcript holds, and the static export that opens from disk."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from events import in_turn, vectors
from wire import Wire

from sidecar.clock import Clock
from sidecar.html import Pages, Site, export_site, markup
from sidecar.html.export import page_name
from sidecar.html.pages import parse_spans, spans
from sidecar.transcript import build

HOSTILE = [
    "<script>window.pwned=1</script>",
    '<img src=x onerror="window.pwned=1">',
    '"><svg onload=alert(1)>',
]
SITE = Site(
    live=True, index_href="/", session_href=lambda s: f"/session?id={s}", raw_href=lambda s, i: "/raw"
)


def page(events: list[dict[str, Any]], site: Site = SITE, raw: list[str] | None = None) -> str:
    pages = Pages(site, Clock(utc=True))
    transcript = build(events)
    return pages.session(transcript, pages.session_parts(transcript, len(events), raw))


class Elements(HTMLParser):
    """What a browser would make of a page: its elements, event handler attributes, script
    sources, link targets and text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.handlers: list[str] = []
        self.scripts: list[str | None] = []
        self.hrefs: list[str] = []
        self.text = ""
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.handlers += [name for name, _ in attrs if name.startswith("on")]
        if tag == "script":
            self.scripts.append(dict(attrs).get("src"))
        self.hrefs += [value or "" for name, value in attrs if name == "href"]

    def handle_data(self, data: str) -> None:
        self.text += data


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_anywhere_in_a_transcript_renders_as_text(text: str) -> None:
    html = page(
        [
            in_turn("session.init", 0, model=text, provider=text),
            in_turn("user.prompt.submit", 1, prompt=text),
            in_turn(
                "assistant.response",
                2,
                full_text=f"{text}\n\n[link](javascript:alert(1)) ![i](http://x/i.png)",
            ),
            in_turn("tool.call", 3, name=text, input={"q": text}, tool_call_id=text),
            in_turn("tool.result", 4, result={"Err": text}, tool_call_id=text),
            in_turn("session.stop", 5, success=False, error=text, result=text, usage={text: 1}),
        ]
    )
    parsed = Elements(html)
    assert parsed.scripts == ["/static/viewer.js"]  # the viewer's own file, nothing from the transcript
    assert parsed.handlers == [] and "svg" not in parsed.tags and "img" not in parsed.tags
    assert not [href for href in parsed.hrefs if href.lower().startswith("javascript:")]
    assert text in parsed.text  # shown, as text


def test_consecutive_deltas_are_one_text_with_a_permalink_to_each() -> None:
    deltas = [
        in_turn("stream.delta", 2, delta=word, delta_type="Text") for word in ("Hel", "lo ", "wor", "ld")
    ]
    html = page([in_turn("user.prompt.submit", 1, prompt="hi"), *deltas])
    assert "<p>Hello world</p>" in html and "4 deltas" in html
    assert all(f'id="e-{i}"' in html for i in range(5))
    assert "still streaming" in html


def test_thinking_is_collapsed() -> None:
    html = page(
        [
            in_turn("user.prompt.submit", 1, prompt="hi"),
            in_turn("stream.delta", 2, delta="hmm", delta_type="Thinking"),
        ]
    )
    assert re.search(r'<details class="item thinking" id="e-1">', html)


def test_a_tool_call_is_drawn_with_its_result_and_a_failed_one_is_marked() -> None:
    html = page(
        [
            in_turn("user.prompt.submit", 1, prompt="go"),
            in_turn("tool.call", 2, name="read", input={"path": "a.rs"}, tool_call_id="c1"),
            in_turn("tool.call", 3, name="write", input={"path": "b.rs"}, tool_call_id="c2"),
            in_turn("tool.result", 4, result={"Err": "denied"}, tool_call_id="c2"),
            in_turn("tool.result", 5, result={"Ok": "fn main"}, tool_call_id="c1"),
        ]
    )
    read = html[html.index('id="e-1"') : html.index('id="e-2"')]
    write = html[html.index('id="e-2"') :]
    assert "a.rs" in read and 'class="result ok" id="e-4"' in read and "fn main" in read
    assert 'class="item tool failed" id="e-2"' in html and 'class="result err" id="e-3"' in write


@pytest.mark.parametrize("session_id", sorted({json.loads(v)["params"]["session_id"] for v in vectors()}))
def test_every_generation_of_the_shared_vectors_renders_every_event(session_id: str) -> None:
    events = [e for e in map(json.loads, vectors()) if e["params"]["session_id"] == session_id]
    html = page(events, raw=[json.dumps(e) for e in events])
    for index in range(len(events)):
        assert f'id="e-{index}"' in html, index
    assert html.count("raw JSON") >= 1


def test_spans_name_positions_compactly_and_read_back() -> None:
    assert spans([9, 3, 4, 5, 7]) == "3-5,7,9"
    assert parse_spans("3-5,7,9", 10) == [3, 4, 5, 7, 9]
    for bad in ("", "a", "5-3", "10", "-1"):
        with pytest.raises(ValueError):
            parse_spans(bad, 10)


def test_page_names_are_files_whatever_the_session_id() -> None:
    for session_id in ("../../etc/passwd", "/abs", ".hidden", "a b\\c", "", "\x00"):
        name = page_name(session_id)
        assert re.fullmatch(r"session-[A-Za-z0-9_-]+-[0-9a-f]{10}\.html", name), name
    assert page_name("a/b") != page_name("a-b")


async def test_the_static_export_is_an_index_and_a_page_per_session_that_load_and_run_nothing(
    wire: Wire, tmp_path: Path
) -> None:
    await wire.feed(b"\n".join(vectors()) + b"\n")
    written = await export_site(wire.handlers, tmp_path / "site", None, clock=Clock(utc=True))
    files = sorted((tmp_path / "site").iterdir())
    sessions = {json.loads(v)["params"]["session_id"] for v in vectors()}
    assert written == len(files) == len(sessions) + 1
    index = (tmp_path / "site" / "index.html").read_text()
    for session_id in sessions:
        assert f'href="{page_name(session_id)}"' in index
    for file in files:
        html = file.read_text()
        assert "<script" not in html and "<link" not in html and 'src="' not in html
        assert "<style>" in html and "default-src &#39;none&#39;" in html


async def test_an_export_of_named_sessions_writes_only_those(wire: Wire, tmp_path: Path) -> None:
    await wire.feed(b"\n".join(vectors()) + b"\n")
    first = json.loads(vectors()[0])["params"]["session_id"]
    assert await export_site(wire.handlers, tmp_path, [first]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["index.html", page_name(first)])


def test_links_to_this_machine_show_their_target_as_text_and_others_stay_links() -> None:
    text = "[a](http://127.0.0.1:9/x) [b](http://localhost:3/) [c](http://127.1/) [d](https://example.com/)"
    html = str(markup.markdown(text))
    assert html.count("<a ") == 1 and 'href="https://example.com/"' in html
    for target in ("http://127.0.0.1:9/x", "http://localhost:3/", "http://127.1/"):
        assert f"<code>{target}</code>" in html and f'href="{target}"' not in html
