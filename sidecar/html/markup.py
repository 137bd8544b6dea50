"""Transcript text made into safe HTML: markdown with raw HTML disabled, search snippets
with their matches marked, JSON values shown as text. Every function returns Markup whose
transcript text was escaped here; nothing from a transcript becomes a tag or an attribute."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.rules_core import StateCore
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


def _local_links(state: StateCore) -> None:
    """Links to this machine (localhost, loopback) become text showing their target: the
    viewer's cookie is per port, not per host, so a link to another local port would be a
    same-site navigation carrying it; and a transcript has no business linking there."""
    for block in state.tokens:
        for token in block.children or ():
            if token.type == "link_open" and is_local(str(token.attrGet("href") or "")):
                token.type = "local_link_open"
            elif token.type == "link_close" and _opened_local(block.children or [], token):
                token.type = "local_link_close"


def _opened_local(children: Sequence[Token], close: Token) -> bool:
    opened = None
    for token in children:
        if token is close:
            return opened is not None and opened.type == "local_link_open"
        if token.type in ("link_open", "local_link_open"):
            opened = token
    return False


def _local_link_open(
    renderer: RendererHTML, tokens: Sequence[Token], index: int, options: OptionsDict, env: EnvType
) -> str:
    return '<span class="local-link">'


def _local_link_close(
    renderer: RendererHTML, tokens: Sequence[Token], index: int, options: OptionsDict, env: EnvType
) -> str:
    opened = next(t for t in reversed(tokens[:index]) if t.type == "local_link_open")
    return f" <code>{escape(str(opened.attrGet('href') or ''))}</code></span>"


_MARKDOWN.core.ruler.push("local_links", _local_links)
_MARKDOWN.add_render_rule("local_link_open", _local_link_open)
_MARKDOWN.add_render_rule("local_link_close", _local_link_close)
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+))*\.?$", re.IGNORECASE)


def is_local(href: str) -> bool:
    """Whether a link leads to this machine: localhost, a loopback or unspecified address,
    or a number the browser may read as one (127.1, 2130706433)."""
    try:
        host = (urlsplit(href).hostname or "").rstrip(".").lower()
    except ValueError:
        return True  # not a URL the browser agrees on: not a link either
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return bool(_NUMERIC_HOST.match(host))  # not the dotted form: the browser's reading may be local
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or address.is_unspecified or (mapped is not None and mapped.is_loopback)


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
