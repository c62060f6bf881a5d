"""The subscribers of the live fan-out (:mod:`processd.views.subscriptions`): a SubscribeEvents stream's bounded
buffer (:class:`Subscriber`: parsed events, or ready serialized messages for a filtered one), a SubscribeMany
stream's (:class:`ManyStream`), the wake-up flag with a heartbeat timeout each waits on (:class:`Wakeup`), and the
serialized ``SubscribeEventsResponse`` a filtered buffer holds (:func:`framed_message`). A buffer that would
overflow is cut (``CUT_SLOW`` / ``CUT_SLOW_STREAM``); ``SubscriptionHub`` fills and registers them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from operator import attrgetter
from typing import Any

from common.pb.v1 import events_pb2, query_pb2
from processd.storage.eventlog import EVENT_OVERHEAD_BYTES
from processd.views.filter_index import FilterGroup
from processd.views.filter_model import TxFilter
from processd.views.many import ManyEntry
from processd.wire.encoding import varint
from processd.wire.tags import tag

_seq_of = attrgetter("seq")
CUT_SLOW = "slow_subscriber"
#: A SubscribeMany stream whose buffer would overflow.
CUT_SLOW_STREAM = "slow_stream"
#: A heartbeat timer that fires this close to its wait's deadline ends the wait instead of being re-armed.
_REARM_MIN_S = 0.01
#: A filtered subscriber's buffer entry: a serialized ``SubscribeEventsResponse`` (framed events, then
#: ``last_seq_id``: :func:`framed_message`), how many events it holds, and that ``last_seq_id``.
FramedEntry = tuple[bytes, int, int]


class Wakeup:
    """A subscriber's wake-up flag: ``asyncio.Event``'s set / clear / is_set, and a :meth:`wait` with a timeout
    (the heartbeat). ``asyncio.wait_for`` on an Event makes a task per wait, and even a timer handle per wait
    (``call_later`` + ``cancel``: a heap push, and the loop's clean-up of cancelled handles) was ~3 us of each
    message to 1,000 subscribers woken by every commit: a wait costs a future here, and one timer per
    subscriber is re-armed only when it fires before its deadline (the deadline moves with each wait)."""

    __slots__ = ("_deadline", "_flag", "_timer", "_waiter")

    def __init__(self) -> None:
        self._flag = False
        self._waiter: asyncio.Future[bool] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0

    def set(self) -> None:
        self._flag = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    def clear(self) -> None:
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    async def wait(self, within_s: float) -> bool:
        """True once set (at once if it is), False after ``within_s`` seconds without."""
        if self._flag:
            return True
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        self._deadline = loop.time() + within_s
        timer = self._timer
        if timer is None or timer.when() > self._deadline:
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(self._deadline, self._expire, loop)
        try:
            return await waiter
        finally:
            self._waiter = None

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        waiter = self._waiter
        # A later wait moved the deadline: re-armed for it (not for the last few ms: a loop may run a handle up to
        # its clock resolution early, and a heartbeat need not be that exact).
        if waiter is not None and loop.time() < self._deadline - _REARM_MIN_S:
            self._timer = loop.call_at(self._deadline, self._expire, loop)
            return
        self._timer = None  # not waiting: the next wait arms a new one
        if waiter is not None and not waiter.done():
            waiter.set_result(False)

    def close(self) -> None:
        """Cancels the timer (the subscription ended)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Subscriber:
    """One live subscription: its filters, buffer and wake-up event."""

    def __init__(self, chain_id: int, kinds: frozenset[int], max_buffered: int,
                 event_filter: TxFilter | None = None) -> None:
        self.chain_id = chain_id
        self.kinds = kinds
        #: A filtered subscriber buffers ready serialized messages (:data:`FramedEntry`) instead of Events.
        self.filter = event_filter
        self.max_buffered = max_buffered
        self.buffer: deque[Any] = deque()  # Events, or FramedEntry with a filter
        #: Stored size of each buffered event (in step with ``buffer``, without a filter), so messages can be cut
        #: by bytes.
        self.sizes: deque[int] = deque()
        #: Filtered: events in all its buffered entries.
        self.buffered_events = 0
        self.wakeup = Wakeup()
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

    def offer_framed(self, entries: list[FramedEntry], group: FilterGroup) -> bool:
        """Appends a commit's messages for this subscriber's group (``entries``, shared by the group's
        subscribers: usually one per commit, one per transaction when that would pass a message's bounds) from
        ``next_seq`` on; False (and the cut) when the buffer would overflow."""
        if group.txs and group.txs[0].seq < self.next_seq:
            # Only a commit right after registration can start before next_seq: frame this one apart.
            last = entries[-1][2]
            entries = [(framed_message([b], last), n, last) for b, n in group.frames(self.next_seq)]
        return self._buffer_ready(entries, CUT_SLOW)

    def _buffer_ready(self, entries: list[Any], reason: str) -> bool:
        """Appends ready entries (``(bytes, events, last_seq)``); False, and the cut with ``reason``, when the
        buffer would overflow."""
        events = sum(n for _, n, _ in entries)
        if not events:
            return True
        if self.buffered_events + events > self.max_buffered:
            self.cut_reason = reason
            self.buffer.clear()
            self.buffered_events = 0
            self.wakeup.set()
            return False
        self.buffer.extend(entries)
        self.buffered_events += events
        self.wakeup.set()
        return True

    def take_message(self, max_events: int, max_bytes: int, head: int) -> bytes:
        """:meth:`take` for a filtered subscriber, as a serialized ``SubscribeEventsResponse`` whose
        ``last_seq_id`` is ``head``: whole entries, at least one, until ``max_events`` events or ``max_bytes``.
        The usual case, one entry made at the last commit, is sent as it is (no copy); else the entries are
        joined, and ``head`` is appended when it is past the last entry's ``last_seq_id`` (a singular field's
        last occurrence wins when the message is parsed)."""
        buffer = self.buffer
        message, events, last = buffer.popleft()
        if buffer and events + buffer[0][1] <= max_events and len(message) + len(buffer[0][0]) <= max_bytes:
            parts = [message]
            size = len(message)
            while buffer and events + buffer[0][1] <= max_events and size + len(buffer[0][0]) <= max_bytes:
                part, n, last = buffer.popleft()
                parts.append(part)
                events += n
                size += len(part)
            message = b"".join(parts)
        self.buffered_events -= events
        if last != head:
            message += _LAST_SEQ_TAG + varint(head)
        return message

    def take(self, max_events: int, max_bytes: int) -> list[Any]:
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


class ManyStream(Subscriber):
    """One SubscribeMany stream: its filters by the client's id, and a buffer of ready serialized
    ``SubscribeManyResponse`` messages (events tagged with filter ids, acknowledgements), taken as a filtered
    subscriber's are (:meth:`Subscriber.take_message`: ``last_seq_id`` is field 2 of both messages)."""

    def __init__(self, max_buffered: int, max_filters: int) -> None:
        super().__init__(0, frozenset(), max_buffered)
        self.max_filters = max_filters
        #: The client's filter ids in use and their compiled filters.
        self.filters: dict[int, TxFilter] = {}
        #: Its filters with ``kinds`` (without any, every event of a taken transaction carries the same ids).
        self.kinded = 0
        #: Why the stream must end (a bad request), set by the request reader; the stream's loop answers it.
        self.error: Exception | None = None

    def offer_entries(self, entries: list[ManyEntry], reason: str = CUT_SLOW_STREAM) -> bool:
        """Appends ready entries; False (and the cut, with ``reason``) when the buffer would overflow."""
        return self._buffer_ready(entries, reason)


def framed_message(entries: list[bytes], last_seq: int) -> bytes:
    """A serialized ``SubscribeEventsResponse`` of framed ``entries`` (:func:`frame_event`) and ``last_seq_id``."""
    if last_seq:
        return b"".join([*entries, _LAST_SEQ_TAG, varint(last_seq)])
    return b"".join(entries)


_LAST_SEQ_TAG = tag(query_pb2.SubscribeEventsResponse, "last_seq_id")
