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

from typing import NamedTuple

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

_TAG_VALUED = tag(_O, "valued")
_TAG_NOTE = tag(_O, "valuation_note")
#: (field name, its tag) of the optional uint256 valuation amounts, in field-number order.
_AMOUNT_TAGS = [(name, tag(_O, name)) for name in ("net_profit_wei", "sandwich_profit_wei", "frontrun_amount_in",
                                                   "backrun_profit_wei", "gas_cost_wei")]
_TAG_NET, _TAG_SANDWICH, _TAG_FRONTRUN, _TAG_BACKRUN, _TAG_GAS = (field_tag for _, field_tag in _AMOUNT_TAGS)
_VALUED_TRUE = _TAG_VALUED + b"\x01"
_TAG_IMPACT = tag(_O, "price_impact_bps")
_TAG_PROFIT_TOKEN = tag(_O, "profit_token")
_TAG_BLOCK = tag(_O, "state_block_number")
_TAG_BACKRUN_IN = tag(_O, "backrun_amount_in")


class OppValue(NamedTuple):
    """The valuation fields of one opportunity (Opportunity 12..22): amounts as ints, None when not set."""

    valued: bool
    note: str
    net_profit_wei: int | None = None
    sandwich_profit_wei: int | None = None
    frontrun_amount_in: int | None = None
    backrun_profit_wei: int | None = None
    gas_cost_wei: int | None = None
    price_impact_bps: int = 0
    profit_token: bytes = b""
    state_block_number: int = 0
    backrun_amount_in: int | None = None


#: (score, kind, reasons, valuation) of one kind of opportunity, highest rank first.
Scored = tuple[int, int, list[str], OppValue]


#: Encoded not-valued fields by note: most opportunities share a handful of notes (bounded: a note that names a
#: pair is encoded per call once the cache is full).
_FALLBACK_VALUES: dict[OppValue, bytes] = {}
_FALLBACK_CACHE = 256


def u256(value: int) -> bytes:
    """Minimal big-endian bytes of a non-negative int (0 -> empty), the contract's uint256 encoding."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _length_delimited(field_tag: bytes, raw: bytes) -> bytes:
    n = len(raw)
    return field_tag + (_VARINT[n] if n < 16384 else varint(n)) + raw


def encode_value(v: OppValue) -> bytes:
    """Opportunity fields 12..22 of ``v``, as protobuf writes them (defaults left out, set optionals written). Runs
    per valued opportunity: fields unpacked once, each written inline (no loop, no call per field; lengths from the
    varint table)."""
    valued, note, net, sandwich, frontrun, backrun, gas, impact, token, block, backrun_in = v
    if (type(impact) is not int or not 0 <= impact <= _MAX_U32 or type(block) is not int
            or not 0 <= block <= _MAX_U64 or type(note) is not str or type(token) is not bytes):
        return _library_value(v)
    table = _VARINT
    parts = [_VALUED_TRUE] if valued else []
    if note:
        parts.append(_length_delimited(_TAG_NOTE, note.encode()))
    # The uint256 amounts in field-number order (u256 inline; a negative amount raises as u256 does).
    if net is not None:
        raw = net.to_bytes((net.bit_length() + 7) // 8, "big")
        parts += (_TAG_NET, table[n] if (n := len(raw)) < 16384 else varint(n), raw)
    if sandwich is not None:
        raw = sandwich.to_bytes((sandwich.bit_length() + 7) // 8, "big")
        parts += (_TAG_SANDWICH, table[n] if (n := len(raw)) < 16384 else varint(n), raw)
    if frontrun is not None:
        raw = frontrun.to_bytes((frontrun.bit_length() + 7) // 8, "big")
        parts += (_TAG_FRONTRUN, table[n] if (n := len(raw)) < 16384 else varint(n), raw)
    if backrun is not None:
        raw = backrun.to_bytes((backrun.bit_length() + 7) // 8, "big")
        parts += (_TAG_BACKRUN, table[n] if (n := len(raw)) < 16384 else varint(n), raw)
    if gas is not None:
        raw = gas.to_bytes((gas.bit_length() + 7) // 8, "big")
        parts += (_TAG_GAS, table[n] if (n := len(raw)) < 16384 else varint(n), raw)
    if impact:
        parts += (_TAG_IMPACT, table[impact] if impact < 16384 else varint(impact))
    if token:
        parts += (_TAG_PROFIT_TOKEN, table[len(token)] if len(token) < 16384 else varint(len(token)), token)
    if block:
        parts += (_TAG_BLOCK, table[block] if block < 16384 else varint(block))
    if backrun_in is not None:
        raw = backrun_in.to_bytes((backrun_in.bit_length() + 7) // 8, "big")
        parts += (_TAG_BACKRUN_IN, table[n] if (n := len(raw)) < 16384 else varint(n), raw)
    return b"".join(parts)


def _library_value(v: OppValue) -> bytes:
    """:func:`encode_value` by the protobuf library, field by field (its encoding, or its error)."""
    out = [library_field(_O, "valued", v.valued), library_field(_O, "valuation_note", v.note)]
    for name, _ in _AMOUNT_TAGS:
        amount = getattr(v, name)
        if amount is not None:
            out.append(library_field(_O, name, u256(amount)))
    out += [library_field(_O, "price_impact_bps", v.price_impact_bps),
            library_field(_O, "profit_token", v.profit_token),
            library_field(_O, "state_block_number", v.state_block_number)]
    if v.backrun_amount_in is not None:
        out.append(library_field(_O, "backrun_amount_in", u256(v.backrun_amount_in)))
    return b"".join(out)


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
    values: dict[OppValue, bytes] = {}  # and often one valuation (the heuristic fallback's)
    out = []
    for score, kind, reasons, value in scored:
        encoded = [head, _KIND_FIELDS[kind], _SCORE_FIELDS[score]]
        for reason in reasons:
            field = fields.get(reason)
            if field is None:
                raw = reason.encode()
                n = len(raw)
                field = fields[reason] = _TAG_REASON + (_VARINT[n] if n < 16384 else varint(n)) + raw
            encoded.append(field)
        encoded.append(tail)
        value_bytes = values.get(value)
        if value_bytes is None:
            value_bytes = _FALLBACK_VALUES.get(value) if not value.valued else None
            if value_bytes is None:
                value_bytes = values[value] = encode_value(value)
                if not value.valued and len(_FALLBACK_VALUES) < _FALLBACK_CACHE:
                    _FALLBACK_VALUES[value] = value_bytes
        encoded.append(value_bytes)
        out.append((score, join(encoded)))
    return tuple(out)
