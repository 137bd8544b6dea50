from __future__ import annotations

import re
from typing import Any

from events import USAGE_TOKENS, in_turn, vector_session

from sidecar.markdown import OUTPUT_CHARS, transcript_markdown
from sidecar.transcript import build

FIRST = "9b2f0c64-1d2e-4f7a-8c11-3e5d7a9b0c21"


def markdown(events: list[dict[str, Any]], full: bool = False) -> str:
    return transcript_markdown(build(events), format_time=lambda ts: f"<{ts}>", full=full)


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(info string, content) of each fenced block, read the way CommonMark reads them."""
    blocks, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        opening = re.fullmatch(r"(`{3,})(.*)", lines[i])
        if opening is None:
            i += 1
            continue
        fence, info, body = opening.group(1), opening.group(2), []
        i += 1
        while i < len(lines) and not re.fullmatch(f"{fence}`*", lines[i]):
            body.append(lines[i])
            i += 1
        blocks.append((info, "\n".join(body)))
        i += 1
    return blocks


def test_the_document_has_a_title_turns_tool_calls_in_fences_and_the_end() -> None:
    text = markdown(vector_session(FIRST))
    assert text.startswith(f"# Session `{FIRST}`\n")
    assert "**Model:** `anthropic/claude-sonnet-4.5` · **Provider:** `openrouter`" in text
    assert "**Started:** \\<2026-06-07T14:03:21.482913577Z\\>" in text  # format_time's text, escaped
    assert "## Turn 1" in text and "> List the files in src/ and summarise them." in text
    assert fenced_blocks(text) == [("json", '{\n  "path": "src/",\n  "depth": 1\n}'), ("", "lib.rs\nmain.rs")]
    assert "- Skill loaded: `rust`" in text
    assert "There are two files: lib.rs and main.rs — ½ of them is a binary." in text
    assert "Let me look" not in text  # the delta the response superseded
    end = text[text.index("## End") :]
    assert "**Success**" in end and "`latency=2421`" in end
    order = [
        "## Turn 1",
        "**Tool call** `list_dir`",
        "**Result:**",
        "Skill loaded",
        "There are two",
        "## End",
    ]
    assert [text.index(part) for part in order] == sorted(text.index(part) for part in order)


def test_a_failed_tool_and_a_failed_session_are_marked_as_errors() -> None:
    events = [
        in_turn("user.prompt.submit", 0, prompt="go"),
        in_turn("tool.call", 1, name="sh", input={"cmd": "x"}, tool_call_id="c1"),
        in_turn("tool.result", 2, result={"Err": "no such command"}, tool_call_id="c1"),
        in_turn(
            "session.stop", 3, success=False, result=None, error="gave *up*", usage=USAGE_TOKENS,
            incomplete_tasks=["deploy"],
        ),
    ]  # fmt: skip
    text = markdown(events)
    assert "**Error:**\n\n```\nno such command\n```" in text
    assert (
        "**Failed**" in text
        and "**Error:** gave \\*up\\*" in text
        and "**Incomplete tasks:** `deploy`" in text
    )


def test_thinking_is_quoted_and_partial_text_is_marked() -> None:
    events = [
        in_turn("user.prompt.submit", 0, prompt="why?"),
        in_turn("assistant.response", 1, content=[{"thinking": "line one\nline two", "signature": None}]),
        in_turn("stream.delta", 2, delta="Because", delta_type="Text"),
    ]
    text = markdown(events)
    assert "> **Thinking**\n>\n> line one\n> line two" in text
    assert "Because\n\n*(still streaming, or cut off: no response followed)*" in text


def test_fences_outrun_the_backticks_of_what_they_hold() -> None:
    output = "before\n```\nnot the end\n````\nafter"
    events = [
        in_turn("tool.call", 0, name="cat", input={"text": "```"}, tool_call_id="c1"),
        in_turn("tool.result", 1, result={"Ok": output}, tool_call_id="c1"),
    ]
    blocks = fenced_blocks(markdown(events))
    assert blocks == [("json", '{\n  "text": "```"\n}'), ("", output)]


def test_long_tool_output_is_cut_unless_full() -> None:
    output = "x" * (OUTPUT_CHARS + 50)
    events = [
        in_turn("tool.call", 0, name="cat", input={}, tool_call_id="c1"),
        in_turn("tool.result", 1, result={"Ok": output}, tool_call_id="c1"),
    ]
    cut = fenced_blocks(markdown(events))[1][1]
    assert cut == "x" * OUTPUT_CHARS + "\n… (50 more characters; --full shows all)"
    assert fenced_blocks(markdown(events, full=True))[1][1] == output


def test_text_from_the_transcript_cannot_become_markup_of_the_document() -> None:
    events = [
        in_turn("session.init", 0, model="m`x", provider="<b>p</b>", system="", init_type="Start"),
        in_turn("user.prompt.submit", 1, prompt="hi"),
        in_turn("tool.call", 2, name="a`b", input={}, tool_call_id="c1"),
        in_turn("assistant.response", 3, full_text="```python\nopen fence", tool_calls=None),
        in_turn("skill.load", 4, skill_name="k"),
    ]
    text = markdown(events)
    assert "**Model:** ``m`x`` · **Provider:** `<b>p</b>`" in text
    assert "**Tool call** ``a`b``" in text
    # the assistant's unclosed fence is closed before the next item
    assert "```python\nopen fence\n```\n\n- Skill loaded: `k`" in text


def test_results_without_their_call_and_calls_without_a_result_are_shown_as_such() -> None:
    events = [
        in_turn("user.prompt.submit", 0, prompt="go"),
        in_turn("tool.result", 1, result={"Ok": "lost"}, tool_call_id="c9"),
        in_turn("tool.call", 2, name="slow", input={}, tool_call_id="c1"),
    ]
    text = markdown(events)
    assert "**Result of `c9`** (its call is not in this session)" in text
    assert "**Tool call** `slow`" in text and text.rstrip().endswith("*(no result)*")


def test_what_came_before_the_first_prompt_and_a_resume_have_their_own_places() -> None:
    events = [
        in_turn("session.init", 0, model="m", provider="p", system="", init_type="Start"),
        in_turn("skill.load", 1, skill_name="early"),
        in_turn("user.prompt.submit", 2, prompt="one"),
        in_turn("session.init", 3, model="m", provider="p", system="", init_type="Resume"),
        in_turn("user.prompt.submit", 4, prompt="two", turn_id="t2"),
    ]
    text = markdown(events)
    assert text.count("Session started") == 0  # the title says it
    order = ["## Before the first prompt", "`early`", "## Turn 1", "*Session resumed*", "## Turn 2"]
    assert [text.index(part) for part in order] == sorted(text.index(part) for part in order)
    assert "**Last activity:** \\<2026-06-07T14:00:04Z\\> (not stopped)" in text
