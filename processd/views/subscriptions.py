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

from collections.abc import Callable

from processd.storage.eventlog import decode_event
from processd.storage.records import CommitResult
from processd.views.filter_index import FilterGroup, FilterIndex, TxLookup
from processd.views.filter_match import match_columns
from processd.views.filter_model import TxFilter
from processd.views.many import ManyLimitError, ManyRequestError, ack_entry, tagged_entries
from processd.views.subscribers import (
    FramedEntry,
    ManyStream,
    Subscriber,
    framed_message,
)
from processd.wire.encoding import varint


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
