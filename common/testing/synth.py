"""Deterministic synthetic pending transactions built from the real mainnet calls in ``common/testing/fixtures``.

Each envelope reuses a real call's sender, target, value, gas and calldata (so decoders see real swaps,
transfers and approvals) but gets a unique hash derived from (seed, index), a chain id from ``chain_ids`` and
deterministic fees and timestamps. The same (seed, index) always yields the same envelope.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

from common.hexutil import int_to_uint256
from common.pb.v1 import ingest_pb2, tx_pb2
from common.testing.fixtures import load_mainnet_calls

DEFAULT_CHAIN_IDS: tuple[int, ...] = (1, 137, 56)
BASE_TIME_NS = 1_700_000_000_000_000_000


@lru_cache(maxsize=1)
def _templates() -> tuple[tx_pb2.TxEnvelope, ...]:
    out = []
    for call in load_mainnet_calls():
        gas_price = call.effective_gas_price or 30_000_000_000
        out.append(tx_pb2.TxEnvelope(
            sender=bytes.fromhex(call.sender[2:]),
            to=bytes.fromhex(call.to[2:]) if call.to else b"",
            value=int_to_uint256(call.value),
            gas=call.gas,
            input=bytes.fromhex(call.input[2:]),
            max_fee_per_gas=int_to_uint256(gas_price),
            max_priority_fee_per_gas=int_to_uint256(max(gas_price // 20, 1)),
            tx_type=2,
        ))
    return tuple(out)


def synthetic_hash(seed: int, index: int) -> bytes:
    """The 32-byte hash of synthetic transaction ``index`` of ``seed`` (unique per (seed, index))."""
    return hashlib.blake2b(f"mempulse-synth:{seed}:{index}".encode(), digest_size=32).digest()


def iter_envelopes(count: int, seed: int = 0, chain_ids: Sequence[int] = DEFAULT_CHAIN_IDS,
                   start: int = 0, source_id: str = "synth") -> Iterator[tx_pb2.TxEnvelope]:
    """Yields envelopes ``start .. start+count-1`` of the synthetic stream ``seed``."""
    templates = _templates()
    rng = random.Random(seed * 1_000_003 + start)
    for index in range(start, start + count):
        env = tx_pb2.TxEnvelope()
        env.CopyFrom(templates[rng.randrange(len(templates))])
        env.chain_id = chain_ids[index % len(chain_ids)]
        env.hash = synthetic_hash(seed, index)
        env.nonce = index
        env.source_id = source_id
        env.first_seen_unix_ns = BASE_TIME_NS + index * 1000
        yield env


def synthetic_envelopes(count: int, seed: int = 0, chain_ids: Sequence[int] = DEFAULT_CHAIN_IDS,
                        start: int = 0, source_id: str = "synth") -> list[tx_pb2.TxEnvelope]:
    """``count`` deterministic envelopes (see :func:`iter_envelopes`)."""
    return list(iter_envelopes(count, seed, chain_ids, start, source_id))


def batches(envelopes: Sequence[tx_pb2.TxEnvelope], batch_size: int, session_id: str = "synth",
            first_batch_seq: int = 1) -> list[ingest_pb2.TxBatch]:
    """Splits envelopes into TxBatch messages with consecutive batch_seq numbers."""
    out = []
    for i in range(0, len(envelopes), batch_size):
        out.append(ingest_pb2.TxBatch(session_id=session_id, batch_seq=first_batch_seq + i // batch_size,
                                      envelopes=envelopes[i:i + batch_size]))
    return out


def typed_envelopes(count: int, seed: int = 0, chain_ids: Sequence[int] = DEFAULT_CHAIN_IDS,
                    source_id: str = "synth-typed") -> list[tx_pb2.TxEnvelope]:
    """``count`` deterministic envelopes of every EIP-2718 type (0-4 in turn) with a signature, an access list,
    blob hashes or an authorization list as the type has them, and raw_tx: their encoding
    (:func:`common.rawtx.encode_signed`), whose keccak256 is the hash, as for a real transaction (the signature
    is made up, so no sender would recover from it). Every tenth is as anvil reports an impersonated
    transaction: r = s = 0 and no raw_tx. Hashes never collide with :func:`synthetic_envelopes`."""
    from common.rawtx import encode_signed, keccak256  # the RLP encoder is needed only here

    rng = random.Random(seed * 7_919 + 17)
    out = []
    for index, env in enumerate(iter_envelopes(count, seed + 1_000_000, chain_ids, source_id=source_id)):
        tx_type = index % 5
        env.tx_type = tx_type
        if tx_type < 2:
            env.gas_price = env.max_fee_per_gas
            env.ClearField("max_fee_per_gas")
            env.ClearField("max_priority_fee_per_gas")
        if tx_type:
            env.y_parity = rng.randrange(2)
            env.v = int_to_uint256(env.y_parity)
            env.access_list.add(address=env.to or env.sender,
                                storage_keys=[rng.randbytes(32) for _ in range(rng.randrange(3))])
        else:
            env.v = int_to_uint256(env.chain_id * 2 + 35 + rng.randrange(2))
        if tx_type >= 3 and not env.to:
            env.to = env.sender  # blob and set-code transactions cannot create contracts
        if tx_type == 3:
            env.max_fee_per_blob_gas = int_to_uint256(rng.randrange(1, 10**10))
            env.blob_versioned_hashes.extend(b"\x01" + rng.randbytes(31) for _ in range(1 + rng.randrange(2)))
        elif tx_type == 4:
            env.authorization_list.add(chain_id=int_to_uint256(env.chain_id), address=rng.randbytes(20),
                                       nonce=rng.randrange(100), y_parity=rng.randrange(2),
                                       r=rng.randbytes(32).lstrip(b"\x00"), s=rng.randbytes(32).lstrip(b"\x00"))
        if index % 10 == 9:
            env.r = env.s = b""
            env.hash = hashlib.blake2b(b"impersonated" + env.hash, digest_size=32).digest()
        else:
            env.r = rng.randbytes(32).lstrip(b"\x00")
            env.s = rng.randbytes(32).lstrip(b"\x00")
            env.raw_tx = encode_signed(env)
            env.raw_tx_origin = tx_pb2.RAW_TX_ORIGIN_REENCODED
            env.hash = keccak256(env.raw_tx)
        out.append(env)
    return out


def rpc_object(env: tx_pb2.TxEnvelope) -> dict[str, Any]:
    """``env`` as a node's ``eth_getTransactionByHash`` object (what ingestd's mapper reads back into ``env``)."""
    def q(raw: bytes) -> str:
        return hex(int.from_bytes(raw, "big"))

    tx: dict[str, Any] = {
        "hash": "0x" + env.hash.hex(), "from": "0x" + env.sender.hex(), "to": "0x" + env.to.hex() if env.to else None,
        "nonce": hex(env.nonce), "gas": hex(env.gas), "value": q(env.value), "input": "0x" + env.input.hex(),
        "type": hex(env.tx_type), "v": q(env.v), "r": q(env.r), "s": q(env.s), "chainId": hex(env.chain_id),
    }
    for field, key in (("gas_price", "gasPrice"), ("max_fee_per_gas", "maxFeePerGas"),
                       ("max_priority_fee_per_gas", "maxPriorityFeePerGas"),
                       ("max_fee_per_blob_gas", "maxFeePerBlobGas")):
        if env.HasField(field):
            tx[key] = q(getattr(env, field))
    if env.tx_type:
        tx["yParity"] = hex(env.y_parity)
        tx["accessList"] = [{"address": "0x" + e.address.hex(), "storageKeys": ["0x" + k.hex() for k in e.storage_keys]}
                            for e in env.access_list]
    if env.tx_type == 3:
        tx["blobVersionedHashes"] = ["0x" + h.hex() for h in env.blob_versioned_hashes]
    if env.tx_type == 4:
        tx["authorizationList"] = [{"chainId": q(a.chain_id), "address": "0x" + a.address.hex(), "nonce": hex(a.nonce),
                                    "yParity": hex(a.y_parity), "r": q(a.r), "s": q(a.s)}
                                   for a in env.authorization_list]
    return tx
