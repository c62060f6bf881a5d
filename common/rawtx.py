"""The signed EIP-2718 bytes of a transaction, re-encoded from a ``TxEnvelope``'s fields and signature.

A searcher building a bundle needs the victim's signed raw transaction. Nodes report the fields and the
signature (``eth_getTransactionByHash``); encoding them back (RLP, the type byte in front for typed
transactions) gives the exact bytes the sender signed and broadcast, and keccak256 of them is the transaction
hash. ingestd keeps raw bytes only when that check passes, so a set ``raw_tx`` always hashes to ``hash``.

Payloads (EIP-155, EIP-2930, EIP-1559, EIP-4844 without the network sidecar, EIP-7702):

- 0: ``rlp([nonce, gasPrice, gas, to, value, data, v, r, s])``
- 1: ``0x01 || rlp([chainId, nonce, gasPrice, gas, to, value, data, accessList, yParity, r, s])``
- 2: ``0x02 || rlp([chainId, nonce, maxPriorityFeePerGas, maxFeePerGas, gas, to, value, data, accessList,
  yParity, r, s])``
- 3: as 2 with ``maxFeePerBlobGas, blobVersionedHashes`` after the access list
- 4: as 2 with ``authorizationList`` (``[chainId, address, nonce, yParity, r, s]`` each) after the access list

RLP is pyrlp's (``rlp.encode`` with serializer inference off: every item is already bytes, and inference
costs three times the encoding itself); keccak256 is pycryptodome's.
"""

from __future__ import annotations

from collections.abc import Sequence

import rlp
from Crypto.Hash import keccak

from common.errors import MempulseError
from common.pb.v1 import tx_pb2

#: Transaction types this module encodes.
SUPPORTED_TYPES = frozenset({0, 1, 2, 3, 4})
#: Every :class:`RawTxError` reason but ``unsigned`` (no signature to re-encode: an outcome, not a failure).
FAILURE_REASONS = ("hash_mismatch", "missing_fields", "missing_signature", "unsupported_type")


class RawTxError(MempulseError, ValueError):
    """The envelope cannot be re-encoded; ``reason`` is a stable label (a metric label value)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def keccak256(data: bytes) -> bytes:
    """keccak256 digest of ``data`` (Ethereum's hash: the pre-standard Keccak, not SHA3-256)."""
    return keccak.new(data=data, digest_bits=256).digest()


def _int(n: int) -> bytes:
    """Minimal big-endian bytes of a non-negative int (RLP's integer form; 0 is empty)."""
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def _access_list(entries: Sequence[tx_pb2.AccessListEntry]) -> list[list[bytes | list[bytes]]]:
    return [[e.address, list(e.storage_keys)] for e in entries]


def _signature(env: tx_pb2.TxEnvelope) -> list[bytes]:
    """``[yParity, r, s]`` of a typed transaction (y parity from ``v`` when the node reported only that)."""
    if env.HasField("y_parity"):
        parity = env.y_parity
    elif env.HasField("v") and len(env.v) <= 1 and int.from_bytes(env.v, "big") <= 1:
        parity = int.from_bytes(env.v, "big")
    else:
        raise RawTxError("missing_signature", "no yParity")
    return [_int(parity), env.r, env.s]


def _require(env: tx_pb2.TxEnvelope, *fields: str) -> None:
    for name in fields:
        if not env.HasField(name):
            raise RawTxError("missing_fields", name)


def encode_signed(env: tx_pb2.TxEnvelope) -> bytes:
    """The signed EIP-2718 encoding of ``env`` (module doc). Raises :class:`RawTxError` when it cannot be built:
    ``unsupported_type``, ``missing_signature`` (no r/s reported), ``unsigned`` (r = s = 0: anvil's impersonated
    senders; no bytes with such a signature hash to the transaction hash, whoever encodes them),
    ``missing_fields`` (a fee field or the like the type needs was not reported)."""
    tx_type = env.tx_type
    if tx_type not in SUPPORTED_TYPES:
        raise RawTxError("unsupported_type", str(tx_type))
    if not (env.HasField("r") and env.HasField("s")):
        raise RawTxError("missing_signature", "no r/s")
    if not env.r and not env.s:
        raise RawTxError("unsigned", "r = s = 0")
    nonce, gas = _int(env.nonce), _int(env.gas)
    if tx_type == 0:
        _require(env, "gas_price", "v")
        return rlp.encode([nonce, env.gas_price, gas, env.to, env.value, env.input, env.v, env.r, env.s],
                          infer_serializer=False)
    chain_id = _int(env.chain_id)
    access_list = _access_list(env.access_list)
    if tx_type == 1:
        _require(env, "gas_price")
        body: list = [chain_id, nonce, env.gas_price, gas, env.to, env.value, env.input, access_list]
    else:
        _require(env, "max_priority_fee_per_gas", "max_fee_per_gas")
        body = [chain_id, nonce, env.max_priority_fee_per_gas, env.max_fee_per_gas, gas, env.to, env.value,
                env.input, access_list]
        if tx_type == 3:
            _require(env, "max_fee_per_blob_gas")
            body += [env.max_fee_per_blob_gas, list(env.blob_versioned_hashes)]
        elif tx_type == 4:
            body.append([[a.chain_id, a.address, _int(a.nonce), _int(a.y_parity), a.r, a.s]
                         for a in env.authorization_list])
    return bytes((tx_type,)) + rlp.encode(body + _signature(env), infer_serializer=False)


def verified_raw(env: tx_pb2.TxEnvelope) -> bytes:
    """:func:`encode_signed`, checked: the bytes hash to ``env.hash``, else ``RawTxError("hash_mismatch")`` (a
    field the node reported differently from what was signed, a chain id that is not the chain's, ...)."""
    raw = encode_signed(env)
    if keccak256(raw) != env.hash:
        raise RawTxError("hash_mismatch")
    return raw


def _without_sidecar(raw: bytes) -> bytes | None:
    """The canonical bytes of a blob transaction in its network form (``0x03 || rlp([tx_payload_body, ...
    blobs, commitments, proofs])``, which a node may answer for a pooled blob transaction), else None."""
    try:
        items = rlp.decode(raw[1:], strict=False)
    except (rlp.DecodingError, RecursionError):  # a node's bytes: deeply nested lists exhaust pyrlp's recursion
        return None
    if isinstance(items, list) and items and isinstance(items[0], list):
        return raw[:1] + rlp.encode(items[0], infer_serializer=False)
    return None


def node_raw(text: object, tx_hash: bytes, tx_type: int) -> bytes | None:
    """The node's ``eth_getRawTransactionByHash`` answer as bytes when they hash to ``tx_hash`` (for a blob
    transaction answered with its sidecar: the canonical bytes without it), else None."""
    if not isinstance(text, str) or not text.startswith("0x"):
        return None
    try:
        raw = bytes.fromhex(text[2:])
    except ValueError:
        return None
    if keccak256(raw) == tx_hash:
        return raw
    if tx_type == 3 and raw[:1] == b"\x03":
        canonical = _without_sidecar(raw)
        if canonical is not None and keccak256(canonical) == tx_hash:
            return canonical
    return None
