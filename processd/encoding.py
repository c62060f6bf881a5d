"""Hand-rolled protobuf encoding of event-log values, for speed.

Why by hand: building ``Event(tx_seen=TxSeen(tx=envelope))`` deep-copies the envelope (with its calldata) into
a new message only to serialize it again. Protobuf's wire format is a concatenation of fields in any order,
so we serialize the shared header once per transaction and append the already-serialized body bytes. The
result parses as the same ``mempulse.v1.Event`` (tests compare it with the protobuf library's encoding).
"""

from __future__ import annotations

from common.pb.v1 import events_pb2

# Tags: (field number << 3) | wire type.
_TAG_SEQ = b"\x08"  # Event.seq_id, varint
_TAG_KIND = b"\x18"  # Event.kind, varint
_TAG_TX_SEEN = b"\x52"  # Event.tx_seen (10), length-delimited
_TAG_TX_DECODED = b"\x5a"  # Event.tx_decoded (11)
_TAG_OPP = b"\x62"  # Event.opp_detected (12)
_TAG_INNER = b"\x0a"  # TxSeen.tx / TxDecoded.features / OppDetected.opportunity (1)

KIND_SEEN: int = events_pb2.EVENT_KIND_TX_SEEN
KIND_DECODED: int = events_pb2.EVENT_KIND_TX_DECODED
KIND_OPP: int = events_pb2.EVENT_KIND_OPP_DETECTED
_KIND_PREFIX: dict[int, bytes] = {k: bytes((k,)) for k in (KIND_SEEN, KIND_DECODED, KIND_OPP)}
_KIND_FIELD: dict[int, bytes] = {k: _TAG_KIND + bytes((k,)) for k in (KIND_SEEN, KIND_DECODED, KIND_OPP)}
_BODY_TAG: dict[int, bytes] = {KIND_SEEN: _TAG_TX_SEEN, KIND_DECODED: _TAG_TX_DECODED, KIND_OPP: _TAG_OPP}


def _slow_varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


#: Every varint below 2**14 (lengths of nearly all fields), precomputed: a list index beats any encoder.
_TABLE = [_slow_varint(i) for i in range(1 << 14)]


def varint(n: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int."""
    if n < 16384:
        return _TABLE[n]
    if n < 2097152:
        return bytes(((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, n >> 14))
    if n < 268435456:
        return bytes(((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, ((n >> 14) & 0x7F) | 0x80, n >> 21))
    return _slow_varint(n)


def event_header(chain_id: int, tx_hash: bytes, first_seen_ns: int, received_ns: int, source_id: str) -> bytes:
    """The fields every event of one transaction shares (everything except seq_id, kind and body)."""
    return events_pb2.Event(
        chain_id=chain_id,
        tx_hash=tx_hash,
        first_seen_unix_ns=first_seen_ns,
        received_unix_ns=received_ns,
        source_id=source_id,
    ).SerializeToString()


def event_value(seq: int, kind: int, header: bytes, inner: bytes) -> bytes:
    """An ``events`` value: kind byte + Event bytes (seq, kind, shared header, body wrapping ``inner``)."""
    wrapped = _TAG_INNER + varint(len(inner)) + inner
    return b"".join(
        (_KIND_PREFIX[kind], _TAG_SEQ, varint(seq), _KIND_FIELD[kind], header, _BODY_TAG[kind],
         varint(len(wrapped)), wrapped)
    )
