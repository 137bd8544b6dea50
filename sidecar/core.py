"""The core every front-end shares, composed in one place: the store's ingest, the
subscription hub, the handlers and the dispatcher. Knows no wire and no process: a
front-end brings the opened store and, for live subscriptions, an output."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from sidecar.config import Settings
from sidecar.dispatch import Dispatcher
from sidecar.handlers import Handlers, Stats
from sidecar.ingest import Ingest
from sidecar.store.base import Store
from sidecar.subscriptions import Hub, Output


class Core(msgspec.Struct, frozen=True):
    store: Store
    ingest: Ingest
    hub: Hub | None  # None: no output to send subscriptions' notifications to
    handlers: Handlers
    dispatcher: Dispatcher


def compose(
    store: Store,
    settings: Settings,
    *,
    output: Output | None = None,
    request_shutdown: Callable[[], None] = lambda: None,
) -> Core:
    """The core over an opened `store`. With an `output`, `storage.subscribe` writes its
    notifications there; `request_shutdown` is what `storage.shutdown` calls."""
    ingest = Ingest(
        store, max_pending_events=settings.max_pending_events, max_pending_bytes=settings.max_pending_bytes
    )
    hub = Hub(store, output) if output is not None else None
    if hub is not None:
        ingest.on_commit = hub.committed
    handlers = Handlers(ingest, Stats(), request_shutdown, hub)
    dispatcher = Dispatcher(handlers, ingest, max_batch_answer_bytes=settings.max_output_bytes)
    return Core(store, ingest, hub, handlers, dispatcher)
