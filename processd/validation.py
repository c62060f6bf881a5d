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
    chain_id = envelope.chain_id
    if chain_id == 0 or chain_id > MAX_CHAIN_ID or (chain_ids and chain_id not in chain_ids):
        return ingest_pb2.REJECT_REASON_UNKNOWN_CHAIN
    if len(envelope.hash) != 32:
        return ingest_pb2.REJECT_REASON_BAD_HASH
    to_len = len(envelope.to)
    if len(envelope.sender) != 20 or (to_len != 0 and to_len != 20):
        return ingest_pb2.REJECT_REASON_BAD_ADDRESS
    if (
        len(envelope.value) > 32
        or len(envelope.gas_price) > 32
        or len(envelope.max_fee_per_gas) > 32
        or len(envelope.max_priority_fee_per_gas) > 32
    ):
        return ingest_pb2.REJECT_REASON_BAD_QUANTITY
    if len(envelope.input) > max_input_bytes or len(envelope.source_id) > MAX_SOURCE_ID_CHARS:
        return ingest_pb2.REJECT_REASON_TOO_LARGE
    return OK
