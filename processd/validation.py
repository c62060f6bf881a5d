"""Envelope validation: a pure function from an envelope to a reject reason (0 = valid)."""

from __future__ import annotations

from common.chains import MAX_CHAIN_ID
from common.pb.v1 import ingest_pb2, tx_pb2

OK = ingest_pb2.REJECT_REASON_UNSPECIFIED

#: Stable lower-case names of reject reasons, used in metrics labels and logs.
REASON_NAMES: dict[int, str] = {
    ingest_pb2.REJECT_REASON_BAD_HASH: "bad_hash",
    ingest_pb2.REJECT_REASON_BAD_ADDRESS: "bad_address",
    ingest_pb2.REJECT_REASON_UNKNOWN_CHAIN: "unknown_chain",
    ingest_pb2.REJECT_REASON_TOO_LARGE: "too_large",
    ingest_pb2.REJECT_REASON_BAD_QUANTITY: "bad_quantity",
    ingest_pb2.REJECT_REASON_STORAGE_FULL: "storage_full",
}

MAX_SOURCE_ID_CHARS = 256


def validate(envelope: tx_pb2.TxEnvelope, chain_ids: frozenset[int], max_input_bytes: int) -> int:
    """The reject reason of ``envelope`` (``REJECT_REASON_*``), or ``OK`` when it may be stored."""
    return validate_fields(envelope.chain_id, envelope.hash, envelope.sender, envelope.to, envelope.value,
                           envelope.gas_price, envelope.max_fee_per_gas, envelope.max_priority_fee_per_gas,
                           envelope.input, envelope.source_id, chain_ids, max_input_bytes)


def validate_fields(chain_id: int, tx_hash: bytes, sender: bytes, to: bytes, value: bytes, gas_price: bytes,
                    max_fee_per_gas: bytes, max_priority_fee_per_gas: bytes, data: bytes, source_id: str,
                    chain_ids: frozenset[int], max_input_bytes: int) -> int:
    """:func:`validate` of the envelope with these fields (batch preparation reads each field only once)."""
    if chain_id == 0 or chain_id > MAX_CHAIN_ID or (chain_ids and chain_id not in chain_ids):
        return ingest_pb2.REJECT_REASON_UNKNOWN_CHAIN
    if len(tx_hash) != 32:
        return ingest_pb2.REJECT_REASON_BAD_HASH
    to_len = len(to)
    if len(sender) != 20 or (to_len != 0 and to_len != 20):
        return ingest_pb2.REJECT_REASON_BAD_ADDRESS
    if len(value) > 32 or len(gas_price) > 32 or len(max_fee_per_gas) > 32 or len(max_priority_fee_per_gas) > 32:
        return ingest_pb2.REJECT_REASON_BAD_QUANTITY
    if len(data) > max_input_bytes or len(source_id) > MAX_SOURCE_ID_CHARS:
        return ingest_pb2.REJECT_REASON_TOO_LARGE
    return OK
