"""The chain-aware side of one chain's worker: its blocks, and what rides on them.

:class:`ChainFollow` owns, for one chain, the block follower (``ingestd.blocks``) with one ``newHeads`` source per
WebSocket source (``ingestd.heads``), the pool state path (``ingestd.pools``, ``--pool-state``), the pending
tracker that reports transactions the node dropped (``ingestd.pending``) and the ``txpool_content`` backfill
(``ingestd.backfill``). The pending side (``ingestd.chains.worker``) tells it what it sends (:meth:`sent`) and
when a pending subscription comes up (:meth:`subscribed`); everything it sends goes through the worker's outbound
queue, in FIFO order with the envelopes.
"""

from __future__ import annotations

import asyncio

from common.pb.v1 import block_pb2, tx_pb2
from ingestd.backfill import Backfill, BackfillStats, Deliver
from ingestd.blocks import BlockFollower
from ingestd.config import ChainConfig, IngestConfig
from ingestd.fetcher import BatchFetcher
from ingestd.heads import HeadSource
from ingestd.metrics import BlockStats, ChainStats, Histograms, PoolStats, SourceStats
from ingestd.outbound import Outbound
from ingestd.pending import PendingStats, PendingTracker
from ingestd.pools import PoolTracker


class ChainFollow:
    """Blocks, pool state, pending re-checks and backfill of one chain (each part present when configured)."""

    def __init__(self, chain: ChainConfig, cfg: IngestConfig, fetcher: BatchFetcher, outbound: Outbound,
                 stats: ChainStats, histograms: Histograms, backfill_tx: Deliver) -> None:
        self.chain = chain
        self.blocks: BlockFollower | None = None
        self.pools: PoolTracker | None = None
        self.head_sources: list[HeadSource] = []
        if cfg.follow_blocks == "on":
            self._follow_blocks(cfg, fetcher, outbound, stats, histograms)
        self.pending: PendingTracker | None = None
        if self.blocks is not None and cfg.pending_recheck_interval_ms > 0:
            # (without followed blocks a mined transaction could not be told from a dropped one: no tracker)
            blocks = self.blocks
            stats.pending = PendingStats()
            self.pending = PendingTracker(
                chain.chain_id, fetcher, stats.pending, capacity=cfg.pending_track_size,
                interval_s=cfg.pending_recheck_interval_ms / 1000, batch_size=cfg.fetch_batch_size,
                send=outbound.try_enqueue, blocks_busy=lambda: blocks.busy)
        self.backfill: Backfill | None = None
        if cfg.backfill_max_txs > 0:
            stats.backfill = BackfillStats()
            self.backfill = Backfill(chain.name, fetcher, stats.backfill, cfg.backfill_max_txs, backfill_tx)
        self._outbound = outbound

    def _follow_blocks(self, cfg: IngestConfig, fetcher: BatchFetcher, outbound: Outbound, stats: ChainStats,
                       histograms: Histograms) -> None:
        """The chain's block follower, its pool state path, and one ``newHeads`` source per WebSocket source."""
        block_stats = stats.blocks = BlockStats()
        if cfg.pool_state == "on":
            pool_stats = stats.pools = PoolStats()
            pools = self.pools = PoolTracker(self.chain.chain_id, cfg.v2_routers, fetcher, pool_stats,
                                             outbound.try_enqueue, max_pairs=cfg.pool_max_pairs,
                                             queue_size=cfg.pool_queue_size, reads_per_block=cfg.pool_reads_per_block)
            pool_stats.tracked = lambda: len(pools.pairs)
            pool_stats.waiting = lambda: len(pools.unread)
        blocks = self.blocks = BlockFollower(self.chain, cfg, fetcher, block_stats, self._send_block,
                                             histograms.block_latency.labels(self.chain.name).observe,
                                             on_block=self.pools.on_block if self.pools is not None else None)
        stats.queues["blocks"] = (lambda: len(blocks.queue), cfg.block_queue_size)

        def rejected(source_id: str, reason: str) -> None:
            block_stats.heads_rejected[reason] += 1

        # Their own SourceStats (not the chain's sources: a head stream's reconnects are not the pending feed's).
        block_stats.head_sources = {src.source_id: SourceStats(src.source_id) for src in self.chain.sources}
        self.head_sources = [
            HeadSource(src, self.chain.name, block_stats.head_sources[src.source_id], blocks.on_head, rejected,
                       max_message_bytes=cfg.ws_max_message_bytes, reconnect_min_s=cfg.reconnect_min_ms / 1000,
                       reconnect_max_s=cfg.reconnect_max_ms / 1000)
            for src in self.chain.sources]

    def _send_block(self, block: block_pb2.BlockEnvelope) -> bool:
        """A followed block to processd; its transactions are no longer pending (the tracker forgets them)."""
        if self.pending is not None:
            self.pending.mined((tx.hash, tx.sender, tx.nonce) for tx in block.txs)
        return self._outbound.try_enqueue(block)

    # -- told by the pending side ------------------------------------------------------------------------------

    def before_send(self, envelope: tx_pb2.TxEnvelope) -> None:
        """An envelope is about to be queued: a V2 router swap names the pairs to read at the next block."""
        if self.pools is not None:
            self.pools.on_pending(envelope)

    def sent(self, envelope: tx_pb2.TxEnvelope, source_id: str) -> None:
        """An envelope went on the outbound queue: tracked until a followed block includes it."""
        if self.pending is not None:
            self.pending.add(envelope.hash, source_id, envelope.sender, envelope.nonce)

    def subscribed(self) -> None:
        """A pending subscription came up (first time, or again after a gap): from now on announcements come
        live; what the pool holds now (announced while ingestd was down or disconnected) comes from
        ``txpool_content``."""
        if self.backfill is not None:
            self.backfill.request()

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def tasks(self, name: str) -> tuple[list[asyncio.Task[None]], list[asyncio.Task[None]]]:
        """Starts the head sources (first list: cancelled first at stop, like the pending sources) and the
        follower's other loops (second list)."""
        sources: list[asyncio.Task[None]] = []
        loops: list[asyncio.Task[None]] = []
        if self.blocks is not None:
            sources = [asyncio.create_task(s.run(), name=f"heads-{name}-{s.source.source_id}")
                       for s in self.head_sources]
            loops = [asyncio.create_task(self.blocks.run(), name=f"blocks-{name}"),
                     asyncio.create_task(self.blocks.poll(), name=f"block-poll-{name}")]
        if self.pending is not None:
            loops.append(asyncio.create_task(self.pending.run(), name=f"pending-{name}"))
        return sources, loops

    async def stop_backfill(self) -> None:
        """Stops a running backfill (before the worker drains its fetch queue)."""
        if self.backfill is not None:
            await self.backfill.stop()

    def drop_unfetched(self) -> None:
        """Heights not fetched yet at shutdown: counted, not lost silently."""
        if self.blocks is not None and self.blocks.queue:
            self.blocks.stats.drops["shutdown"] += len(self.blocks.queue)
            self.blocks.queue.clear()
