"""Hand-rolled protobuf encoding of the lifecycle's event-log values (TX_INCLUDED, TX_REPLACED, TX_DROPPED,
REORG), for speed: a block causes one TX_INCLUDED per tracked transaction it includes, the lifecycle's most
frequent event, and building each ``Event`` message costs several times encoding it. The values parse as the same
``mempulse.v1.Event`` the protobuf library builds (``tests/processd/test_lifecycle_encoding.py``); the shared
pieces (varints, tags, the event header) are ``processd.wire.encoding``'s.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

from common.pb.v1 import events_pb2
from processd.wire.encoding import CONT14_TABLE as _CONT14
from processd.wire.encoding import FIRST_SEEN_TAG as _TAG_FIRST_SEEN
from processd.wire.encoding import VARINT_TABLE as _TABLE
from processd.wire.encoding import chain_field, header, header_tail, varint
from processd.wire.encoding import prefixed_varints as _prefixed
from processd.wire.tags import tag

_E = events_pb2.Event
_TAG_KIND = tag(_E, "kind")
_TAG_TX_HASH = tag(_E, "tx_hash")


@functools.cache
def _tagged(prefix: bytes) -> list[bytes]:
    """The varints below 2**14 with ``prefix`` (a field's tag) before each: a field's tag and value in one lookup
    (made once per tag on first use: ~0.6 MiB each; the lifecycle encoder uses four)."""
    return [prefix + v for v in _TABLE]


#: The body field of each lifecycle kind in ``Event.body``.
_LIFE_BODY: dict[int, str] = {events_pb2.EVENT_KIND_TX_INCLUDED: "tx_included",
                              events_pb2.EVENT_KIND_TX_REPLACED: "tx_replaced",
                              events_pb2.EVENT_KIND_TX_DROPPED: "tx_dropped", events_pb2.EVENT_KIND_REORG: "reorg"}


class IncludedBody(NamedTuple):
    """The fields of a ``TxIncluded`` body, encoded by hand (:func:`included_value`): one per tracked transaction of
    every block, the lifecycle's most frequent event (building the message costs several times the encoding)."""

    block_number: int
    block_hash: bytes
    position: int  # TxIncluded.index (``index`` is a tuple method)
    status: int
    inclusion_latency_ms: int
    tx_seq_id: int
    block_seq_id: int
    reincluded: bool


KIND_INCLUDED: int = events_pb2.EVENT_KIND_TX_INCLUDED
INCLUDED_PREFIX = bytes((KIND_INCLUDED,)) + _TAG_KIND + varint(KIND_INCLUDED)
_TAG_TX_INCLUDED = tag(_E, "tx_included")
_INC = events_pb2.TxIncluded
_INCLUDED_TAGS = tuple(tag(_INC, name) for name in ("block_number", "block_hash", "index", "status",
                                                     "inclusion_latency_ms", "tx_seq_id", "block_seq_id",
                                                     "reincluded"))


def included_value(header: bytes, body: IncludedBody) -> bytes:
    """A TX_INCLUDED ``events`` value: ``header`` (:func:`event_header`) and the ``TxIncluded`` body, by hand (its
    fields are varints but the hash; zero fields are omitted, as protobuf does)."""
    t_number, t_hash, t_index, t_status, t_latency, t_tx_seq, t_block_seq, t_again = _INCLUDED_TAGS
    inner = b"".join((
        t_number + varint(body.block_number) if body.block_number else b"",
        t_hash + varint(len(body.block_hash)) + body.block_hash if body.block_hash else b"",
        t_index + varint(body.position) if body.position else b"",
        t_status + varint(body.status) if body.status else b"",
        t_latency + varint(body.inclusion_latency_ms) if body.inclusion_latency_ms else b"",
        t_tx_seq + varint(body.tx_seq_id) if body.tx_seq_id else b"",
        t_block_seq + varint(body.block_seq_id) if body.block_seq_id else b"",
        t_again + b"\x01" if body.reincluded else b""))
    return b"".join((INCLUDED_PREFIX, header, _TAG_TX_INCLUDED, varint(len(inner)), inner))


class ReplacedBody(NamedTuple):
    """The fields of a ``TxReplaced`` body, in field-number order, encoded by hand (:func:`flat_value`)."""

    by_hash: bytes
    fee_bump_bps: int
    cancel: bool
    tx_seq_id: int
    by_block: bool = False


class DroppedBody(NamedTuple):
    """The fields of a ``TxDropped`` body, in field-number order, encoded by hand (:func:`flat_value`)."""

    reason: int
    tx_seq_id: int
    source_id: str = ""


_FLAT: dict[type, tuple[bytes, bytes, tuple[bytes, ...]]] = {
    body_type: (bytes((kind,)) + _TAG_KIND + varint(kind), tag(_E, field),
                tuple(tag(message, name) for name in body_type._fields))
    for body_type, kind, field, message in (
        (ReplacedBody, events_pb2.EVENT_KIND_TX_REPLACED, "tx_replaced", events_pb2.TxReplaced),
        (DroppedBody, events_pb2.EVENT_KIND_TX_DROPPED, "tx_dropped", events_pb2.TxDropped))}


def flat_value(header: bytes, body: ReplacedBody | DroppedBody) -> bytes:
    """A TX_REPLACED or TX_DROPPED ``events`` value by hand: ``header`` (:func:`event_header`) and the body, whose
    fields are scalars (bytes and strings length-delimited, ints as varints, a negative int64 as its 64-bit two's
    complement, as protobuf writes it; zero fields omitted)."""
    prefix, body_tag, tags = _FLAT[type(body)]
    parts = []
    value: Any
    for field_tag, value in zip(tags, body, strict=True):
        if not value:
            continue
        if isinstance(value, str):
            value = value.encode()
        if isinstance(value, bytes):
            parts.append(field_tag + varint(len(value)) + value)
        else:
            parts.append(field_tag + varint(int(value) & 0xFFFFFFFFFFFFFFFF))
    inner = b"".join(parts)
    return b"".join((prefix, header, body_tag, varint(len(inner)), inner))


def life_value_from(event_header_bytes: bytes, body: IncludedBody | ReplacedBody | DroppedBody) -> bytes:
    """A hand-encoded lifecycle value from its header (:func:`header` of reusable parts: the writer keeps the chain
    field and the tail of a commit's events)."""
    if isinstance(body, IncludedBody):
        return included_value(event_header_bytes, body)
    return flat_value(event_header_bytes, body)


def life_value(kind: int, chain_id: int, tx_hash: bytes, first_seen_ns: int, received_ns: int, source_id: str,
               body: Any) -> bytes:
    """A lifecycle ``events`` value (TX_INCLUDED, TX_REPLACED, TX_DROPPED or REORG): the kind byte, then ``Event
    {chain_id, kind, tx_hash, first_seen_unix_ns (the transaction's), received_unix_ns (of the batch that caused
    it), source_id (the block's or TxGone's source), body}``. TX_INCLUDED, TX_REPLACED and TX_DROPPED (an
    :class:`IncludedBody`, :class:`ReplacedBody`, :class:`DroppedBody`) by hand, REORG (rare) through the protobuf
    library."""
    if isinstance(body, IncludedBody | ReplacedBody | DroppedBody):
        return life_value_from(header(chain_field(chain_id), tx_hash, first_seen_ns, header_tail(received_ns,
                                                                                                  source_id)), body)
    event = events_pb2.Event(chain_id=chain_id, kind=kind, tx_hash=tx_hash,  # type: ignore[arg-type]
                             first_seen_unix_ns=first_seen_ns, received_unix_ns=received_ns, source_id=source_id)
    getattr(event, _LIFE_BODY[kind]).CopyFrom(body)
    return bytes((kind,)) + event.SerializeToString(deterministic=True)


_HASH32 = _TAG_TX_HASH + _TABLE[32]


def life_values(events: list[Any], received_ns: int, source_id: str) -> list[bytes]:
    """The ``events`` values of lifecycle events ``(kind, chain id, tx hash, first seen ns, body)`` stored by one
    write of a batch (same receive time and source): what :func:`life_value` gives for each, byte for byte
    (``tests/processd/test_lifecycle_encoding.py``), with the parts events share encoded once (the chain field, the
    header's tail, a block's number, hash and seq, the high bits of nanosecond times) and TX_INCLUDED, a block's one
    event per tracked transaction it includes, written out in the loop (varints inlined as table lookups)."""
    return life_encode(events, received_ns, source_id)[0]


def life_encode(events: list[Any], received_ns: int, source_id: str) -> tuple[list[bytes], list[int], list[int]]:
    """:func:`life_values` of ``events``, and what the same loop reads of each body on the way: the TX_SEEN seq it
    names (``tx_seq_id``; -1 for a REORG) and its figure (the inclusion latency of a TX_INCLUDED, the reason of a
    TX_DROPPED, depth * 2 + too_deep of a REORG, 0 for a TX_REPLACED): one walk of the bodies, not three."""
    join = b"".join
    tail = header_tail(received_ns, source_id)
    blocks: dict[int, tuple[bytes, bytes, int, bytes]] = {}
    highs: dict[int, bytes] = {}
    _, _, t_index, t_status, t_latency, t_tx_seq, _, t_again = _INCLUDED_TAGS
    table, cont14, included, replaced, dropped = _TABLE, _CONT14, IncludedBody, ReplacedBody, DroppedBody
    (index_table, status_table, latency_table, (seq_table, seq_cont14), first_seen_cont14, reason_table,
     (drop_seq_table, drop_seq_cont14)) = _life_tables()
    again_field = t_again + b"\x01"
    replaced_prefix, replaced_tag, _ = _FLAT[ReplacedBody]
    dropped_prefix, dropped_tag, (d_reason, d_tx_seq, d_source) = _FLAT[DroppedBody]
    out: list[bytes] = []
    tx_seqs: list[int] = []
    figures: list[int] = []
    append, seq_append, figure_append = out.append, tx_seqs.append, figures.append
    # Per kind, of the first event's chain: what precedes a 32-byte hash (kind byte, Event.kind, chain, hash tag and
    # length); per kind: what follows the first-seen time (the tail and the body's tag). A value is then one join.
    starts: dict[bytes, bytes] = {}
    chain0 = events[0][1] if events else 0
    ends = {tag: tail + tag for tag in (_TAG_TX_INCLUDED, replaced_tag, dropped_tag)}
    for kind, chain_id, tx_hash, first_seen, body in events:
        body_type = type(body)
        if body_type is included:
            number, block_hash, index, status, latency, tx_seq, block_seq, again = body
            parts = blocks.get(block_seq)  # (by the block's seq: its events follow it in one write; checked)
            if parts is None or parts[2] != number or parts[3] != block_hash:
                parts = blocks[block_seq] = _included_block_parts(number, block_hash, block_seq)
            inner = join((
                parts[0],
                (index_table[index] if index < 16384 else t_index + varint(index)) if index else b"",
                (status_table[status] if status < 16384 else t_status + varint(status)) if status else b"",
                (latency_table[latency] if latency < 16384 else t_latency + varint(latency)) if latency else b"",
                (seq_table[tx_seq] if tx_seq < 16384 else seq_cont14[tx_seq & 0x3FFF] + table[tx_seq >> 14]
                 if tx_seq < 268435456 else t_tx_seq + varint(tx_seq)) if tx_seq else b"",
                parts[1], again_field if again else b""))
            prefix, body_tag = INCLUDED_PREFIX, _TAG_TX_INCLUDED
            figure_append(latency)
        elif body_type is replaced:  # (rare: a replacement)
            tx_seq, inner = body[3], _replaced_inner(body)
            prefix, body_tag = replaced_prefix, replaced_tag
            figure_append(0)
        elif body_type is dropped:
            reason, tx_seq, drop_source = body
            raw = drop_source.encode() if drop_source else b""
            reason = int(reason)
            inner = join((
                (reason_table[reason] if reason < 16384 else d_reason + varint(reason)) if reason else b"",
                (drop_seq_table[tx_seq] if tx_seq < 16384 else drop_seq_cont14[tx_seq & 0x3FFF] + table[tx_seq >> 14]
                 if tx_seq < 268435456 else d_tx_seq + varint(tx_seq)) if tx_seq else b"",
                d_source + varint(len(raw)) + raw if raw else b""))
            prefix, body_tag = dropped_prefix, dropped_tag
            figure_append(reason)
        else:  # a REORG (rare): through the protobuf library
            append(life_value(kind, chain_id, tx_hash, first_seen, received_ns, source_id, body))
            seq_append(-1)
            figure_append(int(body.depth) * 2 + int(body.too_deep))
            continue
        seq_append(tx_seq)
        n = len(inner)
        inner_len = table[n] if n < 16384 else varint(n)
        if 72057594037927936 <= first_seen < 1180591620717411303424 and len(tx_hash) == 32:  # 2**56..2**70 ns
            start = starts.get(prefix) if chain_id == chain0 else None  # (one chain per call, as the writer's)
            if start is None:
                start = prefix + chain_field(chain_id) + _HASH32
                if chain_id == chain0:
                    starts[prefix] = start
            high = first_seen >> 28
            high_bytes = highs.get(high)
            if high_bytes is None:
                high_bytes = highs[high] = cont14[high & 0x3FFF] + cont14[high >> 14 & 0x3FFF] + table[high >> 28]
            append(join((start, tx_hash, first_seen_cont14[first_seen & 0x3FFF], cont14[first_seen >> 14 & 0x3FFF],
                         high_bytes, ends[body_tag], inner_len, inner)))
        else:
            head = header(chain_field(chain_id), tx_hash, first_seen, tail)
            append(join((prefix, head, body_tag, inner_len, inner)))
    return out, tx_seqs, figures


@functools.cache
def _life_tables() -> tuple[Any, ...]:
    """The tables :func:`life_encode` looks a field's tag and value up in, below 2**14 (2**28 for a seq and the low
    bits of a first-seen time, by :func:`_prefixed`): TX_INCLUDED index, status, latency, seq; ``Event`` first
    seen; TX_DROPPED reason, seq (made on the first call: ~6 MiB in the process that encodes lifecycle events)."""
    _, _, t_index, t_status, t_latency, t_tx_seq, _, _ = _INCLUDED_TAGS
    _, _, (d_reason, d_tx_seq, _) = _FLAT[DroppedBody]
    return (_tagged(t_index), _tagged(t_status), _tagged(t_latency), _prefixed(t_tx_seq),
            [_TAG_FIRST_SEEN + c for c in _CONT14], _tagged(d_reason), _prefixed(d_tx_seq))


def _replaced_inner(body: ReplacedBody) -> bytes:
    """The serialized ``TxReplaced`` of ``body`` (what :func:`flat_value` writes after its tag and length)."""
    _, _, (r_by_hash, r_bump, r_cancel, r_tx_seq, r_by_block) = _FLAT[ReplacedBody]
    by_hash, bump, cancel, tx_seq, by_block = body
    return b"".join((
        r_by_hash + varint(len(by_hash)) + by_hash if by_hash else b"",
        r_bump + varint(int(bump) & 0xFFFFFFFFFFFFFFFF) if bump else b"",
        r_cancel + b"\x01" if cancel else b"",
        r_tx_seq + varint(tx_seq) if tx_seq else b"",
        r_by_block + b"\x01" if by_block else b""))


def _included_block_parts(number: int, block_hash: bytes, block_seq: int) -> tuple[bytes, bytes, int, bytes]:
    """What every TX_INCLUDED body of one block shares: its fields before the transaction's (block number, block
    hash) and after them (the block's seq); then the number and hash they were made of (the cache's check)."""
    t_number, t_hash, _, _, _, _, t_block_seq, _ = _INCLUDED_TAGS
    return ((t_number + varint(number) if number else b"")
            + (t_hash + varint(len(block_hash)) + block_hash if block_hash else b""),
            t_block_seq + varint(block_seq) if block_seq else b"", number, block_hash)
