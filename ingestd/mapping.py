"""Pure mapper from a JSON-RPC transaction object (a dict from orjson) to a protobuf ``TxEnvelope``.

Every EIP-2718 type the node returns (0 legacy, 1 access list, 2 dynamic fee, 3 blob, 4 set-code) maps with
its signature and typed fields. A field the node did not report stays unset (the raw bytes then cannot be
re-encoded: :mod:`common.rawtx`); a field it reported malformed is a :class:`MappingError` (``malformed``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from common.hexutil import HexError, hex_to_bytes, quantity_to_int, quantity_to_uint256
from common.pb.v1 import tx_pb2
from ingestd.errors import IngestdError

MAX_UINT64 = 2**64 - 1
T = TypeVar("T")


class MappingError(IngestdError, ValueError):
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


def _named(key: str, parse: Callable[..., T], *args: Any) -> T:
    """``parse(*args)`` with a malformed value reported under its field name (the ``malformed`` drop detail)."""
    try:
        return parse(*args)
    except (HexError, MappingError) as exc:
        raise MappingError(f"{key}: {exc}") from None


def _list(tx: dict[str, Any], key: str) -> list[Any]:
    value = tx.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise MappingError(f"{key} is a {type(value).__name__}, not a list")
    return value


def _access_list(tx: dict[str, Any]) -> list[tx_pb2.AccessListEntry]:
    out = []
    for entry in _list(tx, "accessList"):
        if not isinstance(entry, dict):
            raise MappingError("accessList entry is not an object")
        keys = entry.get("storageKeys")
        if keys is None:
            keys = []
        elif not isinstance(keys, list):
            raise MappingError("accessList storageKeys is not a list")
        out.append(tx_pb2.AccessListEntry(address=hex_to_bytes(entry.get("address"), 20),  # type: ignore[arg-type]
                                          storage_keys=[hex_to_bytes(k, 32) for k in keys]))
    return out


def _authorization_list(tx: dict[str, Any]) -> list[tx_pb2.Authorization]:
    out = []
    for auth in _list(tx, "authorizationList"):
        if not isinstance(auth, dict):
            raise MappingError("authorizationList entry is not an object")
        parity = _quantity_u64(auth, "yParity")
        if parity > 1:
            raise MappingError(f"authorization yParity {parity} is not 0 or 1")
        out.append(tx_pb2.Authorization(
            chain_id=quantity_to_uint256(auth.get("chainId")),  # type: ignore[arg-type]
            address=hex_to_bytes(auth.get("address"), 20),  # type: ignore[arg-type]
            nonce=_quantity_u64(auth, "nonce"), y_parity=parity,
            r=quantity_to_uint256(auth.get("r")), s=quantity_to_uint256(auth.get("s"))))  # type: ignore[arg-type]
    return out


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
        y_parity = tx.get("yParity")
        if y_parity is not None:
            y_parity = _named("yParity", quantity_to_int, y_parity)
            if y_parity > 1:
                raise MappingError(f"yParity {y_parity} is not 0 or 1")
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
            v=_named("v", _optional_uint256, tx, "v"),
            y_parity=y_parity,
            r=_named("r", _optional_uint256, tx, "r"),
            s=_named("s", _optional_uint256, tx, "s"),
            access_list=_named("accessList", _access_list, tx),
            max_fee_per_blob_gas=_named("maxFeePerBlobGas", _optional_uint256, tx, "maxFeePerBlobGas"),
            blob_versioned_hashes=_named("blobVersionedHashes", lambda: [
                hex_to_bytes(h, 32) for h in _list(tx, "blobVersionedHashes")]),
            authorization_list=_named("authorizationList", _authorization_list, tx),
        )
    except HexError as exc:
        raise MappingError(str(exc)) from None
