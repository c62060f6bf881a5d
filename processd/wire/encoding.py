"""Hand-rolled protobuf encoding of event-log values, for speed.

Why by hand: building ``Event(tx_seen=TxSeen(tx=envelope))`` deep-copies the envelope (with its calldata) into
a new message only to serialize it again. Protobuf's wire format is a concatenation of fields in any order,
so we serialize the shared header once per transaction and append the already-serialized body bytes. The
result parses as the same ``mempulse.v1.Event`` (tests compare it with the protobuf library's encoding).
"""

from __future__ import annotations

import functools

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
    table, cont14 = prefixed_varints(prefix)
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
def prefixed_varints(prefix: bytes) -> tuple[list[bytes], list[bytes]]:
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
