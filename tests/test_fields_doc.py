"""docs/fields.md stays true: its table names every transaction field gatewayd renders, nothing it does not render,
and only protobuf fields that exist."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from common.pb.v1 import events_pb2, query_pb2, tx_pb2
from gatewayd import serializers as ser

DOC = Path(__file__).resolve().parents[1] / "docs" / "fields.md"
_ROW = re.compile(r"^\| `([^`]+)` \| (.+?) \| (.+?) \| (.+?) \|$")
_PROTO = re.compile(r"^`(\w+)\.(\w+)`")


def _rows() -> list[tuple[str, str]]:
    text = DOC.read_text()
    section = text.split("## Transaction fields", 1)[1].split("\n## ", 1)[0]
    rows = [(m.group(1), m.group(2)) for line in section.splitlines() if (m := _ROW.match(line))]
    assert len(rows) > 20, "the table was not found"
    return rows


def _message(name: str) -> Any:
    for module in (tx_pb2, query_pb2, events_pb2):
        descriptor = module.DESCRIPTOR.message_types_by_name.get(name)
        if descriptor is not None:
            return descriptor
    raise AssertionError(f"docs/fields.md names protobuf message {name}, which does not exist")


def _names(obj: dict[str, Any], prefix: str = "") -> set[str]:
    """Every key of a rendered object; a list of objects as ``key[].sub``."""
    out: set[str] = set()
    for key, value in obj.items():
        out.add(prefix + key)
        if isinstance(value, list) and value and isinstance(value[0], dict):
            out |= _names(value[0], f"{prefix}{key}[].")
        elif isinstance(value, dict):
            out |= _names(value, f"{prefix}{key}.")
    return out


def _rendered() -> set[str]:
    """The field names gatewayd renders for a fully populated transaction (REST) and a tx_seen event's tx (SSE)."""
    env = tx_pb2.TxEnvelope(chain_id=1, hash=b"\x01" * 32, sender=b"\x02" * 20, to=b"\x03" * 20, nonce=1, value=b"\x01",
                            gas_price=b"\x01", max_fee_per_gas=b"\x02", max_priority_fee_per_gas=b"", gas=21000,
                            tx_type=2, input=b"\xa9\x05\x9c\xbb", source_id="a", first_seen_unix_ns=10**18,
                            v=b"", y_parity=1, r=b"\x05", s=b"\x06",
                            access_list=[tx_pb2.AccessListEntry(address=b"\x04" * 20, storage_keys=[b"\x05" * 32])],
                            max_fee_per_blob_gas=b"\x01", blob_versioned_hashes=[b"\x01" * 32],
                            authorization_list=[tx_pb2.Authorization(chain_id=b"\x01", address=b"\x06" * 20, nonce=1,
                                                                     y_parity=0, r=b"\x01", s=b"\x02")],
                            raw_tx=b"\x02\xc0", raw_tx_origin=tx_pb2.RAW_TX_ORIGIN_REENCODED)
    stored = query_pb2.StoredTx(seq_id=1, tx=env, received_unix_ns=10**18, sources=[
        query_pb2.SourceSeen(source_id="a", first_seen_unix_ns=10**18),
        query_pb2.SourceSeen(source_id="b", first_seen_unix_ns=10**18 + 1)])
    event = ser.event_json(events_pb2.Event(seq_id=1, kind=events_pb2.EVENT_KIND_TX_SEEN,
                                            tx_seen=events_pb2.TxSeen(tx=env)), include_raw=True)
    return _names(ser.stored_tx_json(stored, include_raw=True)) | _names(event["tx"])


def test_every_rendered_transaction_field_is_in_the_table_and_every_row_is_rendered() -> None:
    rows = _rows()
    documented = {name for name, _ in rows}
    rendered = _rendered()
    missing = rendered - documented
    assert not missing, f"transaction fields rendered by gatewayd but not in docs/fields.md: {sorted(missing)}"
    extra = {name for name in documented - rendered if not name.startswith("features.")}
    assert not extra, f"docs/fields.md lists fields gatewayd does not render: {sorted(extra)}"
    features = _names(ser.features_json(events_pb2.TxFeatures()), "features.")
    assert {name for name in documented if name.startswith("features.")} <= features


def test_every_protobuf_field_in_the_table_exists() -> None:
    for name, proto in _rows():
        if proto.strip() == "—":
            continue
        m = _PROTO.match(proto)
        assert m, f"row {name}: protobuf column {proto!r} is neither a `Message.field` nor —"
        message, field = m.groups()
        assert field in _message(message).fields_by_name, (
            f"row {name}: {message}.{field} does not exist in the protobuf contract")
