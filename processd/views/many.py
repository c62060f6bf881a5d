"""SubscribeMany (issue 18): one stream carrying many filters, each event sent once with the ids of its filters.

A gRPC stream costs its server 30-50 us of CPU per message (``scripts/bench/stream_floor.py``), so 1,000
filtered SubscribeEvents streams that each get a message per commit cost processd more than its ingest does. A
SubscribeMany stream holds any number of its client's filters (bounded: ``max_filters_per_stream``), registered
in the same :class:`~processd.views.filters.FilterIndex` as the SubscribeEvents filters, so a commit is matched
once for every stream and subscriber. What a stream's filters take is sent as one message per commit (cut by
count and bytes): each taken event framed once (:meth:`TxView.event_frames`, shared by every stream that takes
it) and followed by the packed ids of the stream's filters that take it (a ``ManyEvent``). processd's messages
then follow commits and its bytes the taken events, not the filters.

This module holds the pure parts: the errors of a request, the serialized messages of a stream's matches
(:func:`tagged_entries`, from the round's ``FilterIndex.many_txs``: each taken transaction lists the groups with
streams that took it, ``TxView.takers``) and of its acknowledgements (:func:`ack_entry`). The stream's buffer
and registration are in :mod:`processd.views.subscriptions` (``ManyStream``, ``SubscriptionHub.change_filters``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from common.pb.v1 import query_pb2
from processd.errors import ProcessdError
from processd.views.filters import TxView
from processd.wire.encoding import SMALL_VARINTS, varint
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


def _tagged(txs: list[TxView], stream: Any, kinded: bool) -> Iterable[bytes]:
    """Each event ``stream``'s filters take from ``txs`` (a round's ``FilterIndex.many_txs``, in seq order) as a
    ``SubscribeManyResponse.events`` entry: the framed event (``ManyEvent.event`` has the tag of
    ``SubscribeEventsResponse.events``, field 1) and its filters' ids, the packed ids of the stream in every group
    that took the transaction (``FilterGroup.many_packed``, made when the stream's filters change) joined. A group
    with ``kinds`` tags only its kinds' events of a transaction (``kinded``: whether any filter of a stream has
    kinds; without, every event of a taken transaction carries the same ids); an event no filter of the stream
    takes is left out."""
    small = SMALL_VARINTS
    for tx in txs:
        packed = b"".join([p for g in tx.takers if (p := g.many_packed.get(stream)) is not None])
        if not packed:
            continue  # taken by other streams' filters only
        frames = tx.event_frames()
        if not kinded or all(not g.filter.kinds for g in tx.takers):
            size = len(packed)
            ids = b"%b%b%b" % (_IDS_TAG, small[size] if size < 16384 else varint(size), packed)
            for frame in frames:
                size = len(frame) + len(ids)
                yield b"%b%b%b%b" % (_EVENTS_TAG, small[size] if size < 16384 else varint(size), frame, ids)
            continue
        values, start = tx.values, tx.start
        for i, frame in enumerate(frames):
            kind = values[start + i][0]
            packed = b"".join([p for g in tx.takers if (p := g.many_packed.get(stream)) is not None
                               and (not g.filter.kinds or kind in g.filter.kinds)])
            if packed:
                ids = b"%b%b%b" % (_IDS_TAG, varint(len(packed)), packed)
                yield b"%b%b%b%b" % (_EVENTS_TAG, varint(len(frame) + len(ids)), frame, ids)


def tagged_entries(txs: list[TxView], stream: Any, last_seq: int, max_events: int, max_bytes: int,
                   kinded: bool = True) -> list[ManyEntry]:
    """What ``stream``'s filters take from a round's ``txs`` (:func:`_tagged`) as serialized
    ``SubscribeManyResponse`` messages with ``last_seq``: one when they fit in ``max_events`` events and
    ``max_bytes``, else cut there (each holds at least one event)."""
    entries: list[ManyEntry] = []
    parts: list[bytes] = []
    size = 0
    last_field = _LAST_SEQ_TAG + varint(last_seq) if last_seq else b""
    for part in _tagged(txs, stream, kinded):
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
