"""Matching a :class:`~processd.views.filter_index.FilterIndex` on what a commit stored (:func:`match_columns`,
:func:`match_batch`: by the batches' columns, the taken transactions framed once), on events read from the log
(:func:`match_raw`, the catch-up; sightings: :func:`add_sighting`), or one stored transaction at a time
(:class:`LogMatcher`, the list RPCs); and what a stored batch gave the SubscribeMany streams (:class:`StreamBatch`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import chain, compress, repeat
from typing import Any

from common.pb.v1 import events_pb2
from processd.storage.eventlog import EventLog
from processd.views.filter_index import ColumnAnchors, FilterIndex, TxLookup, take
from processd.views.filter_model import TxFilter
from processd.views.tx_view import KIND_DECODED, KIND_OPP, KIND_SEEN, TxView, frame_taken
from processd.wire.columns import BatchColumns

_parse_event = events_pb2.Event.FromString


class StreamBatch:
    """What a stored batch gave SubscribeMany streams in a round, tagged per stream by
    ``processd.views.many.tagged_entries``: its first seq and columns, the index's column fields (their tables
    per stream: :class:`ColumnAnchors`), and the views that groups with streams took apart (``views``:
    ``TxView.takers`` and view-field anchors)."""

    __slots__ = ("_event_tx", "cols", "columns", "first", "seq_fields", "views")

    def __init__(self, first: int, cols: BatchColumns, columns: list[ColumnAnchors], views: list[TxView]) -> None:
        self.first = first
        self.cols = cols
        self.columns = columns
        self.views = views
        #: Each event's ``Event.seq_id`` field (and an opportunity's ``seq_id``: :func:`opp_seq_field`), made
        #: by the first stream that tags the batch, for the others.
        self.seq_fields: list[bytes] | None = None
        self._event_tx: list[int] | None = None

    def event_tx(self) -> list[int]:
        """Each event's transaction (its index in the columns), made once per batch (C level)."""
        out = self._event_tx
        if out is None:
            cols = self.cols
            out = self._event_tx = list(chain.from_iterable(map(repeat, range(len(cols.tx_kinds)),
                                                                map(len, cols.tx_kinds))))
        return out


def match_columns(index: FilterIndex, stored: Iterable[tuple[int, BatchColumns]],
                  sightings: Iterable[tuple[int, int, int, bytes]] = (), lookup: TxLookup | None = None) -> None:
    """Gives each group of ``index`` the transactions it takes from a commit's stored batches ``(first seq,
    columns)`` and the ``sightings`` it takes (:func:`add_sighting`), in seq order (:func:`match_batch`)."""
    index.begin()
    for event in sightings:
        add_sighting(index, event, lookup)
    for first, cols in stored:
        match_batch(index, first, cols)
    index.finish()


def match_batch(index: FilterIndex, first: int, cols: BatchColumns) -> None:
    """One stored batch (its events at seqs from ``first``). Per anchored field with a column (to, sender,
    selector, chain), the field's table is mapped over the column (C level); only the transactions found there
    get a view (built once, shared by the groups that take it), and only the groups found are checked in full,
    when they ask about more than their anchor. The other groups (unanchored, or anchored on tokens, methods,
    protocols) see every transaction, through :meth:`FilterIndex.collect`. Each group is reached through one
    field, in the batch's order, so its transactions stay in seq order. The taken transactions are framed once
    (:func:`frame_taken`)."""
    values, seen_at, chains, fkeys, fkey_of = cols.values, cols.seen_at, cols.chain, cols.fkeys, cols.fkey_of
    n, nvalues = len(seen_at), len(values)
    scores = {offset: score for offset, _, score in cols.opps}
    taken: dict[int, TxView] = {}
    touched = index.touched
    many: list[TxView] = []  # the views groups with streams took apart (StreamBatch.views)
    for column in index.columns:
        if not column.general:
            continue  # streams only there: read per stream from the batch (StreamBatch)
        hits = list(map(column.general.get, getattr(cols, column.name)))
        for t in compress(range(n), hits):
            tx = taken.get(t)
            if tx is None:
                start = seen_at[t]
                tx = TxView(chains[t], values, start, seen_at[t + 1] if t + 1 < n else nvalues, first + start,
                            fkeys[fkey_of[t]][2], scores)
            if take(hits[t], tx, touched, many, False):  # type: ignore[arg-type]  # compress: not None
                taken[t] = tx
    if index.per_tx:
        fields = index.view_fields
        for t in range(n):
            tx = taken.get(t)
            if tx is None:
                start = seen_at[t]
                tx = TxView(chains[t], values, start, seen_at[t + 1] if t + 1 < n else nvalues, first + start,
                            fkeys[fkey_of[t]][2], scores)
            if index.collect(tx, fields, many):
                taken[t] = tx
    index.stream_batches.append(StreamBatch(first, cols, index.columns, many))
    if taken:
        frame_taken(list(taken.values()), values, first, n)


def add_sighting(index: FilterIndex, event: tuple[int, int, int, bytes], lookup: TxLookup | None) -> None:
    """Gives a TX_SOURCE_SEEN ``event`` ``(seq, chain, kind, value)`` to the groups it matches: on chain and
    kind, and for a filter of transaction fields on its transaction, read from the log with ``lookup`` (once,
    and only when such a filter exists: sightings come only from chains with several sources)."""
    seq, chain_id, kind, value = event
    tx: TxView | None = None
    groups = [g for g in index.groups if not g.filter.tx_fields]
    if lookup is not None and len(groups) < len(index.groups):
        tx_hash = _parse_event(value[1:]).tx_hash
        first, values = lookup(chain_id, tx_hash)
        if values:
            tx = TxView(chain_id, values, 0, len(values), first)
            if tx.envelope().hash == tx_hash:  # the index key holds the hash's first 16 bytes
                groups.extend(g for g in index.candidates(tx) if g.filter.tx_fields)
            else:
                tx = None
    sighting = TxView(chain_id, [value], 0, 1, seq)
    for g in groups:
        if g.filter.matches_sighting(chain_id, kind, tx):
            sighting.frame_all()
            index.sighted(g, sighting)


def match_raw(index: FilterIndex, events: Sequence[tuple[int, int, int, bytes]],
              lookup: TxLookup | None = None) -> None:
    """Gives each group of ``index`` what it takes from ``events`` ``(seq, chain, kind, value)`` read from the
    log, whose seqs are consecutive. A transaction is its TX_SEEN and the TX_DECODED / OPP_DETECTED events
    right after it; events before the first TX_SEEN whose transaction is not in ``events`` are skipped (the
    caller reads from a little earlier and frames from its cursor on); sightings: :func:`add_sighting`."""
    index.begin()
    values = [e[3] for e in events]
    n = len(events)
    i = 0
    while i < n:
        seq, chain_id, kind, _ = events[i]
        if kind != KIND_SEEN:
            if kind not in (KIND_DECODED, KIND_OPP):  # a sighting, on its own
                add_sighting(index, events[i], lookup)
            i += 1
            continue
        end = i + 1
        while end < n and events[end][2] in (KIND_DECODED, KIND_OPP):
            end += 1
        if end > i + 1:  # a transaction's TX_DECODED always follows its TX_SEEN; without it, it is cut
            tx = TxView(chain_id, values, i, end, seq)
            if index.collect(tx):
                tx.frame_all()
        i = end
    index.finish()


class LogMatcher:
    """Matches stored transactions by the seq of any of their events, for the list endpoints: one short cursor
    walk in the caller's read transaction (``EventLog.tx_values``) per transaction, remembered per request (a
    transaction's opportunities share the answer)."""

    def __init__(self, eventlog: EventLog, event_filter: TxFilter) -> None:
        self._log = eventlog
        self._filter = event_filter
        self._memo: dict[int, bool] = {}

    def __call__(self, txn: Any, seq: int, chain_id: int = 0) -> bool:
        first, values = self._log.tx_values(txn, seq)
        if not values:
            return False
        hit = self._memo.get(first)
        if hit is None:
            tx = TxView(chain_id, values, 0, len(values), first)
            if not chain_id:
                tx.chain = tx.envelope().chain_id
            hit = self._memo[first] = self._filter.matches(tx)
        return hit
