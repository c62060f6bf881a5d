"""Issue 16, the node side, against real anvil (``--no-mining``; the tests mine, drop and reorg): the pending
tracker's TxGone (``ingestd.pending``), the txpool_content backfill (``ingestd.backfill``) and the block follower's
reorg walk-back and same-height poll (``ingestd.blocks``); bad upstream answers through the fault proxy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from common.pb.v1 import block_pb2, ingest_pb2
from common.testing.anvil import AnvilNode
from common.testing.faultproxy import FaultProxyThread, Faults
from common.testing.fixtures import load_mainnet_calls
from common.testing.lifecycle_truth import node_truth, summary
from common.testing.replay import Replayer, SentTx
from common.testing.traffic import TrafficGenerator
from ingestd.backfill import Backfill, BackfillStats
from ingestd.blocks import BlockFollower
from ingestd.config import ChainConfig, IngestConfig
from ingestd.fetcher import BatchFetcher
from ingestd.metrics import BlockDrop, BlockStats
from ingestd.pending import PendingStats, PendingTracker, RecheckOutcome
from tests.ingestd.conftest import Daemon, Ingestd, Processd, send_calls
from tests.ingestd.test_blocks import node_hash, rpc, wait_until

CHAIN = 137


@pytest.fixture
def anvil() -> Iterator[AnvilNode]:
    with AnvilNode(chain_id=CHAIN) as node:
        yield node


def b(tx_hash: str) -> bytes:
    return bytes.fromhex(tx_hash[2:])


class Tracker:
    """A PendingTracker on a real fetcher, driven round by round; what it sends is kept in ``gone``."""

    def __init__(self, url: str, *, capacity: int = 1000, batch_size: int = 100) -> None:
        self.url = url
        self.capacity = capacity
        self.batch_size = batch_size
        self.gone: list[ingest_pb2.TxGone] = []
        self.busy = False
        self.accept = True
        self.stats = PendingStats()

    def run(self, steps: Any) -> None:
        """``steps(tracker, call)``: ``call(coroutine_fn)`` runs it on the loop that owns the fetcher."""
        async def go() -> None:
            async with BatchFetcher([self.url], retries=1, backoff_s=0.001) as fetcher:
                def send(gone: ingest_pb2.TxGone) -> bool:
                    if self.accept:
                        self.gone.append(gone)
                    return self.accept
                tracker = PendingTracker(CHAIN, fetcher, self.stats, capacity=self.capacity, interval_s=60,
                                         batch_size=self.batch_size, send=send, blocks_busy=lambda: self.busy)
                await steps(tracker)
        asyncio.run(go())


async def recheck(tracker: PendingTracker) -> int:
    return await tracker.recheck(min_age_s=0)


def test_a_dropped_transaction_is_reported_gone_after_two_null_rounds_and_a_mined_one_never(anvil: AnvilNode) -> None:
    url = anvil.http_url
    followed, unfollowed = send_calls(url, 0, 2)
    rpc(url, "evm_mine", [])
    dropped, kept, included_meanwhile, held = send_calls(url, 2, 4)
    t = Tracker(url)

    async def steps(tracker: PendingTracker) -> None:
        for h in (followed, unfollowed, dropped, kept, included_meanwhile, held):
            tracker.add(b(h), "src")
        tracker.mined([(b(followed), b"", -1)])  # a block the follower delivered
        for h in (dropped, included_meanwhile, held):
            rpc(url, "anvil_dropTransaction", [h])
        assert await recheck(tracker) == 0  # first null: suspects only
        assert b(unfollowed) not in tracker  # mined in a block ingestd did not follow: the node says so, not gone
        # a followed block included it after the first null: never gone
        tracker.mined([(b(included_meanwhile), b"", -1)])
        t.busy = True  # the block follower has a height queued: the second nulls are held back
        assert await recheck(tracker) == 0
        t.busy = False
        assert await recheck(tracker) == 2
        assert await recheck(tracker) == 0
        assert {b(kept)} == set(tracker._tracked)

    t.run(steps)
    assert sorted(g.hash for g in t.gone) == sorted([b(dropped), b(held)])
    assert all(g.chain_id == CHAIN and g.reason == ingest_pb2.GONE_REASON_EVICTED and g.source_id == "src"
               and g.seen_unix_ns > 0 for g in t.gone)
    checks = t.stats.checks
    assert checks[RecheckOutcome.MINED] == 1 and checks[RecheckOutcome.HELD] == 2
    assert checks[RecheckOutcome.PENDING] == 4  # kept, in each of the four rounds
    assert t.stats.included == 2 and t.stats.gone_sent == 2 and t.stats.requests == 4 and t.stats.rounds == 4


async def _sent_and_sped_up(url: str) -> tuple[SentTx, SentTx]:
    """A mainnet call sent to the node, and its speed-up (same sender and nonce, higher fee)."""
    async with Replayer(url) as replayer:
        [original] = await replayer.send(load_mainnet_calls()[:1])
        [speedup] = await replayer.replace([original], ["speedup"])
        return original, speedup


def test_a_replaced_transaction_is_superseded_not_reported_gone(anvil: AnvilNode) -> None:
    url = anvil.http_url

    original, speedup = asyncio.run(_sent_and_sped_up(url))
    t = Tracker(url)

    async def steps(tracker: PendingTracker) -> None:
        for s in (original, speedup):
            tracker.add(b(s.tx_hash), "src", bytes.fromhex(s.sender[2:]), s.nonce)
        assert b(original.tx_hash) not in tracker and b(speedup.tx_hash) in tracker
        assert rpc(url, "eth_getTransactionByHash", [original.tx_hash]) is None  # the node forgot the original
        assert await recheck(tracker) == 0 and await recheck(tracker) == 0
        rpc(url, "anvil_dropTransaction", [speedup.tx_hash])  # the replacement itself is dropped: gone
        await recheck(tracker)
        assert await recheck(tracker) == 1

    t.run(steps)
    assert t.stats.superseded == 1 and [g.hash for g in t.gone] == [b(speedup.tx_hash)]


def test_a_replacement_seen_only_in_a_followed_block_supersedes_the_tracked_original(anvil: AnvilNode) -> None:
    """The replacement was mined before ingestd delivered it as pending: the block that includes it, with the
    original's (sender, nonce), is what tells the tracker; the original, which the node forgot, is never gone."""
    url = anvil.http_url

    original, speedup = asyncio.run(_sent_and_sped_up(url))
    t = Tracker(url)
    sender = bytes.fromhex(original.sender[2:])

    async def steps(tracker: PendingTracker) -> None:
        tracker.add(b(original.tx_hash), "src", sender, original.nonce)
        assert await recheck(tracker) == 0  # the node forgot the original: a suspect
        tracker.mined([(b(speedup.tx_hash), sender, speedup.nonce)])  # the block with the replacement
        assert b(original.tx_hash) not in tracker
        assert await recheck(tracker) == 0 and await recheck(tracker) == 0

    t.run(steps)
    assert original.nonce == speedup.nonce and t.stats.superseded == 1 and t.stats.included == 0 and t.gone == []


def test_the_tracked_set_is_bounded_and_a_full_outbound_queue_defers_the_report(anvil: AnvilNode) -> None:
    url = anvil.http_url
    hashes = send_calls(url, 0, 5)
    t = Tracker(url, capacity=3, batch_size=2)

    async def steps(tracker: PendingTracker) -> None:
        for h in hashes:
            tracker.add(b(h), "src")
        assert len(tracker) == 3 and b(hashes[0]) not in tracker and b(hashes[1]) not in tracker
        rpc(url, "anvil_dropTransaction", [hashes[4]])
        t.accept = False  # the outbound queue is full
        await recheck(tracker)
        assert await recheck(tracker) == 0 and b(hashes[4]) in tracker
        t.accept = True
        assert await recheck(tracker) == 1

    t.run(steps)
    assert t.stats.overflow == 2 and t.stats.gone_queue_full == 1 and t.stats.gone_sent == 1
    assert t.stats.requests == 6  # 3 tracked in batches of 2, three rounds
    assert [g.hash for g in t.gone] == [b(hashes[4])]


def test_bad_answers_are_counted_and_never_reported_gone(anvil: AnvilNode) -> None:
    hashes = send_calls(anvil.http_url, 0, 20)
    faults = Faults()
    with FaultProxyThread(anvil.http_url, faults, seed=7) as proxy:
        t = Tracker(proxy.http_url)

        async def steps(tracker: PendingTracker) -> None:
            for h in hashes:
                tracker.add(b(h), "src")
            faults.http_429_next = 100  # every attempt of the round
            await recheck(tracker)
            faults.http_429_next = 0
            faults.partial_error_rate, faults.drop_item_rate = 0.3, 0.3
            await recheck(tracker)
            faults.partial_error_rate = faults.drop_item_rate = 0.0
            faults.null_rate = 0.5  # a node answering null for transactions it still has: suspects, one round
            await recheck(tracker)
            faults.null_rate = 0.0
            await recheck(tracker)
            assert await recheck(tracker) == 0

        t.run(steps)
    assert not t.gone and t.stats.gone_sent == 0
    checks = t.stats.checks
    assert checks[RecheckOutcome.FAILED] >= 20 and checks[RecheckOutcome.NULL] > 0
    assert checks[RecheckOutcome.PENDING] >= 40  # the last two rounds, clean: every hash still pending


# ---- backfill ----------------------------------------------------------------------------------------------------


def backfill(url: str, max_txs: int) -> tuple[list[str], BackfillStats, str]:
    """One backfill run on ``url``; the hashes it delivered (every tx accepted), its stats and outcome."""
    delivered: list[str] = []
    stats = BackfillStats()

    def deliver(tx: Any, seen_ns: int) -> str:
        delivered.append(tx["hash"])
        return "delivered"

    async def go() -> str:
        async with BatchFetcher([url], retries=1, backoff_s=0.001) as fetcher:
            return await Backfill("polygon", fetcher, stats, max_txs, deliver).run_once()

    return delivered, stats, asyncio.run(go())


def test_backfill_delivers_the_pool_up_to_its_bound_and_counts_what_it_cannot(anvil: AnvilNode) -> None:
    hashes = send_calls(anvil.http_url, 0, 6)
    delivered, stats, outcome = backfill(anvil.http_url, 100)
    assert outcome == "ok" and sorted(delivered) == sorted(hashes) and stats.txs["delivered"] == 6
    delivered, stats, _ = backfill(anvil.http_url, 4)
    assert len(delivered) == 4 and set(delivered) <= set(hashes)
    assert (stats.txs["delivered"], stats.txs["over_limit"]) == (4, 2)
    # A node without txpool_content, and one that fails every attempt.
    faults = Faults(rpc_error_rate=1.0, rpc_error_code=-32601, fault_methods=frozenset({"txpool_content"}))
    with FaultProxyThread(anvil.http_url, faults) as proxy:
        delivered, stats, outcome = backfill(proxy.http_url, 100)
        assert (outcome, delivered, stats.runs["unsupported"]) == ("unsupported", [], 1)
        faults.rpc_error_rate, faults.http_429_next = 0.0, 100
        delivered, stats, outcome = backfill(proxy.http_url, 100)
        assert (outcome, delivered, stats.runs["rpc_error"]) == ("rpc_error", [], 1)


# ---- ingestd end to end: backfill at start, TxGone through the stream ----------------------------------------------


def test_ingestd_backfills_at_start_and_reports_a_dropped_transaction_gone(
        anvil: AnvilNode, processd: Processd, daemons: list[Daemon], tmp_path: Path) -> None:
    before = send_calls(anvil.http_url, 0, 8)  # announced while no ingestd runs
    ingestd = Ingestd(["--chain", f"{CHAIN}={anvil.ws_url}"], processd.addr, tmp_path / "ingestd.log",
                      env={"MEMPULSE_INGESTD_BLOCK_POLL_INTERVAL_MS": "300",
                           "MEMPULSE_INGESTD_PENDING_RECHECK_INTERVAL_MS": "300"})
    daemons.append(ingestd)
    ingestd.wait_ready(1)
    stored = lambda: {"0x" + t.tx.hash.hex() for t in processd.stored(CHAIN)}  # noqa: E731
    wait_until(lambda: set(before) <= stored(), "the transactions sent before ingestd started, backfilled")
    assert ingestd.metric("mempulse_ingestd_backfill_txs_total", outcome="delivered") == 8
    assert ingestd.metric("mempulse_ingestd_backfill_runs_total", outcome="ok") == 1
    live = send_calls(anvil.http_url, 8, 4)
    wait_until(lambda: set(live) <= stored(), "live transactions")
    wait_until(lambda: ingestd.metric("mempulse_ingestd_pending_tracked") == 12, "all 12 tracked")

    rpc(anvil.http_url, "anvil_dropTransaction", [before[0]])
    wait_until(lambda: ingestd.metric("mempulse_ingestd_gone_total", stage="sent") == 1, "the dropped one gone")
    # The batch carrying it was acked (this branch's processd does not apply TxGone yet: neither stored nor ignored).
    wait_until(lambda: ingestd.metric("mempulse_ingestd_unacked_batches") == 0, "acked")
    rpc(anvil.http_url, "evm_mine", [])
    wait_until(lambda: ingestd.metric("mempulse_ingestd_pending_untracked_total", reason="included") == 11,
               "the 11 others seen in the followed block")
    assert ingestd.metric("mempulse_ingestd_pending_tracked") == 0
    time.sleep(1.0)  # a few more recheck intervals (nothing is tracked): still exactly one report
    assert ingestd.metric("mempulse_ingestd_gone_total", stage="sent") == 1
    assert ingestd.metric("mempulse_ingestd_drops_total") == 0
    assert ingestd.stop() == 0


# ---- reorgs ------------------------------------------------------------------------------------------------------


def test_a_reorg_deeper_than_its_head_sends_the_new_branch_in_order(anvil: AnvilNode) -> None:
    url = anvil.http_url
    rpc(url, "anvil_mine", ["0x3"])
    old = [node_hash(url, n) for n in range(4)]
    cfg = IngestConfig(chains=(), fetch_retries=1, fetch_backoff_ms=1, max_reorg_depth=8, block_backfill_depth=0)
    sent: list[block_pb2.BlockEnvelope] = []
    stats = BlockStats()

    async def go() -> None:
        async with BatchFetcher([url], retries=1, backoff_s=0.001) as fetcher:
            follower = BlockFollower(ChainConfig(CHAIN, "polygon", (), (url,)), cfg, fetcher, stats,
                                     lambda e: sent.append(e) is None, lambda s: None)

            async def head(number: int, block_hash: bytes) -> None:
                follower.on_head("test", number, block_hash, time.time_ns())
                while follower.queue:
                    for env in await follower.fetch_with_branch(*follower.queue.popleft()):
                        follower.deliver(env)

            for n in (1, 2, 3):
                await head(n, old[n])
            assert [e.hash for e in sent] == old[1:] and not stats.reorgs
            rpc(url, "anvil_reorg", [2, []])  # blocks 2 and 3 replaced; only the new head is announced
            await head(3, node_hash(url, 3))
            # and a reorg deeper than max_reorg_depth: the branch below it is not walked
            follower.cfg = IngestConfig(chains=(), max_reorg_depth=1, block_backfill_depth=0)
            rpc(url, "anvil_reorg", [3, []])
            await head(3, node_hash(url, 3))

    asyncio.run(go())
    new = [node_hash(url, n) for n in range(4)]
    assert [e.number for e in sent[3:5]] == [2, 3]  # the first reorg's branch, ascending
    assert sent[3].hash not in old and sent[3].parent_hash == old[1] and sent[4].parent_hash == sent[3].hash
    assert [(e.number, e.hash) for e in sent[5:]] == [(2, new[2]), (3, new[3])]  # depth 1: new 2 and 3, not new 1
    assert stats.reorgs == 2 and stats.drops[BlockDrop.REORG_TOO_DEEP] == 1


def test_the_poll_fallback_sees_another_block_at_the_same_height(anvil: AnvilNode) -> None:
    url = anvil.http_url
    rpc(url, "anvil_mine", ["0x2"])
    cfg = IngestConfig(chains=(), block_poll_interval_ms=20, block_backfill_depth=0)  # (the polled head alone)
    queued: list[int] = []

    async def go() -> None:
        async with BatchFetcher([url], retries=1, backoff_s=0.001) as fetcher:
            follower = BlockFollower(ChainConfig(CHAIN, "polygon", (), (url,)), cfg, fetcher, BlockStats(),
                                     lambda e: True, lambda s: None)
            poller = asyncio.create_task(follower.poll())
            try:
                for _ in range(500):
                    if follower.queue:
                        break
                    await asyncio.sleep(0.01)
                queued.extend(h for h, _, _ in follower.queue)
                follower.queue.clear()
                rpc(url, "anvil_reorg", [1, []])  # another block 2: same height, new hash
                for _ in range(500):
                    if follower.queue:
                        break
                    await asyncio.sleep(0.01)
                queued.extend(h for h, _, _ in follower.queue)
            finally:
                poller.cancel()

    asyncio.run(go())
    assert queued == [2, 2]


def test_ingestd_backfills_what_was_announced_while_its_source_was_disconnected(
        anvil: AnvilNode, processd: Processd, daemons: list[Daemon], tmp_path: Path) -> None:
    proxy = FaultProxyThread(anvil.http_url, Faults()).start()
    port = proxy.proxy.port
    try:
        ingestd = Ingestd(["--chain", f"{CHAIN}=ws://127.0.0.1:{port},{anvil.http_url}"], processd.addr,
                          tmp_path / "ingestd.log", env={"MEMPULSE_INGESTD_RECONNECT_MAX_MS": "300"})
        daemons.append(ingestd)
        ingestd.wait_ready(1)
        stored = lambda: {"0x" + t.tx.hash.hex() for t in processd.stored(CHAIN)}  # noqa: E731
        live = send_calls(anvil.http_url, 0, 3)
        wait_until(lambda: set(live) <= stored(), "live transactions")
        proxy.stop()  # the source is gone, and stays unreachable while transactions are announced
        wait_until(lambda: ingestd.metric("mempulse_ingestd_source_connected") == 0, "source disconnected")
        missed = send_calls(anvil.http_url, 3, 5)
        time.sleep(0.5)
        assert not set(missed) & stored()
        proxy = FaultProxyThread(anvil.http_url, Faults(), port=port).start()
        wait_until(lambda: set(missed) <= stored(), "the transactions announced while disconnected, backfilled")
        assert ingestd.metric("mempulse_ingestd_backfill_runs_total", outcome="ok") >= 2
        assert ingestd.metric("mempulse_ingestd_backfill_txs_total", outcome="delivered") == 5
        assert ingestd.metric("mempulse_ingestd_backfill_txs_total", outcome="already_seen") >= 3
    finally:
        proxy.stop()


def test_under_mining_and_replacements_nothing_is_reported_gone(
        processd: Processd, daemons: list[Daemon], tmp_path: Path) -> None:
    """anvil mines every second while the generator replaces a fifth of its senders' transactions and ingestd
    re-checks every 200 ms: every transaction is mined or replaced, none dropped, so no TxGone may be sent (the race
    rule and superseding at work); the node's truth agrees."""
    with AnvilNode(chain_id=CHAIN, block_time_s=1) as node:
        ingestd = Ingestd(["--chain", f"{CHAIN}={node.ws_url}"], processd.addr, tmp_path / "ingestd.log",
                          env={"MEMPULSE_INGESTD_PENDING_RECHECK_INTERVAL_MS": "200"})
        daemons.append(ingestd)
        ingestd.wait_ready(1)
        gen = TrafficGenerator(node.http_url, 30, chain_id=CHAIN, duration_s=4, replace_share=0.2).start()
        assert gen.wait(60)
        records = gen.records()
        wait_until(lambda: rpc(node.http_url, "txpool_status", []) == {"pending": "0x0", "queued": "0x0"},
                   "the pool mined empty")
        truth = node_truth(node.http_url, records)
        wait_until(lambda: ingestd.metric("mempulse_ingestd_pending_tracked") == 0, "nothing tracked any more")
        time.sleep(1.0)  # five more recheck rounds
        counts = summary(truth)
        assert counts["dropped"] == counts["pending"] == 0 and counts["replaced"] > 0
        assert ingestd.metric("mempulse_ingestd_gone_total", stage="sent") == 0
        assert ingestd.metric("mempulse_ingestd_pending_untracked_total", reason="superseded") > 0
        assert ingestd.metric("mempulse_ingestd_pending_untracked_total", reason="included") > 0
        assert ingestd.metric("mempulse_ingestd_pending_rechecks_total", outcome="pending") > 0
        assert ingestd.metric("mempulse_ingestd_block_drops_total") == 0
