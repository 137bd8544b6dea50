"""Per-session summaries folded event by event (sidecar.store.summary)."""

from __future__ import annotations

from typing import Any

from events import USAGE_CHARS, event, fork, init, notification, prompt, response, stop

from sidecar.store.base import Event, ListQuery
from sidecar.store.summary import TITLE_CHARS, Tally, format_ns, newest_first, tally_events
from sidecar.timestamps import parse_ns

T1, T2, T3, T4 = (f"2026-06-07T14:03:2{n}Z" for n in range(1, 5))


def init_with(session_id: str, timestamp: str, model: str, provider: str) -> dict[str, Any]:
    return notification(
        "session.init", session_id=session_id, model=model, provider=provider, system="", timestamp=timestamp
    )


def tally(*messages: dict[str, Any]) -> Tally:
    folded = Tally(session_id="s")
    for message in messages:
        folded.add(event(message))
    return folded


def test_a_new_tally_is_an_active_session_with_nothing_in_it() -> None:
    summary = Tally(session_id="s").summary()
    assert (summary.event_count, summary.first_timestamp, summary.last_timestamp) == (0, None, None)
    assert (summary.status, summary.success, summary.usage, summary.title) == ("active", None, {}, None)


def test_every_event_counts_and_widens_the_first_and_last_instants_whatever_its_arrival() -> None:
    summary = tally(response("s", T3), prompt("s", T1), response("s", T4), response("s", T2)).summary()
    assert summary.event_count == 4
    assert (summary.first_timestamp, summary.last_timestamp) == (
        "2026-06-07T14:03:21.000000000Z",
        "2026-06-07T14:03:24.000000000Z",
    )


def test_model_and_provider_come_from_the_latest_init_by_instant() -> None:
    later = init_with("s", T3, "late", "p2")
    earlier = init_with("s", T1, "early", "p1")
    assert (tally(earlier, later).summary().model, tally(later, earlier).summary().provider) == ("late", "p2")


def test_a_stop_gives_status_success_and_usage() -> None:
    summary = tally(init("s", T1), stop("s", T2)).summary()
    assert (summary.status, summary.success, summary.usage) == ("stopped", True, USAGE_CHARS)


def test_a_later_init_makes_a_stopped_session_active_again_and_clears_success() -> None:
    summary = tally(init("s", T1), stop("s", T2), init("s", T3)).summary()
    assert (summary.status, summary.success) == ("active", None)


def test_a_stop_arriving_after_a_newer_init_does_not_stop_the_session() -> None:
    summary = tally(init("s", T3), stop("s", T2)).summary()
    assert (summary.status, summary.success) == ("active", None)


def test_usage_of_every_stop_is_summed_counting_only_integers() -> None:
    odd = notification(
        "session.stop",
        session_id="s",
        success=False,
        timestamp=T3,
        usage={"input_tokens": 5, "flag": True, "ratio": 0.5, "name": "x"},
    )
    usage = (
        tally(stop("s", T1), notification("session.stop", session_id="s", timestamp=T2), odd).summary().usage
    )
    assert usage == {**USAGE_CHARS, "input_tokens": 5}


def test_the_status_follows_the_latest_stop_by_instant() -> None:
    failed = notification("session.stop", session_id="s", success=False, timestamp=T3, usage={})
    assert tally(failed, stop("s", T2)).summary().success is False


def test_a_fork_names_its_parent() -> None:
    assert tally(fork("s", "origin", T1)).summary().parent_session_id == "origin"


def test_the_title_is_the_earliest_prompt_by_instant_on_one_line() -> None:
    messages = (prompt("s", T3, text="second"), prompt("s", T1, text="  first\n\tline  "), prompt("s", T4))
    assert tally(*messages).summary().title == "first line"


def test_a_long_first_prompt_is_shortened_with_an_ellipsis() -> None:
    title = tally(prompt("s", T1, text="word " * 100)).summary().title
    assert title is not None and len(title) == TITLE_CHARS and title.endswith("…")
    assert tally(prompt("s", T1, text="x" * TITLE_CHARS)).summary().title == "x" * TITLE_CHARS


def test_unreadable_payloads_still_count_and_summarise_to_nothing() -> None:
    folded = Tally(session_id="s")
    for method in ("session.init", "session.stop", "session.fork", "user.prompt.submit"):
        folded.add(Event("s", b"{not json", parse_ns(T1), method))
    summary = folded.summary()
    assert summary.event_count == 4
    assert (summary.model, summary.parent_session_id, summary.title, summary.usage) == (None, None, None, {})
    assert (summary.status, summary.success) == ("stopped", None)


def test_other_methods_never_decode_their_payload() -> None:
    folded = Tally(session_id="s")
    folded.add(Event("s", b"{not json", parse_ns(T1), "assistant.response"))
    assert folded.event_count == 1 and folded.title is None


def test_add_details_folds_fields_without_counting() -> None:
    folded = Tally(session_id="s")
    folded.add_details(event(init("s", T1)))
    assert (folded.event_count, folded.first_ns, folded.model) == (0, None, "m")


def test_the_text_filter_is_a_case_insensitive_substring_of_id_model_provider_parent_or_title() -> None:
    folded = Tally(session_id="Session-1")
    for message in (init_with("Session-1", T1, "GPT-x", "Acme"), fork("Session-1", "Root", T2)):
        folded.add(event(message))
    folded.add(event(prompt("Session-1", T3, text="Fix the Parser")))
    assert all(folded.matches(text) for text in ("sion-1", "gpt", "ACME", "root", "parser"))
    assert not folded.matches("nowhere")


def test_tally_events_keeps_one_tally_per_session() -> None:
    tallies: dict[str, Tally] = {}
    tally_events(tallies, [event(init("a", T1)), event(init("b", T2)), event(prompt("a", T3))])
    assert {sid: t.event_count for sid, t in tallies.items()} == {"a": 2, "b": 1}


def test_newest_first_orders_by_last_instant_then_id_and_applies_before_text_and_limit() -> None:
    tallies: dict[str, Tally] = {"empty": Tally(session_id="empty")}
    tally_events(
        tallies,
        [
            event(init("old", T1)),
            event(init("tie-a", T3)),
            event(init("tie-b", T3)),
            event(prompt("new", T4)),
        ],
    )

    def ids(query: ListQuery) -> list[str]:
        return [s.session_id for s in newest_first(tallies.values(), query)]

    assert ids(ListQuery()) == ["new", "tie-b", "tie-a", "old"]
    assert ids(ListQuery(limit=2)) == ["new", "tie-b"]
    assert ids(ListQuery(before_ns=parse_ns(T4))) == ["tie-b", "tie-a", "old"]
    assert ids(ListQuery(text="TIE")) == ["tie-b", "tie-a"]


def test_instants_format_as_utc_with_nine_fraction_digits() -> None:
    assert format_ns(parse_ns("2026-06-07T14:03:21.5+02:00")) == "2026-06-07T12:03:21.500000000Z"
    assert format_ns(-1) == "1969-12-31T23:59:59.999999999Z"
    assert format_ns(None) is None


def test_an_instant_no_calendar_can_show_formats_as_none() -> None:
    assert format_ns(10**30) is None
