"""Pure mapper from a JSON-RPC transaction object (a dict from orjson) to a protobuf ``TxEnvelope``."""

from __future__ import annotations

from typing import Any

from common.hexutil import HexError, hex_to_bytes, quantity_to_int, quantity_to_uint256
from common.pb.v1 import tx_pb2

MAX_UINT64 = 2**64 - 1


class MappingError(ValueError):
    """The transaction object lacks a required field or has a malformed one (counted as ``malformed``)."""


def _quantity_u64(tx: dict[str, Any], key: str, required: bool = True) -> int:
    value = tx.get(key)
    if value is None:
        if required:
            raise MappingError(f"missing {key}")
        return 0
    n = quantity_to_int(value)
    if n > MAX_UINT64:
        raise MappingError(f"{key} does not fit in uint64")
    return n


def _uint256(tx: dict[str, Any], key: str) -> bytes:
    value = tx.get(key)
    return b"" if value is None else quantity_to_uint256(value)


def _optional_uint256(tx: dict[str, Any], key: str) -> bytes | None:
    """The quantity, or None when the node did not report it: the envelope's fee fields have presence, so a
    reported 0 (an EIP-1559 tip of 0) stays distinct from a field the transaction type does not have."""
    value = tx.get(key)
    return None if value is None else quantity_to_uint256(value)


def tx_to_envelope(tx: dict[str, Any], chain_id: int, source_id: str, first_seen_unix_ns: int,
                   expected_hash: bytes | None = None) -> tx_pb2.TxEnvelope:
    """Maps ``tx`` (``eth_getTransactionByHash`` result or full-tx notification) to a ``TxEnvelope``.

    Raises :class:`MappingError` for a malformed object, or when its hash differs from ``expected_hash``
    (a node answering for the wrong request).
    """
    if not isinstance(tx, dict):
        raise MappingError(f"transaction is a {type(tx).__name__}, not an object")
    try:
        tx_hash = hex_to_bytes(tx.get("hash"), 32)  # type: ignore[arg-type]
        if expected_hash is not None and tx_hash != expected_hash:
            raise MappingError("hash differs from the requested one")
        to = tx.get("to")
        tx_type = _quantity_u64(tx, "type", required=False)
        if tx_type > 0xFF:
            raise MappingError(f"transaction type {tx_type} is not an EIP-2718 type byte")
        data = tx.get("input", tx.get("data", "0x"))
        return tx_pb2.TxEnvelope(
            chain_id=chain_id,
            hash=tx_hash,
            sender=hex_to_bytes(tx.get("from"), 20),  # type: ignore[arg-type]
            to=b"" if to is None else hex_to_bytes(to, 20),
            nonce=_quantity_u64(tx, "nonce"),
            value=_uint256(tx, "value"),
            gas_price=_optional_uint256(tx, "gasPrice"),
            max_fee_per_gas=_optional_uint256(tx, "maxFeePerGas"),
            max_priority_fee_per_gas=_optional_uint256(tx, "maxPriorityFeePerGas"),
            gas=_quantity_u64(tx, "gas"),
            tx_type=tx_type,
            input=hex_to_bytes(data) if data is not None else b"",
            source_id=source_id,
            first_seen_unix_ns=first_seen_unix_ns,
        )
    except HexError as exc:
        raise MappingError(str(exc)) from None
