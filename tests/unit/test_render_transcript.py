"""`render.transcript`: the terminal drawing of `sidecar.transcript`'s model."""

from __future__ import annotations

from events import in_turn, vector_session

from sidecar import render
from sidecar.render import RESULT_CHARS, Style

PLAIN = Style(False)
COLOUR = Style(True)
FIRST = "9b2f0c64-1d2e-4f7a-8c11-3e5d7a9b0c21"


def test_a_session_reads_as_prompt_then_assistant_with_its_tool_calls_and_results_then_the_stop() -> None:
    assert render.transcript(vector_session(FIRST), PLAIN) == "\n".join(
        [
            f"── session {FIRST} · anthropic/claude-sonnet-4.5 · openrouter  2026-06-07 14:03:21",
            "",
            "you  2026-06-07 14:03:21",
            "List the files in src/ and summarise them.",
            "",
            "assistant  2026-06-07 14:03:22",
            '  → list_dir({"path":"src/","depth":1})',
            "  ← lib.rs",
            "    main.rs",
            "  ◆ skill rust",
            "There are two files: lib.rs and main.rs — ½ of them is a binary.",
            "",
            "── stopped ok  2026-06-07 14:03:23",
            "usage: latency=2421 input_chars=6174 estimated_input_tokens=1389 output_chars=71"
            " estimated_output_tokens=18",
        ]
    )


def test_tool_calls_of_a_full_text_response_are_shown_with_their_results() -> None:
    calls = [{"id": "c1", "call_type": "function", "function": {"name": "grep", "arguments": '{"q":"x"}'}}]
    events = [
        in_turn("user.prompt.submit", 0, prompt="find x"),
        in_turn("assistant.response", 1, full_text="Searching.", tool_calls=calls),
        in_turn("tool.result", 2, result={"Ok": "found"}, tool_call_id="c1"),
    ]
    lines = render.transcript(events, PLAIN).split("\n")
    assert lines[-4:] == ["assistant  2026-06-07 14:00:01", "Searching.", '  → grep({"q":"x"})', "  ← found"]


def test_the_you_heading_holds_only_the_prompt() -> None:
    events = [
        in_turn("user.prompt.submit", 0, prompt="read a"),
        in_turn("tool.call", 1, name="read", input={"path": "a"}, tool_call_id="c1"),
        in_turn("tool.result", 2, result={"Ok": "A"}, tool_call_id="c1"),
        in_turn("assistant.response", 3, content=[{"text": "It says A."}]),
    ]
    assert render.transcript(events, PLAIN).split("\n") == [
        "",
        "you  2026-06-07 14:00:00",
        "read a",
        "",
        "assistant  2026-06-07 14:00:01",
        '  → read({"path":"a"})',
        "  ← A",
        "It says A.",
    ]


def test_tool_output_is_cut_unless_full() -> None:
    output = "y" * (RESULT_CHARS + 7)
    events = [in_turn("tool.result", 0, result={"Ok": output}, tool_call_id="c1")]
    assert (
        render.transcript(events, PLAIN) == f"  ← {'y' * RESULT_CHARS}… (7 more characters; --full shows all)"
    )
    assert render.transcript(events, PLAIN, full=True) == f"  ← {output}"


def test_errors_are_red_and_thinking_is_dim() -> None:
    events = [
        in_turn("assistant.response", 0, content=[{"thinking": "hmm", "signature": None}]),
        in_turn("tool.call", 1, name="sh", input={}, tool_call_id="c1"),
        in_turn("tool.result", 2, result={"Err": "denied"}, tool_call_id="c1"),
    ]
    text = render.transcript(events, COLOUR)
    assert "\033[2m(thinking) hmm\033[0m" in text
    assert "\033[31m  ← error: \033[0mdenied" in text


def test_format_time_prints_every_timestamp() -> None:
    events = [in_turn("user.prompt.submit", 0, prompt="hi"), in_turn("assistant.response", 1, full_text="yo")]
    text = render.transcript(events, PLAIN, format_time=lambda ts: f"at {ts[-3:]}")
    assert "you  at 00Z" in text and "assistant  at 01Z" in text


def test_streamed_text_no_response_followed_is_shown_and_marked() -> None:
    events = [
        in_turn("user.prompt.submit", 0, prompt="hi"),
        in_turn("stream.delta", 1, delta="Hel", delta_type="Text"),
        in_turn("stream.delta", 2, delta="lo", delta_type="Text"),
    ]
    assert render.transcript(events, PLAIN).split("\n")[-2:] == [
        "Hello",
        "… (streamed; no response followed)",
    ]


def test_events_one_at_a_time_render_as_tail_shows_them() -> None:
    delta = in_turn("stream.delta", 0, delta="Hel", delta_type="Text")
    assert render.transcript([delta], PLAIN) == ""
    assert render.transcript([delta], PLAIN, deltas=True) == "Hel"
    assert render.transcript([], PLAIN) == ""
    one = [
        in_turn("user.prompt.submit", 1, prompt="hi"),
        in_turn("tool.call", 2, name="read", input={}, tool_call_id="c1"),
        in_turn("tool.result", 3, result={"Ok": "done"}, tool_call_id="c1"),
        in_turn("assistant.response", 4, full_text="hello", tool_calls=None),
    ]
    assert [render.transcript([e], PLAIN) for e in one] == [
        "\nyou  2026-06-07 14:00:01\nhi",
        "  → read({})",
        "  ← done",
        "\nassistant  2026-06-07 14:00:04\nhello",
    ]


def test_terminal_controls_in_a_transcript_are_printed_as_escapes() -> None:
    events = [in_turn("user.prompt.submit", 0, prompt="hi\033]0;pwned\007 \u202eevil\r\nnext")]
    assert render.transcript(events, PLAIN).split("\n")[-2:] == [
        "hi\\u001b]0;pwned\\u0007 \\u202eevil",
        "next",
    ]


def test_a_resumed_session_shows_the_earlier_stop_where_it_happened() -> None:
    events = [
        in_turn("session.init", 0, model="m", provider="p", system="", init_type="Start"),
        in_turn("user.prompt.submit", 1, prompt="one"),
        in_turn("session.stop", 2, success=False, result=None, error="cut", usage={}),
        in_turn("session.init", 3, model="m", provider="p", system="", init_type="Resume"),
        in_turn("user.prompt.submit", 4, prompt="two", turn_id="t2"),
    ]
    lines = render.transcript(events, PLAIN).split("\n")
    assert lines == [
        "── session s · m · p  2026-06-07 14:00:00",
        "",
        "you  2026-06-07 14:00:01",
        "one",
        "",
        "── stopped failed  2026-06-07 14:00:02",
        "error: cut",
        "── resumed s · m · p  2026-06-07 14:00:03",
        "",
        "you  2026-06-07 14:00:04",
        "two",
    ]
