"""Blocks end to end against a real anvil (``--no-mining``; the tests mine with ``evm_mine`` / ``anvil_mine``), a
real processd and its LMDB log: ingestd follows the chain's heads, fetches each block with its transactions and
receipts, processd stores it once per (chain, hash) as a BLOCK event and lists it in ListBlocks.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from common.pb.v1 import block_pb2, events_pb2, query_pb2, query_pb2_grpc
from common.testing.anvil import AnvilNode
from common.testing.faultproxy import FaultProxyThread, Faults
from ingestd.blocks import BlockFollower
from ingestd.config import ChainConfig, IngestConfig
from ingestd.fetcher import BatchFetcher
from ingestd.metrics import BlockDrop, BlockStats
from tests.gatewayd.conftest import Gateway
from tests.ingestd.conftest import Daemon, Ingestd, Processd, send_txs

#: anvil's first dev account (funded at start).
DEV = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
#: Init code that reverts at once (PUSH1 0, PUSH1 0, REVERT): with a fixed gas limit anvil includes it, status 0.
REVERTING_INIT = "0x60006000fd"
CHAIN = 137


def rpc(url: str, method: str, params: list[object]) -> object:
    answer = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, timeout=10).json()
    assert "error" not in answer, answer
    return answer["result"]


def list_blocks(p: Processd) -> list[query_pb2.ListBlocksBlock]:
    with grpc.insecure_channel(p.addr) as channel:
        return list(query_pb2_grpc.QueryStub(channel).ListBlocks(
            query_pb2.ListBlocksRequest(chain_id=CHAIN, limit=200), timeout=10).blocks)


def block_events(p: Processd) -> list[events_pb2.Event]:
    with grpc.insecure_channel(p.addr) as channel:
        return list(query_pb2_grpc.QueryStub(channel).ScanEvents(query_pb2.ScanEventsRequest(
            chain_id=CHAIN, kinds=[events_pb2.EVENT_KIND_BLOCK], limit=1000), timeout=10).events)


def wait_until(predicate: object, what: str, timeout_s: float = 60.0) -> None:
    """Polls ``predicate`` (a deadline for a hung test, not a timed assertion)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def numbers(p: Processd) -> list[int]:
    """The stored blocks' numbers; none while processd is still opening its log."""
    try:
        return sorted(b.number for b in list_blocks(p))
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
            raise
        return []


@pytest.fixture
def anvil() -> Iterator[AnvilNode]:
    with AnvilNode(chain_id=CHAIN) as node:
        yield node


def start_ingestd(anvil: AnvilNode, p: Processd, log: Path, daemons: list[Daemon]) -> Ingestd:
    ingestd = Ingestd(["--chain", f"{CHAIN}={anvil.ws_url}"], p.addr, log,
                      env={"MEMPULSE_INGESTD_BLOCK_POLL_INTERVAL_MS": "300"})
    daemons.append(ingestd)
    ingestd.wait_ready(1)
    wait_until(lambda: ingestd.metric("mempulse_ingestd_head_source_connected") == 1, "newHeads subscribed")
    return ingestd


def test_a_mined_block_arrives_with_its_transactions_senders_nonces_and_statuses(
        anvil: AnvilNode, processd: Processd, daemons: list[Daemon], tmp_path: Path) -> None:
    ingestd = start_ingestd(anvil, processd, tmp_path / "ingestd.log", daemons)
    wait_until(lambda: numbers(processd) == [0], "the head at start (block 0, by the poll fallback)")
    sent = [s.tx_hash for s in send_txs(anvil.http_url, 0, 5)]
    reverting = rpc(anvil.http_url, "eth_sendTransaction", [{"from": DEV, "gas": hex(200_000),
                                                             "data": REVERTING_INIT}])
    hashes = {*sent, reverting}
    wait_until(lambda: hashes <= {"0x" + t.tx.hash.hex() for t in processd.stored(CHAIN)}, "stored as pending")
    rpc(anvil.http_url, "evm_mine", [])
    wait_until(lambda: numbers(processd) == [0, 1], "block 1")

    [event] = [e for e in block_events(processd) if e.block.block.number == 1]
    block = event.block.block
    node_block = rpc(anvil.http_url, "eth_getBlockByNumber", ["0x1", True])
    assert isinstance(node_block, dict)
    assert "0x" + block.hash.hex() == node_block["hash"]
    assert "0x" + block.parent_hash.hex() == node_block["parentHash"]
    assert block.timestamp == int(node_block["timestamp"], 16)
    assert {"0x" + tx.hash.hex() for tx in block.txs} == hashes and block.tx_count == len(hashes)
    for tx, node_tx in zip(block.txs, node_block["transactions"], strict=True):
        assert "0x" + tx.hash.hex() == node_tx["hash"]
        assert "0x" + tx.sender.hex() == node_tx["from"].lower()
        assert tx.nonce == int(node_tx["nonce"], 16)
        assert tx.index == int(node_tx["transactionIndex"], 16)
        receipt = rpc(anvil.http_url, "eth_getTransactionReceipt", [node_tx["hash"]])
        assert isinstance(receipt, dict)
        assert tx.gas_used == int(receipt["gasUsed"], 16) > 0
        assert int.from_bytes(tx.effective_gas_price, "big") == int(receipt["effectiveGasPrice"], 16)
        want = block_pb2.TX_STATUS_REVERTED if node_tx["hash"] == reverting else block_pb2.TX_STATUS_OK
        assert tx.status == want, node_tx["hash"]
    # (processd acks after its read models show the block: the ack may still be on its way)
    wait_until(lambda: ingestd.metric("mempulse_ingestd_blocks_total", stage="stored") == 2, "both acked stored")
    assert ingestd.metric("mempulse_ingestd_block_latency_seconds_count") == 2
    assert ingestd.metric("mempulse_ingestd_block_drops_total") == 0
    assert ingestd.metric("mempulse_ingestd_block_receipts_missing_total") == 0
    [summary] = [b for b in list_blocks(processd) if b.number == 1]
    assert (summary.tx_count, summary.seen_pending, summary.reverted) == (len(hashes), len(hashes), 1)
    assert summary.seq_id == event.seq_id and summary.hash == block.hash

    gateway = Gateway(processd.addr, tmp_path / "gatewayd.log", ["--rate-limit-rps", "0"]).start()
    try:
        with gateway.client() as http:
            listed = http.get("/blocks/recent", params={"chain_id": "polygon"}).json()["blocks"]
            streamed = http.get("/events", params={"kinds": "block", "chain_id": CHAIN}).json()["events"]
    finally:
        gateway.stop()
    assert [(b["number"], b["hash"], b["tx_count"], b["seen_pending"], b["reverted"]) for b in listed] == [
        (1, node_block["hash"], len(hashes), len(hashes), 1), (0, "0x" + node_hash(anvil.http_url, 0).hex(), 0, 0, 0)]
    [body] = [e["block"] for e in streamed if e["block"]["number"] == 1]
    assert {t["hash"]: t["status"] for t in body["txs"]} == {h: "reverted" if h == reverting else "ok" for h in hashes}


def test_blocks_mined_at_once_all_arrive_and_resends_are_stored_once(
        anvil: AnvilNode, processd: Processd, daemons: list[Daemon], tmp_path: Path) -> None:
    ingestd = start_ingestd(anvil, processd, tmp_path / "ingestd.log", daemons)
    wait_until(lambda: numbers(processd) == [0], "block 0")
    rpc(anvil.http_url, "anvil_mine", ["0x3"])
    wait_until(lambda: numbers(processd) == [0, 1, 2, 3], "blocks 1-3 mined at once")

    # processd stops answering; block 4 is sent and stays unacked; processd dies and comes back on the same log.
    os.kill(processd.proc.pid, signal.SIGSTOP)
    rpc(anvil.http_url, "evm_mine", [])
    wait_until(lambda: ingestd.metric("mempulse_ingestd_blocks_total", stage="sent") >= 5
               and ingestd.metric("mempulse_ingestd_unacked_batches") >= 1, "block 4 sent, unacked")
    os.kill(processd.proc.pid, signal.SIGKILL)
    processd.proc.wait()
    processd.stop()
    again = Processd(tmp_path / "lmdb", tmp_path / "processd2.log", processd.port)
    daemons.append(again)
    wait_until(lambda: numbers(again) == [0, 1, 2, 3, 4], "block 4 resent after processd's restart")
    assert ingestd.metric("mempulse_ingestd_batches_resent_total") >= 1

    # A new ingestd fetches the current head (block 4) again: processd answers it is already stored.
    assert ingestd.stop() == 0
    restarted = start_ingestd(anvil, again, tmp_path / "ingestd2.log", daemons)
    wait_until(lambda: restarted.metric("mempulse_ingestd_blocks_total", stage="ignored") >= 1,
               "the head refetched by the new ingestd, acked as already stored")
    events = block_events(again)
    assert sorted(e.block.block.number for e in events) == [0, 1, 2, 3, 4]
    assert len({e.block.block.hash for e in events}) == len(events)


# ---- the follower against anvil (heads driven by the test): gaps, and bad answers counted ---------------------


def follow(url: str, heads: list[tuple[int, bytes]], **knobs: int) -> tuple[list[block_pb2.BlockEnvelope], BlockStats]:
    """A BlockFollower on ``url`` (a real fetcher) fed ``heads``: the blocks of the heights it queued (the others
    are counted in the returned stats)."""
    knobs.setdefault("block_backfill_depth", 0)  # (from the first head given, unless a test asks for a backfill)
    cfg = IngestConfig(chains=(), fetch_retries=1, fetch_backoff_ms=1, **knobs)  # type: ignore[arg-type]
    chain = ChainConfig(CHAIN, "polygon", (), (url,))
    stats = BlockStats()
    sent: list[block_pb2.BlockEnvelope] = []

    async def go() -> None:
        async with BatchFetcher([url], retries=1, backoff_s=0.001) as fetcher:
            follower = BlockFollower(chain, cfg, fetcher, stats, lambda b: True, lambda s: None)
            for number, block_hash in heads:
                follower.on_head("test", number, block_hash, time.time_ns())
            while follower.queue:  # what run() does, one height at a time (run() itself: the tests above)
                envelope = await follower.fetch_block(*follower.queue.popleft())
                if envelope is not None:
                    sent.append(envelope)

    asyncio.run(go())
    return sent, stats


def node_hash(url: str, number: int) -> bytes:
    block = rpc(url, "eth_getBlockByNumber", [hex(number), False])
    assert isinstance(block, dict)
    return bytes.fromhex(block["hash"][2:])


def test_a_head_that_jumps_queues_the_missing_heights_up_to_max_block_gap(anvil: AnvilNode) -> None:
    rpc(anvil.http_url, "anvil_mine", ["0x6"])
    heads = [(1, node_hash(anvil.http_url, 1)), (6, node_hash(anvil.http_url, 6))]
    sent, stats = follow(anvil.http_url, heads, max_block_gap=2)
    # 1, then 6 with at most 2 of the 4 missing heights below it: 4 and 5; 2 and 3 skipped and counted.
    assert [b.number for b in sent] == [1, 4, 5, 6]
    assert [b.hash for b in sent] == [node_hash(anvil.http_url, n) for n in (1, 4, 5, 6)]
    assert stats.drops[BlockDrop.GAP_TOO_LARGE] == 2
    sent, stats = follow(anvil.http_url, heads, max_block_gap=64)
    assert [b.number for b in sent] == [1, 2, 3, 4, 5, 6] and not any(stats.drops.values())


def test_the_first_head_also_queues_block_backfill_depth_heights_below_it(anvil: AnvilNode) -> None:
    """What a restarted ingestd needs: the blocks mined while it was down (processd ignores those it stored)."""
    rpc(anvil.http_url, "anvil_mine", ["0x6"])
    heads = [(5, node_hash(anvil.http_url, 5)), (6, node_hash(anvil.http_url, 6))]
    assert [b.number for b in follow(anvil.http_url, heads)[0]] == [5, 6]  # 0: from the first head
    sent, stats = follow(anvil.http_url, heads, block_backfill_depth=3)
    assert [b.number for b in sent] == [2, 3, 4, 5, 6] and not any(stats.drops.values())
    assert [b.hash for b in sent] == [node_hash(anvil.http_url, n) for n in (2, 3, 4, 5, 6)]
    assert [b.number for b in follow(anvil.http_url, heads, block_backfill_depth=64)[0]] == [0, 1, 2, 3, 4, 5, 6]
    # on by default, and bounded by max_block_gap like any other jump of the head
    assert IngestConfig(chains=()).block_backfill_depth == 64
    assert [b.number for b in follow(anvil.http_url, heads, block_backfill_depth=64, max_block_gap=2)[0]] == [
        3, 4, 5, 6]


def test_receipts_fall_back_to_batched_eth_get_transaction_receipt(anvil: AnvilNode) -> None:
    sent = [s.tx_hash for s in send_txs(anvil.http_url, 0, 3)]
    rpc(anvil.http_url, "evm_mine", [])
    sent2 = [s.tx_hash for s in send_txs(anvil.http_url, 3, 2)]
    rpc(anvil.http_url, "evm_mine", [])
    # A node without eth_getBlockReceipts ("method not found" every time): asked once, then never again.
    faults = Faults(rpc_error_rate=1.0, rpc_error_code=-32601, fault_methods=frozenset({"eth_getBlockReceipts"}))
    with FaultProxyThread(anvil.http_url, faults) as proxy:
        blocks, stats = follow(proxy.http_url, [(1, node_hash(anvil.http_url, 1)), (2, node_hash(anvil.http_url, 2))],
                               fetch_batch_size=2)
        assert proxy.proxy.stats["rpc_error"] == 1
    assert [["0x" + t.hash.hex() for t in b.txs] for b in blocks] == [sent, sent2]
    assert all(t.status == block_pb2.TX_STATUS_OK and t.gas_used > 0 for b in blocks for t in b.txs)
    assert stats.receipts_missing == 0


def test_bad_answers_are_counted_drops_never_a_crash(anvil: AnvilNode) -> None:
    rpc(anvil.http_url, "evm_mine", [])
    # A height the node does not have yet: null on every attempt.
    sent, stats = follow(anvil.http_url, [(50, b"\x01" * 32)])
    assert not sent and stats.drops[BlockDrop.UNAVAILABLE] == 1
    # HTTP 429 on every attempt.
    faults = Faults(http_429_next=100, fault_methods=frozenset({"eth_getBlockByNumber"}))
    with FaultProxyThread(anvil.http_url, faults) as proxy:
        sent, stats = follow(proxy.http_url, [(1, b"\x02" * 32)])
    assert not sent and stats.drops[BlockDrop.RPC_ERROR] == 1
    # A node of another chain: the follower of chain 1 gets chain 137's transactions.
    send_txs(anvil.http_url, 0, 1)
    rpc(anvil.http_url, "evm_mine", [])
    sent, stats = follow(anvil.http_url, [(2, b"\x03" * 32)])
    assert [len(b.txs) for b in sent] == [1]
    global CHAIN
    try:
        CHAIN = 1
        sent, stats = follow(anvil.http_url, [(2, b"\x04" * 32)])
    finally:
        CHAIN = 137
    assert not sent and stats.drops[BlockDrop.WRONG_CHAIN] == 1


def test_a_reorged_block_is_stored_beside_the_one_it_replaced(
        anvil: AnvilNode, processd: Processd, daemons: list[Daemon], tmp_path: Path) -> None:
    start_ingestd(anvil, processd, tmp_path / "ingestd.log", daemons)
    wait_until(lambda: numbers(processd) == [0], "block 0")
    rpc(anvil.http_url, "anvil_mine", ["0x2"])
    wait_until(lambda: numbers(processd) == [0, 1, 2], "blocks 1-2")
    old = node_hash(anvil.http_url, 2)
    rpc(anvil.http_url, "anvil_reorg", [1, []])  # block 2 replaced by another block 2
    new = node_hash(anvil.http_url, 2)
    assert new != old
    wait_until(lambda: numbers(processd) == [0, 1, 2, 2], "the new block 2")
    at_two = [b for b in list_blocks(processd) if b.number == 2]
    assert [b.hash for b in at_two] == [new, old]  # newest first: both kept (the lifecycle phase reads reorgs)
