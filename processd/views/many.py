"""SubscribeMany (issue 18): one stream carrying many filters, each event sent once with the ids of its filters.

A gRPC stream costs its server 30-50 us of CPU per message (``scripts/bench/stream_floor.py``), so 1,000
filtered SubscribeEvents streams that each get a message per commit cost processd more than its ingest does. A
SubscribeMany stream holds any number of its client's filters (bounded: ``max_filters_per_stream``), registered
in the same :class:`~processd.views.filters.FilterIndex` as the SubscribeEvents filters, so a commit is matched
once for every stream and subscriber. What a stream's filters take is sent as one message per commit (cut by
count and bytes): each taken event framed once (:meth:`TxView.event_frames`, shared by every stream that takes
it) and followed by the packed ids of the stream's filters that take it (a ``ManyEvent``). processd's messages
then follow commits and its bytes the taken events, not the filters.

This module holds the pure parts: the errors of a request, the collection of a commit's matches per stream
(:func:`collect_streams`), the serialized messages of a stream's matches (:func:`tagged_entries`) and of its
acknowledgements (:func:`ack_entry`). The stream's buffer and registration are in
:mod:`processd.views.subscriptions` (``ManyStream``, ``SubscriptionHub.add_filter``).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import groupby, repeat
from operator import attrgetter, itemgetter
from typing import Any

from common.pb.v1 import query_pb2
from processd.errors import ProcessdError
from processd.views.filters import FilterGroup
from processd.wire.encoding import varint
from processd.wire.tags import tag

#: A stream's matches in one commit: (seq of a taken transaction or sighting, the packed ids of a filter group
#: without ``kinds`` that takes it, its view, None) or, for a group with kinds, (seq, b"", view, (ids, kinds)); one
#: per (group, transaction), in no order (:func:`tagged_entries` sorts them).
Taken = list[tuple[int, bytes, Any, Any]]
#: Per stream: [its matches (:data:`Taken`), whether any of them is of a group with kinds].
StreamTaken = list[Any]
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


def collect_streams(touched: Iterable[FilterGroup]) -> dict[Any, StreamTaken]:
    """Per SubscribeMany stream, what its filters take from a round of matching (the groups ``touched``, with
    their ``txs``): one (seq, packed ids, view, kinds) per (group, transaction), appended C-level per group
    (``zip`` / ``repeat``: no Python step per transaction here), so the cost follows the groups that took
    something and the deliveries, as the groups' matching does."""
    streams: dict[Any, StreamTaken] = {}
    for g in touched:
        if not g.many or not g.txs:
            continue
        kinds = g.filter.kinds
        txs = g.txs
        seqs = list(map(_seq_of, txs))
        packed = g.many_packed
        for stream, ids in g.many.items():
            mine = streams.get(stream)
            if mine is None:
                mine = streams[stream] = [[], False]
            taken = mine[0]
            if kinds:
                taken.extend(zip(seqs, repeat(b""), txs, repeat((ids, kinds))))
                mine[1] = True
                continue
            ids_bytes = packed.get(stream)
            if ids_bytes is None:
                ids_bytes = packed[stream] = b"".join(map(varint, ids))
            taken.extend(zip(seqs, repeat(ids_bytes), txs, repeat(None)))
    return streams


def _tagged(taken: Taken, kinded: bool) -> Iterable[bytes]:
    """Each event of ``taken`` (in seq order) as a ``SubscribeManyResponse.events`` entry: the framed event
    (``ManyEvent.event`` has the tag of ``SubscribeEventsResponse.events``, field 1) and its filters' ids, the
    packed ids of every group that took its transaction joined. Filters with ``kinds`` take only their kinds'
    events of a transaction; an event no filter takes is left out."""
    taken.sort(key=_first)
    for _, group in groupby(taken, _first):
        items = list(group)
        tx = items[0][2]
        frames = tx.event_frames()
        if not kinded or all(item[3] is None for item in items):
            packed = b"".join(map(_second, items))
            ids = b"%b%b%b" % (_IDS_TAG, varint(len(packed)), packed)
            for frame in frames:
                yield b"%b%b%b%b" % (_EVENTS_TAG, varint(len(frame) + len(ids)), frame, ids)
            continue
        plain = b"".join(item[1] for item in items)
        values, start = tx.values, tx.start
        for i, frame in enumerate(frames):
            kind = values[start + i][0]
            packed = plain + b"".join(varint(fid) for item in items if item[3] is not None and kind in item[3][1]
                                      for fid in item[3][0])
            if packed:
                ids = b"%b%b%b" % (_IDS_TAG, varint(len(packed)), packed)
                yield b"%b%b%b%b" % (_EVENTS_TAG, varint(len(frame) + len(ids)), frame, ids)


def tagged_entries(taken: StreamTaken, last_seq: int, max_events: int, max_bytes: int) -> list[ManyEntry]:
    """A stream's matches in a commit as serialized ``SubscribeManyResponse`` messages with ``last_seq``: one
    when they fit in ``max_events`` events and ``max_bytes``, else cut there (each holds at least one event)."""
    entries: list[ManyEntry] = []
    parts: list[bytes] = []
    size = 0
    last_field = _LAST_SEQ_TAG + varint(last_seq) if last_seq else b""
    for part in _tagged(*taken):
        if parts and (len(parts) >= max_events or size + len(part) > max_bytes):
            entries.append((b"".join([*parts, last_field]), len(parts), last_seq))
            parts, size = [], 0
        parts.append(part)
        size += len(part)
    if parts:
        entries.append((b"".join([*parts, last_field]), len(parts), last_seq))
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


_seq_of = attrgetter("seq")
_first = itemgetter(0)
_second = itemgetter(1)
_EVENTS_TAG = tag(query_pb2.SubscribeManyResponse, "events")
_IDS_TAG = tag(query_pb2.ManyEvent, "filter_ids")
_LAST_SEQ_TAG = tag(query_pb2.SubscribeManyResponse, "last_seq_id")
