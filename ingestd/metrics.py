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
from ingestd.drops import SOURCELESS_REASONS, DropCounter, DropReason
from ingestd.notifications import REJECT_REASONS

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
    batches_sent: int = 0
    batches_resent: int = 0
    acks: int = 0
    processd_accepted: int = 0
    processd_duplicates: int = 0
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
        def counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, labels=labels)

        def gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=labels)

        seen = counter(f"{PREFIX}seen", "Distinct announcements that passed dedup", ["chain"])
        delivered = counter(f"{PREFIX}delivered", "Envelopes acknowledged by processd", ["chain"])
        sent = counter(f"{PREFIX}envelopes_sent", "Envelopes written to the processd stream (resends included)",
                       ["chain"])
        acks = counter(f"{PREFIX}acks", "IngestAcks received", ["chain"])
        fetched = counter(f"{PREFIX}fetched", "Transactions fetched by batch eth_getTransactionByHash", ["chain"])
        full_tx = counter(f"{PREFIX}full_tx_notifications", "Notifications carrying the full transaction",
                          ["chain"])
        resent = counter(f"{PREFIX}batches_resent", "Unacked batches resent after a stream reconnect", ["chain"])
        stream_rc = counter(f"{PREFIX}stream_reconnects", "Reconnects of the processd stream", ["chain"])
        storage_full = counter(f"{PREFIX}storage_full_retries",
                               "Batches processd answered storage_full (resent later)", ["chain"])
        notif = counter(f"{PREFIX}notifications", "Pending-transaction notifications received",
                        ["chain", "source"])
        dedup = counter(f"{PREFIX}dedup_hits", "Notifications of an already seen transaction", ["chain", "source"])
        rejected = counter(f"{PREFIX}notifications_rejected", "Messages rejected by the parser",
                           ["chain", "source", "reason"])
        reconnects = counter(f"{PREFIX}source_reconnects", "WebSocket reconnects", ["chain", "source"])
        gaps = counter(f"{PREFIX}source_gap_seconds", "Seconds a source was disconnected", ["chain", "source"])
        drops = counter(f"{PREFIX}drops", "Transactions not delivered, by reason (dedup is not a loss)",
                        ["chain", "source", "reason"])
        rpc_err = counter(f"{PREFIX}rpc_errors", "Fetch errors by endpoint and code",
                          ["chain", "endpoint", "code"])
        raw_tx = counter(f"{PREFIX}raw_tx", "Envelopes by where their signed raw bytes came from "
                         "(reencoded, node) or why they have none", ["chain", "outcome"])
        raw_fail = counter(f"{PREFIX}raw_tx_reencode_failures", "Re-encodings that gave no bytes hashing "
                           "to the transaction hash, by reason", ["chain", "reason"])
        connected = gauge(f"{PREFIX}source_connected", "1 when the source is subscribed", ["chain", "source"])
        silent = gauge(f"{PREFIX}source_silent", "1 when the source is silent beyond the watchdog threshold",
                       ["chain", "source"])
        visibility = gauge(f"{PREFIX}mempool_visible",
                           "1 pending txs arrive, 0 not visible (e.g. sequencer chain), -1 unknown yet", ["chain"])
        depth = gauge(f"{PREFIX}queue_depth", "Items in a bounded queue", ["chain", "queue"])
        capacity = gauge(f"{PREFIX}queue_capacity", "Bound of a queue", ["chain", "queue"])
        in_flight = gauge(f"{PREFIX}fetch_in_flight", "Batch fetch requests in flight", ["chain"])
        unacked = gauge(f"{PREFIX}unacked_batches", "Batches sent to processd and not yet acknowledged",
                        ["chain"])
        dedup_size = gauge(f"{PREFIX}dedup_entries", "Hashes held by the dedup set", ["chain"])
        wins = counter(f"{PREFIX}source_first_seen_wins", "Transactions this source announced first",
                       ["chain", "source"])
        sightings = counter(f"{PREFIX}source_sightings",
                            "Announcements of a transaction another source announced first, by outcome",
                            ["chain", "source", "outcome"])
        sightings_lost = counter(f"{PREFIX}sightings_lost",
                                 "Later sightings not sent (their envelope was not, or the outbound queue was full)",
                                 ["chain"])
        sightings_acked = counter(f"{PREFIX}sightings_acked",
                                  "Sightings processd acknowledged, by result (stored, ignored: repeat or unknown tx)",
                                  ["chain", "result"])
        log_size = gauge(f"{PREFIX}source_log_entries", "Transactions held by the source log", ["chain"])
        log_cap = gauge(f"{PREFIX}source_log_capacity", "Bound of the source log (0 = single source)",
                        ["chain"])
        for c in list(self._chains()):
            ch = c.name
            seen.add_metric([ch], c.seen)
            delivered.add_metric([ch], c.delivered)
            sent.add_metric([ch], c.envelopes_sent)
            acks.add_metric([ch], c.acks)
            fetched.add_metric([ch], c.fetched)
            full_tx.add_metric([ch], c.full_tx_received)
            resent.add_metric([ch], c.batches_resent)
            stream_rc.add_metric([ch], c.stream_reconnects)
            storage_full.add_metric([ch], c.storage_full_retries)
            vis = {ingest_pb2.MEMPOOL_VISIBILITY_VISIBLE: 1, ingest_pb2.MEMPOOL_VISIBILITY_NOT_VISIBLE: 0}
            visibility.add_metric([ch], vis.get(c.visibility, -1))  # type: ignore[call-overload]
            for s in list(c.sources.values()):
                notif.add_metric([ch, s.source_id], s.notifications)
                dedup.add_metric([ch, s.source_id], s.dedup_hits)
                reconnects.add_metric([ch, s.source_id], s.reconnects)
                gaps.add_metric([ch, s.source_id], s.gap_seconds)
                connected.add_metric([ch, s.source_id], 1 if s.connected else 0)
                silent.add_metric([ch, s.source_id], 1 if s.silent else 0)
                # Every known parser reason at zero from start; a reason added later still shows up.
                by_reason = dict.fromkeys(REJECT_REASONS, 0) | dict(list(s.rejected.items()))
                for reason, n in by_reason.items():
                    rejected.add_metric([ch, s.source_id, reason], n)
                wins.add_metric([ch, s.source_id], s.first_seen_wins)
                for outcome, n in list(s.sightings.items()):
                    sightings.add_metric([ch, s.source_id, outcome], n)
            # Drops at zero from start: each source with the reasons a source is named for, and source "" with
            # the reasons counted for the chain as a whole (shutdown, rejected by processd).
            counts = {(src, r): 0 for src in list(c.sources) for r in _SOURCE_DROP_REASONS}
            counts.update({("", r): 0 for r in SOURCELESS_REASONS})
            counts.update(list(c.drops.counts.items()))
            for (source, reason), n in counts.items():
                drops.add_metric([ch, source, reason.value], n)
            for (endpoint, code), n in list(c.rpc_errors.items()):
                rpc_err.add_metric([ch, endpoint, code], n)
            for outcome, n in (dict.fromkeys(RAW_OUTCOMES, 0) | dict(list(c.raw_tx.items()))).items():
                raw_tx.add_metric([ch, outcome], n)
            failures = dict.fromkeys(FAILURE_REASONS, 0) | dict(list(c.raw_tx_reencode_failures.items()))
            for reason, n in failures.items():
                raw_fail.add_metric([ch, reason], n)
            for queue, (depth_fn, cap) in list(c.queues.items()):
                depth.add_metric([ch, queue], depth_fn())
                capacity.add_metric([ch, queue], cap)
            in_flight.add_metric([ch], c.in_flight())
            unacked.add_metric([ch], c.unacked_batches())
            dedup_size.add_metric([ch], c.dedup_entries())
            sightings_lost.add_metric([ch], c.sightings_lost)
            sightings_acked.add_metric([ch, "stored"], c.sightings_stored)
            sightings_acked.add_metric([ch, "ignored"], c.sightings_ignored)
            log_size.add_metric([ch], c.source_log_entries())
            log_cap.add_metric([ch], c.source_log_capacity)
        yield from (seen, delivered, sent, acks, fetched, full_tx, resent, stream_rc, storage_full, notif, dedup,
                    rejected, reconnects, gaps, drops, rpc_err, raw_tx, raw_fail, connected, silent, visibility, depth,
                    capacity, in_flight, unacked, dedup_size, wins, sightings, sightings_lost, sightings_acked,
                    log_size, log_cap)
