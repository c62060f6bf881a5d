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
    """The serialized ``TxFeatures`` of a transaction with calldata ``data`` sent to ``to`` with ``value``, bid
    ``gas_price`` (max fee per gas, else the legacy gas price) and tip ``priority_fee``. ``call`` is None for an
    unknown selector (category other) and for empty calldata (a plain transfer: category transfer, recipient =
    to, amount_in = value; or a contract creation: other). Raises only what protobuf raises for the same values."""
    size = len(data)
    size_field = (_TAG_CALLDATA_LEN + (_VARINT[size] if size < 16384 else varint(size))) if size else b""
    head = (_PROTOCOL_FIELDS.get(protocol) or _string_field(_PROTOCOL_FIELDS, "protocol", _TAG_PROTOCOL, protocol)
            if protocol else b"")
    # Fields 15-18 (value, gas price, tip, calldata length) close every branch, written out in each: one join per
    # record. A table miss (IndexError: a quantity past 32 bytes, which batch preparation rejects) is free until then.
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
    except IndexError:
        tail = b"".join((_field(_VALUE, "value", value), _field(_GAS_PRICE, "gas_price", gas_price),
                         _field(_PRIORITY_FEE, "priority_fee", priority_fee), size_field))
        if call is None:
            return _untabled_plain(head, data, to, value, tail)
    try:
        category = _CATEGORY_FIELD[call.category]
    except KeyError:  # outside the enum: protobuf encodes it (proto3 enums are open) or raises
        category = library_field(_F, "category", call.category)
    method = _METHOD_FIELDS.get(call.method)  # "" -> b"" (left out)
    if method is None:
        method = _string_field(_METHOD_FIELDS, "method", _TAG_METHOD, call.method)
    selector = data[:4]
    parts = [head, category, method, _SELECTOR[len(selector)], selector]
    if not call.decoded:
        error = call.error
        parts += (tail, b"" if error == "" else _string_field(None, "decode_error", _TAG_DECODE_ERROR, error))
        return b"".join(parts)
    # Fields 5-14, unrolled, tables indexed inline (a call per field costs more than the field). A value past
    # the tables (IndexError: no decoder produces one) has the library write the whole section instead.
    start = len(parts)
    try:
        if (token := call.token_in) is not None:
            parts += (_TOKEN_IN[len(token)], token) if type(token) is bytes else (_field(_TOKEN_IN, "token_in", token),)
        if (token := call.token_out) is not None:
            parts += (_TOKEN_OUT[len(token)], token) if type(token) is bytes else (
                _field(_TOKEN_OUT, "token_out", token),)
        if (amount := call.amount_in) is not None:
            raw = amount.to_bytes((amount.bit_length() + 7) // 8, "big")  # u256, inlined (a negative int raises)
            parts += (_AMOUNT_IN[len(raw)], raw)
        if (amount := call.amount_out_min) is not None:
            raw = amount.to_bytes((amount.bit_length() + 7) // 8, "big")
            parts += (_AMOUNT_OUT_MIN[len(raw)], raw)
        if (amount := call.amount_in_max) is not None:
            raw = amount.to_bytes((amount.bit_length() + 7) // 8, "big")
            parts += (_AMOUNT_IN_MAX[len(raw)], raw)
        if (amount := call.amount_out) is not None:
            raw = amount.to_bytes((amount.bit_length() + 7) // 8, "big")
            parts += (_AMOUNT_OUT[len(raw)], raw)
        if path := call.path:
            for token in path:  # repeated: every element is written, empty ones too
                if type(token) is not bytes:
                    raise IndexError  # the library's, as a whole (its error, or its encoding of a bytes subclass)
                parts += (_TAG_PATH, _VARINT[len(token)], token)
        if call.fee_tiers:
            parts.append(_fee_tiers_field(call.fee_tiers))
        if (token := call.recipient) is not None:
            parts += (_RECIPIENT[len(token)], token) if type(token) is bytes else (
                _field(_RECIPIENT, "recipient", token),)
        if (deadline := call.deadline) is not None:
            parts += (_TAG_DEADLINE, varint(deadline)) if type(deadline) is int and 0 <= deadline <= _MAX_U64 else (
                library_field(_F, "deadline", deadline),)
    except IndexError:
        parts[start:] = [_library_call_fields(call)]
    parts += (tail, _DECODED_FIELD, _user_abi_fields(call) if call.args or call.args_truncated else b"")
    return b"".join(parts)


#: Fields 5-14 of TxFeatures, the decoded call's own, in field-number order (all attributes of DecodedCall).
_CALL_FIELDS = ("token_in", "token_out", "amount_in", "amount_out_min", "amount_in_max", "amount_out", "path",
                "fee_tiers", "recipient", "deadline")
_AMOUNTS = frozenset(("amount_in", "amount_out_min", "amount_in_max", "amount_out"))


def _library_call_fields(call: DecodedCall) -> bytes:
    """Fields 5-14 of ``call`` written by the protobuf library, one by one in field-number order (the cold path
    of :func:`encode_features`: a value past its tables, which no decoder produces)."""
    out = []
    for name in _CALL_FIELDS:
        value = getattr(call, name)
        if value is None or (name in ("path", "fee_tiers") and not value):
            continue
        if name in _AMOUNTS:
            value = value.to_bytes((value.bit_length() + 7) // 8, "big")
        out.append(library_field(_F, name, value))
    return b"".join(out)


def _untabled_plain(head: bytes, data: bytes, to: bytes, value: bytes, tail: bytes) -> bytes:
    """:func:`encode_features` without a call when a value or address is longer than the tables (the cold path:
    only envelopes batch preparation rejects as bad_quantity / bad_address)."""
    if len(data) == 0 and to:
        return b"".join((head, _TRANSFER_FIELD, _field(_AMOUNT_IN, "amount_in", value),
                         _field(_RECIPIENT, "recipient", to), tail))
    return b"".join((head, _OTHER_FIELD, _SELECTOR[len(data[:4])], data[:4], tail))


_A = events_pb2.DecodedArg
_TAG_ARGS = tag(_F, "args")
_ARGS_TRUNCATED_FIELD = tag(_F, "args_truncated") + b"\x01"
_TAG_ARG_NAME = tag(_A, "name")
_TAG_ARG_TYPE = tag(_A, "type")
_TAG_ARG_VALUE = tag(_A, "value")


def _args_fields(args: tuple[tuple[str, str, str], ...]) -> bytes:
    """The repeated ``args`` field (``DecodedArg`` messages: name 1, type 2, value 3; an empty string left out).
    Only user ABI calls have args (a few per transaction, off the hot path), so no tables."""
    out: list[bytes] = []
    for arg in args:
        if len(arg) != 3 or not all(type(text) is str for text in arg):
            return _library_args(args)  # protobuf's encoding of, or error for, what is not three strings
        name, type_, value = (text.encode() for text in arg)
        body = b"".join((_TAG_ARG_NAME + varint(len(name)) + name if name else b"",
                         _TAG_ARG_TYPE + varint(len(type_)) + type_ if type_ else b"",
                         _TAG_ARG_VALUE + varint(len(value)) + value if value else b""))
        out += (_TAG_ARGS, varint(len(body)), body)
    return b"".join(out)


def _user_abi_fields(call: DecodedCall) -> bytes:
    """Fields 21 (args) and 22 (args_truncated) of a call decoded with a user ABI (the built-in decoders' records
    end with field 19, decoded: their bytes are what they were before user ABIs)."""
    return (_args_fields(call.args) if call.args else b"") + (_ARGS_TRUNCATED_FIELD if call.args_truncated else b"")


def _library_args(args: tuple[tuple[str, str, str], ...]) -> bytes:
    """``args`` written by the protobuf library (the cold path of :func:`_args_fields`)."""
    msg = _F()
    for name, type_, value in args:
        msg.args.add(name=name, type=type_, value=value)
    return msg.SerializeToString()


def _fee_tiers_field(fee_tiers: tuple[int, ...]) -> bytes:
    """The packed ``fee_tiers`` field (uint32 each)."""
    packed = b""
    for fee in fee_tiers:
        if type(fee) is not int or not 0 <= fee <= _MAX_U32:
            return library_field(_F, "fee_tiers", fee_tiers)
        packed += _VARINT[fee] if fee < 16384 else varint(fee)
    return _TAG_FEE_TIERS + varint(len(packed)) + packed
