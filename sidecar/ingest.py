"""Group commit: events accumulate while one commit is in flight, then go in the next.

The batch size adapts to load: an idle store commits a lone event at once, a busy one
takes what arrived during the previous commit in one transaction, up to half the pending
bounds (so the reader goes on reading while it commits). When the
store fails, the batch is kept (bounded) and retried with backoff; nothing is dropped.
Knows the store interface only, not which backend or the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from bisect import bisect_right
from collections.abc import Callable, Sequence
from itertools import accumulate
from operator import attrgetter

from sidecar.store.base import Event, EventRefused, Rejected, Store, StoreFailure

log = logging.getLogger("sidecar")

RETRY_DELAYS_S = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
_payload = attrgetter("payload")


class Ingest:
    def __init__(self, store: Store, *, max_pending_events: int, max_pending_bytes: int) -> None:
        self.store = store
        self._max_events = max_pending_events
        self._max_bytes = max_pending_bytes
        self._batch_events = max(1, max_pending_events // 2)
        self._batch_bytes = max(1, max_pending_bytes // 2)
        self._events: list[Event] = []
        self._acks: list[tuple[int, asyncio.Future[int]]] = []  # (index in _events, its seq)
        self._rejected: list[Rejected] = []
        self._bytes = 0  # payload bytes received and not yet committed
        self._queued_bytes = 0  # the part of _bytes not in the batch being committed
        self._in_flight = 0  # events of the batch being committed
        self._writing = False  # a batch (events or rejected lines) is being committed
        self._wakeup = asyncio.Event()
        self._retry_now = asyncio.Event()  # ends a retry backoff early
        self._room = asyncio.Event()
        self._room.set()
        self._settled: list[asyncio.Future[None]] = []  # woken after every commit attempt
        self._task: asyncio.Task[None] | None = None
        self.failure: StoreFailure | None = None
        self.last_seq = 0
        self.persisted = 0
        self.commits = 0
        self.on_commit: Callable[[], None] | None = None  # told of every commit of events
        # While the event a store refused is looked for: batches at most this big, until
        # the `_suspects` (the refused batch's events) are all stored or quarantined.
        self._split: int | None = None
        self._suspects = 0

    @property
    def queue_depth(self) -> int:
        """Events received and not yet committed."""
        return len(self._events) + self._in_flight

    @property
    def has_room(self) -> bool:
        return self._room.is_set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="committer")

    def add(self, event: Event, acknowledged: bool = False) -> asyncio.Future[int] | None:
        """Queue an event; with `acknowledged`, a future of its seq, resolved after commit."""
        ack = None
        if acknowledged:
            ack = asyncio.get_running_loop().create_future()
            self._acks.append((len(self._events), ack))
        self._events.append(event)
        self._queued(len(event.payload))
        return ack

    def add_all(self, events: list[Event]) -> None:
        """Queue events no one waits on (notifications), in order: a run read together."""
        self._events += events
        self._queued(sum(map(len, map(_payload, events))))

    def _queued(self, size: int) -> None:
        self._bytes += size
        self._queued_bytes += size
        if self.queue_depth >= self._max_events or self._bytes >= self._max_bytes:  # in flight too
            self._room.clear()
        if not self._writing:
            self._wakeup.set()

    def reject(self, rejected: Rejected) -> None:
        self._rejected.append(rejected)
        self._bytes += len(rejected.line)
        self._queued_bytes += len(rejected.line)
        if not self._writing:
            self._wakeup.set()

    async def wait_for_room(self) -> None:
        await self._room.wait()

    async def drain(self) -> int:
        """Wait until everything queued so far is committed; the highest seq committed.

        While the store fails, a drain retries at once instead of waiting out the backoff,
        and raises StoreFailure if that attempt fails too: the request is answered -32001
        promptly, and the events stay queued.
        """
        while self._events or self._rejected or self._writing:
            failing = self.failure is not None
            await self._next_attempt()
            if failing and self.failure is not None:
                raise self.failure
        return self.last_seq

    async def _next_attempt(self, *, end_backoff: bool = True) -> None:
        """Wake the committer (ending a backoff, unless asked not to) and wait for its next
        commit attempt."""
        settled = asyncio.get_running_loop().create_future()
        self._settled.append(settled)
        self._wakeup.set()
        if end_backoff:
            self._retry_now.set()
        await settled

    async def close(self, grace_s: float) -> list[Event]:
        """Commit what is queued, retrying for up to `grace_s`; return what could not be."""
        deadline = asyncio.get_running_loop().time() + grace_s
        while self._events or self._rejected or self._writing:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:  # the committer's own backoff paces the retries: no busy loop at exit
                await asyncio.wait_for(self._next_attempt(end_backoff=False), remaining)
            except TimeoutError:
                break
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        given_up = self.failure or StoreFailure("the daemon is exiting")
        for _, ack in self._acks:  # every waiting client gets its answer: -32001
            if not ack.done():
                ack.set_exception(given_up)
        return list(self._events)

    async def _run(self) -> None:
        failures = 0
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._events or self._rejected:
                events, acks, rejected, size = self._take()
                self._in_flight, self._writing = len(events), True
                failure: StoreFailure | None = None
                try:
                    seqs = await self.store.write(events, rejected)
                except EventRefused as exc:
                    self._in_flight, self._writing = 0, False
                    self._isolate(events, acks, size - sum(len(r.line) for r in rejected), exc)
                    await self._store_rejected_alone(rejected)
                    continue
                except StoreFailure as exc:
                    failure = exc
                except asyncio.CancelledError:  # closing: what was in flight is not stored
                    self._events = events + self._events
                    self._acks = acks + [(index + len(events), ack) for index, ack in self._acks]
                    self._rejected = rejected + self._rejected
                    raise
                except Exception as exc:  # a backend bug: keep the data, report, retry
                    log.exception("store write failed unexpectedly")
                    failure = StoreFailure(f"internal error: {exc}")
                finally:
                    self._in_flight, self._writing = 0, False
                if failure is not None:
                    self._queued_bytes += size
                    self._requeue(events, acks, rejected, failure, failures)
                    failures += 1
                    await self._backoff(RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S)) - 1])
                    continue
                if self.failure is not None:
                    log.warning("store recovered; %d queued events committed", len(events))
                    self.failure = None
                failures = 0
                self._cleared(len(events))
                self._committed(events, acks, size, seqs)
            self._notify_settled()

    def _take(self) -> tuple[list[Event], list[tuple[int, asyncio.Future[int]]], list[Rejected], int]:
        """The next batch and its bytes: everything queued, up to half the bounds.

        Events being committed count toward the bounds; a batch that took all of them
        would stop the reader for the whole commit, and the next batch would hold only
        what arrived meanwhile. Half of them leaves the other half to fill during a commit.
        """
        events, acks, rejected = self._events, self._acks, self._rejected
        count = len(events)
        if self._split is not None and count > self._split:  # looking for a refused event
            count = self._split
        elif count > self._batch_events or self._queued_bytes > self._batch_bytes:
            sizes = list(accumulate(map(len, map(_payload, events[: self._batch_events]))))
            count = max(1, bisect_right(sizes, self._batch_bytes))
        if count == len(events):
            self._events, self._acks, self._rejected = [], [], []
            size, self._queued_bytes = self._queued_bytes, 0
            return events, acks, rejected, size
        self._events = events[count:]
        self._acks = [(index - count, ack) for index, ack in acks if index >= count]
        self._rejected = []
        events = events[:count]
        size = sum(map(len, map(_payload, events))) + sum(len(r.line) for r in rejected)
        self._queued_bytes -= size
        return events, [(index, ack) for index, ack in acks if index < count], rejected, size

    async def _backoff(self, delay: float) -> None:
        self._retry_now.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._retry_now.wait(), delay)

    def _committed(
        self,
        events: list[Event],
        acks: list[tuple[int, asyncio.Future[int]]],
        size: int,
        seqs: Sequence[int],
    ) -> None:
        self.commits += 1
        self.persisted += len(events)
        if seqs:
            self.last_seq = max(self.last_seq, seqs[-1])
        for index, ack in acks:
            if not ack.done():
                ack.set_result(seqs[index])
        self._bytes -= size
        if self.queue_depth < self._max_events and self._bytes < self._max_bytes:
            self._room.set()
        if events and self.on_commit is not None:
            self.on_commit()
        self._notify_settled()

    async def _store_rejected_alone(self, rejected: list[Rejected]) -> None:
        """A refused batch's quarantined lines, in a write of their own (they may be what
        was refused: then nothing can hold them, and they are dropped, said on stderr)."""
        if not rejected:
            return
        size = sum(len(line.line) for line in rejected)
        self._writing = True  # a drain or the close waits for this write too
        try:
            await self.store.write([], rejected)
        except EventRefused as exc:
            log.error("%d rejected lines could not be quarantined (%s); dropped", len(rejected), exc)
        except (StoreFailure, asyncio.CancelledError) as exc:  # down meanwhile: they wait, as ever
            self._rejected = rejected + self._rejected
            self._queued_bytes += size
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        finally:
            self._writing = False
        self._bytes -= size
        if self.queue_depth < self._max_events and self._bytes < self._max_bytes:
            self._room.set()

    def _isolate(
        self,
        events: list[Event],
        acks: list[tuple[int, asyncio.Future[int]]],
        size: int,
        refusal: EventRefused,
    ) -> None:
        """The store refused something in this batch: halve the batches until the event it
        refuses is alone, then quarantine it with the reason and answer it -32602. The
        events around it are stored as ever: one poisonous event must not sink the rest."""
        self._queued_bytes += size  # all of it goes back to the head of the queue
        if len(events) > 1:
            if self._split is None:
                self._suspects = len(events)
            self._split = len(events) // 2
            self._events = events + self._events
            self._acks = acks + [(index + len(events), ack) for index, ack in self._acks]
            return
        reason = f"refused by the store: {refusal}"
        for event in events:
            log.error("an event of session %r was %s; quarantined", event.session_id, reason)
        self._rejected = [
            Rejected(event.payload, reason, int(time.time() * 1000)) for event in events
        ] + self._rejected
        for _, ack in acks:
            if not ack.done():
                ack.set_exception(refusal)
        self._cleared(len(events))

    def _cleared(self, count: int) -> None:
        """`count` events of those suspected of a refusal were stored or quarantined: once
        none is left, batches take their usual size again."""
        if self._split is not None:
            self._suspects -= count
            if self._suspects <= 0 or not self._events:
                self._split = None

    def _requeue(
        self,
        events: list[Event],
        acks: list[tuple[int, asyncio.Future[int]]],
        rejected: list[Rejected],
        failure: StoreFailure,
        earlier_failures: int,
    ) -> None:
        """Keep a failed batch at the head of the queue, in order, and tell who waits."""
        if earlier_failures == 0:
            log.error(
                "store unavailable: %s; %d events kept in memory, retrying",
                failure,
                len(events) + len(self._events),
            )
        for _, ack in acks:  # answered -32001 now; the event itself stays queued
            if not ack.done():
                ack.set_exception(failure)
        self._events = events + self._events
        self._acks = [(index + len(events), ack) for index, ack in self._acks]
        self._rejected = rejected + self._rejected
        self.failure = failure
        self._notify_settled()

    def _notify_settled(self) -> None:
        settled, self._settled = self._settled, []
        for waiter in settled:
            if not waiter.done():
                waiter.set_result(None)
