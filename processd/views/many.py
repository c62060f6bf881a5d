"""SubscribeMany (issue 18): one stream carrying many filters, each event sent once with the ids of its filters.

A gRPC stream costs its server 30-50 us of CPU per message (``scripts/bench/stream_floor.py``), so 1,000
filtered SubscribeEvents streams that each get a message per commit cost processd more than its ingest does. A
SubscribeMany stream holds any number of its client's filters (bounded: ``max_filters_per_stream``), registered
in the same :class:`~processd.views.filter_index.FilterIndex` as the SubscribeEvents filters, so a commit is matched
once for every stream and subscriber. What a stream's filters take is sent as one message per commit (cut by
count and bytes): each taken event framed once (:meth:`TxView.event_frames`, shared by every stream that takes
it) and followed by the packed ids of the stream's filters that take it (a ``ManyEvent``). processd's messages
then follow commits and its bytes the taken events, not the filters.

This module holds the pure parts: the errors of a request, the serialized messages of a stream's matches
(:func:`tagged_entries`, from the round's ``FilterIndex.many_txs``: each taken transaction lists the groups with
streams that took it, ``TxView.takers``) and of its acknowledgements (:func:`ack_entry`). The stream's buffer
is :mod:`processd.views.subscribers`' ``ManyStream``, its registration
:mod:`processd.views.subscriptions`' ``SubscriptionHub.change_filters``.
"""

from __future__ import annotations

import functools
from itertools import chain, compress, repeat
from operator import add, itemgetter
from typing import Any

from common.pb.v1 import events_pb2, query_pb2
from processd.errors import ProcessdError
from processd.views.filter_match import StreamBatch
from processd.views.tx_view import TxView, opp_seq_field
from processd.wire.columns import BatchColumns
from processd.wire.encoding import SMALL_VARINTS, varint, varints
from processd.wire.tags import tag

#: A buffer entry, as a filtered subscriber's (``subscriptions.FramedEntry``): a serialized
#: ``SubscribeManyResponse``, how many entries of the bound it holds (its events, or 1 for an acknowledgement),
#: and its ``last_seq_id``.
ManyEntry = tuple[bytes, int, int]


class ManyRequestError(ProcessdError):
    """A SubscribeMany request is malformed: an id already in use, a filter out of its bounds (INVALID_ARGUMENT,
    naming the id and the field)."""

    retriable = False


class ManyLimitError(ProcessdError):
    """A SubscribeMany stream asked for more filters than ``max_filters_per_stream`` (RESOURCE_EXHAUSTED)."""

    retriable = False


def _tagged(txs: list[TxView], stream: Any, kinded: bool) -> list[tuple[int, list[bytes]]]:
    """Each event ``stream``'s filters take from ``txs`` (views: sightings, transactions matched outside a stored
    batch) as a ``SubscribeManyResponse.events`` entry: the framed event (``ManyEvent.event`` has the tag of
    ``SubscribeEventsResponse.events``, field 1) and its filters' ids (``ManyEvent.filter_ids``), per view with
    its first seq."""
    out: list[tuple[int, list[bytes]]] = []
    for tx in txs:
        packed, some_kinds = _ids_of(tx.anchors, tx.takers, stream, kinded)
        fields = _event_fields(tx, packed, some_kinds)
        frames = tx.event_frames()
        parts = [_entry(frame, field) for frame, field in zip(frames, fields, strict=True) if field]
        if parts:
            out.append((tx.seq, parts))
    return out


def _batch_parts(batch: StreamBatch, stream: Any, kinded: bool) -> list[bytes]:
    """The entries of one stored batch for ``stream``: the ids field of each transaction from its column anchors
    (:func:`_tx_fields`), given to each of its events (:meth:`StreamBatch.event_tx`, made once per batch: a
    lookup per event for each stream, ~4x cheaper than a ``repeat`` per transaction), plus the ids of the views
    some of the stream's groups took apart; then every event with ids framed and tagged at once
    (:func:`tag_values`). When the stream takes few of the batch's transactions (a stream of a few filters), only
    theirs are picked out and framed (:func:`_few`)."""
    tx_fields = _tx_fields(batch, stream)
    if not batch.views:
        if tx_fields is None:
            return []
        taken = len(tx_fields) - tx_fields.count(b"")  # counted C level; listed only when few
        if taken * _FEW_RATIO < len(tx_fields):
            return _few(batch, list(compress(range(len(tx_fields)), tx_fields)), tx_fields) if taken else []
    values = batch.cols.values
    events = [b""] * len(values) if tx_fields is None else list(map(tx_fields.__getitem__, batch.event_tx()))
    for tx in batch.views:
        packed, some_kinds = _ids_of(tx.anchors, tx.takers, stream, kinded)
        for i, field in enumerate(_event_fields(tx, packed, some_kinds), tx.start):
            if field:
                events[i] += field
    if not any(events):
        return []
    seq_fields = batch.seq_fields
    if seq_fields is None:
        seq_fields = batch.seq_fields = _seq_fields(batch.first, batch.cols)
    return tag_values(values, seq_fields, events)


def _tx_fields(batch: StreamBatch, stream: Any) -> list[bytes] | None:
    """The ``ManyEvent.filter_ids`` field of ``stream`` for each transaction of ``batch`` (empty: none of its
    filters anchored on a column takes it), from the column anchors' tables (``Anchor.fields`` of the stream:
    one C-level ``map`` per column, no loop per transaction; ``operator.add``, not the slot wrapper
    ``bytes.__add__``, which costs an argument tuple per call); None when no column has the stream."""
    cols = batch.cols
    tx_fields: Any = None
    for column in batch.columns:
        table = column.streams.get(stream)
        if table is not None:
            fields = map(table.get, getattr(cols, column.name), repeat(b""))
            # A packed repeated field may come in several parts, which parsers concatenate: one per column.
            tx_fields = fields if tx_fields is None else map(add, tx_fields, fields)
    return None if tx_fields is None else list(tx_fields)


def _few(batch: StreamBatch, taken: list[int], tx_fields: list[bytes]) -> list[bytes]:
    """:func:`tag_values` of the events of the ``taken`` transactions when they are few of the batch's: their
    values and seq fields picked out (a transaction's events are its TX_SEEN, TX_DECODED, then its opportunities:
    ``BatchColumns``), so the rest of the batch costs a C-level pass, not a frame."""
    cols, first = batch.cols, batch.first
    values, seen_at = cols.values, cols.seen_at
    ends = [*seen_at[1:], len(values)]
    picked: list[bytes] = []
    seq_fields: list[bytes] = []
    fields: list[bytes] = []
    for t in taken:
        start, end = seen_at[t], ends[t]
        picked += values[start:end]
        fields += [tx_fields[t]] * (end - start)
        seq_fields += varints(first + start, end - start, _SEQ_TAG)
        for i in range(start + 2, end):  # its opportunities
            seq_fields[i - end] += opp_seq_field(first + i)
    return tag_values(picked, seq_fields, fields)


#: Below one transaction of ``_FEW_RATIO`` taken, a batch's taken transactions are picked out (:func:`_few`).
_FEW_RATIO = 8


def _seq_fields(first: int, cols: BatchColumns) -> list[bytes]:
    """The ``Event.seq_id`` field of each event of a batch at seqs from ``first``, an opportunity's followed by
    its own ``seq_id`` (:func:`~processd.views.tx_view.opp_seq_field`, here from the seq field's own varint and a
    prefix by its length)."""
    out = varints(first, len(cols.values), _SEQ_TAG)
    prefixes = _opp_prefixes()
    for offset, _, _ in cols.opps:
        field = out[offset]
        out[offset] = field + prefixes[len(field)] + field[_SEQ_LEN:]
    return out


def tag_values(values: list[bytes], seq_fields: list[bytes], fields: list[bytes]) -> list[bytes]:
    """The ``SubscribeManyResponse.events`` entry of each of a stored batch's ``values`` whose ids field in
    ``fields`` is not empty: ``ManyEvent.event`` then the ids. The event is framed whole, without a copy of
    the value: behind the tag of ``Event.kind``, the value's kind byte (a stored value starts with it: layout.py)
    is read as ``Event.kind``, which the value then sets again to the same number (the last occurrence of a
    scalar wins); its ``seq_id`` field (``seq_fields``) comes after the value (fields may come in any order).
    The framing then is three table lookups and one join per event, in one comprehension, with no frame apart
    (a batch taken only by streams' filters is never framed for SubscribeEvents)."""
    outer, heads, lengths = _frame_tables()
    join = b"".join
    try:
        return [join((outer[lengths[k := len(v) + len(s) + _KIND_LEN] + len(f)], heads[k], v, s, f))
                for v, s, f in zip(values, seq_fields, fields, strict=True) if f]
    except IndexError:  # a size past the tables (2**14: a big value, or ids of very many filters): rare
        return [_entry(_FRAME_TAG + varint(len(v) + len(s) + _KIND_LEN) + _KIND_TAG + v + s, f)
                for v, s, f in zip(values, seq_fields, fields, strict=True) if f]


@functools.cache
def _frame_tables() -> tuple[list[bytes], list[bytes], list[int]]:
    """Per size below 2**14: the ``SubscribeManyResponse.events`` tag and length; the ``ManyEvent.event`` tag and
    length with the ``Event.kind`` tag after them (:func:`tag_values`); and the size of that framed event (made on
    first use, ~1 MiB)."""
    heads = [_FRAME_TAG + s + _KIND_TAG for s in SMALL_VARINTS]
    return ([_EVENTS_TAG + s for s in SMALL_VARINTS], heads,
            [len(h) - len(_KIND_TAG) + k for k, h in enumerate(heads)])


def _entry(frame: bytes, field: bytes) -> bytes:
    """One ``SubscribeManyResponse.events`` entry: a framed event and its ids field."""
    size = len(frame) + len(field)
    return b"%b%b%b%b" % (_EVENTS_TAG, SMALL_VARINTS[size] if size < 16384 else varint(size), frame, field)


def _event_fields(tx: TxView, packed: bytes, some_kinds: list[tuple[bytes, frozenset[int]]]) -> list[bytes]:
    """The ids field of each event of ``tx`` (empty: no filter of the stream takes it): ``packed`` on every
    event, each of ``some_kinds`` on the events of its kinds."""
    count = tx.end - tx.start
    if not some_kinds:
        return [ids_field(packed) if packed else b""] * count
    values, start = tx.values, tx.start
    fields = []
    for i in range(count):
        kind = values[start + i][0]
        event_packed = b"".join([packed, *[p for p, kinds in some_kinds if kind in kinds]])
        fields.append(ids_field(event_packed) if event_packed else b"")
    return fields


def _ids_of(anchors: list[Any], takers: list[Any], stream: Any, kinded: bool,
            ) -> tuple[bytes, list[tuple[bytes, frozenset[int]]]]:
    """``stream``'s packed ids on every event of a transaction (from its ``anchors`` and the ``takers`` without
    kinds), and those of its takers with kinds (``kinded``), each with its kinds."""
    every = [p for a in anchors if (p := a.packed.get(stream)) is not None]
    some_kinds: list[tuple[bytes, frozenset[int]]] = []
    for g in takers:
        p = g.many_packed.get(stream)
        if p is not None:
            if kinded and g.filter.kinds:
                some_kinds.append((p, g.filter.kinds))
            else:
                every.append(p)
    return b"".join(every), some_kinds


def ids_field(packed: bytes) -> bytes:
    """``ManyEvent.filter_ids`` of ``packed`` ids (their varints, joined)."""
    return b"%b%b%b" % (_IDS_TAG, varint(len(packed)), packed)


def tagged_entries(batches: list[StreamBatch], txs: list[TxView], stream: Any, last_seq: int, max_events: int,
                   max_bytes: int, kinded: bool = True) -> list[ManyEntry]:
    """What ``stream``'s filters take from a round (its stored ``batches``: :func:`_batch_parts`, and other
    views ``txs``, sightings: :func:`_tagged`) as serialized ``SubscribeManyResponse`` messages with
    ``last_seq``, the events in seq order: one when they fit in ``max_events`` events and ``max_bytes``, else cut
    there (each holds at least one event)."""
    chunks = [(batch.first, parts) for batch in batches if (parts := _batch_parts(batch, stream, kinded))]
    if txs:
        chunks += _tagged(txs, stream, kinded)
        chunks.sort(key=_first)
    parts = chunks[0][1] if len(chunks) == 1 else list(chain.from_iterable(map(_second, chunks)))
    entries: list[ManyEntry] = []
    last_field = _LAST_SEQ_TAG + varint(last_seq) if last_seq else b""
    i, n = 0, len(parts)
    while i < n:
        chunk = parts[i:i + max_events]
        chunk.append(last_field)
        message = b"".join(chunk)
        # The join adds up the sizes anyway: the cut by bytes (rare: a message holds ~1,500 events of 1,000
        # filters within 1 MiB) walks the parts only when the whole chunk is over.
        if len(message) - len(last_field) > max_bytes:  # as many as fit, at least one
            size = k = 0
            for part in chunk:
                if k and size + len(part) > max_bytes:
                    break
                size += len(part)
                k += 1
            chunk = chunk[:k]
            chunk.append(last_field)
            message = b"".join(chunk)
        entries.append((message, len(chunk) - 1, last_seq))
        i += len(chunk) - 1
    return entries


def ack_entry(added: list[tuple[int, int]], removed: list[int], last_seq: int) -> ManyEntry:
    """The acknowledgement of one request, ``added`` (id, from seq) and ``removed`` ids, as a buffer entry
    (it counts as one against the stream's bound). Built by the library: a request is rare next to events."""
    message = query_pb2.SubscribeManyResponse(
        added=[query_pb2.ManyFilterAdded(id=fid, from_seq_id=start) for fid, start in added],
        removed=removed, last_seq_id=last_seq)
    return message.SerializeToString(), 1, last_seq


def heartbeat(last_seq: int) -> bytes:
    """A serialized ``SubscribeManyResponse`` with only ``last_seq_id``."""
    return _LAST_SEQ_TAG + varint(last_seq) if last_seq else b""


_EVENTS_TAG = tag(query_pb2.SubscribeManyResponse, "events")
_IDS_TAG = tag(query_pb2.ManyEvent, "filter_ids")
_LAST_SEQ_TAG = tag(query_pb2.SubscribeManyResponse, "last_seq_id")
_FRAME_TAG = tag(query_pb2.ManyEvent, "event")
_KIND_TAG = tag(events_pb2.Event, "kind")
_KIND_LEN = len(_KIND_TAG)
_SEQ_TAG = tag(events_pb2.Event, "seq_id")
_first = itemgetter(0)
_second = itemgetter(1)
_SEQ_LEN = len(_SEQ_TAG)


@functools.cache
def _opp_prefixes() -> list[bytes]:
    """Per length of an ``Event.seq_id`` field (tag and varint), what goes before the varint in an opportunity's
    ``opp_detected { opportunity { seq_id } }`` (:func:`~processd.views.tx_view.opp_seq_field`)."""
    out = [b""] * (_SEQ_LEN + 11)
    for size in range(1, 11):
        seq = 1 << 7 * (size - 1)  # a seq whose varint has ``size`` bytes
        field = opp_seq_field(seq)
        out[_SEQ_LEN + size] = field[:len(field) - size]
    return out
