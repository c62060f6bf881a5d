"""Prometheus metrics of processd, in a registry of its own (several servers can live in one test process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from processd.eventlog import AGG_SOURCE, AGG_SOURCE_LATER, AGG_SOURCE_WINS, U64

_BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 4000, 8000, 16000, 32000)
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ProcessdMetrics:
    """Every processd metric; gauges over live structures are bound with ``set_function`` by the server."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.commit_envelopes = Histogram("processd_commit_envelopes", "Envelopes per group commit",
                                          buckets=_BATCH_BUCKETS, registry=r)
        self.commit_events = Histogram("processd_commit_events", "Events per group commit",
                                       buckets=_BATCH_BUCKETS, registry=r)
        self.commit_seconds = Histogram("processd_commit_seconds",
                                        "Group commit latency (dedup, seqs, puts, commit with fsync in sync mode)",
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.ack_seconds = Histogram("processd_ack_latency_seconds", "Batch received to ack sent",
                                     buckets=_LATENCY_BUCKETS, registry=r)
        self.events = Counter("processd_events", "Events committed to the log", ["kind"], registry=r)
        self.envelopes = Counter("processd_envelopes", "Envelopes received, by outcome", ["outcome"], registry=r)
        self.rejects = Counter("processd_rejects", "Envelopes rejected, by reason", ["reason"], registry=r)
        self.sightings = Counter("mempulse_processd_sightings", "Later-source sightings (TxBatch.sightings) by "
                                 "outcome: stored, repeat, unknown_tx, over_limit, invalid", ["outcome"], registry=r)
        self.analysis_errors = Counter("processd_analysis_errors", "Transactions whose analysis raised (stored "
                                       "undecoded)", registry=r)
        self.pruned = Counter("processd_pruned_events", "Events removed by retention", registry=r)
        self.map_grows = Counter("processd_map_grows", "LMDB map size increases", registry=r)
        self.resource_exhausted = Counter("processd_resource_exhausted", "RESOURCE_EXHAUSTED answers, by cause",
                                          ["cause"], registry=r)
        self.subscriber_cuts = Counter("processd_subscriber_cuts", "Subscribers cut off, by reason", ["reason"],
                                       registry=r)
        self.ingest_stats_rejected = Counter(
            "processd_ingest_stats_rejected", "ChainIngestStats entries of Ingest.Stream not kept (rejected for a "
            "bound, or evicted to make room), by reason; the batch's transactions are unaffected", ["reason"],
            registry=r)
        self.ingest_stats_bytes = Gauge("processd_ingest_stats_bytes", "Bytes of ChainIngestStats held (serialized "
                                        "size of the bounded copies)", registry=r)
        self.bad_requests = Counter("processd_bad_requests", "INVALID_ARGUMENT answers, by RPC", ["rpc"], registry=r)
        self.storage_full_groups = Counter("processd_storage_full_groups", "Commit groups refused as storage_full, by "
                                           "cause (map_full: map at its max size; disk_full: the write failed "
                                           "for lack of space or with an I/O error)", ["cause"], registry=r)
        self.disk_full = Gauge("processd_disk_full", "1 while ingest is refused because the last commit failed for "
                               "lack of disk space (retried every disk_full_retry_ms)", registry=r)
        self.storage_bytes = Gauge("processd_storage_bytes", "LMDB bytes in use", registry=r)
        self.map_size_bytes = Gauge("processd_map_size_bytes", "LMDB map size", registry=r)
        self.last_seq = Gauge("processd_last_seq", "Highest committed seq id", registry=r)
        self.subscribers = Gauge("processd_subscribers", "Live SubscribeEvents streams", registry=r)
        self.ingest_streams = Gauge("processd_ingest_streams", "Open Ingest.Stream calls", registry=r)
        self.queue_envelopes = Gauge("processd_commit_queue_envelopes", "Envelopes waiting for commit", registry=r)
        self.queue_capacity = Gauge("processd_commit_queue_capacity", "Commit queue bound (envelopes)", registry=r)
        self.read_model_entries = Gauge("processd_read_model_entries", "Entries per read model "
                                        "(window_held_values: event values the transaction windows refer to)",
                                        ["model"], registry=r)
        self.pool_workers = Gauge("processd_analysis_workers", "Analysis worker processes (0 = in-process)",
                                  registry=r)
        self.pool_inflight = Gauge("processd_analysis_inflight_batches", "Batches being prepared", registry=r)
        self.pool_restarts = Gauge("processd_analysis_pool_restarts", "Analysis workers that died and were replaced "
                                   "(their batches were prepared in-process)", registry=r)
        self.pool_stall_kills = Gauge("processd_analysis_stall_kills", "Analysis workers killed for holding batches "
                                      "longer than analysis_stall_timeout_ms without answering", registry=r)
        self.replay_digest = Info("processd_replay", "Replay digest of the read models at the last check",
                                  registry=r)

    def serve(self, host: str, port: int) -> None:
        """Starts the /metrics HTTP endpoint (a daemon thread of prometheus-client)."""
        start_http_server(port, addr=host, registry=self.registry)


class SourceCollector(Collector):
    """Per (chain, source) first-seen wins and announcements, read at scrape time from the read models' copy of
    the ``agg`` counters (durable: the same values after a restart)."""

    def __init__(self, counters: Callable[[], dict[bytes, int]]) -> None:
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        wins = CounterMetricFamily("mempulse_processd_source_first_seen_wins",
                                   "Stored transactions the source announced first", labels=["chain_id", "source"])
        seen = CounterMetricFamily("mempulse_processd_source_seen",
                                   "Stored transactions the source announced (first or later, as recorded)",
                                   labels=["chain_id", "source"])
        totals: dict[tuple[str, str], list[int]] = {}
        for key, value in list(self._counters().items()):  # (a copy: the event loop may add keys meanwhile)
            if key[:1] != AGG_SOURCE:
                continue
            labels = (str(U64.unpack(key[1:9])[0]), key[10:].decode("utf-8", "replace"))
            pair = totals.setdefault(labels, [0, 0])
            if key[9:10] == AGG_SOURCE_WINS:
                pair[0] = value
            elif key[9:10] == AGG_SOURCE_LATER:
                pair[1] = value
        for labels, (w, later) in sorted(totals.items()):
            wins.add_metric(list(labels), w)
            seen.add_metric(list(labels), w + later)
        yield wins
        yield seen
