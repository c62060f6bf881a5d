"""Per-chain ingest counters and their Prometheus exposition.

Hot-path counting is plain attribute increments on :class:`ChainStats` (one object per chain worker, no
locks, no label lookups per transaction). :class:`IngestCollector` turns them into Prometheus metric
families at scrape time; only the per-batch histograms are prometheus-client objects.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from common.pb.v1 import ingest_pb2
from common.rawtx import FAILURE_REASONS
from ingestd.backfill import RUN_OUTCOMES, TX_OUTCOMES, BackfillStats
from ingestd.drops import SOURCELESS_REASONS, DropCounter, DropReason
from ingestd.notifications import REJECT_REASONS
from ingestd.pending import RECHECK_OUTCOMES, PendingStats

#: The prefix of every ingestd series (docs/operations.md#metrics).
PREFIX = "mempulse_ingestd_"

LATENCY_BUCKETS_S = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2,
                     0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class RawOutcome:
    """Labels of ``mempulse_ingestd_raw_tx_total{outcome}``: where an envelope's raw_tx came from, or why it has
    none (it is sent without: a missing raw_tx never costs the transaction)."""

    REENCODED = "reencoded"
    NODE = "node"
    #: r = s = 0 (anvil's impersonated senders): no bytes with that signature hash to the tx hash; not fetched.
    UNSIGNED = "unsigned"
    #: The node's eth_getRawTransactionByHash answer did not hash to the transaction hash.
    NODE_HASH_MISMATCH = "node_hash_mismatch"
    #: The node had no answer (null, an error, method unsupported, the fetch failed).
    NODE_UNAVAILABLE = "node_unavailable"
    #: The fetch queue was full: the envelope went on without its raw bytes.
    FETCH_QUEUE_FULL = "fetch_queue_full"


#: Every raw_tx outcome (exported at zero from start, like common.rawtx.FAILURE_REASONS).
RAW_OUTCOMES = tuple(v for k, v in vars(RawOutcome).items() if k.isupper())


@dataclass
class SourceStats:
    """Health and counters of one WebSocket source."""

    source_id: str
    connected: bool = False
    silent: bool = False
    full_tx: bool = False
    notifications: int = 0
    dedup_hits: int = 0
    #: Transactions this source announced first (its announcement passed dedup).
    first_seen_wins: int = 0
    #: Later announcements of a transaction another source announced first, by SightingOutcome.
    sightings: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    reconnects: int = 0
    gaps: int = 0
    gap_seconds: float = 0.0
    rejected: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    last_notification_unix_ms: int = 0
    last_notification_mono: float = 0.0
    subscribed_since_mono: float = 0.0

    def to_proto(self) -> ingest_pb2.SourceHealth:
        return ingest_pb2.SourceHealth(source_id=self.source_id, connected=self.connected, silent=self.silent,
                                       notifications=self.notifications, reconnects=self.reconnects,
                                       last_notification_unix_ms=self.last_notification_unix_ms)


class BlockDrop:
    """Why a block (a height) did not reach processd: ``mempulse_ingestd_block_drops_total{reason}``, and
    ``block_<reason>`` in ``ChainIngestStats.dropped`` (processd's transaction drop ratio leaves those out)."""

    QUEUE_FULL = "queue_full"  # the block queue (heights waiting to be fetched) was at its bound
    GAP_TOO_LARGE = "gap_too_large"  # the head jumped by more than max_block_gap: the heights beyond were skipped
    UNAVAILABLE = "unavailable"  # the node answered null for the height on every attempt
    RPC_ERROR = "rpc_error"  # eth_getBlockByNumber failed on every endpoint after retries (429, timeout, ...)
    MALFORMED = "malformed"  # the block object could not be mapped (a hash-only block included)
    WRONG_CHAIN = "wrong_chain"  # a transaction's chainId is not the chain's: the node serves another chain
    OUTBOUND_QUEUE_FULL = "outbound_queue_full"  # the outbound queue was at its bound (processd slow)
    SHUTDOWN = "shutdown"  # queued or unacked when ingestd stopped
    #: a reorg's new branch went deeper than max_reorg_depth: the blocks below it were not sent (one per reorg)
    REORG_TOO_DEEP = "reorg_too_deep"


#: Every block drop reason (exported at zero from start).
BLOCK_DROP_REASONS = tuple(v for k, v in vars(BlockDrop).items() if k.isupper())


@dataclass
class BlockStats:
    """Counters of one chain's block follower (``ingestd.blocks``)."""

    #: Head announcements (WS newHeads notifications and poll answers with a new height).
    heads: int = 0
    #: Blocks fetched and mapped (receipts applied), sent to the outbound queue, acked stored / ignored.
    fetched: int = 0
    sent: int = 0
    stored: int = 0
    ignored: int = 0
    #: Transactions of fetched blocks that got no receipt (status unknown), and blocks cut at max_block_txs.
    receipts_missing: int = 0
    truncated: int = 0
    #: New blocks whose parent was not the block delivered below them (their branch was walked back and sent).
    reorgs: int = 0
    #: Head messages that were not a usable header, by reason.
    heads_rejected: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    drops: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    #: The newHeads subscriptions' own health, by source id (not the pending feed's ``ChainStats.sources``).
    head_sources: dict[str, SourceStats] = field(default_factory=dict)


#: Why a pool state was not learned or sent (``mempulse_ingestd_pool_drops_total{reason}``; ingestd.pools).
POOL_DROP_REASONS = ("bad_path", "queue_full", "evicted", "no_pair", "rpc_error", "bad_log", "outbound_queue_full")


@dataclass
class PoolStats:
    """Counters of one chain's pool state path (``ingestd.pools``)."""

    #: Pending router swaps whose path was read.
    swaps: int = 0
    #: Pool states from getReserves reads and from Sync logs, sent to the outbound queue, acked stored / ignored.
    reads: int = 0
    sync_logs: int = 0
    sent: int = 0
    stored: int = 0
    ignored: int = 0
    #: Blocks after a gap or a reorg (every tracked pair read again).
    resyncs: int = 0
    #: Node requests by method (eth_call counts each call of a batch).
    rpc_calls: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    drops: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    #: Tracked pairs and pairs waiting for a read (set by the worker: gauges).
    tracked: Callable[[], int] = field(default_factory=lambda: lambda: 0)
    waiting: Callable[[], int] = field(default_factory=lambda: lambda: 0)


@dataclass
class ChainStats:
    """Cumulative counters of one chain worker.

    Accounting: ``seen == delivered + dropped (loss reasons) + in pipeline``, where ``seen`` counts every
    announcement that passed dedup (malformed ones included, they are dropped as ``malformed``) and
    ``delivered`` counts envelopes processd acknowledged (stored or already stored).
    """

    chain_id: int
    name: str
    drops: DropCounter
    sources: dict[str, SourceStats] = field(default_factory=dict)
    seen: int = 0
    delivered: int = 0
    envelopes_sent: int = 0
    batches_resent: int = 0
    acks: int = 0
    stream_reconnects: int = 0
    storage_full_retries: int = 0
    fetched: int = 0
    full_tx_received: int = 0
    #: Later sightings recorded but never sent: their envelope was not sent, or the outbound queue was full.
    sightings_lost: int = 0
    #: Sightings processd stored / ignored (IngestAck.sightings_stored / sightings_ignored).
    sightings_stored: int = 0
    sightings_ignored: int = 0
    rpc_errors: defaultdict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    #: Where each envelope's raw_tx came from, or why it has none (ingestd.chains.worker.RawOutcome).
    raw_tx: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    #: Why re-encoding gave no verified bytes (common.rawtx.RawTxError reasons), each time it did not.
    raw_tx_reencode_failures: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    visibility: int = ingest_pb2.MEMPOOL_VISIBILITY_UNSPECIFIED
    #: queue name -> (current depth, capacity); filled in by the worker.
    queues: dict[str, tuple[Callable[[], int], int]] = field(default_factory=dict)
    in_flight: Callable[[], int] = lambda: 0
    unacked_batches: Callable[[], int] = lambda: 0
    dedup_entries: Callable[[], int] = lambda: 0
    #: Transactions held by the chain's source log, and its bound (0 = no source log: a single source).
    source_log_entries: Callable[[], int] = lambda: 0
    source_log_capacity: int = 0
    #: The block follower's counters (None when blocks are not followed).
    blocks: BlockStats | None = None
    #: The pending tracker's counters (None when pending_recheck_interval_ms is 0 or blocks are not followed).
    pending: PendingStats | None = None
    #: The backfill's counters (None when backfill_max_txs is 0).
    backfill: BackfillStats | None = None
    #: The pool state path's counters (None when it is off).
    pools: PoolStats | None = None

    def source(self, source_id: str) -> SourceStats:
        if source_id not in self.sources:
            self.sources[source_id] = SourceStats(source_id)
        return self.sources[source_id]

    def to_proto(self) -> ingest_pb2.ChainIngestStats:
        """The cumulative ChainIngestStats forwarded to processd.

        Dedup hits are left out of ``dropped``: they are not losses, and processd's drop ratio sums
        ``dropped`` (they stay visible in ingestd's own metrics as ``mempulse_ingestd_dedup_hits_total``).
        """
        dropped = [ingest_pb2.DropCount(reason=r, count=n) for r, n in sorted(self.drops.by_reason().items())
                   if r != DropReason.DEDUP.value]
        if self.blocks is not None:  # blocks, not transactions: prefixed, and left out of the drop ratio
            dropped += [ingest_pb2.DropCount(reason=f"block_{r}", count=n)
                        for r, n in sorted(self.blocks.drops.items()) if n]
        return ingest_pb2.ChainIngestStats(
            chain_id=self.chain_id, seen=self.seen, delivered=self.delivered, dropped=dropped,
            sources=[s.to_proto() for s in self.sources.values()], visibility=self.visibility,  # type: ignore[arg-type]
            as_of_unix_ms=int(time.time() * 1000))


class Histograms:
    """The per-batch histograms (prometheus-client objects in one registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.fetch_batch_size = Histogram(f"{PREFIX}fetch_batch_hashes",
                                          "Hashes per eth_getTransactionByHash batch",
                                          ["chain"], buckets=BATCH_BUCKETS, registry=registry)
        self.rpc_latency = Histogram(f"{PREFIX}rpc_latency_seconds", "Batch JSON-RPC request latency",
                                     ["chain", "endpoint"], buckets=LATENCY_BUCKETS_S, registry=registry)
        self.outbound_batch_size = Histogram(f"{PREFIX}outbound_batch_envelopes",
                                             "Envelopes per TxBatch sent to processd",
                                             ["chain"], buckets=BATCH_BUCKETS, registry=registry)
        self.enqueue_latency = Histogram(f"{PREFIX}notification_to_enqueue_seconds",
                                         "From the pending notification to the envelope entering the outbound queue "
                                         "(parse, dedup, fetch queue, batch fetch, mapping)",
                                         ["chain"], buckets=LATENCY_BUCKETS_S, registry=registry)
        self.stream_ack_latency = Histogram(f"{PREFIX}stream_ack_seconds",
                                            "From writing a TxBatch to processd's ack (gRPC + commit + ack)",
                                            ["chain"], buckets=LATENCY_BUCKETS_S, registry=registry)
        self.source_lag = Histogram(f"{PREFIX}source_lag_seconds",
                                    "How long after the first source another source announced the same transaction",
                                    ["chain", "source"], buckets=LATENCY_BUCKETS_S, registry=registry)
        self.block_latency = Histogram(f"{PREFIX}block_latency_seconds",
                                       "From a new head seen (notification or poll) to its block and receipts "
                                       "fetched and mapped", ["chain"], buckets=LATENCY_BUCKETS_S,
                                       registry=registry)
        self.ack_latency = Histogram(f"{PREFIX}notification_to_ack_seconds",
                                     "From the pending notification to processd's durable ack, per envelope",
                                     ["chain"], buckets=LATENCY_BUCKETS_S, registry=registry)


#: Drop reasons a source is named for (the others are counted for the chain, with source "").
_SOURCE_DROP_REASONS = tuple(r for r in DropReason if r not in SOURCELESS_REASONS)


class IngestCollector(Collector):
    """Exposes every chain's :class:`ChainStats` as Prometheus metrics at scrape time.

    Scrapes run on prometheus-client's HTTP thread while the event loop mutates the counters: every dict is
    copied with ``list(...)`` (one C-level call under the GIL) before iterating, so a key added meanwhile
    cannot break the iteration; values are plain ints, so a scrape sees each one consistently.
    """

    def __init__(self, chains: Callable[[], Iterable[ChainStats]]) -> None:
        self._chains = chains

    def collect(self) -> Iterator[Metric]:
        scrape = _Scrape()
        for c in list(self._chains()):
            scrape.add(c)
        yield from scrape.families()


def _counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}{name}", doc, labels=labels)


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}{name}", doc, labels=labels)


_VISIBILITY = {ingest_pb2.MEMPOOL_VISIBILITY_VISIBLE: 1, ingest_pb2.MEMPOOL_VISIBILITY_NOT_VISIBLE: 0}


class _Scrape:
    """The metric families of one scrape, filled chain by chain (:meth:`add`); each family is filled in one place
    only, so its samples come in chain order whatever order the families are filled in."""

    def __init__(self) -> None:
        self._chain_families()
        self._source_families()
        self._pipeline_families()
        self._block_families()
        self._lifecycle_families()
        self._pool_families()

    def _lifecycle_families(self) -> None:
        self.reorgs = _counter("reorgs", "New blocks whose parent was not the block delivered below them (their new "
                               "branch was walked back and sent)", ["chain"])
        self.pending_tracked = _gauge("pending_tracked", "Hashes delivered as pending, not yet seen in a block, "
                                      "re-checked with the node", ["chain"])
        self.pending_capacity = _gauge("pending_tracked_capacity", "Bound of the pending tracker", ["chain"])
        self.pending_untracked = _counter("pending_untracked", "Hashes the pending tracker stopped tracking, by "
                                          "reason (overflow: the set was full; included: seen in a followed block; "
                                          "superseded: a replacement with its sender and nonce was delivered)",
                                          ["chain", "reason"])
        self.pending_rechecks = _counter("pending_rechecks", "Re-checks of tracked pending hashes, by the node's "
                                         "answer", ["chain", "outcome"])
        self.pending_requests = _counter("pending_recheck_requests", "JSON-RPC batch requests made by re-checks",
                                         ["chain"])
        self.gone = _counter("gone", "TxGone (the node dropped a pending transaction) by stage: sent, queue_full "
                             "(retried next round), stored / ignored by processd's ack, shutdown (unacked)",
                             ["chain", "stage"])
        self.backfill_runs = _counter("backfill_runs", "txpool_content backfills by outcome", ["chain", "outcome"])
        self.backfill_txs = _counter("backfill_txs", "Transactions of the node's pool met by a backfill, by outcome",
                                     ["chain", "outcome"])

    def _add_lifecycle(self, ch: str, c: ChainStats) -> None:
        if c.blocks is not None:
            self.reorgs.add_metric([ch], c.blocks.reorgs)
        p = c.pending
        if p is not None:
            self.pending_tracked.add_metric([ch], p.tracked())
            self.pending_capacity.add_metric([ch], p.capacity)
            self.pending_untracked.add_metric([ch, "overflow"], p.overflow)
            self.pending_untracked.add_metric([ch, "included"], p.included)
            self.pending_untracked.add_metric([ch, "superseded"], p.superseded)
            for outcome, n in (dict.fromkeys(RECHECK_OUTCOMES, 0) | dict(list(p.checks.items()))).items():
                self.pending_rechecks.add_metric([ch, outcome], n)
            self.pending_requests.add_metric([ch], p.requests)
            for stage, n in (("sent", p.gone_sent), ("queue_full", p.gone_queue_full), ("stored", p.gone_stored),
                             ("ignored", p.gone_ignored), ("shutdown", p.gone_shutdown)):
                self.gone.add_metric([ch, stage], n)
        b = c.backfill
        if b is not None:
            for outcome, n in (dict.fromkeys(RUN_OUTCOMES, 0) | dict(list(b.runs.items()))).items():
                self.backfill_runs.add_metric([ch, outcome], n)
            for outcome, n in (dict.fromkeys(TX_OUTCOMES, 0) | dict(list(b.txs.items()))).items():
                self.backfill_txs.add_metric([ch, outcome], n)

    def _pool_families(self) -> None:
        self.pool_swaps = _counter("pool_swaps", "Pending V2 router swaps whose token path was read", ["chain"])
        self.pool_states = _counter("pool_states", "Pool states by stage: read (getReserves), sync_log, sent to "
                                    "processd, stored / ignored by processd's ack", ["chain", "stage"])
        self.pool_drops = _counter("pool_drops", "Pool states not learned or not sent, by reason", ["chain", "reason"])
        self.pool_rpc = _counter("pool_rpc_calls", "Node calls of the pool state path by method", ["chain", "method"])
        self.pool_resyncs = _counter("pool_resyncs", "Blocks after a gap or reorg (every tracked pair read again)",
                                     ["chain"])
        self.pool_pairs = _gauge("pool_pairs", "Pairs by state: tracked, waiting (for a getReserves read)",
                                 ["chain", "state"])

    def _add_pools(self, ch: str, p: PoolStats) -> None:
        self.pool_swaps.add_metric([ch], p.swaps)
        for stage, n in (("read", p.reads), ("sync_log", p.sync_logs), ("sent", p.sent), ("stored", p.stored),
                         ("ignored", p.ignored)):
            self.pool_states.add_metric([ch, stage], n)
        for reason, n in (dict.fromkeys(POOL_DROP_REASONS, 0) | dict(list(p.drops.items()))).items():
            self.pool_drops.add_metric([ch, reason], n)
        for method, n in (dict.fromkeys(("eth_getLogs", "eth_call"), 0) | dict(list(p.rpc_calls.items()))).items():
            self.pool_rpc.add_metric([ch, method], n)
        self.pool_resyncs.add_metric([ch], p.resyncs)
        self.pool_pairs.add_metric([ch, "tracked"], p.tracked())
        self.pool_pairs.add_metric([ch, "waiting"], p.waiting())

    def _block_families(self) -> None:
        self.block_heads = _counter("block_heads", "New heads announced (newHeads notifications, poll answers)",
                                    ["chain"])
        self.blocks = _counter("blocks", "Blocks by stage: fetched (with receipts), sent to processd, stored / "
                               "ignored (duplicate) by processd's ack", ["chain", "stage"])
        self.block_drops = _counter("block_drops", "Blocks (heights) not delivered, by reason", ["chain", "reason"])
        self.block_receipts_missing = _counter(
            "block_receipts_missing", "Included transactions sent without a receipt (status unknown)", ["chain"])
        self.block_truncated = _counter("blocks_truncated", "Blocks sent with only their first max_block_txs "
                                        "transactions", ["chain"])
        self.heads_rejected = _counter("heads_rejected", "newHeads messages that were not a usable header",
                                       ["chain", "reason"])
        self.head_connected = _gauge("head_source_connected", "1 when the source's newHeads subscription is up",
                                     ["chain", "source"])
        self.head_reconnects = _counter("head_source_reconnects", "Reconnects of the newHeads WebSocket",
                                        ["chain", "source"])

    def _add_blocks(self, ch: str, b: BlockStats) -> None:
        self.block_heads.add_metric([ch], b.heads)
        for stage, n in (("fetched", b.fetched), ("sent", b.sent), ("stored", b.stored), ("ignored", b.ignored)):
            self.blocks.add_metric([ch, stage], n)
        for reason, n in (dict.fromkeys(BLOCK_DROP_REASONS, 0) | dict(list(b.drops.items()))).items():
            self.block_drops.add_metric([ch, reason], n)
        self.block_receipts_missing.add_metric([ch], b.receipts_missing)
        self.block_truncated.add_metric([ch], b.truncated)
        for reason, n in list(b.heads_rejected.items()):
            self.heads_rejected.add_metric([ch, reason], n)
        for s in list(b.head_sources.values()):
            self.head_connected.add_metric([ch, s.source_id], 1 if s.connected else 0)
            self.head_reconnects.add_metric([ch, s.source_id], s.reconnects)

    def _chain_families(self) -> None:
        self.seen = _counter("seen", "Distinct announcements that passed dedup", ["chain"])
        self.delivered = _counter("delivered", "Envelopes acknowledged by processd", ["chain"])
        self.sent = _counter("envelopes_sent", "Envelopes written to the processd stream (resends included)",
                             ["chain"])
        self.acks = _counter("acks", "IngestAcks received", ["chain"])
        self.fetched = _counter("fetched", "Transactions fetched by batch eth_getTransactionByHash", ["chain"])
        self.full_tx = _counter("full_tx_notifications", "Notifications carrying the full transaction", ["chain"])
        self.resent = _counter("batches_resent", "Unacked batches resent after a stream reconnect", ["chain"])
        self.stream_rc = _counter("stream_reconnects", "Reconnects of the processd stream", ["chain"])
        self.storage_full = _counter("storage_full_retries", "Batches processd answered storage_full (resent later)",
                                     ["chain"])
        self.drops = _counter("drops", "Transactions not delivered, by reason (dedup is not a loss)",
                              ["chain", "source", "reason"])
        self.rpc_err = _counter("rpc_errors", "Fetch errors by endpoint and code", ["chain", "endpoint", "code"])
        self.raw_tx = _counter("raw_tx", "Envelopes by where their signed raw bytes came from "
                               "(reencoded, node) or why they have none", ["chain", "outcome"])
        self.raw_fail = _counter("raw_tx_reencode_failures", "Re-encodings that gave no bytes hashing "
                                 "to the transaction hash, by reason", ["chain", "reason"])
        self.visibility = _gauge(
            "mempool_visible", "1 pending txs arrive, 0 not visible (e.g. sequencer chain), -1 unknown yet", ["chain"])

    def _source_families(self) -> None:
        by_source = ["chain", "source"]
        self.notif = _counter("notifications", "Pending-transaction notifications received", by_source)
        self.dedup = _counter("dedup_hits", "Notifications of an already seen transaction", by_source)
        self.rejected = _counter("notifications_rejected", "Messages rejected by the parser",
                                 ["chain", "source", "reason"])
        self.reconnects = _counter("source_reconnects", "WebSocket reconnects", by_source)
        self.gaps = _counter("source_gap_seconds", "Seconds a source was disconnected", by_source)
        self.connected = _gauge("source_connected", "1 when the source is subscribed", by_source)
        self.silent = _gauge("source_silent", "1 when the source is silent beyond the watchdog threshold", by_source)
        self.wins = _counter("source_first_seen_wins", "Transactions this source announced first", by_source)
        self.sightings = _counter("source_sightings",
                                  "Announcements of a transaction another source announced first, by outcome",
                                  ["chain", "source", "outcome"])
        self.sightings_lost = _counter(
            "sightings_lost", "Later sightings not sent (their envelope was not, or the outbound queue was full)",
            ["chain"])
        self.sightings_acked = _counter(
            "sightings_acked", "Sightings processd acknowledged, by result (stored, ignored: repeat or unknown tx)",
            ["chain", "result"])

    def _pipeline_families(self) -> None:
        self.depth = _gauge("queue_depth", "Items in a bounded queue", ["chain", "queue"])
        self.capacity = _gauge("queue_capacity", "Bound of a queue", ["chain", "queue"])
        self.in_flight = _gauge("fetch_in_flight", "Batch fetch requests in flight", ["chain"])
        self.unacked = _gauge("unacked_batches", "Batches sent to processd and not yet acknowledged", ["chain"])
        self.dedup_size = _gauge("dedup_entries", "Hashes held by the dedup set", ["chain"])
        self.log_size = _gauge("source_log_entries", "Transactions held by the source log", ["chain"])
        self.log_cap = _gauge("source_log_capacity", "Bound of the source log (0 = single source)", ["chain"])

    def families(self) -> tuple[Metric, ...]:
        """Every family, in the order of the exposition."""
        return (self.seen, self.delivered, self.sent, self.acks, self.fetched, self.full_tx, self.resent,
                self.stream_rc, self.storage_full, self.notif, self.dedup, self.rejected, self.reconnects, self.gaps,
                self.drops, self.rpc_err, self.raw_tx, self.raw_fail, self.connected, self.silent, self.visibility,
                self.depth, self.capacity, self.in_flight, self.unacked, self.dedup_size, self.wins, self.sightings,
                self.sightings_lost, self.sightings_acked, self.log_size, self.log_cap, self.block_heads, self.blocks,
                self.block_drops, self.block_receipts_missing, self.block_truncated, self.heads_rejected,
                self.head_connected, self.head_reconnects, self.reorgs, self.pending_tracked, self.pending_capacity,
                self.pending_untracked, self.pending_rechecks, self.pending_requests, self.gone, self.backfill_runs,
                self.backfill_txs, self.pool_swaps, self.pool_states, self.pool_drops, self.pool_rpc,
                self.pool_resyncs, self.pool_pairs)

    def add(self, c: ChainStats) -> None:
        """Adds chain ``c``'s samples to every family."""
        ch = c.name
        for family, value in ((self.seen, c.seen), (self.delivered, c.delivered), (self.sent, c.envelopes_sent),
                              (self.acks, c.acks), (self.fetched, c.fetched), (self.full_tx, c.full_tx_received),
                              (self.resent, c.batches_resent), (self.stream_rc, c.stream_reconnects),
                              (self.storage_full, c.storage_full_retries)):
            family.add_metric([ch], value)
        self.visibility.add_metric([ch], _VISIBILITY.get(c.visibility, -1))  # type: ignore[call-overload]
        for s in list(c.sources.values()):
            self._add_source(ch, s)
        self._add_drops(ch, c)
        for (endpoint, code), n in list(c.rpc_errors.items()):
            self.rpc_err.add_metric([ch, endpoint, code], n)
        for outcome, n in (dict.fromkeys(RAW_OUTCOMES, 0) | dict(list(c.raw_tx.items()))).items():
            self.raw_tx.add_metric([ch, outcome], n)
        failures = dict.fromkeys(FAILURE_REASONS, 0) | dict(list(c.raw_tx_reencode_failures.items()))
        for reason, n in failures.items():
            self.raw_fail.add_metric([ch, reason], n)
        self._add_pipeline(ch, c)
        if c.blocks is not None:
            self._add_blocks(ch, c.blocks)
        self._add_lifecycle(ch, c)
        if c.pools is not None:
            self._add_pools(ch, c.pools)

    def _add_source(self, ch: str, s: SourceStats) -> None:
        self.notif.add_metric([ch, s.source_id], s.notifications)
        self.dedup.add_metric([ch, s.source_id], s.dedup_hits)
        self.reconnects.add_metric([ch, s.source_id], s.reconnects)
        self.gaps.add_metric([ch, s.source_id], s.gap_seconds)
        self.connected.add_metric([ch, s.source_id], 1 if s.connected else 0)
        self.silent.add_metric([ch, s.source_id], 1 if s.silent else 0)
        # Every known parser reason at zero from start; a reason added later still shows up.
        by_reason = dict.fromkeys(REJECT_REASONS, 0) | dict(list(s.rejected.items()))
        for reason, n in by_reason.items():
            self.rejected.add_metric([ch, s.source_id, reason], n)
        self.wins.add_metric([ch, s.source_id], s.first_seen_wins)
        for outcome, n in list(s.sightings.items()):
            self.sightings.add_metric([ch, s.source_id, outcome], n)

    def _add_drops(self, ch: str, c: ChainStats) -> None:
        # Drops at zero from start: each source with the reasons a source is named for, and source "" with
        # the reasons counted for the chain as a whole (shutdown, rejected by processd).
        counts = {(src, r): 0 for src in list(c.sources) for r in _SOURCE_DROP_REASONS}
        counts.update({("", r): 0 for r in SOURCELESS_REASONS})
        counts.update(list(c.drops.counts.items()))
        for (source, reason), n in counts.items():
            self.drops.add_metric([ch, source, reason.value], n)

    def _add_pipeline(self, ch: str, c: ChainStats) -> None:
        for queue, (depth_fn, cap) in list(c.queues.items()):
            self.depth.add_metric([ch, queue], depth_fn())
            self.capacity.add_metric([ch, queue], cap)
        self.in_flight.add_metric([ch], c.in_flight())
        self.unacked.add_metric([ch], c.unacked_batches())
        self.dedup_size.add_metric([ch], c.dedup_entries())
        self.sightings_lost.add_metric([ch], c.sightings_lost)
        self.sightings_acked.add_metric([ch, "stored"], c.sightings_stored)
        self.sightings_acked.add_metric([ch, "ignored"], c.sightings_ignored)
        self.log_size.add_metric([ch], c.source_log_entries())
        self.log_cap.add_metric([ch], c.source_log_capacity)
