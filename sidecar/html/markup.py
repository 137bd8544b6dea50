"""Transcript text made into safe HTML: markdown with raw HTML disabled, search snippets
with their matches marked, JSON values shown as text. Every function returns Markup whose
transcript text was escaped here; nothing from a transcript becomes a tag or an attribute."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from markupsafe import Markup, escape

# Links stay links (markdown-it refuses javascript:, vbscript:, file: and data: targets);
# images are off: a transcript must not make the browser fetch anything.
_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_MARKDOWN.enable(["table", "strikethrough"]).disable("image")


def _link_open(
    renderer: RendererHTML, tokens: Sequence[Token], index: int, options: OptionsDict, env: EnvType
) -> str:
    tokens[index].attrSet("rel", "noopener noreferrer nofollow")
    return renderer.renderToken(tokens, index, options, env)


_MARKDOWN.add_render_rule("link_open", _link_open)

_SNIPPET_MATCH = re.compile(r"\[([^\[\]]*)\]")


@lru_cache(maxsize=4096)  # a live page renders the same texts at every refresh
def markdown(text: str) -> Markup:
    """Markdown as HTML; HTML in the text shows as text."""
    return Markup(_MARKDOWN.render(text))


def snippet(text: str) -> Markup:
    """A search snippet with its [bracketed] matches in <mark>, the rest escaped."""
    out: list[str] = []
    last = 0
    for match in _SNIPPET_MATCH.finditer(text):
        out.append(str(escape(text[last : match.start()])))
        out.append(f"<mark>{escape(match[1])}</mark>")
        last = match.end()
    out.append(str(escape(text[last:])))
    return Markup("".join(out))


def pretty(value: Any) -> str:
    """A tool's input as people read it: text as it is, other JSON values indented."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


def usage(value: dict[str, Any] | None) -> str:
    """Token and latency counts on one line: `input_tokens 1000 · output_tokens 200`."""
    return " · ".join(f"{key} {count}" for key, count in (value or {}).items())


def raw_json(payload: bytes) -> str:
    """A stored event as indented JSON text (its bytes as they are if they are not JSON)."""
    try:
        return json.dumps(json.loads(payload), ensure_ascii=False, indent=2)
    except ValueError:
        return payload.decode("utf-8", "replace")
