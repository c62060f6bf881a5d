"""Request coalescing: concurrent identical reads share one processd call and one rendered response.

Under load many clients poll the same view (``/transactions?chain_id=1``); while one call for a key is in
flight, later callers for the same key await its result instead of issuing their own. The answer is never
older than the moment the shared call was sent, so this costs no freshness beyond one round trip, unlike a
TTL cache. The table only holds calls in flight, so it is bounded by the number of concurrent requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Shares the result (or exception) of one in-flight coroutine among callers with the same key."""

    def __init__(self) -> None:
        self._inflight: dict[Hashable, asyncio.Future[T]] = {}
        self.shared = 0

    def __len__(self) -> int:
        return len(self._inflight)

    async def run(self, key: Hashable, produce: Callable[[], Awaitable[T]]) -> T:
        """Result of ``produce()`` for ``key``, shared with concurrent callers of the same key."""
        future = self._inflight.get(key)
        if future is not None:
            self.shared += 1
            # shield: one caller going away (client disconnect) must not cancel the call for the others.
            return await asyncio.shield(future)
        future = asyncio.ensure_future(produce())
        self._inflight[key] = future

        def done(f: asyncio.Future[T]) -> None:
            self._inflight.pop(key, None)
            if not f.cancelled():
                f.exception()  # mark retrieved: every caller may have gone away

        future.add_done_callback(done)
        return await asyncio.shield(future)
