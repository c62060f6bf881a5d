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
from typing import Any

from common.pb.v1 import query_pb2
from processd.errors import ProcessdError
from processd.views.filters import FilterGroup
from processd.wire.encoding import varint
from processd.wire.tags import tag

#: A stream's matches in one commit: seq of a taken transaction (or sighting) -> [its view, the ids of filters
#: without ``kinds`` that take it, (id, kinds) of those with kinds].
Taken = dict[int, list[Any]]
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


def collect_streams(touched: Iterable[FilterGroup]) -> dict[Any, Taken]:
    """Per SubscribeMany stream, what its filters take from a round of matching (the groups ``touched``, with
    their ``txs``): the ids of its filters per taken transaction. One dict update per (group, stream,
    transaction), so the cost follows the deliveries, as the groups' matching does."""
    streams: dict[Any, Taken] = {}
    for g in touched:
        if not g.many or not g.txs:
            continue
        kinds = g.filter.kinds
        for stream, ids in g.many.items():
            taken = streams.get(stream)
            if taken is None:
                taken = streams[stream] = {}
            for tx in g.txs:
                entry = taken.get(tx.seq)
                if entry is None:
                    entry = taken[tx.seq] = [tx, [], []]
                if kinds:
                    entry[2].extend((fid, kinds) for fid in ids)
                else:
                    entry[1].extend(ids)
    return streams


def _ids_field(ids: list[int]) -> bytes:
    """``ManyEvent.filter_ids`` (packed), ascending."""
    packed = b"".join(map(varint, sorted(ids)))
    return b"%b%b%b" % (_IDS_TAG, varint(len(packed)), packed)


def _tagged(taken: Taken) -> Iterable[bytes]:
    """Each event of ``taken`` (in seq order) as a ``SubscribeManyResponse.events`` entry: the framed event
    (``ManyEvent.event`` has the tag of ``SubscribeEventsResponse.events``, field 1) and its filters' ids. Filters
    with ``kinds`` take only their kinds' events of a transaction; an event no filter takes is left out."""
    for seq in sorted(taken):
        tx, plain, kinded = taken[seq]
        frames = tx.event_frames()
        if not kinded:
            ids = _ids_field(plain)
            for frame in frames:
                yield b"%b%b%b%b" % (_EVENTS_TAG, varint(len(frame) + len(ids)), frame, ids)
            continue
        values, start = tx.values, tx.start
        for i, frame in enumerate(frames):
            kind = values[start + i][0]
            fids = plain + [fid for fid, kinds in kinded if kind in kinds]
            if fids:
                ids = _ids_field(fids)
                yield b"%b%b%b%b" % (_EVENTS_TAG, varint(len(frame) + len(ids)), frame, ids)


def tagged_entries(taken: Taken, last_seq: int, max_events: int, max_bytes: int) -> list[ManyEntry]:
    """A stream's matches in a commit as serialized ``SubscribeManyResponse`` messages with ``last_seq``: one
    when they fit in ``max_events`` events and ``max_bytes``, else cut there (each holds at least one event)."""
    entries: list[ManyEntry] = []
    parts: list[bytes] = []
    size = 0
    last_field = _LAST_SEQ_TAG + varint(last_seq) if last_seq else b""
    for part in _tagged(taken):
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


_EVENTS_TAG = tag(query_pb2.SubscribeManyResponse, "events")
_IDS_TAG = tag(query_pb2.ManyEvent, "filter_ids")
_LAST_SEQ_TAG = tag(query_pb2.SubscribeManyResponse, "last_seq_id")
