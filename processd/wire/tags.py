"""Protobuf tag bytes derived from the generated descriptors, and the library's own encoding of one field.

The hand encoders of :mod:`processd.wire` write protobuf's wire format without building messages (see
:mod:`processd.wire.encoding` for why). The one fact they share with the ``.proto`` files is each field's tag,
``varint(field number << 3 | wire type)``: it is computed here from ``events_pb2`` / ``tx_pb2`` at import, so a
renumbered field cannot leave a stale literal behind (``tests/processd/test_wire_tags.py`` holds every derived
tag to what the protobuf library emits).

:func:`library_field` is the other direction: one field encoded by the protobuf library itself. The hand
encoders hand it the values their tables do not cover (an out-of-range deadline, a non-bytes address, an enum
value outside the enum): protobuf then encodes the value or raises its own error, so the stored result, errors
included, is always what the library would have produced.
"""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

_FD = FieldDescriptor
#: Wire type by field type: 0 varint, 1 64-bit, 2 length-delimited, 5 32-bit (groups are not used).
_WIRE_TYPES: dict[int, int] = {
    _FD.TYPE_DOUBLE: 1, _FD.TYPE_FIXED64: 1, _FD.TYPE_SFIXED64: 1,
    _FD.TYPE_FLOAT: 5, _FD.TYPE_FIXED32: 5, _FD.TYPE_SFIXED32: 5,
    _FD.TYPE_STRING: 2, _FD.TYPE_BYTES: 2, _FD.TYPE_MESSAGE: 2,
    _FD.TYPE_INT32: 0, _FD.TYPE_INT64: 0, _FD.TYPE_UINT32: 0, _FD.TYPE_UINT64: 0, _FD.TYPE_SINT32: 0,
    _FD.TYPE_SINT64: 0, _FD.TYPE_BOOL: 0, _FD.TYPE_ENUM: 0,
}


def varint_slow(n: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int, one 7-bit group per loop (for tables built at import)."""
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def tag(message: type[Message], name: str) -> bytes:
    """The tag bytes of field ``name`` of ``message``: varint of (field number << 3 | wire type); one byte for
    fields 1-15, two for 16-2047."""
    field = message.DESCRIPTOR.fields_by_name[name]
    wire_type = 2 if field.is_packed else _WIRE_TYPES[field.type]  # a packed repeated scalar is length-delimited
    return varint_slow(field.number << 3 | wire_type)


def library_field(message: type[Message], name: str, value: object) -> bytes:
    """Field ``name`` of ``message`` set to ``value`` as the protobuf library serializes it (raising what the
    library raises for it): the hand encoders' path for values outside their tables.

    The field is set the way a builder sets it (assignment, or ``extend`` for a repeated field), so errors
    carry the library's very message.
    """
    msg = message()
    if message.DESCRIPTOR.fields_by_name[name].is_repeated:
        getattr(msg, name).extend(value)
    else:
        setattr(msg, name, value)
    return msg.SerializeToString()
