"""One chain's isolated ingest pipeline: sources -> dedup -> fetch queue -> batch fetcher -> outbound stream.

A worker owns everything of its chain (dedup set, queues, fetcher, gRPC stream, counters), so a slow or
broken chain never affects another. The WebSocket readers call :meth:`ChainWorker.on_notification`
synchronously; it only does bounded, non-blocking work and drops with a counted reason when a queue is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass

from common.chains import SEQUENCER_CHAINS
from common.hexutil import HexError, hex_to_bytes
from common.pb.v1 import ingest_pb2, tx_pb2
from common.rawtx import RawTxError, node_raw, verified_raw
from ingestd.chains.follow import ChainFollow
from ingestd.config import ChainConfig, IngestConfig
from ingestd.dedup import Dedup
from ingestd.drops import DropCounter, DropReason
from ingestd.fetcher import RAW_METHOD, TOO_LARGE, BatchFetcher, FetchOutcome
from ingestd.linger import batch_delay_s
from ingestd.mapping import MappingError, tx_to_envelope
from ingestd.metrics import ChainStats, Histograms, RawOutcome, SourceStats
from ingestd.notifications import PendingHash, PendingTx
from ingestd.outbound import Outbound
from ingestd.sourcelog import SightingOutcome, SourceLog
from ingestd.ws_source import WsSource

log = logging.getLogger(__name__)

#: Logged once per chain when its first source is subscribed (scripts wait for it before sending traffic).
READY_LOG = "chain ready"

_VISIBLE = ingest_pb2.MEMPOOL_VISIBILITY_VISIBLE
_NOT_VISIBLE = ingest_pb2.MEMPOOL_VISIBILITY_NOT_VISIBLE


_REENCODED = tx_pb2.RAW_TX_ORIGIN_REENCODED
_NODE = tx_pb2.RAW_TX_ORIGIN_NODE


@dataclass(slots=True)
class _PendingFetch:
    tx_hash: bytes
    source_id: str
    first_seen_ns: int
    #: Set for a transaction already mapped (a full-tx notification) that waits only for its raw bytes.
    envelope: tx_pb2.TxEnvelope | None = None


class ChainWorker:
    """The pipeline of one chain. ``await start()``, then ``await stop()`` (idempotent)."""

    def __init__(self, chain: ChainConfig, cfg: IngestConfig, session_id: str, histograms: Histograms) -> None:
        self.chain = chain
        self.cfg = cfg
        label = chain.name
        self.stats = ChainStats(chain.chain_id, label, DropCounter(label))
        for src in chain.sources:
            self.stats.source(src.source_id)
        self.dedup = Dedup(cfg.dedup_size, cfg.dedup_ttl_s)
        # Only a chain with several sources can have later sightings: one source costs nothing here.
        self.source_log = (SourceLog(chain.chain_id, cfg.source_log_size, cfg.max_sources_per_tx)
                           if len(chain.sources) > 1 else None)
        self._fetch_queue: deque[_PendingFetch] = deque()
        self._fetch_wake = asyncio.Event()
        self._slots = asyncio.Semaphore(cfg.fetch_max_in_flight)
        self._fetch_tasks: set[asyncio.Task[None]] = set()
        self._batch_hist = histograms.fetch_batch_size.labels(label)
        self._enqueue_hist = histograms.enqueue_latency.labels(label)
        self._latency = histograms.rpc_latency
        self.fetcher = BatchFetcher(
            chain.fetch_urls, max_in_flight=cfg.fetch_max_in_flight, timeout_s=cfg.fetch_timeout_ms / 1000,
            retries=cfg.fetch_retries, backoff_s=cfg.fetch_backoff_ms / 1000,
            cooldown_s=cfg.fetch_endpoint_cooldown_ms / 1000, on_error=self._on_rpc_error,
            on_latency=self._on_rpc_latency, max_response_bytes=cfg.fetch_max_response_bytes)
        for endpoint in self.fetcher.endpoints:  # each endpoint's latency histogram at zero from start
            self._latency.labels(label, endpoint.label)
        self.outbound = Outbound(
            cfg.processd, f"{session_id}-{chain.chain_id}", self.stats, histograms,
            capacity=cfg.outbound_queue_size, batch_size=cfg.outbound_batch_size,
            flush_s=cfg.outbound_flush_ms / 1000, max_unacked=cfg.outbound_max_unacked_batches,
            stats_interval_s=cfg.stats_interval_ms / 1000, max_message_bytes=cfg.grpc_max_message_bytes,
            max_batch_bytes=cfg.outbound_max_batch_bytes, linger_s=cfg.outbound_linger_ms / 1000)
        self.sources = [
            WsSource(src, label, cfg.full_tx, self.stats.source(src.source_id), self.on_notification,
                     self.on_reject, max_message_bytes=cfg.ws_max_message_bytes,
                     reconnect_min_s=cfg.reconnect_min_ms / 1000, reconnect_max_s=cfg.reconnect_max_ms / 1000,
                     on_subscribed=self._on_subscribed)
            for src in chain.sources]
        self.stats.queues = {"fetch": (lambda: len(self._fetch_queue), cfg.fetch_queue_size),
                             "outbound": (lambda: self.outbound.depth, cfg.outbound_queue_size)}
        self.stats.in_flight = lambda: self.fetcher.in_flight
        self.stats.unacked_batches = lambda: self.outbound.unacked_batches
        self.stats.dedup_entries = lambda: len(self.dedup)
        if self.source_log is not None:
            self.stats.source_log_entries = lambda: len(self.source_log or ())
            self.stats.source_log_capacity = cfg.source_log_size
        self._source_lag = histograms.source_lag
        #: Blocks, pool state, pending re-checks and backfill (ingestd.chains.follow).
        self.follow = ChainFollow(chain, cfg, self.fetcher, self.outbound, self.stats, histograms, self._backfill_tx)
        self._tasks: list[asyncio.Task[None]] = []
        self._started_mono = 0.0
        self._ready_logged = False
        self._visibility_logged = False
        self.peak_fetch_queue = 0
        self.peak_outbound_queue = 0

    # -- hot path (called by the readers; never blocks) --------------------------------------------------

    def on_notification(self, source_id: str, msg: PendingHash | PendingTx, first_seen_ns: int) -> None:
        """Dedups, then either queues the envelope (full tx) or queues the hash for a batch fetch."""
        src = self.stats.sources[source_id]
        src.notifications += 1
        src.last_notification_mono = time.monotonic()
        src.last_notification_unix_ms = first_seen_ns // 1_000_000
        if self.stats.visibility != _VISIBLE:
            self._became_visible()
        if self.dedup.check_and_add(msg.tx_hash):
            src.dedup_hits += 1
            self.stats.drops.add(DropReason.DEDUP, source_id)
            if self.source_log is not None:
                self._later_sighting(src, msg.tx_hash, first_seen_ns)
            return
        self.stats.seen += 1
        src.first_seen_wins += 1
        if self.source_log is not None:
            self.stats.sightings_lost += self.source_log.first(msg.tx_hash, source_id, first_seen_ns)
        if isinstance(msg, PendingTx):
            self.stats.full_tx_received += 1
            try:
                envelope = tx_to_envelope(msg.tx, self.chain.chain_id, source_id, first_seen_ns, msg.tx_hash)
            except MappingError:
                pass  # an unusable full object: fetch the transaction by hash instead of dropping it
            else:
                if not self._attach_raw(envelope):
                    self._send(envelope, source_id)
                elif len(self._fetch_queue) >= self.cfg.fetch_queue_size:
                    self.stats.raw_tx[RawOutcome.FETCH_QUEUE_FULL] += 1
                    self._send(envelope, source_id)
                else:
                    self._queue_fetch(_PendingFetch(msg.tx_hash, source_id, first_seen_ns, envelope))
                return
        if len(self._fetch_queue) >= self.cfg.fetch_queue_size:
            self.stats.drops.add(DropReason.FETCH_QUEUE_FULL, source_id)
            self._not_sent(msg.tx_hash)
            return
        self._queue_fetch(_PendingFetch(msg.tx_hash, source_id, first_seen_ns))

    def _queue_fetch(self, pending: _PendingFetch) -> None:
        self._fetch_queue.append(pending)
        if len(self._fetch_queue) > self.peak_fetch_queue:
            self.peak_fetch_queue = len(self._fetch_queue)
        self._fetch_wake.set()

    def _attach_raw(self, envelope: tx_pb2.TxEnvelope) -> bool:
        """Sets ``envelope.raw_tx`` as ``--raw-tx`` says; True when the node's bytes are to be fetched for it."""
        mode = self.cfg.raw_tx
        if mode == "off":
            return False
        if mode == "fetch":
            return True
        try:
            envelope.raw_tx = verified_raw(envelope)
        except RawTxError as exc:
            if exc.reason == "unsigned":
                self.stats.raw_tx[RawOutcome.UNSIGNED] += 1
                return False
            self.stats.raw_tx_reencode_failures[exc.reason] += 1
            return True
        envelope.raw_tx_origin = _REENCODED
        self.stats.raw_tx[RawOutcome.REENCODED] += 1
        return False

    async def _fetch_raw(self, waiting: list[tuple[tx_pb2.TxEnvelope, str]]) -> None:
        """Fetches the node's signed bytes of ``waiting`` (one batch), keeps those that hash to the tx hash,
        and sends every envelope, with or without them."""
        raw_counts = self.stats.raw_tx
        try:
            outcome = await self.fetcher.fetch([env.hash for env, _ in waiting], RAW_METHOD)
            found = dict(outcome.found)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not lose transactions: they go on without raw bytes
            log.exception("raw fetch failed unexpectedly chain=%s batch=%d", self.chain.name, len(waiting))
            found = {}
        for env, source_id in waiting:
            text = found.get(env.hash)
            raw = node_raw(text, env.hash, env.tx_type) if text is not None else None
            if raw is not None:
                env.raw_tx = raw
                env.raw_tx_origin = _NODE
                raw_counts[RawOutcome.NODE] += 1
            else:
                raw_counts[RawOutcome.NODE_HASH_MISMATCH if text is not None else RawOutcome.NODE_UNAVAILABLE] += 1
            self._send(env, source_id)

    def _later_sighting(self, src: SourceStats, tx_hash: bytes, seen_ns: int) -> None:
        """Another source announced a transaction already seen: recorded for processd (ingestd.sourcelog)."""
        assert self.source_log is not None
        outcome, sighting, lag_ns = self.source_log.later(tx_hash, src.source_id, seen_ns)
        if lag_ns >= 0:
            self._source_lag.labels(self.chain.name, src.source_id).observe(lag_ns / 1e9)
        if sighting is not None and not self.outbound.try_enqueue(sighting):
            outcome = SightingOutcome.NOT_DELIVERED
        src.sightings[outcome] += 1

    def _not_sent(self, tx_hash: bytes) -> None:
        """The envelope of ``tx_hash`` will not reach processd: the sightings waiting for it are counted lost."""
        if self.source_log is not None:
            lost = self.source_log.dropped(tx_hash)
            if lost:
                self.stats.sightings_lost += lost

    def on_reject(self, source_id: str, reason: str) -> None:
        """A message that is not a usable notification: counted by parser reason and as a drop."""
        src = self.stats.sources[source_id]
        src.rejected[reason] += 1
        self.stats.seen += 1
        drop = DropReason.UNKNOWN_SUBSCRIPTION if reason == "unknown_subscription" else DropReason.MALFORMED
        self.stats.drops.add(drop, source_id, detail=reason)

    def _backfill_tx(self, tx: object, seen_ns: int) -> str:
        """One transaction of the node's pool (ingestd.backfill): deduplicated and sent like an announcement by
        the chain's first source; returns its backfill outcome."""
        try:
            tx_hash = hex_to_bytes(tx.get("hash"), 32) if isinstance(tx, dict) else b""  # type: ignore[arg-type]
        except HexError:
            tx_hash = b""
        source_id = self.chain.sources[0].source_id
        if tx_hash and self.dedup.check_and_add(tx_hash):
            return "already_seen"
        self.stats.seen += 1  # (so seen = delivered + losses + in pipeline holds for backfilled ones too)
        if not tx_hash:
            self.stats.drops.add(DropReason.MALFORMED, source_id, detail="backfill: bad hash")
            return "malformed"
        try:
            envelope = tx_to_envelope(tx, self.chain.chain_id, source_id, seen_ns, tx_hash)  # type: ignore[arg-type]
        except MappingError as exc:
            self.stats.drops.add(DropReason.MALFORMED, source_id, detail=str(exc)[:100])
            return "malformed"
        if self._attach_raw(envelope):  # the node's signed bytes are to be fetched first, as for a full-tx notification
            if len(self._fetch_queue) < self.cfg.fetch_queue_size:
                self._queue_fetch(_PendingFetch(tx_hash, source_id, seen_ns, envelope))
                return "delivered"
            self.stats.raw_tx[RawOutcome.FETCH_QUEUE_FULL] += 1
        return "delivered" if self._send(envelope, source_id) else "not_delivered"

    def _send(self, envelope: tx_pb2.TxEnvelope, source_id: str) -> bool:
        self.follow.before_send(envelope)
        if self.outbound.try_enqueue(envelope):
            self.follow.sent(envelope, source_id)
            self._enqueue_hist.observe((time.time_ns() - envelope.first_seen_unix_ns) / 1e9)
            if self.source_log is not None:
                # Right behind their envelope in the FIFO queue: they travel in its batch or a later one.
                for sighting in self.source_log.sent(envelope.hash):
                    if not self.outbound.try_enqueue(sighting):
                        self.stats.sightings_lost += 1
            if self.outbound.depth > self.peak_outbound_queue:
                self.peak_outbound_queue = self.outbound.depth
            return True
        self.stats.drops.add(DropReason.OUTBOUND_QUEUE_FULL, source_id)
        self._not_sent(envelope.hash)
        return False

    # -- fetch path ----------------------------------------------------------------------------------------

    async def _batcher(self) -> None:
        queue, batch_size, wait_s = self._fetch_queue, self.cfg.fetch_batch_size, self.cfg.fetch_batch_wait_ms / 1000
        linger_ns = self.cfg.fetch_linger_ms * 1_000_000
        while True:
            if not queue:
                self._fetch_wake.clear()
                await self._fetch_wake.wait()
            if len(queue) < batch_size:
                # Adaptive batching: with a request in flight, let a partial batch fill for up to the batch
                # wait; in any case until its oldest hash was announced fetch_linger_ms ago (ingestd.linger).
                delay = batch_delay_s(queue[0].first_seen_ns, time.time_ns(), linger_ns,
                                      wait_s if self._fetch_tasks else 0.0, len(queue))
                if delay > 0:
                    await asyncio.sleep(delay)
            await self._slots.acquire()  # bounded in flight: while we wait here, the queue absorbs (or drops)
            batch = [queue.popleft() for _ in range(min(batch_size, len(queue)))]
            if not batch:
                self._slots.release()
                continue
            task = asyncio.create_task(self._fetch_batch(batch))
            self._fetch_tasks.add(task)
            task.add_done_callback(self._fetch_done)

    def _fetch_done(self, task: asyncio.Task[None]) -> None:
        self._fetch_tasks.discard(task)
        self._slots.release()

    async def _fetch_batch(self, batch: list[_PendingFetch]) -> None:
        """Fetches the batch's transactions, then (one more batch) the node's raw bytes of those that need them."""
        drops, chain_id = self.stats.drops, self.chain.chain_id
        # Mapped full-tx envelopes that wait for the node's raw bytes (--raw-tx fetch, or a failed re-encoding).
        waiting = [(p.envelope, p.source_id) for p in batch if p.envelope is not None]
        by_hash = {p.tx_hash: p for p in batch if p.envelope is None}
        if by_hash:
            self._batch_hist.observe(len(by_hash))
            try:
                outcome = await self.fetcher.fetch(list(by_hash))
            except asyncio.CancelledError:
                drops.add(DropReason.SHUTDOWN, count=len(by_hash), detail="fetch cancelled at shutdown")
                self._send_without_raw(waiting)
                raise
            except Exception:  # a bug must not lose transactions silently: count them and keep going
                log.exception("fetch failed unexpectedly chain=%s batch=%d", self.chain.name, len(batch))
                for p in by_hash.values():
                    drops.add(DropReason.RPC_ERROR, p.source_id, detail="internal_error")
                outcome = None
            if outcome is not None:
                self._handle_fetched(outcome, by_hash, chain_id, waiting)
        if waiting:
            try:
                await self._fetch_raw(waiting)
            except asyncio.CancelledError:  # shutdown: they go on without raw bytes rather than being lost
                self._send_without_raw(waiting)
                raise

    def _send_without_raw(self, waiting: list[tuple[tx_pb2.TxEnvelope, str]]) -> None:
        for env, source_id in waiting:
            self.stats.raw_tx[RawOutcome.NODE_UNAVAILABLE] += 1
            self._send(env, source_id)

    def _handle_fetched(self, outcome: FetchOutcome, by_hash: dict[bytes, _PendingFetch], chain_id: int,
                        waiting: list[tuple[tx_pb2.TxEnvelope, str]]) -> None:
        """Maps and sends the fetched transactions (those whose raw bytes the node must give go to ``waiting``)
        and counts the hashes that were gone or failed."""
        drops = self.stats.drops
        self.stats.fetched += len(outcome.found)
        for tx_hash, tx in outcome.found:
            p = by_hash[tx_hash]
            try:
                envelope = tx_to_envelope(tx, chain_id, p.source_id, p.first_seen_ns, tx_hash)
            except MappingError as exc:
                drops.add(DropReason.MALFORMED, p.source_id, detail=str(exc)[:100])
                self._not_sent(tx_hash)
                continue
            if self._attach_raw(envelope):
                waiting.append((envelope, p.source_id))
            else:
                self._send(envelope, p.source_id)
        for tx_hash in outcome.gone:
            drops.add(DropReason.GONE_BEFORE_FETCH, by_hash[tx_hash].source_id)
            self._not_sent(tx_hash)
        for tx_hash, code in outcome.failed:
            reason = DropReason.RESPONSE_TOO_LARGE if code == TOO_LARGE else DropReason.RPC_ERROR
            drops.add(reason, by_hash[tx_hash].source_id, detail=code)
            self._not_sent(tx_hash)
            self.dedup.forget(tx_hash)  # another announcement may succeed later

    def _on_rpc_error(self, endpoint: str, code: str) -> None:
        self.stats.rpc_errors[(endpoint, code)] += 1

    def _on_rpc_latency(self, endpoint: str, seconds: float, size: int) -> None:
        self._latency.labels(self.chain.name, endpoint).observe(seconds)

    # -- health ----------------------------------------------------------------------------------------------

    def _on_subscribed(self, source_id: str, full_tx: bool) -> None:
        log.info("%s chain=%s chain_id=%d source=%s full_tx=%s", READY_LOG if not self._ready_logged else
                 "subscribed", self.chain.name, self.chain.chain_id, source_id, full_tx)
        self._ready_logged = True
        self.follow.subscribed()

    def _became_visible(self) -> None:
        if self.stats.visibility == _NOT_VISIBLE:
            log.info("mempool_visible chain=%s: pending transactions are arriving", self.chain.name)
        self.stats.visibility = _VISIBLE

    def _check_health(self, now: float) -> None:
        for src in self.stats.sources.values():
            since = max(src.last_notification_mono, src.subscribed_since_mono)
            silent = src.connected and now - since > self.cfg.source_silent_s
            if silent and not src.silent:
                log.warning("source_silent chain=%s source=%s silent_for_s=%.0f", self.chain.name, src.source_id,
                            now - since)
            elif src.silent and not silent and src.connected:
                log.info("source_active chain=%s source=%s", self.chain.name, src.source_id)
            src.silent = silent
        if self.stats.visibility == _VISIBLE:
            return
        subscribed = [s.subscribed_since_mono for s in self.stats.sources.values() if s.subscribed_since_mono]
        sequencer = self.chain.chain_id in SEQUENCER_CHAINS
        if sequencer or (subscribed and now - min(subscribed) > self.cfg.not_visible_after_s):
            self.stats.visibility = _NOT_VISIBLE
            if not self._visibility_logged:
                self._visibility_logged = True
                why = ("a sequencer chain without a public mempool" if sequencer else
                       f"no pending transaction in {self.cfg.not_visible_after_s:.0f}s since subscribing")
                log.warning("mempool_not_visible chain=%s chain_id=%d: %s", self.chain.name, self.chain.chain_id,
                            why)

    async def _watchdog(self) -> None:
        while True:
            self._check_health(time.monotonic())
            await asyncio.sleep(1.0)

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Starts the outbound stream, the batcher, the watchdog and every source."""
        if self._tasks:
            return
        self._started_mono = time.monotonic()
        await self.outbound.start()
        name = self.chain.name
        self._tasks = [asyncio.create_task(self._batcher(), name=f"batcher-{name}"),
                       asyncio.create_task(self._watchdog(), name=f"watchdog-{name}")]
        self._sources = [asyncio.create_task(s.run(), name=f"source-{name}-{s.source.source_id}")
                         for s in self.sources]
        heads, loops = self.follow.tasks(name)
        self._sources += heads
        self._tasks += loops + self._sources

    async def stop(self, grace_s: float) -> None:
        """Stops reading, fetches what is queued, flushes to processd and waits up to ``grace_s`` for acks."""
        if not self._tasks:
            return
        deadline = time.monotonic() + grace_s
        for task in self._sources:
            task.cancel()
        await self.follow.stop_backfill()
        while (self._fetch_queue or self._fetch_tasks) and time.monotonic() < deadline:
            if self._fetch_tasks:  # the batcher keeps draining the queue meanwhile
                await asyncio.wait(set(self._fetch_tasks), timeout=max(0.0, deadline - time.monotonic()),
                                   return_when=asyncio.FIRST_COMPLETED)
            else:
                await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        for task in list(self._fetch_tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._fetch_tasks, return_exceptions=True)
        self._tasks = []
        self._send_without_raw([(p.envelope, p.source_id) for p in self._fetch_queue if p.envelope is not None])
        unfetched = sum(p.envelope is None for p in self._fetch_queue)
        if unfetched:
            self.stats.drops.add(DropReason.SHUTDOWN, count=unfetched, detail="fetch queue at shutdown")
        self._fetch_queue.clear()
        self.follow.drop_unfetched()
        await self.outbound.stop(max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(Exception):
            await self.fetcher.aclose()
        for src in self.stats.sources.values():
            src.connected = False
