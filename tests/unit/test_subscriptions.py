"""The subscription hub (sidecar.subscriptions) in-process, over a MemoryStore and an output
whose reader the test stops and starts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
from events import init, line, prompt, response, stop

from sidecar import protocol
from sidecar.store.base import Event, Page, SeqUnavailable
from sidecar.store.memory import MemoryStore
from sidecar.subscriptions import Hub

WAIT_S = 5.0  # every wait is bounded: a hub that stops answering fails the test, never hangs it
FULL = 1  # an output_budget_bytes that the first line written uses up


def event(message: dict[str, Any]) -> Event:
    return Event(message["params"]["session_id"], line(message), 0, message["method"])


def prompts(first: int, count: int, session_id: str = "s") -> list[Event]:
    """Prompts whose text is their seq, when committed in order to an empty store."""
    return [
        event(prompt(session_id, "2026-06-07T14:03:21Z", text=str(n))) for n in range(first, first + count)
    ]


class Store(MemoryStore):
    """A MemoryStore that counts the hub's looks at it, and may forget old seqs (as a
    backend that prunes its log does)."""

    def __init__(self) -> None:
        super().__init__()
        self.looks = 0
        self.forgotten_upto = 0  # events_after from before this raises SeqUnavailable

    async def change_token(self) -> object:
        # Once per pass of the hub. No MemoryStore call suspends, so by the time the test
        # runs again, the pass that looked has ended.
        self.looks += 1
        return await super().change_token()

    async def events_after(self, after: int, limit: int, max_bytes: int | None = None) -> Page:
        if after < self.forgotten_upto:
            raise SeqUnavailable(f"seqs up to {self.forgotten_upto} are gone")
        return await super().events_after(after, limit, max_bytes)


class Pipe:
    """An output that keeps every line; while its reader has stopped, what is written stays
    pending (and the first line fills it) until the reader takes it."""

    def __init__(self) -> None:
        self.notes: list[tuple[Any, ...]] = []
        self.pending_bytes = 0
        self.reading = True
        self._grew = asyncio.Event()

    def write_line(self, raw: bytes) -> None:
        message = json.loads(raw)
        params = message["params"]
        if message["method"] == "storage.event":
            self.notes.append((params["subscription"], params["seq"], params["event"]["method"]))
        else:
            self.notes.append(("lagged", params["subscription"], params["last_seq"]))
        if not self.reading:
            self.pending_bytes += len(raw)
        self._grew.set()

    def stop_reading(self) -> None:
        self.reading = False
        self.pending_bytes = FULL

    def take(self, hub: Hub) -> None:
        """The stopped reader took what was written so far."""
        self.pending_bytes = 0
        hub.output_written()

    def read_on(self, hub: Hub) -> None:
        self.reading = True
        self.take(hub)

    async def wait_for(self, count: int) -> list[tuple[Any, ...]]:
        """The notes, once there are at least `count`."""
        async with asyncio.timeout(WAIT_S):
            while len(self.notes) < count:
                self._grew.clear()
                await self._grew.wait()
        return self.notes

    def seqs(self, sub: int) -> list[int]:
        return [note[1] for note in self.notes if note[0] == sub]


def render(sub: int, seq: int, event: Event) -> bytes:
    return protocol.event_notification(sub, seq, event.payload)


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
def pipe() -> Pipe:
    return Pipe()


HubOf = Callable[..., Hub]


@pytest.fixture
async def hub_of(store: Store, pipe: Pipe) -> AsyncIterator[HubOf]:
    """Hubs over the test's store and pipe, with the limits a test chooses; closed after."""
    made: list[Hub] = []

    def make(**limits: Any) -> Hub:
        made.append(Hub(store, pipe, **limits))
        return made[-1]

    yield make
    for hub in made:
        await hub.close()


@pytest.fixture
def hub(hub_of: HubOf) -> Hub:
    return hub_of()


async def subscribe(hub: Hub, after: int | None = None, **options: Any) -> int:
    return await hub.subscribe(after, render=render, lagged=protocol.lagged_notification, **options)


async def turn(store: Store, wake: Callable[[], None]) -> None:
    """Wake the hub and wait until it has made a pass over the store."""
    looks = store.looks
    wake()
    async with asyncio.timeout(WAIT_S):
        while store.looks == looks:
            await asyncio.sleep(0)


async def commit(store: Store, hub: Hub, events: Sequence[Event]) -> None:
    """Commit `events` as this process's ingest does, and let the hub see the commit."""
    await store.write(events, [])
    await turn(store, hub.committed)


# --- delivery --------------------------------------------------------------------------------


async def test_events_after_a_seq_are_delivered_once_in_seq_order(store: Store, hub: Hub, pipe: Pipe) -> None:
    await store.write(prompts(1, 10), [])
    sub = await subscribe(hub, after=4)
    await pipe.wait_for(6)
    await commit(store, hub, prompts(11, 2))
    await turn(store, hub.committed)  # a pass with nothing new sends nothing again
    assert pipe.seqs(sub) == [5, 6, 7, 8, 9, 10, 11, 12]


async def test_a_subscription_after_none_starts_from_the_latest_commit(
    store: Store, hub: Hub, pipe: Pipe
) -> None:
    await store.write(prompts(1, 5), [])
    sub = await subscribe(hub)
    await commit(store, hub, prompts(6, 2))
    assert pipe.seqs(sub) == [6, 7]


async def test_session_and_method_filters_choose_what_each_subscription_gets(
    store: Store, hub: Hub, pipe: Pipe
) -> None:
    only_a = await subscribe(hub, session_id="a", methods=["user.*", "session.stop"])
    inits = await subscribe(hub, methods=["session.init"])
    ts = "2026-06-07T14:03:21Z"
    messages = [init("a"), prompt("a", ts), response("a", ts), init("b"), prompt("b", ts), stop("a", ts)]
    await commit(store, hub, [event(m) for m in messages])
    assert sorted(pipe.notes) == sorted(
        [
            (only_a, 2, "user.prompt.submit"),
            (only_a, 6, "session.stop"),
            (inits, 1, "session.init"),
            (inits, 4, "session.init"),
        ]
    )


async def test_subscriptions_at_one_cursor_each_get_every_event_once(
    store: Store, hub: Hub, pipe: Pipe
) -> None:
    await store.write(prompts(1, 3), [])
    subs = [await subscribe(hub, after=0) for _ in range(3)]
    late = await subscribe(hub, after=2)
    await pipe.wait_for(3 * 3 + 1)
    await commit(store, hub, prompts(4, 2))
    assert [pipe.seqs(sub) for sub in subs] == [[1, 2, 3, 4, 5]] * 3
    assert pipe.seqs(late) == [3, 4, 5]


async def test_an_unsubscribed_subscription_is_sent_nothing_more(store: Store, hub: Hub, pipe: Pipe) -> None:
    gone, kept = await subscribe(hub), await subscribe(hub)
    await commit(store, hub, prompts(1, 1))
    assert hub.unsubscribe(gone) is True
    await commit(store, hub, prompts(2, 1))
    assert pipe.seqs(gone) == [1] and pipe.seqs(kept) == [1, 2]
    assert hub.unsubscribe(gone) is False


async def test_a_full_output_stops_the_writing_and_it_resumes_when_the_output_is_written(
    store: Store, hub_of: HubOf, pipe: Pipe
) -> None:
    hub = hub_of(output_budget_bytes=FULL)
    pipe.reading = False
    sub = await subscribe(hub)
    await commit(store, hub, prompts(1, 5))
    assert pipe.seqs(sub) == [1]  # the first line fills the output
    for written in range(2, 6):
        await turn(store, lambda: pipe.take(hub))
        assert pipe.seqs(sub) == list(range(1, written + 1))


async def test_a_subscription_from_a_seq_the_store_no_longer_holds_is_refused(store: Store, hub: Hub) -> None:
    await store.write(prompts(1, 5), [])
    store.forgotten_upto = 3
    with pytest.raises(SeqUnavailable):
        await subscribe(hub, after=2)
    assert await subscribe(hub, after=3) > 0


async def test_a_subscription_whose_cursor_the_store_forgets_is_told_it_lagged_even_with_pause(
    store: Store, hub_of: HubOf, pipe: Pipe
) -> None:
    hub = hub_of(output_budget_bytes=FULL)
    pipe.reading = False
    sub = await subscribe(hub, pause=True)
    await commit(store, hub, prompts(1, 3))
    assert pipe.seqs(sub) == [1]  # 2 and 3 wait in its queue
    store.forgotten_upto = 5
    await commit(store, hub, prompts(4, 3))
    assert pipe.notes[1:] == [("lagged", sub, 1)]
    assert hub.unsubscribe(sub) is False


# --- lag ---------------------------------------------------------------------------------------
# A queue of QUEUE events, read one event a page, fills at seq QUEUE whatever the batching;
# the output takes nothing: the subscription is then exactly as far behind as the test says.

QUEUE = 4
MAX_BEHIND = 10
LIMITS = {"page": 1, "queue_events": QUEUE, "max_behind": MAX_BEHIND, "output_budget_bytes": FULL}
BATCHINGS = {"in-one-commit": 10**6, "in-commits-of-3": 3, "one-commit-per-event": 1}


async def commit_in(store: Store, hub: Hub, events: list[Event], per_commit: int) -> None:
    for start in range(0, len(events), per_commit):
        await commit(store, hub, events[start : start + per_commit])


async def unread(hub_of: HubOf, pipe: Pipe, after: int | None = None, **options: Any) -> tuple[Hub, int]:
    """A hub of LIMITS and one subscription to it, on an output nobody reads."""
    hub = hub_of(**LIMITS)
    pipe.stop_reading()
    return hub, await subscribe(hub, after, **options)


@pytest.mark.parametrize("per_commit", BATCHINGS.values(), ids=BATCHINGS.keys())
async def test_a_full_subscription_max_behind_events_behind_has_not_lagged(
    store: Store, hub_of: HubOf, pipe: Pipe, per_commit: int
) -> None:
    hub, sub = await unread(hub_of, pipe)
    await commit_in(store, hub, prompts(1, QUEUE + MAX_BEHIND), per_commit)
    assert pipe.notes == []
    pipe.read_on(hub)
    await pipe.wait_for(QUEUE + MAX_BEHIND)
    assert pipe.seqs(sub) == list(range(1, QUEUE + MAX_BEHIND + 1))
    assert hub.unsubscribe(sub) is True


@pytest.mark.parametrize("per_commit", BATCHINGS.values(), ids=BATCHINGS.keys())
async def test_a_full_subscription_more_than_max_behind_events_behind_has_lagged(
    store: Store, hub_of: HubOf, pipe: Pipe, per_commit: int
) -> None:
    hub, sub = await unread(hub_of, pipe)
    await commit_in(store, hub, prompts(1, QUEUE + MAX_BEHIND + 1), per_commit)
    assert pipe.notes == [("lagged", sub, 0)]  # told once, with the last seq it was sent
    assert hub.unsubscribe(sub) is False  # and it has ended


async def test_a_lagged_subscription_is_told_the_last_seq_it_was_sent(
    store: Store, hub_of: HubOf, pipe: Pipe
) -> None:
    hub = hub_of(**LIMITS)
    pipe.reading = False
    sub = await subscribe(hub)
    await commit(store, hub, prompts(1, 2))
    await turn(store, lambda: pipe.take(hub))
    assert pipe.seqs(sub) == [1, 2]  # and the output is full again
    await commit(store, hub, prompts(3, QUEUE + MAX_BEHIND + 1))
    assert pipe.notes[2:] == [("lagged", sub, 2)]


async def test_a_replay_lags_only_for_events_committed_after_it_subscribed(
    store: Store, hub_of: HubOf, pipe: Pipe
) -> None:
    await store.write(prompts(1, 5 * MAX_BEHIND), [])  # history it asked for, far behind
    hub, sub = await unread(hub_of, pipe, after=0)
    await commit(store, hub, prompts(5 * MAX_BEHIND + 1, MAX_BEHIND))
    assert pipe.notes == []
    await commit(store, hub, prompts(6 * MAX_BEHIND + 1, 1))
    assert pipe.notes == [("lagged", sub, 0)]


async def test_a_subscription_that_pauses_never_lags(store: Store, hub_of: HubOf, pipe: Pipe) -> None:
    hub, sub = await unread(hub_of, pipe, pause=True)
    total = QUEUE + 3 * MAX_BEHIND
    await commit_in(store, hub, prompts(1, total), 5)
    assert pipe.notes == []
    pipe.read_on(hub)
    await pipe.wait_for(total)
    assert pipe.seqs(sub) == list(range(1, total + 1))
