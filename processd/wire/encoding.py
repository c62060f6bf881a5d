"""Hand-rolled protobuf encoding of event-log values, for speed.

Why by hand: building ``Event(tx_seen=TxSeen(tx=envelope))`` deep-copies the envelope (with its calldata) into
a new message only to serialize it again. Protobuf's wire format is a concatenation of fields in any order,
so we serialize the shared header once per transaction and append the already-serialized body bytes. The
result parses as the same ``mempulse.v1.Event`` (tests compare it with the protobuf library's encoding).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

from common.pb.v1 import block_pb2, events_pb2, pool_pb2, query_pb2, tx_pb2
from processd.wire.tags import tag, varint_slow

_E = events_pb2.Event
# Tags (processd.wire.tags: derived from the descriptors).
_TAG_KIND = tag(_E, "kind")
_TAG_CHAIN_ID = tag(_E, "chain_id")
_TAG_TX_HASH = tag(_E, "tx_hash")
_TAG_FIRST_SEEN = tag(_E, "first_seen_unix_ns")
_TAG_RECEIVED = tag(_E, "received_unix_ns")
_TAG_SOURCE_ID = tag(_E, "source_id")
_TAG_TX_SEEN = tag(_E, "tx_seen")
_TAG_TX_DECODED = tag(_E, "tx_decoded")
_TAG_OPP = tag(_E, "opp_detected")
#: TxSeen.tx, TxDecoded.features and OppDetected.opportunity: the body's one field, the same tag in all three
#: (field 1, length-delimited), which lets one table of body lengths serve every kind.
_TAG_INNER = tag(events_pb2.TxSeen, "tx")

KIND_SEEN: int = events_pb2.EVENT_KIND_TX_SEEN
KIND_DECODED: int = events_pb2.EVENT_KIND_TX_DECODED
KIND_OPP: int = events_pb2.EVENT_KIND_OPP_DETECTED
_KIND_FIELD: dict[int, bytes] = {k: _TAG_KIND + varint_slow(k) for k in (KIND_SEEN, KIND_DECODED, KIND_OPP)}
_BODY_TAG: dict[int, bytes] = {KIND_SEEN: _TAG_TX_SEEN, KIND_DECODED: _TAG_TX_DECODED, KIND_OPP: _TAG_OPP}
#: Per kind, what every value of that kind starts with: the kind byte, then Event.kind (field 3).
_VALUE_PREFIX: dict[int, bytes] = {k: bytes((k,)) + _KIND_FIELD[k] for k in (KIND_SEEN, KIND_DECODED, KIND_OPP)}

#: Every varint below 2**14 (lengths of nearly all fields), precomputed: a list index beats any encoder.
_TABLE = [varint_slow(i) for i in range(1 << 14)]
#: The varint of each int below 2**14, for callers that index it directly (lengths in a hot loop, no call).
SMALL_VARINTS = _TABLE
#: Any 14 bits as two varint groups that both carry the continuation bit: larger ints (seqs past 16383,
#: nanosecond timestamps) are encoded 14 bits per lookup instead of 7 bits per Python loop iteration.
_CONT14 = [bytes(((i & 0x7F) | 0x80, (i >> 7) | 0x80)) for i in range(1 << 14)]


def varint(n: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int (minimal: the last chunk is never zero)."""
    if n < 16384:
        return _TABLE[n]
    if n < 268435456:  # 2**28: seqs and sizes up to it, two table lookups
        return _CONT14[n & 0x3FFF] + _TABLE[n >> 14]
    if 72057594037927936 <= n < 1180591620717411303424:  # 2**56 <= n < 2**70: nanosecond timestamps, unrolled
        return b"".join((_CONT14[n & 0x3FFF], _CONT14[n >> 14 & 0x3FFF], _CONT14[n >> 28 & 0x3FFF],
                         _CONT14[n >> 42 & 0x3FFF], _TABLE[n >> 56]))
    out = b""
    while n >= 16384:
        out += _CONT14[n & 0x3FFF]
        n >>= 14
    return out + _TABLE[n]


def varints(first: int, count: int, prefix: bytes = b"") -> list[bytes]:
    """:func:`varint` of each of ``first .. first + count - 1`` (a batch's seqs), after ``prefix`` (a field's
    tag), by 14-bit blocks: below 2**28 each is a slice of the tables or one concatenation, no call per int
    (~3x faster than ``map(varint, ...)``)."""
    table, cont14 = _prefixed(prefix)
    end = first + count
    if end <= 16384:
        return table[first:end]
    out: list[bytes] = []
    n = first
    while n < end:
        if n < 16384:
            out += table[n:min(end, 16384)]
            n = 16384
        elif n < 268435456:
            high, block_end = _TABLE[n >> 14], min(end, (n | 0x3FFF) + 1)
            out += [low + high for low in cont14[n & 0x3FFF:(block_end - 1 & 0x3FFF) + 1]]
            n = block_end
        else:
            out += [prefix + varint(i) for i in range(n, end)]
            n = end
    return out


@functools.cache
def _tagged(prefix: bytes) -> list[bytes]:
    """The varints below 2**14 with ``prefix`` (a field's tag) before each: a field's tag and value in one lookup
    (made once per tag on first use: ~0.6 MiB each; the lifecycle encoder uses four)."""
    return [prefix + v for v in _TABLE]


@functools.cache
def _prefixed(prefix: bytes) -> tuple[list[bytes], list[bytes]]:
    """The varint tables with ``prefix`` before each entry (made once per prefix: ~1 MiB each)."""
    if not prefix:
        return _TABLE, _CONT14
    return [prefix + v for v in _TABLE], [prefix + c for c in _CONT14]


def event_header(chain_id: int, tx_hash: bytes, first_seen_ns: int, received_ns: int, source_id: str) -> bytes:
    """The fields every event of one transaction shares (everything except seq_id, kind and body)."""
    return header(chain_field(chain_id), tx_hash, first_seen_ns, header_tail(received_ns, source_id))


# The header is built from parts so the writer can reuse the per-chain and per-batch parts; fields are written
# in field-number order and zero/empty fields are omitted, exactly as protobuf serializes them.
def chain_field(chain_id: int) -> bytes:
    """``Event.chain_id`` (field 2) as bytes, empty for 0."""
    return _TAG_CHAIN_ID + varint(chain_id) if chain_id else b""


def header_tail(received_ns: int, source_id: str) -> bytes:
    """``Event.received_unix_ns`` (6) and ``Event.source_id`` (7): shared by a batch's envelopes of one source."""
    out = _TAG_RECEIVED + varint(received_ns) if received_ns else b""
    if source_id:
        raw = source_id.encode()
        out += _TAG_SOURCE_ID + varint(len(raw)) + raw
    return out


def header(chain: bytes, tx_hash: bytes, first_seen_ns: int, tail: bytes) -> bytes:
    """The shared header from a :func:`chain_field`, the hash (4), first-seen time (5) and a :func:`header_tail`."""
    if tx_hash:
        chain += _TAG_TX_HASH + varint(len(tx_hash)) + tx_hash
    if first_seen_ns:
        chain += _TAG_FIRST_SEEN + varint(first_seen_ns)
    return chain + tail


def event_value(kind: int, header: bytes, inner: bytes) -> bytes:
    """An ``events`` value: kind byte + Event bytes (kind, shared header, body wrapping ``inner``), without seq.

    The seq is the value's key: it is not stored in the value (readers set ``seq_id`` from the key, see
    :func:`processd.storage.eventlog.decode_event`), so a value depends only on its batch and can be encoded in full by
    batch preparation, anywhere, before the writer assigns seqs.
    """
    n = len(inner)
    inner_len = _TABLE[n] if n < 16384 else varint(n)
    body_len = 1 + len(inner_len) + n
    return b"".join((_VALUE_PREFIX[kind], header, _BODY_TAG[kind],
                     _TABLE[body_len] if body_len < 16384 else varint(body_len), _TAG_INNER, inner_len, inner))


# --- batch preparation's hot path (processd.wire.batch, for every stored transaction) -------------------------

#: The first bytes of TX_SEEN, TX_DECODED and OPP_DETECTED values (kind byte + ``Event.kind``).
SEEN_PREFIX = _VALUE_PREFIX[KIND_SEEN]
DECODED_PREFIX = _VALUE_PREFIX[KIND_DECODED]
OPP_PREFIX = _VALUE_PREFIX[KIND_OPP]
#: Tags of the TxSeen (10), TxDecoded (11) and OppDetected (12) bodies.
SEEN_BODY_TAG = _TAG_TX_SEEN
DECODED_BODY_TAG = _TAG_TX_DECODED
OPP_BODY_TAG = _TAG_OPP
#: Tag of ``Event.first_seen_unix_ns`` (5), for headers encoded in place.
FIRST_SEEN_TAG = _TAG_FIRST_SEEN
#: Varint of every int below 2**14 (see :func:`varint`) and 14 bits as two continued varint groups.
VARINT_TABLE = _TABLE
CONT14_TABLE = _CONT14
#: Bodies shorter than this have their lengths in :func:`body_lengths_table`.
BODY_LENGTHS_MAX = 16380


def body_lengths(n: int) -> bytes:
    """What separates an event body's tag from its ``n`` inner bytes: the body's length, the inner field's tag
    (1) and the inner length: ``event_value(kind, h, inner) == prefix + h + body tag + body_lengths(n) + inner``.
    """
    inner_len = varint(n)
    return varint(1 + len(inner_len) + n) + _TAG_INNER + inner_len


_body_lengths: list[bytes] | None = None


def body_lengths_table() -> list[bytes]:
    """:func:`body_lengths` of every n below :data:`BODY_LENGTHS_MAX` (about 0.6 MB), built on first use (no
    work at import time; threads racing to build it each build a whole, equal table)."""
    global _body_lengths
    table = _body_lengths
    if table is None:
        table = _body_lengths = [body_lengths(n) for n in range(BODY_LENGTHS_MAX)]
    return table


def hash_prefix(chain_id: int) -> bytes:
    """What precedes a 32-byte hash in the headers of chain ``chain_id``: :func:`chain_field` and the hash's tag
    and length (see :func:`processd.wire.batch.encode_batch`)."""
    return chain_field(chain_id) + _TAG_TX_HASH + varint(32)


# --- TX_SOURCE_SEEN events (written by the writer itself: one per later source of a stored transaction) ---

KIND_SOURCE: int = events_pb2.EVENT_KIND_TX_SOURCE_SEEN
#: Kind byte + ``Event.kind`` of a TX_SOURCE_SEEN value, and the tag of its body (``Event.tx_source_seen``, 13).
SOURCE_PREFIX = bytes((KIND_SOURCE,)) + _TAG_KIND + varint(KIND_SOURCE)
_TAG_TX_SOURCE_SEEN = tag(_E, "tx_source_seen")
_S = tx_pb2.TxSighting
_TAG_SIGHTING_CHAIN_ID = tag(_S, "chain_id")
_TAG_SIGHTING_HASH = tag(_S, "hash")
_TAG_SIGHTING_SOURCE_ID = tag(_S, "source_id")
_TAG_SIGHTING_SEEN = tag(_S, "seen_unix_ns")
_TAG_SIGHTING = tag(events_pb2.TxSourceSeen, "sighting")
_TAG_TX_SEQ_ID = tag(events_pb2.TxSourceSeen, "tx_seq_id")


def source_seen_value(header: bytes, chain_id: int, tx_hash: bytes, source_id: str, seen_ns: int,
                      tx_seq: int) -> bytes:
    """A TX_SOURCE_SEEN ``events`` value: ``header`` (:func:`event_header` of the transaction's chain, hash and
    first-seen time, the commit's receive time and the later source) and the body ``TxSourceSeen {sighting:
    TxSighting(chain_id, tx_hash, source_id, seen_ns), tx_seq_id: tx_seq}``. By hand for the same reason as the
    other values: building the nested messages costs ~19 us, this ~5 (the writer does it per sighting)."""
    raw = source_id.encode()
    sighting = b"".join((_TAG_SIGHTING_CHAIN_ID + varint(chain_id) if chain_id else b"",
                         _TAG_SIGHTING_HASH + varint(len(tx_hash)) + tx_hash if tx_hash else b"",
                         _TAG_SIGHTING_SOURCE_ID + varint(len(raw)) + raw if raw else b"",
                         _TAG_SIGHTING_SEEN + varint(seen_ns) if seen_ns else b""))
    body = _TAG_SIGHTING + varint(len(sighting)) + sighting + (_TAG_TX_SEQ_ID + varint(tx_seq) if tx_seq else b"")
    return b"".join((SOURCE_PREFIX, header, _TAG_TX_SOURCE_SEEN, varint(len(body)), body))



KIND_BLOCK: int = events_pb2.EVENT_KIND_BLOCK


def block_value(block: block_pb2.BlockEnvelope, received_ns: int, seen_pending: int, latency_p50_ms: int = 0,
                included_tracked: int = 0) -> bytes:
    """A BLOCK ``events`` value: the kind byte, then ``Event {chain_id, kind, first_seen_unix_ns: the block's seen
    time, received_unix_ns, source_id, block: BlockSeen(block, seen_pending)}`` (no tx_hash: it is about a block).

    By hand around the block's own serialization: building ``BlockSeen(block=block)`` copied the block's
    transaction list into a new message only to serialize it again (four fifths of the cost, for every block of
    hundreds of transactions). Fields in field-number order, zero ones omitted, the block serialized
    deterministically: the bytes the protobuf library's deterministic serialization gives
    (``tests/processd/test_block_value.py``)."""
    raw = block.SerializeToString(deterministic=True)
    body = b"".join((_TAG_BS_BLOCK, varint(len(raw)), raw,
                     _TAG_BS_SEEN + varint(seen_pending) if seen_pending else b"",
                     _TAG_BS_LATENCY + varint(latency_p50_ms) if latency_p50_ms else b"",
                     _TAG_BS_TRACKED + varint(included_tracked) if included_tracked else b""))
    source = block.source_id.encode()
    return b"".join((_BLOCK_PREFIX, chain_field(block.chain_id), _BLOCK_KIND_FIELD,
                     _TAG_FIRST_SEEN + varint(block.seen_unix_ns) if block.seen_unix_ns else b"",
                     _TAG_RECEIVED + varint(received_ns) if received_ns else b"",
                     _TAG_SOURCE_ID + varint(len(source)) + source if source else b"",
                     _TAG_BLOCK, varint(len(body)), body))


_BS = events_pb2.BlockSeen
_TAG_BS_BLOCK, _TAG_BS_SEEN, _TAG_BS_LATENCY, _TAG_BS_TRACKED = (
    tag(_BS, name) for name in ("block", "seen_pending", "inclusion_latency_p50_ms", "included_tracked"))
_TAG_BLOCK = tag(_E, "block")
_BLOCK_PREFIX = bytes((events_pb2.EVENT_KIND_BLOCK,))
_BLOCK_KIND_FIELD = _TAG_KIND + varint_slow(events_pb2.EVENT_KIND_BLOCK)


KIND_POOL_STATE: int = events_pb2.EVENT_KIND_POOL_STATE


def pool_state_value(state: pool_pb2.PoolState, received_ns: int) -> bytes:
    """A POOL_STATE ``events`` value: the kind byte, then ``Event {chain_id, kind, received_unix_ns, pool_state:
    PoolStateSeen(state)}`` (no tx_hash, first-seen time or source: ingestd read it from the node at a block).

    Through the protobuf library (a few per block and pair, not per transaction); deterministic serialization keeps
    the value a function of its inputs."""
    event = events_pb2.Event(chain_id=state.chain_id, kind=events_pb2.EVENT_KIND_POOL_STATE,
                             received_unix_ns=received_ns, pool_state=events_pb2.PoolStateSeen(state=state))
    return bytes((KIND_POOL_STATE,)) + event.SerializeToString(deterministic=True)


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


_SR = query_pb2.ScanEventsResponse
_TAG_SCAN_NEXT = tag(_SR, "next_seq_id")
_TAG_SCAN_LAST = tag(_SR, "last_seq_id")
_SCAN_TRUNCATED = tag(_SR, "truncated") + b"\x01"


def scan_response(events: list[bytes], next_seq: int, last_seq: int, truncated: bool) -> bytes:
    """A serialized ``ScanEventsResponse`` of framed ``events`` (each a whole ``events`` entry: tag, length,
    Event) and its three scalars, each left out at its default as protobuf does; it parses as the message the
    library would build (``tests/processd/test_scan_framing.py``)."""
    return b"".join((*events, _TAG_SCAN_NEXT + varint(next_seq) if next_seq else b"",
                     _TAG_SCAN_LAST + varint(last_seq) if last_seq else b"", _SCAN_TRUNCATED if truncated else b""))


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
