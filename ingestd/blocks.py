"""One chain's block follower: new heads -> heights to fetch -> block with full transactions + receipts ->
``BlockEnvelope`` on the outbound queue (kept until processd acks it, like envelopes).

Heads come from the ``newHeads`` subscriptions (:mod:`ingestd.heads`) and, when those are silent for a poll interval
or the chain has no WebSocket source, from polling the latest block. A head that jumps by more than one queues the
missing heights too, at most ``max_block_gap`` of them (the older ones are counted as ``gap_too_large`` and
skipped); the first head after start also queues the ``block_backfill_depth`` heights below it (default 64, at most
``max_block_gap``: blocks mined while ingestd was down; processd ignores those it stored; the pool state path is not
told of them: reserves are read at the chain's head, and an old block may predate a pair); a head at a height
already queued but with a new hash (another block at that height: a reorg) queues that height again. A block whose
parent is not the block delivered at the height below (a reorg that reached further back than its head) has its new
branch walked back by parent hash (``eth_getBlockByHash``), at most ``max_reorg_depth`` blocks (deeper: counted
``reorg_too_deep`` and logged), and the branch is sent in ascending order before it, so processd sees every block of
the new branch. The poll fallback asks for the latest block's number *and hash*, so it sees another block at the
same height too. Everything is bounded: the height queue (``block_queue_size``, ``queue_full``), one block fetched
at a time (so receipts in flight are one block's), transactions per block message (``max_block_txs``,
``truncated``). Every block that does not reach processd is counted by reason (:class:`ingestd.metrics.BlockDrop`);
a bad answer (null block, malformed object or receipts, another chain's transactions, HTTP 429 past the retries) is
a counted drop, never a crash.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Any

from common.pb.v1 import block_pb2
from ingestd.blockmapping import apply_receipts, block_to_envelope, head_number
from ingestd.config import ChainConfig, IngestConfig
from ingestd.fetcher import BatchFetcher, FetchError
from ingestd.mapping import MappingError
from ingestd.metrics import BlockDrop, BlockStats

log = logging.getLogger(__name__)

RECEIPT_METHOD = "eth_getTransactionReceipt"
#: JSON-RPC codes meaning "this node has no such method / does not take these params": fall back for good.
_UNSUPPORTED = frozenset({"-32601", "-32600", "-32602"})
#: Block hashes remembered to tell a repeated head from a new block at a known height (bounded).
_KNOWN_HASHES = 1024


class BlockFollower:
    """Follows one chain's blocks; ``on_head`` is called by the head sources, ``run()`` fetches, ``poll()`` polls.

    ``send(envelope) -> bool`` puts a block on the outbound queue (False: full, counted here)."""

    def __init__(self, chain: ChainConfig, cfg: IngestConfig, fetcher: BatchFetcher, stats: BlockStats,
                 send: Callable[[block_pb2.BlockEnvelope], bool], observe_latency: Callable[[float], None],
                 on_block: Callable[[int, bytes, bytes], Awaitable[None]] | None = None) -> None:
        self.chain = chain
        self.cfg = cfg
        self.fetcher = fetcher
        self.stats = stats
        self._send = send
        self._observe_latency = observe_latency
        #: Awaited with (number, hash, parent hash) after each fetched block was queued (the pool state path).
        self._on_block = on_block
        #: (height, source id, seen unix ns) waiting to be fetched, oldest first.
        self.queue: deque[tuple[int, str, int]] = deque()
        self._wake = asyncio.Event()
        self.highest: int | None = None  # the highest height queued so far
        #: The first head's height: the ones below it were queued by the start's backfill (block_backfill_depth).
        self.first_head: int | None = None
        self._known: OrderedDict[bytes, None] = OrderedDict()
        self.last_head_mono = 0.0
        self._block_receipts = True  # until the node says it has no eth_getBlockReceipts
        #: height -> hash of the block last delivered there (the last max_reorg_depth + 1 heights): a new block's
        #: parent is checked against it.
        self._delivered: dict[int, bytes] = {}
        self.fetching = False  # a height is being fetched (with its branch)

    @property
    def busy(self) -> bool:
        """True while heights are queued or one is being fetched (the pending tracker's race rule)."""
        return self.fetching or bool(self.queue)

    # -- heads (synchronous, never blocks) -------------------------------------------------------------------

    def on_head(self, source_id: str, number: int, block_hash: bytes, seen_ns: int) -> None:
        """A ``newHeads`` header: queues its height (and the missing ones below it) unless already known."""
        self.last_head_mono = time.monotonic()
        self._new_head(source_id, number, block_hash, seen_ns)

    def _new_head(self, source_id: str, number: int, block_hash: bytes, seen_ns: int) -> None:
        if block_hash in self._known:
            return  # the same block from another source, or again after a resubscribe
        self._known[block_hash] = None
        if len(self._known) > _KNOWN_HASHES:
            self._known.popitem(last=False)
        self.stats.heads += 1
        self.queue_heights(number, source_id, seen_ns)

    def queue_heights(self, number: int, source_id: str, seen_ns: int) -> None:
        """Queues ``number`` and, when the head jumped, the heights between (at most ``max_block_gap``)."""
        highest = self.highest
        first = number
        if highest is None:  # the first head: the blocks mined while ingestd was down too (block_backfill_depth,
            # bounded like any other jump of the head by max_block_gap)
            first = max(0, number - min(self.cfg.block_backfill_depth, self.cfg.max_block_gap))
            self.first_head = number
        elif number > highest:
            first = highest + 1
            missing = number - first
            if missing > self.cfg.max_block_gap:
                self._drop(BlockDrop.GAP_TOO_LARGE, missing - self.cfg.max_block_gap)
                log.warning("block_gap_too_large chain=%s from=%d to=%d skipped=%d", self.chain.name, first,
                            number, missing - self.cfg.max_block_gap)
                first = number - self.cfg.max_block_gap
        # (a first head, or one at or below the highest height: another block at that height, fetched again)
        for height in range(first, number + 1):
            if len(self.queue) >= self.cfg.block_queue_size:
                self._drop(BlockDrop.QUEUE_FULL)
                continue
            self.queue.append((height, source_id, seen_ns))
        self.highest = number if highest is None else max(highest, number)
        self._wake.set()

    def _drop(self, reason: str, count: int = 1) -> None:
        self.stats.drops[reason] += count

    # -- poll fallback ---------------------------------------------------------------------------------------

    async def poll(self) -> None:
        """Polls the latest block (number and hash: ``eth_getBlockByNumber("latest", false)``) whenever no head
        arrived for ``block_poll_interval_ms`` (no WebSocket source, or all silent); a block not known yet is queued
        like a head (gaps included), so another block at the same height (a reorg) is seen too."""
        interval_s = self.cfg.block_poll_interval_ms / 1000
        label = self.fetcher.endpoints[0].label
        while True:
            await asyncio.sleep(interval_s)
            if time.monotonic() - self.last_head_mono < interval_s:
                continue  # heads are arriving
            try:
                number, block_hash = head_number(await self.fetcher.call("eth_getBlockByNumber", ["latest", False]))
            except (FetchError, MappingError) as exc:
                log.debug("block poll failed chain=%s: %s", self.chain.name, exc)
                continue
            self._new_head(label, number, block_hash, time.time_ns())

    # -- fetching --------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Fetches the queued heights one at a time, oldest first, and sends their blocks."""
        while True:
            if not self.queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            height, source_id, seen_ns = self.queue.popleft()
            self.fetching = True
            try:
                envelopes = await self.fetch_with_branch(height, source_id, seen_ns)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not stop the follower: count the block and go on
                log.exception("block fetch failed unexpectedly chain=%s height=%d", self.chain.name, height)
                self._drop(BlockDrop.RPC_ERROR)
                continue
            finally:
                self.fetching = False
            for envelope in envelopes:
                self.deliver(envelope)
                if self.first_head is None or envelope.number >= self.first_head:  # (not a backfilled old block)
                    await self._notify_block(envelope)

    async def _notify_block(self, envelope: block_pb2.BlockEnvelope) -> None:
        """Tells the pool state path (``on_block``) that a block went on the outbound queue."""
        if self._on_block is None:
            return
        try:
            await self._on_block(envelope.number, envelope.hash, envelope.parent_hash)
        except asyncio.CancelledError:
            raise
        except Exception:  # the pool state path must not stop the follower
            log.exception("on_block failed chain=%s height=%d", self.chain.name, envelope.number)

    def deliver(self, envelope: block_pb2.BlockEnvelope) -> None:
        """Sends one block (counted) and remembers it as the block delivered at its height."""
        if self._send(envelope):
            self.stats.sent += 1
        else:
            self._drop(BlockDrop.OUTBOUND_QUEUE_FULL)
        # (remembered even when not sent: the chain's shape is what the next parent check needs)
        self._delivered[envelope.number] = envelope.hash
        for old in [n for n in self._delivered if n < envelope.number - self.cfg.max_reorg_depth - 1]:
            del self._delivered[old]

    async def fetch_with_branch(self, height: int, source_id: str, seen_ns: int) -> list[block_pb2.BlockEnvelope]:
        """The block at ``height`` preceded by the new branch's blocks below it when its parent is not the block
        delivered there (walked back by parent hash, at most ``max_reorg_depth``), ascending; [] when the block
        did not come (counted)."""
        envelope = await self.fetch_block(height, source_id, seen_ns)
        if envelope is None:
            return []
        branch = [envelope]
        child = envelope
        while True:
            below = self._delivered.get(child.number - 1)
            if child.number == 0 or below is None or below == child.parent_hash:
                break
            if len(branch) > self.cfg.max_reorg_depth:
                self._drop(BlockDrop.REORG_TOO_DEEP)
                log.warning("reorg_too_deep chain=%s height=%d max_reorg_depth=%d: the branch below is not sent",
                            self.chain.name, child.number, self.cfg.max_reorg_depth)
                break
            parent = await self._fetch_by_hash(child.parent_hash, source_id, seen_ns)
            if parent is None:
                break  # counted by the fetch
            branch.append(parent)
            child = parent
        if len(branch) > 1:
            self.stats.reorgs += 1
            log.info("reorg chain=%s height=%d new_branch_blocks=%d from=%d", self.chain.name, height,
                     len(branch) - 1, branch[-1].number)
        return branch[::-1]

    async def fetch_block(self, height: int, source_id: str, seen_ns: int) -> block_pb2.BlockEnvelope | None:
        """The block at ``height`` with its receipts applied, or None (counted by reason)."""
        block = await self._get_block(height)
        if block is None:
            return None
        return await self._envelope(block, height, source_id, seen_ns)

    async def _fetch_by_hash(self, block_hash: bytes, source_id: str, seen_ns: int) -> block_pb2.BlockEnvelope | None:
        """The block ``block_hash`` (a new branch's parent) mapped with its receipts, or None (counted)."""
        try:
            block = await self.fetcher.call("eth_getBlockByHash", ["0x" + block_hash.hex(), True])
        except FetchError as exc:
            self._drop(BlockDrop.RPC_ERROR)
            log.warning("block_rpc_error chain=%s hash=0x%s code=%s", self.chain.name, block_hash.hex(), exc.code)
            return None
        if block is None:
            self._drop(BlockDrop.UNAVAILABLE)
            return None
        return await self._envelope(block, -1, source_id, seen_ns)

    async def _envelope(self, block: object, height: int, source_id: str,
                        seen_ns: int) -> block_pb2.BlockEnvelope | None:
        """``block`` mapped, its receipts applied, or None (counted); ``height`` (-1: by hash) names it in logs."""
        try:
            envelope = block_to_envelope(block, self.chain.chain_id, source_id, seen_ns, self.cfg.max_block_txs)
        except MappingError as exc:
            wrong = str(exc).startswith("wrong_chain")
            self._drop(BlockDrop.WRONG_CHAIN if wrong else BlockDrop.MALFORMED)
            log.warning("block_%s chain=%s height=%d: %s", "wrong_chain" if wrong else "malformed", self.chain.name,
                        height, str(exc)[:200])
            return None
        self._known[envelope.hash] = None  # (a head of it arriving later is not fetched again)
        if envelope.truncated:
            self.stats.truncated += 1
        if envelope.txs:
            self.stats.receipts_missing += apply_receipts(envelope, await self._receipts(envelope))
        self.stats.fetched += 1
        self._observe_latency(max(0.0, (time.time_ns() - seen_ns) / 1e9))
        return envelope

    async def _get_block(self, height: int) -> object:
        """``eth_getBlockByNumber(height, true)``; a null answer (announced before the node serves it) is asked
        again with backoff, up to ``fetch_retries`` times. None when it never came (counted)."""
        for attempt in range(self.cfg.fetch_retries + 1):
            try:
                block = await self.fetcher.call("eth_getBlockByNumber", [hex(height), True])
            except FetchError as exc:
                self._drop(BlockDrop.RPC_ERROR)
                log.warning("block_rpc_error chain=%s height=%d code=%s", self.chain.name, height, exc.code)
                return None
            if block is not None:
                return block  # (not an object: block_to_envelope counts it as malformed)
            await asyncio.sleep(self.cfg.fetch_backoff_ms / 1000 * 2 ** attempt)
        self._drop(BlockDrop.UNAVAILABLE)
        return None

    async def _receipts(self, envelope: block_pb2.BlockEnvelope) -> list[Any]:
        """The receipts of the block's transactions: ``eth_getBlockReceipts`` where the node has it, else
        batches of ``eth_getTransactionReceipt`` (``fetch_batch_size`` hashes each, one batch at a time)."""
        if self._block_receipts:
            try:
                receipts = await self.fetcher.call("eth_getBlockReceipts", [hex(envelope.number)])
                if isinstance(receipts, list):
                    return receipts
            except FetchError as exc:
                if exc.code in _UNSUPPORTED:
                    self._block_receipts = False
                    log.info("chain=%s: no eth_getBlockReceipts (%s); batched eth_getTransactionReceipt from now on",
                             self.chain.name, exc.code)
        hashes = [tx.hash for tx in envelope.txs]
        receipts = []
        size = self.cfg.fetch_batch_size
        for start in range(0, len(hashes), size):
            outcome = await self.fetcher.fetch(hashes[start:start + size], RECEIPT_METHOD)
            receipts.extend(value for _, value in outcome.found)
        return receipts
