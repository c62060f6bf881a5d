"""Per-key token-bucket rate limiting with a bounded bucket table."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NoReturn

from gatewayd.errors import GatewaydError


class RateLimited(GatewaydError):
    """The key's bucket is empty (HTTP 429); ``retry_after_s`` is when one token will be back."""

    status = 429
    code = "rate_limited"
    retriable = True

    def __init__(self, retry_after_s: int, limit_rps: float, burst: int) -> None:
        super().__init__(f"rate limit exceeded ({limit_rps:g} requests/s, burst {burst}); retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s
        self.message = str(self)


class RateLimiter:
    """Token buckets keyed by API key (or client address): ``rate_rps`` tokens/s, at most ``burst`` tokens.

    The table holds at most ``max_keys`` buckets, least recently used first out: an evicted key comes back
    with a full bucket, which is what an idle key would have had anyway (idle >= burst / rate). A disabled
    limiter (rate 0) lets everything through.
    """

    def __init__(
        self,
        rate_rps: float,
        burst: int,
        max_keys: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate_rps = rate_rps
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        # key -> [tokens, last refill time]; lists so the hot path updates in place.
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        self.evictions = 0

    @property
    def enabled(self) -> bool:
        """True when a rate is configured."""
        return self.rate_rps > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, key: str) -> None:
        """Raises :class:`RateLimited` when ``key``'s bucket holds less than one token, without taking one.

        A key with no bucket passes (and gets none: a look-up must not grow the table). Used to refuse a
        throttled client address before any work is done for it (see ``Gateway.endpoint``).
        """
        if self.rate_rps <= 0:
            return
        bucket = self._buckets.get(key)
        if bucket is None:
            return
        tokens = bucket[0] + (self._clock() - bucket[1]) * self.rate_rps
        if tokens < 1.0:
            self._refuse(tokens)

    def acquire(self, key: str) -> None:
        """Takes one token for ``key`` or raises :class:`RateLimited` with the seconds until the next token."""
        if self.rate_rps <= 0:
            return
        now = self._clock()
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            if len(buckets) >= self.max_keys:
                buckets.popitem(last=False)
                self.evictions += 1
            bucket = buckets[key] = [float(self.burst), now]
        else:
            buckets.move_to_end(key)
            tokens = bucket[0] + (now - bucket[1]) * self.rate_rps
            bucket[0] = tokens if tokens < self.burst else float(self.burst)
            bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return
        self._refuse(bucket[0])

    def _refuse(self, tokens: float) -> NoReturn:
        wait_s = (1.0 - tokens) / self.rate_rps
        raise RateLimited(max(1, math.ceil(wait_s)), self.rate_rps, self.burst)
