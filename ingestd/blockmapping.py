"""Pure mappers of blocks: a JSON-RPC block object (``eth_getBlockByNumber`` with full transactions) to a
protobuf ``BlockEnvelope``, and receipts (``eth_getBlockReceipts`` / ``eth_getTransactionReceipt``) onto it.

Like :mod:`ingestd.mapping`, a malformed object or field is a :class:`~ingestd.mapping.MappingError` naming the
field (the block is dropped as ``malformed`` and counted); a receipt that does not fit is only left out (its
transaction keeps ``TX_STATUS_UNSPECIFIED``) and counted by the caller, so one bad receipt never costs a block.
"""

from __future__ import annotations

from typing import Any

from common.hexutil import HexError, hex_to_bytes, quantity_to_int, quantity_to_uint256
from common.pb.v1 import block_pb2
from ingestd.mapping import MAX_UINT64, MappingError

_OK = block_pb2.TX_STATUS_OK
_REVERTED = block_pb2.TX_STATUS_REVERTED


def _u64(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    if value is None:
        raise MappingError(f"missing {key}")
    try:
        n = quantity_to_int(value)
    except HexError as exc:
        raise MappingError(f"{key}: {exc}") from None
    if n > MAX_UINT64:
        raise MappingError(f"{key} does not fit in uint64")
    return n


def _fixed(obj: dict[str, Any], key: str, size: int) -> bytes:
    try:
        return hex_to_bytes(obj.get(key), size)  # type: ignore[arg-type]
    except HexError as exc:
        raise MappingError(f"{key}: {exc}") from None


def head_number(header: object) -> tuple[int, bytes]:
    """(number, hash) of a ``newHeads`` header or a block object; MappingError when either is malformed."""
    if not isinstance(header, dict):
        raise MappingError(f"header is a {type(header).__name__}, not an object")
    return _u64(header, "number"), _fixed(header, "hash", 32)


def _included(tx: object, chain_id: int, position: int) -> block_pb2.IncludedTx:
    if not isinstance(tx, dict):
        # eth_getBlockByNumber(..., false) gives hashes only: without sender and nonce a block is of no use to
        # replacement detection, so this is malformed, not a partial block.
        raise MappingError(f"transactions[{position}] is not an object")
    tx_chain = tx.get("chainId")
    if tx_chain is not None:
        try:
            if quantity_to_int(tx_chain) != chain_id:
                raise MappingError(f"wrong_chain: transactions[{position}].chainId {tx_chain} is not {chain_id}")
        except HexError as exc:
            raise MappingError(f"transactions[{position}].chainId: {exc}") from None
    index = _u64(tx, "transactionIndex") if tx.get("transactionIndex") is not None else position
    return block_pb2.IncludedTx(hash=_fixed(tx, "hash", 32), index=min(index, 2**32 - 1),
                                sender=_fixed(tx, "from", 20), nonce=_u64(tx, "nonce"))


def block_to_envelope(block: object, chain_id: int, source_id: str, seen_unix_ns: int,
                      max_txs: int) -> block_pb2.BlockEnvelope:
    """The ``BlockEnvelope`` of a full block object (at most ``max_txs`` transactions: ``truncated`` says when it
    had more; ``tx_count`` is the full count). A transaction whose ``chainId`` is not ``chain_id`` is a
    MappingError starting with ``wrong_chain`` (the node serves another chain)."""
    if not isinstance(block, dict):
        raise MappingError(f"block is a {type(block).__name__}, not an object")
    txs = block.get("transactions")
    if not isinstance(txs, list):
        raise MappingError("transactions is not a list")
    base_fee = block.get("baseFeePerGas")
    try:
        base = b"" if base_fee is None else quantity_to_uint256(base_fee)
    except HexError as exc:
        raise MappingError(f"baseFeePerGas: {exc}") from None
    number, block_hash = head_number(block)
    return block_pb2.BlockEnvelope(
        chain_id=chain_id, number=number, hash=block_hash, parent_hash=_fixed(block, "parentHash", 32),
        timestamp=_u64(block, "timestamp"), base_fee=base, source_id=source_id, seen_unix_ns=seen_unix_ns,
        txs=[_included(tx, chain_id, i) for i, tx in enumerate(txs[:max_txs])], truncated=len(txs) > max_txs,
        tx_count=min(len(txs), 2**32 - 1))


def _receipt_fields(receipt: dict[str, Any]) -> tuple[bytes, int, int, bytes]:
    """(hash, status, gas used, effective gas price) of one receipt; MappingError when malformed."""
    status = _u64(receipt, "status")
    if status not in (0, 1):
        raise MappingError(f"status {status} is neither 0 nor 1")
    price = receipt.get("effectiveGasPrice")
    try:
        effective = b"" if price is None else quantity_to_uint256(price)
    except HexError as exc:
        raise MappingError(f"effectiveGasPrice: {exc}") from None
    return _fixed(receipt, "transactionHash", 32), _OK if status else _REVERTED, _u64(receipt, "gasUsed"), effective


def apply_receipts(envelope: block_pb2.BlockEnvelope, receipts: object) -> int:
    """Sets status, gas used and effective gas price of each transaction of ``envelope`` from ``receipts`` (a list
    of receipt objects, any order); returns how many of its transactions got none (no receipt, or a malformed
    one: those keep ``TX_STATUS_UNSPECIFIED``)."""
    by_hash: dict[bytes, tuple[int, int, bytes]] = {}
    if isinstance(receipts, list):
        for receipt in receipts:
            if not isinstance(receipt, dict):
                continue
            try:
                tx_hash, status, gas_used, price = _receipt_fields(receipt)
            except MappingError:
                continue
            by_hash[tx_hash] = (status, gas_used, price)
    missing = 0
    for tx in envelope.txs:
        got = by_hash.get(tx.hash)
        if got is None:
            missing += 1
            continue
        tx.status, tx.gas_used, tx.effective_gas_price = got  # type: ignore[assignment]
    return missing
