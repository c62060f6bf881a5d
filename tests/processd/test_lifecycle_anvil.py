"""The transaction lifecycle against a real anvil (``--no-mining``; mined with ``evm_mine``), real ingestd and real
processd (issue 16): pending transactions are included (ok and reverted) when the block is mined, a speed-up of the
same sender and nonce replaces the original (the speed-up stays pending: anvil does not mine it), and
GetTransaction says so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from common.pb.v1 import events_pb2, query_pb2, query_pb2_grpc
from common.testing.anvil import AnvilNode
from tests.ingestd.conftest import Daemon, Processd, daemons, processd  # noqa: F401  (fixtures)
from tests.ingestd.test_blocks import (
    CHAIN,
    DEV,
    REVERTING_INIT,
    block_events,
    numbers,
    rpc,
    start_ingestd,
    wait_until,
)

pytestmark = pytest.mark.integration
OTHER = "0x70997970c51812dc3a010c7d01b50b0d17dc79c8"  # anvil's second dev account
GWEI = 10**9


@pytest.fixture
def anvil() -> Iterator[AnvilNode]:
    with AnvilNode(chain_id=CHAIN) as node:
        yield node


def _life(p: Processd) -> list[events_pb2.Event]:
    kinds = [events_pb2.EVENT_KIND_TX_INCLUDED, events_pb2.EVENT_KIND_TX_REPLACED, events_pb2.EVENT_KIND_TX_DROPPED]
    with grpc.insecure_channel(p.addr) as channel:
        return list(query_pb2_grpc.QueryStub(channel).ScanEvents(query_pb2.ScanEventsRequest(
            chain_id=CHAIN, kinds=kinds, limit=1000), timeout=10).events)


def _status(p: Processd, tx_hash: str) -> int:
    with grpc.insecure_channel(p.addr) as channel:
        return query_pb2_grpc.QueryStub(channel).GetTransaction(query_pb2.GetTransactionRequest(
            chain_id=CHAIN, hash=bytes.fromhex(tx_hash[2:])), timeout=10).status


def test_mined_block_includes_and_a_speed_up_replaces(anvil: AnvilNode, processd: Processd,  # noqa: F811
                                                     daemons: list[Daemon], tmp_path: Path) -> None:  # noqa: F811
    start_ingestd(anvil, processd, tmp_path / "ingestd.log", daemons)
    wait_until(lambda: numbers(processd) == [0], "the head at start (block 0): lifecycle tracking begins")
    transfer = {"from": DEV, "to": OTHER, "value": hex(1), "gas": hex(21000)}
    ok = rpc(anvil.http_url, "eth_sendTransaction", [{**transfer, "nonce": "0x0", "gasPrice": hex(2 * GWEI)}])
    reverting = rpc(anvil.http_url, "eth_sendTransaction", [{"from": DEV, "gas": hex(200_000), "nonce": "0x1",
                                                             "gasPrice": hex(2 * GWEI), "data": REVERTING_INIT}])
    slow = rpc(anvil.http_url, "eth_sendTransaction", [{**transfer, "nonce": "0x2", "gasPrice": hex(2 * GWEI)}])
    wait_until(lambda: {ok, reverting, slow} <= {"0x" + t.tx.hash.hex() for t in processd.stored(CHAIN)},
               "stored as pending")
    fast = rpc(anvil.http_url, "eth_sendTransaction", [{**transfer, "nonce": "0x2", "gasPrice": hex(4 * GWEI)}])
    assert fast != slow
    wait_until(lambda: fast in {"0x" + t.tx.hash.hex() for t in processd.stored(CHAIN)}, "the speed-up stored")
    assert _status(processd, ok) == query_pb2.TX_LIFECYCLE_STATUS_PENDING
    rpc(anvil.http_url, "evm_mine", [])
    wait_until(lambda: len(_life(processd)) >= 3, "lifecycle events of block 1")

    events = {("0x" + e.tx_hash.hex(), e.WhichOneof("body")): e for e in _life(processd)}
    # (anvil leaves a speed-up of a nonce out of the block it mines: it stays pending here too)
    assert set(events) == {(ok, "tx_included"), (reverting, "tx_included"), (slow, "tx_replaced")}
    node_block = rpc(anvil.http_url, "eth_getBlockByNumber", ["0x1", False])
    assert isinstance(node_block, dict)
    included = events[(reverting, "tx_included")].tx_included
    assert included.block_number == 1 and "0x" + included.block_hash.hex() == node_block["hash"]
    assert included.status == 2 and events[(ok, "tx_included")].tx_included.status == 1
    replaced = events[(slow, "tx_replaced")].tx_replaced
    assert "0x" + replaced.by_hash.hex() == fast and replaced.fee_bump_bps == 10_000 and not replaced.by_block
    assert {h: _status(processd, h) for h in (ok, slow, fast)} == {
        ok: query_pb2.TX_LIFECYCLE_STATUS_INCLUDED, slow: query_pb2.TX_LIFECYCLE_STATUS_REPLACED,
        fast: query_pb2.TX_LIFECYCLE_STATUS_PENDING}


def test_a_node_that_goes_back_to_a_block_it_left_is_followed(anvil: AnvilNode, processd: Processd,  # noqa: F811
                                                              daemons: list[Daemon], tmp_path: Path) -> None:  # noqa: F811
    """A, then B at A's height, then A again and its child, on a real anvil (snapshots reverted; a fixed timestamp
    and base fee make the second A the same block, same hash): the lifecycle ends as the node says, X included in
    A, Y (mined only in B) pending (``processd.storage.blockbranch``)."""
    start_ingestd(anvil, processd, tmp_path / "ingestd.log", daemons)
    wait_until(lambda: numbers(processd) == [0], "the head at start (block 0): lifecycle tracking begins")
    url = anvil.http_url
    rpc(url, "anvil_setBalance", [OTHER, hex(10**20)])
    head = rpc(url, "eth_getBlockByNumber", ["latest", False])
    assert isinstance(head, dict)
    at = int(head["timestamp"], 16) + 12
    fees = {"gas": hex(21000), "maxFeePerGas": hex(10 * GWEI), "maxPriorityFeePerGas": hex(GWEI), "nonce": "0x0"}
    x_tx, y_tx = {**fees, "from": DEV, "to": OTHER, "value": "0x1"}, {**fees, "from": OTHER, "to": DEV, "value": "0x2"}

    def mine_at_height_one(tx: dict[str, str]) -> tuple[str, str]:
        sent = rpc(url, "eth_sendTransaction", [tx])
        assert isinstance(sent, str)
        wait_until(lambda: sent in {"0x" + t.tx.hash.hex() for t in processd.stored(CHAIN)}, "stored as pending")
        rpc(url, "anvil_setNextBlockBaseFeePerGas", [hex(GWEI)])
        rpc(url, "evm_mine", [at])
        block = rpc(url, "eth_getBlockByNumber", ["0x1", False])
        assert isinstance(block, dict)
        return sent, block["hash"]

    before_a = rpc(url, "evm_snapshot", [])
    x, block_a = mine_at_height_one(x_tx)
    wait_until(lambda: _status(processd, x) == query_pb2.TX_LIFECYCLE_STATUS_INCLUDED, "X included in A")
    rpc(url, "evm_revert", [before_a])
    before_b = rpc(url, "evm_snapshot", [])
    y, block_b = mine_at_height_one(y_tx)
    assert block_b != block_a
    wait_until(lambda: _status(processd, y) == query_pb2.TX_LIFECYCLE_STATUS_INCLUDED, "Y included in B")
    assert _status(processd, x) == query_pb2.TX_LIFECYCLE_STATUS_PENDING  # A orphaned
    rpc(url, "evm_revert", [before_b])
    x_again, block_a_again = mine_at_height_one(x_tx)
    assert (x_again, block_a_again) == (x, block_a)  # the node is back on A
    rpc(url, "evm_mine", [])  # A's child
    wait_until(lambda: 2 in numbers(processd), "A's child stored")
    wait_until(lambda: _status(processd, x) == query_pb2.TX_LIFECYCLE_STATUS_INCLUDED, "X included in A again")
    # the node's truth: X mined in A, Y in no block
    receipt = rpc(url, "eth_getTransactionReceipt", [x])
    assert isinstance(receipt, dict) and receipt["blockHash"] == block_a
    assert rpc(url, "eth_getTransactionReceipt", [y]) is None
    assert _status(processd, y) == query_pb2.TX_LIFECYCLE_STATUS_PENDING
    included = [e.tx_included for e in _life(processd) if e.WhichOneof("body") == "tx_included"
                and "0x" + e.tx_hash.hex() == x]
    assert ["0x" + i.block_hash.hex() for i in included] == [block_a, block_a] and included[-1].reincluded
    stored_a = [e.seq_id for e in block_events(processd) if "0x" + e.block.block.hash.hex() == block_a]
    assert len(stored_a) == 2  # A's BLOCK event, and again before its child
