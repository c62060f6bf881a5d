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
#: Bounds of the typed-transaction fields (tx.proto 15-24), far above what a valid transaction carries: an
#: access list of more items (addresses + storage keys) than this would cost over 4 M gas (EIP-2930: 1,900 per
#: key, 2,400 per address), a block holds at most a few blobs (EIP-4844/7691), and every authorization costs
#: 25,000 gas (EIP-7702).
MAX_ACCESS_LIST_ITEMS = 4096
MAX_BLOB_HASHES = 64
MAX_AUTHORIZATIONS = 1024
#: raw_tx may exceed max_input_bytes by this much: the calldata is in it, plus every other field, an access list
#: and an authorization list at their bounds included (4096 * 33 + 1024 * 120 + 64 * 33 bytes, rounded up).
RAW_TX_OVERHEAD_BYTES = 256 * 1024


def max_envelope_bytes(max_input_bytes: int) -> int:
    """The largest serialized envelope :func:`validate` lets through: its calldata, its raw_tx (the calldata once
    more plus :data:`RAW_TX_OVERHEAD_BYTES`), the same lists again as fields of their own, and the fixed fields."""
    return 2 * max_input_bytes + 2 * RAW_TX_OVERHEAD_BYTES + 4096


def validate(envelope: tx_pb2.TxEnvelope, chain_ids: frozenset[int], max_input_bytes: int) -> int:
    """The reject reason of ``envelope`` (``REJECT_REASON_*``), or ``OK`` when it may be stored."""
    return (validate_fields(envelope.chain_id, envelope.hash, envelope.sender, envelope.to, envelope.value,
                            envelope.gas_price, envelope.max_fee_per_gas, envelope.max_priority_fee_per_gas,
                            envelope.input, envelope.source_id, chain_ids, max_input_bytes)
            or validate_typed(envelope, max_input_bytes))


def validate_typed(envelope: tx_pb2.TxEnvelope, max_input_bytes: int) -> int:
    """The reject reason of the signature and typed-transaction fields (tx.proto 15-24) of ``envelope``, or
    ``OK``: oversized (``too_large``: raw_tx beyond max_input_bytes + :data:`RAW_TX_OVERHEAD_BYTES`, lists beyond
    their bounds), or shaped against the contract (``bad_quantity``, ``bad_address``, ``bad_hash``)."""
    if len(envelope.raw_tx) > max_input_bytes + RAW_TX_OVERHEAD_BYTES:
        return ingest_pb2.REJECT_REASON_TOO_LARGE
    if (len(envelope.v) > 32 or len(envelope.r) > 32 or len(envelope.s) > 32 or envelope.y_parity > 1
            or len(envelope.max_fee_per_blob_gas) > 32):
        return ingest_pb2.REJECT_REASON_BAD_QUANTITY
    access_list = envelope.access_list
    if access_list:
        items = len(access_list)
        for entry in access_list:
            keys = entry.storage_keys
            items += len(keys)
            if items > MAX_ACCESS_LIST_ITEMS:
                return ingest_pb2.REJECT_REASON_TOO_LARGE
            if len(entry.address) != 20:
                return ingest_pb2.REJECT_REASON_BAD_ADDRESS
            if any(len(k) != 32 for k in keys):
                return ingest_pb2.REJECT_REASON_BAD_HASH
    blobs = envelope.blob_versioned_hashes
    if blobs:
        if len(blobs) > MAX_BLOB_HASHES:
            return ingest_pb2.REJECT_REASON_TOO_LARGE
        if any(len(h) != 32 for h in blobs):
            return ingest_pb2.REJECT_REASON_BAD_HASH
    auths = envelope.authorization_list
    if auths:
        if len(auths) > MAX_AUTHORIZATIONS:
            return ingest_pb2.REJECT_REASON_TOO_LARGE
        for auth in auths:
            if len(auth.address) != 20:
                return ingest_pb2.REJECT_REASON_BAD_ADDRESS
            if len(auth.chain_id) > 32 or len(auth.r) > 32 or len(auth.s) > 32 or auth.y_parity > 1:
                return ingest_pb2.REJECT_REASON_BAD_QUANTITY
    return OK


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
