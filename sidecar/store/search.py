"""Full-text search: which text of an event is searched, and the scan the simple backends use.

Searched: prompts, assistant text (`full_text`, `text` parts of `content`), the final
`result` and `error` of session.stop, and tool results (`Ok` and `Err`). A query is a
list of words; an event matches when every word occurs in its text as a word, ignoring
case (the sqlite backend answers the same queries with FTS5).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import msgspec

from sidecar.store.base import Event, SearchHit, SearchQuery

SEARCHED_METHODS = frozenset({"user.prompt.submit", "assistant.response", "session.stop", "tool.result"})
SNIPPET_WORDS = 16
# Words as FTS5's unicode61 tokenizer makes them: letters, digits and private-use
# characters; `_` separates words; the combining accents it knows (its
# sqlite3Fts5UnicodeIsdiacritic) continue a word, so decomposed text ("e" + U+0301) is
# one word there and here. Case is compared by str.lower(), which folds as that tokenizer
# does (no ß -> ss). ASCII text, the most, takes the simpler and faster pattern.
_PRIVATE_USE = "\ue000-\uf8ff\U000f0000-\U000ffffd\U00100000-\U0010fffd"
_ACCENTS = "\u0300-\u0304\u0306-\u030c\u030f\u0311\u031b\u0323-\u0328\u032d\u032e\u0330\u0331"
_WORD = re.compile(f"(?:[^\\W_]|[{_PRIVATE_USE}])(?:[^\\W_]++|[{_ACCENTS}{_PRIVATE_USE}]++)*+")
_ASCII_WORD = re.compile(r"[^\W_]+")


class _Part(msgspec.Struct):
    text: str | None = None


class _Params(msgspec.Struct):
    timestamp: str = ""
    prompt: str | None = None
    full_text: str | None = None
    content: list[_Part] | None = None
    result: Any = None
    error: str | None = None


class _Notification(msgspec.Struct):
    params: _Params


_decoder = msgspec.json.Decoder(_Notification)


def query_terms(query: str) -> tuple[str, ...]:
    """The words of a query, lower-cased; () if it has none."""
    return tuple(dict.fromkeys(word.lower() for word in _words(query).findall(query)))


def searchable(method: str, payload: str | bytes) -> tuple[str, str] | None:
    """(timestamp text, searchable text) of an event, or None if it has no text to search."""
    if method not in SEARCHED_METHODS:
        return None
    try:
        params = _decoder.decode(payload).params
    except (msgspec.DecodeError, RecursionError):
        return None
    pieces: list[str] = []
    for value in (params.prompt, params.full_text, params.error):
        if isinstance(value, str):
            pieces.append(value)
    pieces.extend(part.text for part in params.content or () if part.text)
    result = params.result
    if isinstance(result, str):
        pieces.append(result)
    elif isinstance(result, dict):  # a tool result: {"Ok": text} or {"Err": text}
        pieces.extend(v for v in result.values() if isinstance(v, str))
    elif isinstance(result, list):  # a 0.3B+ final result: parts
        pieces.extend(p["text"] for p in result if isinstance(p, dict) and isinstance(p.get("text"), str))
    text = "\n".join(pieces)
    return (params.timestamp, text) if text else None


def snippet(text: str, terms: tuple[str, ...]) -> str | None:
    """A few words around the first match, as written, with matched words in [brackets];
    None unless every term occurs."""
    words = list(_words(text).finditer(text))
    found = {w.group().lower() for w in words}
    if not all(term in found for term in terms):
        return None
    first = next(i for i, w in enumerate(words) if w.group().lower() in terms)
    start = max(0, first - SNIPPET_WORDS // 4)
    window = words[start : start + SNIPPET_WORDS]
    pieces, at = [], window[0].start()
    for word in window:
        pieces.append(text[at : word.start()])
        pieces.append(f"[{word.group()}]" if word.group().lower() in terms else word.group())
        at = word.end()
    prefix = "…" if start > 0 else ""
    suffix = "…" if start + SNIPPET_WORDS < len(words) else text[at:]  # the end, as written
    return prefix + " ".join("".join(pieces).split()) + " ".join(suffix.split())


def _words(text: str) -> re.Pattern[str]:
    return _ASCII_WORD if text.isascii() else _WORD


def scan(events: Iterable[tuple[Event, int | None]], query: SearchQuery) -> list[SearchHit]:
    """Search by reading (event, seq) pairs: newest first, then the limit. Newest is the
    latest stored (highest seq), as the indexed backends answer; without seqs (jsonl),
    the latest instant (ties: the latest read)."""
    hits: list[tuple[int, int, SearchHit]] = []
    for arrival, (event, seq) in enumerate(events):
        found = searchable(event.method, event.payload)
        if found is None:
            continue
        text = snippet(found[1], query.terms)
        if text is not None:
            hit = SearchHit(event.session_id, seq, event.method, found[0], text)
            hits.append((event.timestamp_ns, arrival, hit) if seq is None else (seq, 0, hit))
    hits.sort(key=lambda h: (h[0], h[1]), reverse=True)
    return [hit for _, _, hit in hits[: query.limit]]
