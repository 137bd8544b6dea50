"""What text of an event is searched, how a query splits into words, the snippet, and the
scan of the simple backends (sidecar.store.search)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest
from events import event, init, line, notification, prompt, response, stop

from sidecar.store.base import SearchQuery
from sidecar.store.search import SNIPPET_WORDS, query_terms, scan, searchable, snippet

T1, T2, T3 = (f"2026-06-07T14:03:2{n}Z" for n in range(1, 4))
COUNTING = " ".join(f"w{n}" for n in range(40))


def text_of(message: dict[str, Any]) -> str | None:
    found = searchable(message["method"], line(message))
    return None if found is None else found[1]


def tool_result(result: Any) -> dict[str, Any]:
    return notification(
        "tool.result", session_id="s", turn_id="t1", tool_call_id="c1", result=result, timestamp=T1
    )


# --- query_terms -------------------------------------------------------------------------


def test_a_query_is_its_words_lower_cased_once_each_in_order() -> None:
    assert query_terms("Find the ALBATROSS, the albatross!") == ("find", "the", "albatross")


def test_underscores_and_punctuation_separate_words_and_digits_belong_to_them() -> None:
    assert query_terms("snake_case don't x2-y3") == ("snake", "case", "don", "t", "x2", "y3")


def test_a_query_without_letters_or_digits_has_no_terms() -> None:
    assert query_terms(" _-*\"'() ") == ()


def test_sharp_s_stays_sharp_s_when_lower_cased() -> None:
    assert query_terms("STRAẞE Straße") == ("straße",)


# --- searchable ----------------------------------------------------------------------------


def test_prompts_and_assistant_text_are_searched_with_their_timestamp_as_written() -> None:
    assert searchable("user.prompt.submit", line(prompt("s", T2, text="hello there"))) == (T2, "hello there")
    assert text_of(response("s", T1, text="an answer")) == "an answer"


def test_assistant_content_parts_are_searched_where_they_hold_text() -> None:
    message = notification(
        "assistant.response",
        session_id="s",
        turn_id="t1",
        content=[{"type": "text", "text": "first"}, {"type": "image"}, {"type": "text", "text": "second"}],
        timestamp=T1,
    )
    assert text_of(message) == "first\nsecond"


def test_a_stop_is_searched_by_its_result_and_error() -> None:
    assert text_of(stop("s", T1, result="all done")) == "all done"
    failed = notification("session.stop", session_id="s", success=False, error="it broke", timestamp=T1)
    assert text_of(failed) == "it broke"
    parts = [{"type": "text", "text": "part one"}, {"type": "other"}, {"type": "text", "text": "two"}]
    assert text_of(stop("s", T1, result=parts)) == "part one\ntwo"


def test_a_tool_result_is_searched_whether_ok_or_err() -> None:
    assert text_of(tool_result({"Ok": "file contents"})) == "file contents"
    assert text_of(tool_result({"Err": "no such file"})) == "no such file"


def test_events_without_text_are_not_searched() -> None:
    assert searchable("session.init", line(init("s"))) is None
    assert text_of(stop("s", T1, result=None)) is None
    assert text_of(response("s", T1, text="")) is None


def test_an_unreadable_payload_is_not_searched() -> None:
    assert searchable("user.prompt.submit", b"{not json") is None
    assert searchable("user.prompt.submit", b'{"params": {"prompt": 5}}') is None


# --- snippet -------------------------------------------------------------------------------


def test_a_snippet_brackets_every_matched_word_as_written_ignoring_case() -> None:
    assert snippet("Hello world, HELLO again!", ("hello",)) == "[Hello] world, [HELLO] again!"


def test_a_snippet_needs_every_term_as_a_whole_word() -> None:
    assert snippet("the category of cats", ("cat",)) is None
    assert snippet("one fish two fish", ("fish", "red")) is None
    assert snippet("one fish two fish", ("two", "fish")) == "one [fish] [two] [fish]"


def test_a_snippet_is_a_window_of_words_around_the_first_match_on_one_line() -> None:
    text = snippet(COUNTING, ("w20",))
    assert text is not None
    assert text.startswith("…w16 w17 w18 w19 [w20] w21") and text.endswith("…")
    assert len(text.strip("…").split()) == SNIPPET_WORDS
    assert snippet("  spaced\n\n out   text. ", ("out",)) == "spaced [out] text."


def test_a_snippet_near_the_start_or_end_has_no_ellipsis_there() -> None:
    text = snippet(COUNTING, ("w1",))
    assert text is not None and text.startswith("w0 [w1]") and text.endswith("…")
    tail = snippet(COUNTING, ("w39",))
    assert tail is not None and tail.startswith("…") and tail.endswith("[w39]")


# --- words as FTS5's unicode61 tokenizer splits them (the sqlite backend) ----------------


@pytest.fixture(scope="module")
def fts5() -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(":memory:")) as db:
        db.execute("CREATE VIRTUAL TABLE t USING fts5(text, tokenize = 'unicode61 remove_diacritics 0')")
        yield db


def fts5_matches(db: sqlite3.Connection, text: str, terms: tuple[str, ...]) -> bool:
    """Whether the sqlite backend's MATCH of these terms finds `text`."""
    db.execute("DELETE FROM t")
    db.execute("INSERT INTO t (text) VALUES (?)", (text,))
    match = " ".join('"' + term.replace('"', '""') + '"' for term in terms)
    return bool(db.execute("SELECT 1 FROM t WHERE t MATCH ?", (match,)).fetchall())


@pytest.mark.parametrize(
    ("text", "query", "found"),
    [
        ("snake_case names", "case", True),
        ("the category", "cat", False),
        ("don't", "t", True),
        ("Straße", "strasse", False),
        ("STRAẞE", "straße", True),
        ("ÉCOLE", "école", True),
        ("ΣΊΣΥΦΟΣ", "σίσυφος", True),
        ("½ cup", "½", True),
        ("cafe\u0301 au lait", "cafe\u0301", True),  # a decomposed accent is part of its word
        ("cafe\u0301 au lait", "cafe", False),
        ("n\u0303o", "n\u0303o", True),
        ("\ue000icon", "\ue000icon", True),  # private-use characters are letters to FTS5
        ("\ue000icon", "icon", False),
    ],
)
def test_words_match_as_fts5_matches_them(
    fts5: sqlite3.Connection, text: str, query: str, found: bool
) -> None:
    terms = query_terms(query)
    assert (snippet(text, terms) is not None, fts5_matches(fts5, text, terms)) == (found, found)


# --- scan ----------------------------------------------------------------------------------


def test_a_scan_finds_events_holding_every_term_latest_stored_first() -> None:
    events = [
        (event(prompt("a", T1, text="find the albatross")), 1),
        (event(init("a")), 2),
        (event(response("b", T3, text="an albatross, found")), 3),
        (event(prompt("b", T2, text="albatross alone")), 4),
    ]
    hits = scan(events, SearchQuery(terms=("albatross", "found")))
    assert [(h.session_id, h.seq, h.method, h.timestamp, h.snippet) for h in hits] == [
        ("b", 3, "assistant.response", T3, "an [albatross], [found]")
    ]
    assert [h.seq for h in scan(events, SearchQuery(terms=("albatross",)))] == [4, 3, 1]


def test_a_scan_orders_by_seq_or_else_by_instant_and_latest_read_and_then_limits() -> None:
    same = [event(prompt("s", T1, text=f"word {n}")) for n in range(3)]
    with_seqs = scan([(e, seq) for e, seq in zip(same, (5, 9, 7), strict=True)], SearchQuery(terms=("word",)))
    assert [h.seq for h in with_seqs] == [9, 7, 5]
    unnumbered = scan([(e, None) for e in same], SearchQuery(terms=("word",), limit=2))
    assert [h.snippet for h in unnumbered] == ["[word] 2", "[word] 1"]
