"""Live fan-out of committed events to SubscribeEvents streams.

Each subscriber has a bounded buffer. ``publish`` never waits: when a subscriber's buffer would overflow it
is marked cut off (reason ``slow_subscriber``) and its stream ends with RESOURCE_EXHAUSTED; it may resume from
its last seq. Events are parsed once per commit, and only when someone is subscribed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from common.pb.v1 import events_pb2
from processd.storage.eventlog import EVENT_OVERHEAD_BYTES, decode_event

CUT_SLOW = "slow_subscriber"


class Subscriber:
    """One live subscription: its filters, buffer and wake-up event."""

    def __init__(self, chain_id: int, kinds: frozenset[int], max_buffered: int) -> None:
        self.chain_id = chain_id
        self.kinds = kinds
        self.max_buffered = max_buffered
        self.buffer: deque[events_pb2.Event] = deque()
        #: Stored size of each buffered event (in step with ``buffer``), so messages can be cut by bytes.
        self.sizes: deque[int] = deque()
        self.wakeup = asyncio.Event()
        self.cut_reason = ""
        self.next_seq = 0  # events below this were already delivered by catch-up

    def offer(self, events: list[tuple[int, int, int, events_pb2.Event, int]]) -> bool:
        """Appends matching events ``(seq, chain, kind, event, stored size)``; returns False (and marks the cut)
        when the buffer would overflow."""
        matching = [
            (e, size) for seq, chain, kind, e, size in events
            if seq >= self.next_seq and (not self.chain_id or chain == self.chain_id)
            and (not self.kinds or kind in self.kinds)
        ]
        if not matching:
            return True
        if len(self.buffer) + len(matching) > self.max_buffered:
            self.cut_reason = CUT_SLOW
            self.buffer.clear()
            self.sizes.clear()
            self.wakeup.set()
            return False
        self.buffer.extend(e for e, _ in matching)
        self.sizes.extend(size for _, size in matching)
        self.wakeup.set()
        return True

    def take(self, max_events: int, max_bytes: int) -> list[events_pb2.Event]:
        """Pops the next message's events: at least one, at most ``max_events``, and no more than fit in
        ``max_bytes`` (one commit of big transactions would otherwise pass the gRPC message limit)."""
        buffer, sizes = self.buffer, self.sizes
        page = [buffer.popleft()]
        total = sizes.popleft() + EVENT_OVERHEAD_BYTES
        while buffer and len(page) < max_events:
            size = sizes[0] + EVENT_OVERHEAD_BYTES
            if total + size > max_bytes:
                break
            total += size
            sizes.popleft()
            page.append(buffer.popleft())
        return page


class SubscriptionHub:
    """Registry of live subscribers (bounded in number) and the per-commit publisher."""

    def __init__(self, max_subscribers: int, max_buffered: int,
                 on_cut: Callable[[str], None] | None = None,
                 read_range: Callable[[int, int], list[tuple[int, int, int, bytes]]] | None = None) -> None:
        self.max_subscribers = max_subscribers
        self.max_buffered = max_buffered
        self.subscribers: set[Subscriber] = set()
        #: Slots held by SubscribeEvents calls, from admission to their end (catch-up included): the bound.
        self.reserved = 0
        self.last_seq = 0
        self._on_cut = on_cut
        self._read_range = read_range
        self.closed = False

    def try_reserve(self) -> bool:
        """Takes one of the ``max_subscribers`` slots, or returns False when all are held.

        A call reserves before its first await and keeps the slot through catch-up until it ends
        (:meth:`release`, in a ``finally``). Counting only registered subscribers let every call in catch-up
        pass the check (67 of 64 were open at once).
        """
        if self.reserved >= self.max_subscribers:
            return False
        self.reserved += 1
        return True

    def release(self) -> None:
        """Gives back a slot taken by :meth:`try_reserve`."""
        self.reserved -= 1

    def register(self, sub: Subscriber) -> None:
        self.subscribers.add(sub)

    def unregister(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def publish(self, first_seq: int, last_seq: int, raw_events: list[tuple[int, int, int, bytes]] | None) -> None:
        """Hands one commit's events (seqs ``first_seq..last_seq``) to every subscriber without waiting.

        ``raw_events`` is None when the writer skipped collecting them (nobody was subscribed when the commit
        started); if someone subscribed meanwhile, the range is read back from the log.
        """
        if last_seq > self.last_seq:
            self.last_seq = last_seq
        if not self.subscribers or last_seq < first_seq:
            return
        if raw_events is None:
            if self._read_range is None:
                return
            raw_events = self._read_range(first_seq, last_seq)
        if not raw_events:
            return
        parsed = [(seq, chain, kind, decode_event(value, seq), len(value))
                  for seq, chain, kind, value in raw_events]
        for sub in list(self.subscribers):
            if not sub.offer(parsed):
                self.subscribers.discard(sub)
                if self._on_cut is not None:
                    self._on_cut(sub.cut_reason)

    def close(self) -> None:
        """Wakes every subscriber so its stream ends (shutdown)."""
        self.closed = True
        for sub in self.subscribers:
            sub.wakeup.set()
