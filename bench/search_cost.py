"""What summaries and the search index cost the SQLite store's writes, in one run.

The store as shipped against the same store with summaries and indexing switched off
(a subclass), writing the same events through SqliteStore.write: a flood (batches of
20,000, as group commit forms under load) and a trickle (2,000 single-event batches, as
an idle runtime sends them). Then the first search after the flood (the index behind:
a bounded scan of the newest events) and a warm search. No target: figures to keep the
cost in sight; bench/search.py has the search figures at a million events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from common import fresh_db, median, repeat_option, report, stream

from sidecar.events import stored_keys
from sidecar.store.base import Event, ListQuery, SearchQuery
from sidecar.store.sqlite import SqliteStore

FLOOD_BATCH = 20_000
TRICKLE_EVENTS = 2_000


class BareStore(SqliteStore):
    """The same writes without summaries or search indexing."""

    async def _summarise(self, events: Sequence[Event]) -> None:
        pass

    async def _index_batch(self, events: Sequence[Event], last: int) -> None:
        pass


def load_events() -> list[Event]:
    events = []
    for line in stream().read_bytes().splitlines():
        keys = stored_keys(line)
        assert keys is not None
        events.append(Event(keys.session_id, line, keys.timestamp_ns, keys.method))
    return events


async def write_all(
    kind: type[SqliteStore], name: str, events: list[Event], batch: int
) -> tuple[float, SqliteStore]:
    store = kind(fresh_db(name))
    await store.open()
    start = time.perf_counter()
    for i in range(0, len(events), batch):
        await store.write(events[i : i + batch], ())
    return time.perf_counter() - start, store


async def main() -> None:
    repeat = repeat_option(__doc__ or "", 3)
    events = load_events()
    trickle = events[:TRICKLE_EVENTS]
    flood: dict[str, list[float]] = {"shipped": [], "bare": []}
    drip: dict[str, list[float]] = {"shipped": [], "bare": []}
    search_first = search_warm = 0.0
    for _ in range(repeat):
        for label, kind in (("shipped", SqliteStore), ("bare", BareStore)):
            seconds, store = await write_all(kind, f"search_cost_{label}.db", events, FLOOD_BATCH)
            flood[label].append(seconds)
            if label == "shipped":
                start = time.perf_counter()
                await store.search(SearchQuery(("refactor",), limit=20))
                search_first = time.perf_counter() - start
                start = time.perf_counter()
                hits = await store.search(SearchQuery(("refactor",), limit=20))
                search_warm = time.perf_counter() - start
                assert hits and len(await store.list_sessions(ListQuery(limit=1000))) == 200
            await store.close()
            seconds, store = await write_all(kind, f"search_cost_trickle_{label}.db", trickle, 1)
            drip[label].append(seconds)
            await store.close()
    n = len(events)
    f_shipped, f_bare = median(flood["shipped"]), median(flood["bare"])
    t_shipped, t_bare = median(drip["shipped"]), median(drip["bare"])
    report(
        f"SqliteStore.write, {n} events in batches of {FLOOD_BATCH} (median of {repeat})",
        [
            ("without summaries or index", f"{n / f_bare:,.0f} events/s"),
            ("as shipped", f"{n / f_shipped:,.0f} events/s  (cost {100 * (f_shipped / f_bare - 1):.0f}%)"),
        ],
    )
    report(
        f"SqliteStore.write, {TRICKLE_EVENTS} one-event batches (median of {repeat})",
        [
            ("without summaries or index", f"{1e6 * t_bare / TRICKLE_EVENTS:.0f} us per event"),
            ("as shipped", f"{1e6 * t_shipped / TRICKLE_EVENTS:.0f} us per event"),
        ],
    )
    report(
        "search after the flood",
        [("first (index behind)", f"{search_first:.2f} s"), ("warm", f"{1e3 * search_warm:.1f} ms")],
    )


if __name__ == "__main__":
    asyncio.run(main())
