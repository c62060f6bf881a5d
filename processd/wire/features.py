"""``TxFeatures`` serialized by hand: the one encoder of a transaction's features (docs/decoding.md, fields).

Why by hand: setting a upb message's fields one by one and serializing it costs 1.3-2.5x what joining
precomputed tag + length prefixes does, and batch preparation does it for every stored transaction. The
output is exactly protobuf's: fields in field-number order, empty / zero fields left out unless they have
presence (``optional`` in the proto: the amounts and the deadline, written whenever set, 0 included).
``tests/processd/test_prepare_equality.py`` and ``test_features.py`` compare it, byte for byte, with a
``TxFeatures`` built with the protobuf library (``tests/processd/_reference.py``).

Values the tables do not cover (a uint256 longer than 32 bytes, a category outside the enum, a non-bytes
address, a deadline or fee tier out of range: no decoder produces them) go to
:func:`processd.wire.tags.library_field`, so protobuf encodes them or raises its own error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.pb.v1 import events_pb2
from processd.wire.encoding import VARINT_TABLE, varint
from processd.wire.tags import library_field, tag

if TYPE_CHECKING:
    from processd.analysis.decoding.model import DecodedCall

_F = events_pb2.TxFeatures
_MAX_U32 = (1 << 32) - 1
_MAX_U64 = (1 << 64) - 1
#: Prefix tables cover values up to this many bytes (uint256 quantities and addresses: at most 32).
_TABLED = 33


def _prefixes(name: str) -> list[bytes]:
    """Tag + length of bytes field ``name``, by length (0: b"", the field is left out)."""
    t = tag(_F, name)
    return [b""] + [t + varint(n) for n in range(1, _TABLED)]


def _present_prefixes(name: str) -> list[bytes]:
    """Tag + length of ``optional`` bytes field ``name``, by length (0: tag + 0, a present empty value = 0)."""
    t = tag(_F, name)
    return [t + varint(n) for n in range(_TABLED)]


_VARINT = VARINT_TABLE
_TOKEN_IN = _prefixes("token_in")
_TOKEN_OUT = _prefixes("token_out")
_AMOUNT_IN = _present_prefixes("amount_in")
_AMOUNT_OUT_MIN = _present_prefixes("amount_out_min")
_AMOUNT_IN_MAX = _present_prefixes("amount_in_max")
_AMOUNT_OUT = _present_prefixes("amount_out")
_RECIPIENT = _prefixes("recipient")
_VALUE = _prefixes("value")
_GAS_PRICE = _prefixes("gas_price")
_PRIORITY_FEE = _prefixes("priority_fee")
_SELECTOR = _prefixes("selector")
_TAG_PROTOCOL = tag(_F, "protocol")
_TAG_METHOD = tag(_F, "method")
_TAG_PATH = tag(_F, "path")
_TAG_FEE_TIERS = tag(_F, "fee_tiers")
_TAG_DEADLINE = tag(_F, "deadline")
_TAG_CALLDATA_LEN = tag(_F, "calldata_len")
_TAG_DECODE_ERROR = tag(_F, "decode_error")
#: category -> its field; a category outside the enum goes to the library.
_CATEGORY_FIELD: dict[int, bytes] = {c: (tag(_F, "category") + varint(c) if c else b"")
                                     for c in events_pb2.TxCategory.values()}
_OTHER_FIELD = _CATEGORY_FIELD[events_pb2.TX_CATEGORY_OTHER]
_TRANSFER_FIELD = _CATEGORY_FIELD[events_pb2.TX_CATEGORY_TRANSFER]
_DECODED_FIELD = tag(_F, "decoded") + b"\x01"
#: Encoded protocol and method fields by text: small closed sets in practice, bounded all the same.
_PROTOCOL_FIELDS: dict[str, bytes] = {}
_METHOD_FIELDS: dict[str, bytes] = {"": b""}
_STRING_FIELDS_MAX = 4096


def _string_field(cache: dict[str, bytes] | None, name: str, tag_bytes: bytes, text: str) -> bytes:
    """String field ``name`` (kept in ``cache`` by text when given); a non-str is the library's."""
    if type(text) is not str:
        return library_field(_F, name, text)
    raw = text.encode()
    field = tag_bytes + varint(len(raw)) + raw
    if cache is not None and len(cache) < _STRING_FIELDS_MAX:
        cache[text] = field
    return field


def _field(table: list[bytes], name: str, raw: bytes) -> bytes:
    """Bytes field ``name`` whole: from its prefix ``table``, or the library's when ``raw`` is not plain bytes
    or is longer than the table (the cold path: the hot branches index the tables inline)."""
    if type(raw) is bytes and len(raw) < _TABLED:
        return table[len(raw)] + raw
    return library_field(_F, name, raw)


def encode_features(call: DecodedCall | None, protocol: str, data: bytes, to: bytes, value: bytes,
                    gas_price: bytes, priority_fee: bytes) -> bytes:
    """The serialized ``TxFeatures`` of one transaction whose calldata is ``data``, sent to ``to`` with
    ``value``; ``gas_price`` is its bid (max fee per gas, else the legacy gas price), ``priority_fee`` its tip.

    ``call`` is None for an unknown selector (category other, method empty) and for empty calldata (a plain
    value transfer: category transfer, recipient = to, amount_in = value; or a contract creation: category
    other). Raises only what protobuf raises for the same values (see the module doc).
    """
    size = len(data)
    size_field = (_TAG_CALLDATA_LEN + (_VARINT[size] if size < 16384 else varint(size))) if size else b""
    if protocol:
        head = _PROTOCOL_FIELDS.get(protocol) or _string_field(_PROTOCOL_FIELDS, "protocol", _TAG_PROTOCOL, protocol)
    else:
        head = b""
    # Fields 15-18 (value, gas price, tip, calldata length) close every branch; written out in each, so that
    # a record is one join. A table miss (IndexError: a quantity or address past 32 bytes, only from an
    # envelope batch preparation rejects) costs nothing until it happens.
    try:
        if call is None:
            if size == 0 and to:  # a plain transfer: amount_in (7) = value, recipient (13) = to
                return b"".join((head, _TRANSFER_FIELD, _AMOUNT_IN[len(value)], value, _RECIPIENT[len(to)], to,
                             _VALUE[len(value)], value, _GAS_PRICE[len(gas_price)], gas_price,
                             _PRIORITY_FEE[len(priority_fee)], priority_fee, size_field))
            selector = data[:4]
            return b"".join((head, _OTHER_FIELD, _SELECTOR[len(selector)], selector, _VALUE[len(value)], value,
                         _GAS_PRICE[len(gas_price)], gas_price, _PRIORITY_FEE[len(priority_fee)], priority_fee,
                         size_field))
        tail = b"".join((_VALUE[len(value)], value, _GAS_PRICE[len(gas_price)], gas_price,
                     _PRIORITY_FEE[len(priority_fee)], priority_fee, size_field))
    except IndexError:  # the same fields, whole, from _field
        tail = b"".join((_field(_VALUE, "value", value), _field(_GAS_PRICE, "gas_price", gas_price),
                     _field(_PRIORITY_FEE, "priority_fee", priority_fee), size_field))
        if call is None:
            if size == 0 and to:
                return b"".join((head, _TRANSFER_FIELD, _field(_AMOUNT_IN, "amount_in", value),
                             _field(_RECIPIENT, "recipient", to), tail))
            return b"".join((head, _OTHER_FIELD, _SELECTOR[len(data[:4])], data[:4], tail))
    try:
        category = _CATEGORY_FIELD[call.category]
    except KeyError:  # outside the enum: protobuf encodes it (proto3 enums are open) or raises
        category = library_field(_F, "category", call.category)
    method = _METHOD_FIELDS.get(call.method)
    if method is None:
        method = _string_field(_METHOD_FIELDS, "method", _TAG_METHOD, call.method)
    selector = data[:4]
    parts = [head, category, method, _SELECTOR[len(selector)], selector]
    if not call.decoded:
        error = call.error
        parts += (tail, b"" if error == "" else _string_field(None, "decode_error", _TAG_DECODE_ERROR, error))
        return b"".join(parts)
    _add_decoded_fields(parts, call)
    parts += (tail, _DECODED_FIELD)
    return b"".join(parts)


def _add_decoded_fields(parts: list[bytes], call: DecodedCall) -> None:
    """Fields 5-14 of a decoded call (tokens, amounts, path, fee tiers, recipient, deadline), in order.

    Unrolled, with the tables indexed inline: this runs for every decoded call."""
    token = call.token_in
    if token is not None:
        parts += (_TOKEN_IN[len(token)], token) if type(token) is bytes and len(token) < _TABLED else (
            _field(_TOKEN_IN, "token_in", token),)
    token = call.token_out
    if token is not None:
        parts += (_TOKEN_OUT[len(token)], token) if type(token) is bytes and len(token) < _TABLED else (
            _field(_TOKEN_OUT, "token_out", token),)
    amount = call.amount_in
    if amount is not None:
        raw = amount.to_bytes((amount.bit_length() + 7) // 8, "big")  # u256, inlined (a negative int raises)
        parts += (_AMOUNT_IN[len(raw)], raw) if len(raw) < _TABLED else (_field(_AMOUNT_IN, "amount_in", raw),)
    amount = call.amount_out_min
    if amount is not None:
        raw = amount.to_bytes((amount.bit_length() + 7) // 8, "big")
        parts += (_AMOUNT_OUT_MIN[len(raw)], raw) if len(raw) < _TABLED else (
            _field(_AMOUNT_OUT_MIN, "amount_out_min", raw),)
    amount = call.amount_in_max
    if amount is not None:
        raw = amount.to_bytes((amount.bit_length() + 7) // 8, "big")
        parts += (_AMOUNT_IN_MAX[len(raw)], raw) if len(raw) < _TABLED else (
            _field(_AMOUNT_IN_MAX, "amount_in_max", raw),)
    amount = call.amount_out
    if amount is not None:
        raw = amount.to_bytes((amount.bit_length() + 7) // 8, "big")
        parts += (_AMOUNT_OUT[len(raw)], raw) if len(raw) < _TABLED else (_field(_AMOUNT_OUT, "amount_out", raw),)
    path = call.path
    if path:
        start = len(parts)
        for token in path:  # repeated: every element is written, empty ones too
            if type(token) is not bytes:
                parts[start:] = [library_field(_F, "path", path)]
                break
            n = len(token)
            parts += (_TAG_PATH, _VARINT[n] if n < 16384 else varint(n), token)
    if call.fee_tiers:
        parts.append(_fee_tiers_field(call.fee_tiers))
    token = call.recipient
    if token is not None:
        parts += (_RECIPIENT[len(token)], token) if type(token) is bytes and len(token) < _TABLED else (
            _field(_RECIPIENT, "recipient", token),)
    deadline = call.deadline
    if deadline is not None:
        if type(deadline) is int and 0 <= deadline <= _MAX_U64:
            parts += (_TAG_DEADLINE, varint(deadline))
        else:
            parts.append(library_field(_F, "deadline", deadline))


def _fee_tiers_field(fee_tiers: tuple[int, ...]) -> bytes:
    """The packed ``fee_tiers`` field (uint32 each)."""
    packed = b""
    for fee in fee_tiers:
        if type(fee) is not int or not 0 <= fee <= _MAX_U32:
            return library_field(_F, "fee_tiers", fee_tiers)
        packed += _VARINT[fee] if fee < 16384 else varint(fee)
    return _TAG_FEE_TIERS + varint(len(packed)) + packed
