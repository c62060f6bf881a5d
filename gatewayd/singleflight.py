"""Request coalescing plus a short-lived response cache for the "newest" views.

Under load many clients poll the same view (``/transactions?chain_id=1``). Two mechanisms keep that from
turning into one processd call and one JSON rendering per request:

- single-flight: while a call for a key is in flight, later callers for the same key await its result (no
  staleness beyond one round trip);
- micro-cache: a finished result is reused for ``ttl_s`` (0 = off). The answer is then at most ``ttl_s``
  old, which is what lets one Python process serve thousands of polls per second on a small machine; the
  live path for latency-sensitive clients is ``/events/stream``.

Both tables are bounded: the in-flight table by the number of concurrent requests, the cache by
``max_entries`` (oldest entry out first).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Shares one in-flight coroutine per key among concurrent callers, and caches results for ``ttl_s``."""

    def __init__(self, ttl_s: float = 0.0, max_entries: int = 1024, clock: Callable[[], float] = time.monotonic):
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._inflight: dict[Hashable, asyncio.Future[T]] = {}
        self._cache: dict[Hashable, tuple[float, T]] = {}
        self.shared = 0
        self.hits = 0

    def __len__(self) -> int:
        return len(self._inflight)

    @property
    def cached(self) -> int:
        """Entries in the cache (bounded by ``max_entries``)."""
        return len(self._cache)

    async def run(self, key: Hashable, produce: Callable[[], Awaitable[T]], ttl_s: float | None = None) -> T:
        """Result of ``produce()`` for ``key``: cached, shared with a concurrent caller, or computed.

        ``ttl_s`` overrides the default time to live for this key.
        """
        ttl = self.ttl_s if ttl_s is None else ttl_s
        if ttl > 0:
            entry = self._cache.get(key)
            if entry is not None and entry[0] > self._clock():
                self.hits += 1
                return entry[1]
        future = self._inflight.get(key)
        if future is not None:
            self.shared += 1
            # shield: one caller going away (client disconnect) must not cancel the call for the others.
            return await asyncio.shield(future)
        future = asyncio.ensure_future(produce())
        self._inflight[key] = future

        def done(f: asyncio.Future[T]) -> None:
            self._inflight.pop(key, None)
            if f.cancelled():
                return
            if f.exception() is None and ttl > 0:  # errors are never cached
                cache = self._cache
                cache.pop(key, None)
                if len(cache) >= self.max_entries:
                    del cache[next(iter(cache))]
                cache[key] = (self._clock() + ttl, f.result())

        future.add_done_callback(done)
        return await asyncio.shield(future)
