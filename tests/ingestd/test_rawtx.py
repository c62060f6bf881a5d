"""The signed raw bytes of a transaction (common.rawtx) and the typed-transaction fields of the mapper.

Vectors: the EIP-155 specification's example (a legacy transaction, signed bytes given in the EIP), and
transactions of every type 0-4 captured from anvil 1.7 (tests/ingestd/data/anvil_txs.json: the node's
``eth_getTransactionByHash`` object and ``eth_getRawTransactionByHash`` bytes of transactions signed with its dev
keys, plus two sent from impersonated senders).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import rlp
from hypothesis import given
from hypothesis import strategies as st

from common.pb.v1 import tx_pb2
from common.rawtx import RawTxError, encode_signed, keccak256, node_raw, verified_raw
from common.testing.synth import rpc_object, typed_envelopes
from ingestd.mapping import MappingError, tx_to_envelope

ANVIL_TXS: list[dict[str, Any]] = orjson.loads((Path(__file__).parent / "data" / "anvil_txs.json").read_bytes())
SIGNED = [v for v in ANVIL_TXS if int(v["tx"]["r"], 16)]
IMPERSONATED = [v for v in ANVIL_TXS if not int(v["tx"]["r"], 16)]

#: EIP-155's example: nonce 9, gas price 20 gwei, gas 21000, to 0x3535..., 1 ether, no data, chain 1, v = 37.
EIP155_SIGNED = bytes.fromhex(
    "f86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a76400008025a028ef61340bd939bc"
    "2195fe537567866003e1a15d3c71ff63e1590620aa636276a067cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966"
    "a3b6d83")
EIP155_TX = {
    "type": "0x0", "nonce": "0x9", "gasPrice": hex(20 * 10**9), "gas": hex(21000),
    "to": "0x" + "35" * 20, "value": hex(10**18), "input": "0x", "v": "0x25",
    "r": "0x28ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276",
    "s": "0x67cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83",
    "from": "0x9d8a62f656a8d1615c1294fd71e9cfb3e4855a4f",
    "hash": "0x" + keccak256(EIP155_SIGNED).hex(),
}


def envelope(tx: dict[str, Any], chain_id: int = 31337) -> tx_pb2.TxEnvelope:
    return tx_to_envelope(tx, chain_id, "s", 1, expected_hash=bytes.fromhex(tx["hash"][2:]))


def test_eip155_vector_reencodes_to_the_published_signed_bytes() -> None:
    env = envelope(EIP155_TX, chain_id=1)
    assert encode_signed(env) == EIP155_SIGNED
    assert verified_raw(env) == EIP155_SIGNED


def test_anvil_vectors_of_every_type_reencode_to_the_nodes_bytes() -> None:
    assert sorted(int(v["tx"]["type"], 16) for v in SIGNED) == [0, 1, 2, 3, 4]
    for v in SIGNED:
        env = envelope(v["tx"])
        node = bytes.fromhex(v["raw"][2:])
        assert keccak256(node) == env.hash
        assert verified_raw(env) == node, v["tx"]["type"]
        assert node_raw(v["raw"], env.hash, env.tx_type) == node


def test_mapper_keeps_every_typed_field() -> None:
    by_type = {int(v["tx"]["type"], 16): envelope(v["tx"]) for v in SIGNED}
    assert not by_type[0].HasField("y_parity") and int.from_bytes(by_type[0].v, "big") in (62709, 62710)
    assert all(by_type[t].HasField("y_parity") for t in (1, 2, 3, 4))
    assert [len(by_type[t].access_list) for t in range(5)] == [0, 1, 1, 1, 1]
    assert by_type[1].access_list[0].storage_keys == [b"\x00" * 31 + b"\x01"]
    blob = by_type[3]
    assert blob.HasField("max_fee_per_blob_gas") and [h[:1] for h in blob.blob_versioned_hashes] == [b"\x01"]
    auth = by_type[4].authorization_list
    assert len(auth) == 1 and auth[0].y_parity == 1 and int.from_bytes(auth[0].chain_id, "big") == 31337
    assert not by_type[2].HasField("max_fee_per_blob_gas") and not by_type[2].authorization_list


def test_impersonated_transactions_have_no_signed_bytes() -> None:
    """anvil --auto-impersonate: r = s = 0, the node's raw bytes are the encoding with that zero signature, and
    the hash is keccak256(network encoding || sender) (so no bytes hash to it): found on anvil 1.7."""
    assert sorted(int(v["tx"]["type"], 16) for v in IMPERSONATED) == [0, 2]
    for v in IMPERSONATED:
        env = envelope(v["tx"])
        with pytest.raises(RawTxError) as info:
            verified_raw(env)
        assert info.value.reason == "unsigned"
        node = bytes.fromhex(v["raw"][2:])
        assert node_raw(v["raw"], env.hash, env.tx_type) is None  # never kept: it does not hash to the hash
        network = node if env.tx_type == 0 else rlp.encode(node)  # a typed one is wrapped as an RLP string
        assert keccak256(network + env.sender) == env.hash


def test_a_field_reported_differently_from_what_was_signed_is_a_hash_mismatch() -> None:
    tx = dict(SIGNED[2]["tx"])
    tx["gas"] = hex(int(tx["gas"], 16) + 1)
    with pytest.raises(RawTxError) as info:
        verified_raw(envelope(tx))
    assert info.value.reason == "hash_mismatch"
    with pytest.raises(RawTxError) as info:
        verified_raw(envelope(SIGNED[2]["tx"], chain_id=1))  # a chain id other than the one signed
    assert info.value.reason == "hash_mismatch"


@pytest.mark.parametrize("drop,reason", [
    (("r",), "missing_signature"), (("s",), "missing_signature"), (("yParity", "v"), "missing_signature"),
    (("maxFeePerGas",), "missing_fields"), (("maxPriorityFeePerGas",), "missing_fields"),
])
def test_missing_fields_cannot_be_encoded(drop: tuple[str, ...], reason: str) -> None:
    tx = {k: v for k, v in SIGNED[2]["tx"].items() if k not in drop}
    with pytest.raises(RawTxError) as info:
        encode_signed(envelope(tx))
    assert info.value.reason == reason


def test_typed_parity_falls_back_to_v_and_unknown_types_are_refused() -> None:
    tx = {k: v for k, v in SIGNED[2]["tx"].items() if k != "yParity"}
    assert verified_raw(envelope(tx)) == bytes.fromhex(SIGNED[2]["raw"][2:])
    for missing in (("gasPrice",), ("gasPrice", "v")):
        legacy = {k: v for k, v in SIGNED[0]["tx"].items() if k not in missing}
        with pytest.raises(RawTxError, match="missing_fields"):
            encode_signed(envelope(legacy))
    with pytest.raises(RawTxError) as info:
        encode_signed(envelope({**SIGNED[2]["tx"], "type": "0x7e"}))  # an OP-stack deposit, say
    assert info.value.reason == "unsupported_type"


def test_node_bytes_of_a_blob_transaction_with_its_sidecar_are_reduced_to_the_canonical_bytes() -> None:
    v = next(v for v in SIGNED if v["tx"]["type"] == "0x3")
    canonical = bytes.fromhex(v["raw"][2:])
    body = rlp.decode(canonical[1:])
    network = b"\x03" + rlp.encode([body, [b"\x00" * 64], [b"\x01" * 48], [b"\x02" * 48]])  # blobs, commitments, proofs
    tx_hash = keccak256(canonical)
    assert node_raw("0x" + network.hex(), tx_hash, 3) == canonical
    assert node_raw("0x" + network.hex(), tx_hash, 2) is None
    deep = b"\x03" + b"\xc1" * 5000 + b"\xc0"  # lists nested past the recursion limit
    for junk in (None, 5, "", "0x", "0xzz", "deadbeef", "0x03", "0x03c0", "0x" + canonical[:-1].hex(),
                 "0x" + deep.hex()):
        assert node_raw(junk, tx_hash, 3) is None


@pytest.mark.parametrize("patch", [
    {"accessList": {}}, {"accessList": [5]}, {"accessList": [{"address": "0x12", "storageKeys": []}]},
    {"accessList": [{"address": "0x" + "11" * 20, "storageKeys": ["0x01"]}]},
    {"accessList": [{"address": "0x" + "11" * 20, "storageKeys": "0x01"}]},
    {"blobVersionedHashes": "0x01"}, {"blobVersionedHashes": ["0x" + "01" * 31]},
    {"authorizationList": [{"chainId": "0x1", "address": "0x" + "11" * 20, "nonce": "0x1", "yParity": "0x2",
                            "r": "0x1", "s": "0x1"}]},
    {"authorizationList": [{"chainId": "0x1", "address": "0x" + "11" * 20, "nonce": "0x1", "yParity": "0x1",
                            "r": "0x1"}]},
    {"authorizationList": ["x"]}, {"yParity": "0x2"}, {"yParity": "1"}, {"r": hex(2**256)}, {"s": "zz"},
    {"v": 27}, {"maxFeePerBlobGas": "0x"},
])
def test_mapper_rejects_malformed_typed_fields(patch: dict[str, Any]) -> None:
    with pytest.raises(MappingError) as info:
        tx_to_envelope({**SIGNED[4]["tx"], **patch}, 31337, "s", 1)
    field = next(iter(patch))
    assert str(info.value).startswith(field) or field in str(info.value), info.value  # names the field


@given(st.integers(0, 10_000))
def test_every_generated_typed_envelope_reencodes_to_bytes_hashing_to_its_hash(seed: int) -> None:
    """common.testing.synth.typed_envelopes (the gatewayd and processd tests' typed data) through the mapper's inverse:
    rendered back to a JSON-RPC object, mapped again, re-encoded: the same bytes, hashing to the hash."""
    for env in typed_envelopes(5, seed=seed):
        again = envelope(rpc_object(env), chain_id=env.chain_id)
        if env.raw_tx:
            assert verified_raw(again) == env.raw_tx
        else:
            with pytest.raises(RawTxError, match="unsigned"):
                verified_raw(again)


def test_every_raised_reason_is_exported_at_zero() -> None:
    """ingestd exports mempulse_ingestd_raw_tx_reencode_failures_total at zero for rawtx.FAILURE_REASONS: every
    reason the module raises is in it (``unsigned`` is counted as a raw_tx outcome instead)."""
    import ast

    import common.rawtx as rawtx

    raised = {node.args[0].value for node in ast.walk(ast.parse(Path(rawtx.__file__).read_text()))
              if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "RawTxError"
              and node.args and isinstance(node.args[0], ast.Constant)}
    assert raised == {*rawtx.FAILURE_REASONS, "unsigned"}
