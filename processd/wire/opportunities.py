"""``Opportunity`` messages serialized by hand: the one encoder of a ranked swap's opportunities.

Why by hand: the kinds of one swap share everything but kind, score and reasons, and most reasons too, so
the shared fields and each distinct reason are encoded once and joined per kind, instead of copying a upb
message per kind and serializing each (the searcher runs for every rankable swap). The output is exactly
protobuf's (fields in field-number order, empty ones left out, but a known notional, which has presence);
``tests/processd/test_prepare_equality.py`` compares it with ``Opportunity`` messages built with the protobuf
library (``tests/processd/_reference.py``). Values outside the tables go to
:func:`processd.wire.tags.library_field` (protobuf encodes them or raises its own error).
"""

from __future__ import annotations

from common.pb.v1 import events_pb2
from processd.wire.encoding import VARINT_TABLE, varint
from processd.wire.tags import library_field, tag

_O = events_pb2.Opportunity
_MAX_U32 = (1 << 32) - 1
_MAX_U64 = (1 << 64) - 1
_VARINT = VARINT_TABLE
_TAG_CHAIN_ID = tag(_O, "chain_id")
_TAG_TX_HASH = tag(_O, "tx_hash")
_TAG_REASON = tag(_O, "reasons")
_TAG_PROTOCOL = tag(_O, "protocol")
_TAG_TOKEN_IN = tag(_O, "token_in")
_TAG_TOKEN_OUT = tag(_O, "token_out")
_TAG_NOTIONAL = tag(_O, "notional_wei")
_TAG_SLIPPAGE = tag(_O, "slippage_bps")
#: Opportunity.kind and .score fields by value (0: left out, as protobuf does).
_KIND_FIELDS = {k: tag(_O, "kind") + varint(k) if k else b"" for k in events_pb2.OpportunityKind.values()}
_SCORE_FIELDS = [b""] + [tag(_O, "score") + varint(s) for s in range(1, 101)]

#: (score, kind, reasons) of one kind of opportunity, highest score first.
Scored = tuple[int, int, list[str]]


def _library_head(chain_id: int, tx_hash: bytes) -> bytes:
    """chain_id (1) and tx_hash (2) when either is outside what :func:`encode_opportunities` writes itself."""
    return library_field(_O, "chain_id", chain_id) + library_field(_O, "tx_hash", tx_hash)


def encode_opportunities(chain_id: int, tx_hash: bytes, protocol: str, token_in: bytes | None,
                         token_out: bytes | None, notional: bytes | None, slippage_bps: int,
                         scored: list[Scored]) -> tuple[tuple[int, bytes], ...]:
    """(score, serialized ``Opportunity``) per entry of ``scored``, in its order; the other arguments are the
    fields all of them share (``notional``: uint256 bytes, None when unknown; no seq_id: it is the event's key).
    """
    if type(chain_id) is int and 0 <= chain_id <= _MAX_U64 and type(tx_hash) is bytes:
        head = ((_TAG_CHAIN_ID + (_VARINT[chain_id] if chain_id < 16384 else varint(chain_id)) if chain_id else b"")
                + (_TAG_TX_HASH + varint(len(tx_hash)) + tx_hash if tx_hash else b""))
    else:
        head = _library_head(chain_id, tx_hash)
    # protocol (6) .. slippage_bps (10), shared by every kind, after the per-kind fields (written out here, with
    # the lengths from the varint table inline: a call per field would cost more than the field).
    table = _VARINT
    parts: list[bytes] = []
    if protocol:
        if type(protocol) is str:
            raw = protocol.encode()
            parts += (_TAG_PROTOCOL, table[len(raw)] if len(raw) < 16384 else varint(len(raw)), raw)
        else:
            parts.append(library_field(_O, "protocol", protocol))
    if token_in is not None:
        if type(token_in) is not bytes:  # protobuf takes only bytes: its error, or its encoding of a subclass
            parts.append(library_field(_O, "token_in", token_in))
        elif token_in:
            parts += (_TAG_TOKEN_IN, table[len(token_in)] if len(token_in) < 16384 else varint(len(token_in)), token_in)
    if token_out is not None:
        if type(token_out) is not bytes:
            parts.append(library_field(_O, "token_out", token_out))
        elif token_out:
            parts += (_TAG_TOKEN_OUT, table[len(token_out)] if len(token_out) < 16384 else varint(len(token_out)),
                      token_out)
    if notional is not None:  # optional: written when known, 0 included (tag + empty)
        parts += (_TAG_NOTIONAL, table[len(notional)] if len(notional) < 16384 else varint(len(notional)), notional)
    if slippage_bps:
        if type(slippage_bps) is not int or not 0 < slippage_bps <= _MAX_U32:
            parts.append(library_field(_O, "slippage_bps", slippage_bps))
        else:
            parts += (_TAG_SLIPPAGE, table[slippage_bps] if slippage_bps < 16384 else varint(slippage_bps))
    tail = b"".join(parts)
    join = b"".join
    fields: dict[str, bytes] = {}  # the kinds share most reasons: each is encoded once
    out = []
    for score, kind, reasons in scored:
        encoded = [head, _KIND_FIELDS[kind], _SCORE_FIELDS[score]]
        for reason in reasons:
            field = fields.get(reason)
            if field is None:
                raw = reason.encode()
                n = len(raw)
                field = fields[reason] = _TAG_REASON + (_VARINT[n] if n < 16384 else varint(n)) + raw
            encoded.append(field)
        encoded.append(tail)
        out.append((score, join(encoded)))
    return tuple(out)
