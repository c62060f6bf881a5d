"""The pure block mappers: a block object with full transactions and receipts to a BlockEnvelope; bad input is a
MappingError (the block is a counted drop) or a transaction without a receipt (counted), never a crash."""

from __future__ import annotations

from typing import Any

import pytest

from common.pb.v1 import block_pb2
from ingestd.blockmapping import apply_receipts, block_to_envelope, head_number
from ingestd.mapping import MappingError

H = "0x" + "ab" * 32


def _tx(i: int, chain: str | None = "0x89") -> dict[str, Any]:
    tx = {"hash": "0x" + f"{i:02x}" * 32, "from": "0x" + "11" * 20, "nonce": hex(7 + i), "transactionIndex": hex(i)}
    if chain is not None:
        tx["chainId"] = chain
    return tx


def _block(txs: list[Any]) -> dict[str, Any]:
    return {"number": "0x10", "hash": H, "parentHash": "0x" + "cd" * 32, "timestamp": "0x65", "baseFeePerGas": "0x7",
            "transactions": txs}


def test_a_block_maps_with_its_transactions_bounded() -> None:
    env = block_to_envelope(_block([_tx(1), _tx(2, None), _tx(3)]), 137, "src", 5, max_txs=2)
    assert (env.number, env.hash.hex(), env.timestamp, env.base_fee, env.seen_unix_ns) == (16, "ab" * 32, 101,
                                                                                           b"\x07", 5)
    assert [(t.index, t.nonce, t.sender) for t in env.txs] == [(1, 8, b"\x11" * 20), (2, 9, b"\x11" * 20)]
    assert env.truncated and env.tx_count == 3
    assert not block_to_envelope(_block([]), 137, "src", 5, max_txs=2).truncated
    assert head_number({"number": "0x10", "hash": H}) == (16, bytes.fromhex("ab" * 32))


@pytest.mark.parametrize("block", [None, [], _block(["0x" + "01" * 32]), _block([_tx(1, "0x1")]),
                                   {**_block([]), "hash": "0x12"}, {**_block([]), "transactions": None},
                                   {**_block([]), "baseFeePerGas": "nope"}, {**_block([]), "number": None}])
def test_bad_blocks_are_mapping_errors(block: Any) -> None:
    with pytest.raises(MappingError):
        block_to_envelope(block, 137, "src", 5, max_txs=10)


def test_another_chains_transactions_say_wrong_chain() -> None:
    with pytest.raises(MappingError, match=r"^wrong_chain"):
        block_to_envelope(_block([_tx(1, "0x1")]), 137, "src", 5, max_txs=10)


def test_receipts_apply_by_hash_and_bad_ones_are_left_out() -> None:
    env = block_to_envelope(_block([_tx(1), _tx(2), _tx(3), _tx(4)]), 137, "src", 5, max_txs=10)
    receipts = [
        {"transactionHash": "0x" + env.txs[1].hash.hex(), "status": "0x0",
         "gasUsed": "0x5208", "effectiveGasPrice": "0x3b9aca00"},
        {"transactionHash": "0x" + env.txs[0].hash.hex(), "status": "0x1", "gasUsed": "0x10"},
        {"transactionHash": "0x" + env.txs[2].hash.hex(), "status": "0x2", "gasUsed": "0x10"},  # not a status
        "garbage", None,
    ]
    assert apply_receipts(env, receipts) == 2  # txs[2] (malformed receipt) and txs[3] (none)
    assert [t.status for t in env.txs] == [block_pb2.TX_STATUS_OK, block_pb2.TX_STATUS_REVERTED,
                                           block_pb2.TX_STATUS_UNSPECIFIED, block_pb2.TX_STATUS_UNSPECIFIED]
    assert (env.txs[1].gas_used, int.from_bytes(env.txs[1].effective_gas_price, "big")) == (21000, 10**9)
    assert apply_receipts(env, {"not": "a list"}) == 4
