"""Bounded per-chain deduplication of transaction hashes (TTL plus capacity bound, FIFO eviction)."""

from __future__ import annotations

import time
from collections import OrderedDict, deque

#: Generations per TTL: an expired hash is dropped with its generation at most ``ttl_s / GENERATIONS`` late
#: (and is treated as new meanwhile: its time is checked on a hit).
GENERATIONS = 16


class Dedup:
    """Remembers hashes for ``ttl_s`` seconds, at most ``capacity`` of them.

    Hashes are kept in generations, one per ``ttl_s / GENERATIONS`` seconds of first sightings, oldest first:
    a generation is only ever added to, and is dropped whole once all of it is past the TTL. One long-lived
    table with a hash inserted and another expired at every call would keep growing its internal index until
    it is rebuilt at three times its live size (a one-off step of ~14 MiB per chain at 200 tx/s and a
    15-minute TTL, seen in the 30-minute soak); generations never delete from a table that lives on. Capacity
    eviction pops the oldest hash of the oldest generation (O(1)). A hit does not refresh the entry: a
    transaction re-announced after the TTL is treated as new (processd deduplicates by (chain, hash) anyway,
    so a late repeat costs a fetch, not a duplicate record).
    """

    __slots__ = ("_generations", "_size", "capacity", "evicted", "expired", "hits", "ttl_s", "width_s")

    def __init__(self, capacity: int, ttl_s: float) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.ttl_s = ttl_s
        self.width_s = ttl_s / GENERATIONS if ttl_s > 0 else 1.0
        #: (start time, {hash: first seen}) per generation, oldest first.
        self._generations: deque[tuple[float, OrderedDict[bytes, float]]] = deque()
        self._size = 0
        self.hits = 0
        self.evicted = 0
        self.expired = 0

    def __len__(self) -> int:
        return self._size

    def __contains__(self, key: bytes) -> bool:
        return any(key in entries for _, entries in self._generations)

    def check_and_add(self, key: bytes, now: float | None = None) -> bool:
        """Returns True when ``key`` was already seen (a hit, counted); otherwise remembers it, returns False."""
        now = time.monotonic() if now is None else now
        horizon = now - self.ttl_s
        generations = self._generations
        while generations and generations[0][0] + self.width_s <= horizon:  # wholly past the TTL
            self._drop_expired()
        for _, entries in reversed(generations):  # recent repeats are the common hits
            seen = entries.get(key)
            if seen is None:
                continue
            if seen > horizon:
                self.hits += 1
                return True
            del entries[key]  # past the TTL, its generation not yet dropped: new again
            self._size -= 1
            self.expired += 1
            break
        while self._size >= self.capacity:
            entries = generations[0][1]
            if entries:
                entries.popitem(last=False)
                self._size -= 1
                self.evicted += 1
            if not entries:
                generations.popleft()
        if not generations or now >= generations[-1][0] + self.width_s:
            generations.append((now, OrderedDict()))
        generations[-1][1][key] = now
        self._size += 1
        return False

    def forget(self, key: bytes) -> None:
        """Removes ``key`` so that a later announcement is processed again (e.g. after a failed fetch)."""
        for _, entries in self._generations:
            if entries.pop(key, None) is not None:
                self._size -= 1
                return

    def _drop_expired(self) -> None:
        _, entries = self._generations.popleft()
        self._size -= len(entries)
        self.expired += len(entries)
