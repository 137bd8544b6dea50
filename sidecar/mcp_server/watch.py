"""Which sessions MCP clients watch, over the core's subscription hub: one hub subscription
per watched session, whatever the number of watchers, and at most one notice per session a
second, the last change always told. Knows neither the SDK nor the wire: `deliver` does.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable

from sidecar.store.base import Event, StoreFailure
from sidecar.subscriptions import Hub

log = logging.getLogger("sidecar")

NOTICE_S = 1.0  # at most one notice per session this often: a streaming session commits ~40/s

Deliver = Callable[[str], Awaitable[None]]  # a session changed: tell whoever watches it


class Debounce:
    """When to tell of a change: at once if nothing was told of it for `interval` seconds,
    else once the interval has passed (a trailing notice), however many changes came."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._pending: dict[str, None] = {}  # changed, not told yet, in the order they changed
        self._told: dict[str, float] = {}  # when each was last told of

    def changed(self, key: str) -> None:
        self._pending[key] = None

    def due(self, now: float) -> list[str]:
        """The changes to tell of at `now` (counted as told)."""
        ready = [key for key in self._pending if now >= self._told.get(key, -math.inf) + self.interval]
        for key in ready:
            del self._pending[key]
            self._told[key] = now
        self._told = {k: t for k, t in self._told.items() if t + self.interval > now or k in self._pending}
        return ready

    def wait(self, now: float) -> float | None:
        """Seconds until the next change may be told (None: none is waiting)."""
        if not self._pending:
            return None
        return max(0.0, min(self._told.get(k, -math.inf) + self.interval for k in self._pending) - now)

    def forget(self, key: str) -> None:
        self._pending.pop(key, None)


class Watcher:
    def __init__(self, hub: Hub, *, interval: float = NOTICE_S) -> None:
        self._hub = hub
        self._watched: dict[str, tuple[int, int]] = {}  # session_id: (hub subscription, holders)
        self._debounce = Debounce(interval)
        self._lapsed: dict[str, int] = {}  # session_id: its hub subscription that lagged
        self._wake = asyncio.Event()

    async def hold(self, session_id: str) -> None:
        """Watch `session_id` (one more holder); StoreFailure if the store cannot be followed."""
        if session_id in self._watched:
            sub_id, holders = self._watched[session_id]
            self._watched[session_id] = (sub_id, holders + 1)
            return
        sub_id = await self._subscribe(session_id)
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
            self._debounce.forget(session_id)

    def watched(self) -> set[str]:
        return set(self._watched)

    async def _subscribe(self, session_id: str) -> int:
        return await self._hub.subscribe(
            None,
            session_id=session_id,
            render=self._committed,
            lagged=lambda sub_id, _: self._lagged(session_id, sub_id),
        )

    def _committed(self, _: int, __: int, event: Event) -> None:
        """The hub's render: nothing to write, the session changed."""
        self._debounce.changed(event.session_id)
        self._wake.set()

    def _lagged(self, session_id: str, sub_id: int) -> None:
        """The hub's lagged: it ended the subscription (a replay it could not go on with).
        Subscribe again, and say the session changed: what was missed is not known."""
        self._lapsed[session_id] = sub_id
        self._wake.set()

    async def run(self, deliver: Deliver) -> None:
        """Deliver each change until cancelled, at most one a session per interval."""
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            await self._renew()
            for session_id in self._debounce.due(loop.time()):
                if session_id in self._watched:
                    try:
                        await deliver(session_id)
                    except Exception:  # a client gone or slow must not end the watching
                        log.warning("could not tell the client session %r changed", session_id, exc_info=True)
            timeout = self._debounce.wait(loop.time())
            if self._lapsed:  # could not subscribe again: try again in a while
                timeout = min(timeout or self._debounce.interval, self._debounce.interval)
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _renew(self) -> None:
        for session_id, lapsed in list(self._lapsed.items()):
            if self._watched.get(session_id, (None,))[0] != lapsed:  # released meanwhile
                del self._lapsed[session_id]
                continue
            try:
                sub_id = await self._subscribe(session_id)
            except StoreFailure as exc:
                log.warning("cannot follow session %r again (%s); retrying", session_id, exc)
                continue
            del self._lapsed[session_id]
            if self._watched.get(session_id, (None,))[0] == lapsed:
                self._watched[session_id] = (sub_id, self._watched[session_id][1])
                self._debounce.changed(session_id)
            else:  # released while it subscribed
                self._hub.unsubscribe(sub_id)
