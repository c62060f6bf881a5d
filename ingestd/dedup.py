"""Bounded per-chain deduplication of transaction hashes (TTL plus capacity bound, FIFO eviction)."""

from __future__ import annotations

import time
from collections import OrderedDict


class Dedup:
    """Remembers hashes for ``ttl_s`` seconds, at most ``capacity`` of them.

    Entries are kept in first-seen order, so expiry and capacity eviction both pop from the front: O(1)
    amortised per call. A hit does not refresh the entry: a transaction re-announced after the TTL is
    treated as new (processd deduplicates by (chain, hash) anyway, so a late repeat costs a fetch, not a
    duplicate record).
    """

    __slots__ = ("_entries", "capacity", "evicted", "expired", "hits", "ttl_s")

    def __init__(self, capacity: int, ttl_s: float) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.ttl_s = ttl_s
        self._entries: OrderedDict[bytes, float] = OrderedDict()
        self.hits = 0
        self.evicted = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: bytes) -> bool:
        return key in self._entries

    def check_and_add(self, key: bytes, now: float | None = None) -> bool:
        """Returns True when ``key`` was already seen (a hit, counted); otherwise remembers it, returns False."""
        now = time.monotonic() if now is None else now
        entries = self._entries
        horizon = now - self.ttl_s
        while entries:
            _, oldest_t = next(iter(entries.items()))
            if oldest_t > horizon:
                break
            entries.popitem(last=False)
            self.expired += 1
        if key in entries:
            self.hits += 1
            return True
        if len(entries) >= self.capacity:
            entries.popitem(last=False)
            self.evicted += 1
        entries[key] = now
        return False

    def forget(self, key: bytes) -> None:
        """Removes ``key`` so that a later announcement is processed again (e.g. after a failed fetch)."""
        self._entries.pop(key, None)
