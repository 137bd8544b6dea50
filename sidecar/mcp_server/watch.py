"""Which sessions MCP clients watch, over the core's subscription hub: one hub subscription
per watched session, whatever the number of watchers, and one notice per session however
many events a commit brought. Knows neither the SDK nor the wire: `deliver` does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from sidecar.store.base import Event
from sidecar.subscriptions import Hub

log = logging.getLogger("sidecar")

Deliver = Callable[[str], Awaitable[None]]  # a session changed: tell whoever watches it


class Watcher:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._watched: dict[str, tuple[int, int]] = {}  # session_id: (hub subscription, holders)
        self._changed: dict[str, None] = {}  # in the order they changed
        self._wake = asyncio.Event()

    async def hold(self, session_id: str) -> None:
        """Watch `session_id` (one more holder); StoreFailure if the store cannot be followed."""
        if session_id in self._watched:
            sub_id, holders = self._watched[session_id]
            self._watched[session_id] = (sub_id, holders + 1)
            return
        sub_id = await self._hub.subscribe(None, session_id=session_id, render=self._committed)
        if session_id in self._watched:  # held by another meanwhile: keep theirs
            self._hub.unsubscribe(sub_id)
            sub_id, holders = self._watched[session_id]
            self._watched[session_id] = (sub_id, holders + 1)
        else:
            self._watched[session_id] = (sub_id, 1)

    def release(self, session_id: str) -> None:
        if session_id not in self._watched:
            return
        sub_id, holders = self._watched[session_id]
        if holders > 1:
            self._watched[session_id] = (sub_id, holders - 1)
        else:
            del self._watched[session_id]
            self._hub.unsubscribe(sub_id)

    def watched(self) -> set[str]:
        return set(self._watched)

    def _committed(self, _: int, __: int, event: Event) -> None:
        """The hub's render: nothing to write, the session changed."""
        self._changed[event.session_id] = None
        self._wake.set()

    async def run(self, deliver: Deliver) -> None:
        """Deliver each change until cancelled; changes meanwhile are gathered into one."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            changed, self._changed = list(self._changed), {}
            for session_id in changed:
                if session_id in self._watched:
                    try:
                        await deliver(session_id)
                    except Exception:  # a client gone or slow must not end the watching
                        log.warning("could not tell the client session %r changed", session_id, exc_info=True)
