"""processd.wire.tags: every tag derived from the descriptors is the one the protobuf library writes, and
library_field encodes (or refuses) a value exactly as the library does."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from common.pb.v1 import events_pb2, ingest_pb2, query_pb2, tx_pb2
from processd.wire import encoding, features, opportunities
from processd.wire.tags import library_field, tag, varint_slow

_FD = FieldDescriptor
#: Every message of the files whose wire format processd writes by hand (and ingest's, for good measure).
MESSAGES: list[type[Message]] = [
    getattr(module, name) for module in (events_pb2, tx_pb2, ingest_pb2)
    for name in module.DESCRIPTOR.message_types_by_name
] + [query_pb2.SubscribeEventsResponse, query_pb2.SubscribeManyResponse, query_pb2.ManyEvent]  # SubscribeMany's frames
FIELDS = [(m, f.name) for m in MESSAGES for f in m.DESCRIPTOR.fields]


def _sample(field: FieldDescriptor) -> Any:
    """A value protobuf writes for ``field`` (a non-default one: defaults are left out)."""
    if field.type in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
        return 1.5
    if field.type == _FD.TYPE_BOOL:
        return True
    if field.type == _FD.TYPE_STRING:
        return "x"
    if field.type == _FD.TYPE_BYTES:
        return b"x"
    if field.type == _FD.TYPE_ENUM:
        return field.enum_type.values[-1].number
    return 1  # every integer type


def _library_bytes(message: type[Message], name: str) -> bytes:
    msg = message()
    field = message.DESCRIPTOR.fields_by_name[name]
    if field.type == _FD.TYPE_MESSAGE:
        sub = getattr(msg, name).add() if field.is_repeated else getattr(msg, name)
        sub.SetInParent()
    elif field.is_repeated:
        getattr(msg, name).append(_sample(field))
    else:
        setattr(msg, name, _sample(field))
    return msg.SerializeToString()


def test_the_selection_covers_the_hand_encoded_messages() -> None:
    names = {m.DESCRIPTOR.full_name for m in MESSAGES}
    for full in ("Event", "TxSeen", "TxDecoded", "OppDetected", "TxSourceSeen", "TxFeatures", "Opportunity",
                 "TxEnvelope", "TxSighting"):
        assert f"mempulse.v1.{full}" in names
    assert len(FIELDS) > 100


@pytest.mark.parametrize(("message", "name"), FIELDS, ids=[f"{m.__name__}.{n}" for m, n in FIELDS])
def test_derived_tag_is_what_the_library_writes(message: type[Message], name: str) -> None:
    encoded = _library_bytes(message, name)
    derived = tag(message, name)
    assert encoded.startswith(derived), (encoded.hex(), derived.hex())
    # ... and it is the whole tag: what follows is the value (or the length of a length-delimited one).
    number = message.DESCRIPTOR.fields_by_name[name].number
    assert len(derived) == (1 if number < 16 else 2)


def test_hand_encoders_tables_carry_the_derived_tags() -> None:
    """The constants the encoders join are the derived tags (a spot check of each table kind)."""
    assert features._TOKEN_IN[20].startswith(tag(events_pb2.TxFeatures, "token_in"))
    assert features._GAS_PRICE[1] == b"\x82\x01\x01"  # field 16: two tag bytes
    assert features._AMOUNT_IN[0] == tag(events_pb2.TxFeatures, "amount_in") + b"\x00"  # presence of a zero
    assert features._DECODED_FIELD == events_pb2.TxFeatures(decoded=True).SerializeToString()
    assert opportunities._SCORE_FIELDS[77] == events_pb2.Opportunity(score=77).SerializeToString()
    assert encoding.SEEN_BODY_TAG == tag(events_pb2.Event, "tx_seen")
    # One table of body lengths serves every kind: the bodies' one field has the same tag in all three.
    assert {tag(events_pb2.TxSeen, "tx"), tag(events_pb2.TxDecoded, "features"),
            tag(events_pb2.OppDetected, "opportunity")} == {encoding._TAG_INNER}


def test_varint_slow_is_protobufs_varint() -> None:
    for n in (0, 1, 127, 128, 300, 16383, 16384, 2**32 - 1, 2**63, 2**64 - 1):
        assert events_pb2.Event(seq_id=n).SerializeToString() == (b"\x08" + varint_slow(n) if n else b"")


def test_library_field_encodes_or_refuses_as_the_library() -> None:
    assert library_field(events_pb2.TxFeatures, "category", 99) == b"\x10\x63"  # open enum: kept
    assert library_field(events_pb2.TxFeatures, "amount_in", b"\x01" * 40) == b"\x3a\x28" + b"\x01" * 40
    assert library_field(events_pb2.TxFeatures, "fee_tiers", [1, 2]) == b"\x62\x02\x01\x02"
    with pytest.raises(ValueError) as raised:
        library_field(events_pb2.TxFeatures, "deadline", 2**64)
    with pytest.raises(ValueError) as direct:
        events_pb2.TxFeatures().deadline = 2**64
    assert repr(raised.value) == repr(direct.value)
    with pytest.raises(TypeError):
        library_field(events_pb2.Opportunity, "token_in", memoryview(b"\x01"))
