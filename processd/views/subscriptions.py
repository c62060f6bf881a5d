"""Live fan-out of committed events to SubscribeEvents streams.

Each subscriber has a bounded buffer. ``publish`` never waits: when a subscriber's buffer would overflow it
is marked cut off (reason ``slow_subscriber``) and its stream ends with RESOURCE_EXHAUSTED; it may resume from
its last seq. Events are parsed once per commit, and only when someone is subscribed.

Subscribers with an ``EventFilter`` (``processd.views.filter_model``) take another path: they are grouped by their
compiled filter, a commit is matched once against a :class:`~processd.views.filter_index.FilterIndex` of the
distinct filters (on the stored batches' columns, not once per subscriber), nothing is parsed but the fields a
filter checks beyond its anchor, and what a group takes is buffered as a ready serialized
``SubscribeEventsResponse`` (its transactions' events framed once per commit, shared by every group that takes
them; the message joined once per group, shared by its subscribers), so a message to a filtered subscriber is
usually sent as it was buffered.

SubscribeMany streams (:class:`ManyStream`, :mod:`processd.views.many`) register each of their filters in the
same groups (``FilterGroup.many``), so one matching pass serves them too; each stream gets, per commit, every
event its filters take once, tagged with their ids (read per stored batch from the index's column tables:
``processd.views.many.tagged_entries``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from operator import attrgetter
from typing import Any

from common.pb.v1 import events_pb2, query_pb2
from processd.storage.eventlog import EVENT_OVERHEAD_BYTES, decode_event
from processd.storage.records import CommitResult
from processd.views.filter_index import FilterGroup, FilterIndex, TxLookup
from processd.views.filter_match import match_columns
from processd.views.filter_model import TxFilter
from processd.views.many import ManyEntry, ManyLimitError, ManyRequestError, ack_entry, tagged_entries
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
        events = sum(n for _, n, _ in entries)
        if not events:
            return True
        if self.buffered_events + events > self.max_buffered:
            self.cut_reason = CUT_SLOW
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
        count = sum(n for _, n, _ in entries)
        if not count:
            return True
        if self.buffered_events + count > self.max_buffered:
            self.cut_reason = reason
            self.buffer.clear()
            self.buffered_events = 0
            self.wakeup.set()
            return False
        self.buffer.extend(entries)
        self.buffered_events += count
        self.wakeup.set()
        return True


class _Changes:
    """The groups one SubscribeMany request (or a stream's end) added, removed and changed, handed to the index at
    once (``FilterIndex.update``): a request of 1,000 filters sorts each index entry it touches once, not once per
    filter."""

    __slots__ = ("added", "changed", "removed")

    def __init__(self) -> None:
        self.added: dict[FilterGroup, None] = {}
        self.removed: dict[FilterGroup, None] = {}
        self.changed: dict[FilterGroup, None] = {}

    def apply(self, index: FilterIndex) -> None:
        # A group added in the request is sorted with its final ids; one removed was perhaps changed first.
        changed = [g for g in self.changed if g not in self.added and g not in self.removed]
        index.update(self.added, self.removed, changed)


class SubscriptionHub:
    """Registry of live subscribers (bounded in number) and the per-commit publisher."""

    def __init__(self, max_subscribers: int, max_buffered: int,
                 on_cut: Callable[[str], None] | None = None,
                 read_range: Callable[[int, int], list[tuple[int, int, int, bytes]]] | None = None,
                 tx_lookup: TxLookup | None = None) -> None:
        self.max_subscribers = max_subscribers
        self.max_buffered = max_buffered
        #: The bounds of one SubscribeEvents message (the service sets them): a filtered group's commit is one
        #: buffered entry when it fits in them.
        self.message_events = 500
        self.message_bytes = 1 << 20
        #: Subscribers without a filter (every event of their chain and kinds).
        self.subscribers: set[Subscriber] = set()
        #: Filtered subscribers by compiled filter, and the index of those filters (kept up to date as groups come
        #: and go: ``FilterIndex.add`` / ``remove``, at registration, not in a commit's fan-out).
        self.groups: dict[TxFilter, FilterGroup] = {}
        self._index = FilterIndex(())
        #: Live SubscribeMany streams, and their filters in all.
        self.streams: set[ManyStream] = set()
        self.stream_filters = 0
        #: Slots held by SubscribeEvents calls, from admission to their end (catch-up included): the bound.
        self.reserved = 0
        self.last_seq = 0
        self._on_cut = on_cut
        self._read_range = read_range
        #: Reads a sighting's transaction from the log (filtered subscribers match sightings on it).
        self.tx_lookup = tx_lookup
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
        if sub.filter is None:
            self.subscribers.add(sub)
            return
        group = self.groups.get(sub.filter)
        new = group is None
        if group is None:
            group = self.groups[sub.filter] = FilterGroup(sub.filter)
        group.members.add(sub)
        self._changed(group, new)

    def unregister(self, sub: Subscriber) -> None:
        if sub.filter is None:
            self.subscribers.discard(sub)
            return
        group = self.groups.get(sub.filter)
        if group is not None:
            group.members.discard(sub)
            if not group.members and not group.many:
                self._drop_group(group)
            else:
                group.changed()

    def _changed(self, group: FilterGroup, new: bool) -> None:
        """A group's subscribers changed: a new one joins the index (only its anchor values' entries change: no
        rebuild), the others' index entries sort it again."""
        if new:
            self._index.update(added=[group])
        else:
            group.changed()

    def _drop_group(self, group: FilterGroup) -> None:
        """Forgets a group without subscribers or stream ids (and its index entries)."""
        del self.groups[group.filter]
        self._index.update(removed=[group])

    # ---- SubscribeMany streams ------------------------------------------------------------------------------

    def add_stream(self, stream: ManyStream) -> None:
        """Registers a SubscribeMany stream (its slot is taken by the caller: :meth:`try_reserve`)."""
        self.streams.add(stream)

    def drop_stream(self, stream: ManyStream) -> None:
        """Unregisters a stream and every filter it holds (its end, or its cut); idempotent."""
        changes = _Changes()
        for fid in list(stream.filters):
            self._remove_filter(stream, fid, changes)
        changes.apply(self._index)
        self.streams.discard(stream)

    def change_filters(self, stream: ManyStream, add: list[tuple[int, TxFilter]], remove: list[int]) -> None:
        """One SubscribeMany request: ``remove`` (ids; one not in use is acknowledged all the same), then ``add``
        (id, filter), each applying from the next commit's seqs (``last_seq + 1``: registration happens between
        commits), then one acknowledgement in the stream's buffer, behind the events of earlier commits and ahead
        of later ones. The index takes the request's changes at once (each entry they touch sorted once). Raises
        :class:`ManyRequestError` (an id in use) or :class:`ManyLimitError` (past ``max_filters``); what came
        before the bad add stays applied (the stream ends on the error anyway)."""
        changes = _Changes()
        for fid in remove:
            self._remove_filter(stream, fid, changes)
        start = self.last_seq + 1
        added: list[tuple[int, int]] = []
        try:
            for fid, event_filter in add:
                if fid in stream.filters:
                    raise ManyRequestError(f"add: filter id {fid} is already in use (remove it first)")
                if len(stream.filters) >= stream.max_filters:
                    raise ManyLimitError(f"add: filter id {fid} would pass the limit of {stream.max_filters} "
                                         "filters per stream")
                self._add_filter(stream, fid, event_filter, changes)
                added.append((fid, start))
        finally:
            changes.apply(self._index)
            if added or remove:
                if not stream.offer_entries([ack_entry(added, remove, self.last_seq)]):
                    self._cut_stream(stream)

    def _add_filter(self, stream: ManyStream, fid: int, event_filter: TxFilter, changes: _Changes) -> None:
        stream.filters[fid] = event_filter
        stream.kinded += bool(event_filter.kinds)
        group = self.groups.get(event_filter)
        if group is None:
            group = self.groups[event_filter] = FilterGroup(event_filter)
            changes.added[group] = None
        else:
            changes.changed[group] = None
        ids = group.many.setdefault(stream, [])
        ids.append(fid)
        group.many_packed[stream] = b"".join(map(varint, ids))
        self.stream_filters += 1

    def _remove_filter(self, stream: ManyStream, fid: int, changes: _Changes) -> None:
        event_filter = stream.filters.pop(fid, None)
        if event_filter is None:
            return
        self.stream_filters -= 1
        stream.kinded -= bool(event_filter.kinds)
        group = self.groups[event_filter]
        ids = group.many[stream]
        ids.remove(fid)
        group.many_packed[stream] = b"".join(map(varint, ids))
        if not ids:
            del group.many[stream]
            del group.many_packed[stream]
            if not group.many and not group.members:
                del self.groups[event_filter]
                changes.removed[group] = None
                return
        changes.changed[group] = None

    def _cut_stream(self, stream: ManyStream) -> None:
        self.drop_stream(stream)
        if self._on_cut is not None:
            self._on_cut(stream.cut_reason)

    def index(self) -> FilterIndex:
        """The index of the registered filters."""
        return self._index

    def wants_events(self) -> bool:
        """Whether a commit should collect its events (``CommitResult.events``): filtered subscribers read the
        stored columns and ``CommitResult.source_events`` instead."""
        return bool(self.subscribers)

    def publish_commit(self, result: CommitResult) -> None:
        """Hands one commit to every subscriber without waiting: :meth:`publish` for those without a filter,
        :meth:`publish_filtered` for the others."""
        self.publish(result.first_seq, result.last_seq, result.events)
        if self.groups and result.last_seq >= result.first_seq:
            self.publish_filtered(result)

    def publish_filtered(self, result: CommitResult) -> None:
        """Matches the commit's transactions once against the distinct filters (:func:`match_columns`), frames
        each taken transaction once per set of kinds, makes each group's messages once and offers them to its
        subscribers."""
        index = self.index()
        match_columns(index, result.stored, result.source_events, self.tx_lookup)
        last = result.last_seq
        for g in index.touched:
            if g.txs and g.members:
                entries = self._group_entries(g, last)
                for sub in list(g.members):
                    if not sub.offer_framed(entries, g):
                        self.unregister(sub)
                        if self._on_cut is not None:
                            self._on_cut(sub.cut_reason)
        if self.stream_filters and (index.many_txs or index.stream_batches):
            txs = index.many_txs
            for stream in list(self.streams):
                if not stream.filters:
                    continue
                entries = tagged_entries(index.stream_batches, txs, stream, last, self.message_events,
                                         self.message_bytes, stream.kinded > 0)
                if not stream.offer_entries(entries):
                    self._cut_stream(stream)
        index.begin()  # let go of the commit's values

    def _group_entries(self, group: FilterGroup, last_seq: int) -> list[FramedEntry]:
        """What ``group`` takes from a commit as buffer entries, serialized messages with ``last_seq``: one of
        all its transactions' frames when they fit in one message (joined once here, sent as they are by each
        subscriber of the group), else one per transaction."""
        parts, events, size = group.joined()
        if events <= self.message_events and size <= self.message_bytes:
            return [(framed_message(parts, last_seq), events, last_seq)]
        return [(framed_message([b], last_seq), n, last_seq) for b, n in group.frames()]

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
        for group in self.groups.values():
            for sub in group.members:
                sub.wakeup.set()
        for stream in self.streams:
            stream.wakeup.set()



def framed_message(entries: list[bytes], last_seq: int) -> bytes:
    """A serialized ``SubscribeEventsResponse`` of framed ``entries`` (:func:`frame_event`) and ``last_seq_id``."""
    if last_seq:
        return b"".join([*entries, _LAST_SEQ_TAG, varint(last_seq)])
    return b"".join(entries)


_LAST_SEQ_TAG = tag(query_pb2.SubscribeEventsResponse, "last_seq_id")
