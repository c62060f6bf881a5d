"""Prometheus metrics of processd, in a registry of its own (several servers can live in one test process)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from common.pb.v1 import query_pb2
from common.promutil import FunctionCounter, add_process_collectors
from processd.analysis.validation import REASON_NAMES
from processd.storage.eventlog import AGG_SOURCE, AGG_SOURCE_LATER, AGG_SOURCE_WINS, U64
from processd.storage.logwrite import SIGHTING_OUTCOMES
from processd.views import ingest_stats
from processd.views.subscribers import CUT_SLOW, CUT_SLOW_STREAM

log = logging.getLogger(__name__)

#: The prefix of every processd series (docs/operations.md#metrics).
PREFIX = "mempulse_processd_"

_BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 4000, 8000, 16000, 32000)
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# Label values known at start, so that their series exist at zero before anything happens (rate() and alerts
# then see a 0, not an absent series). The names are those the counting code uses (see each comment).
_EVENT_KINDS = ("tx_seen", "tx_decoded", "opp_detected", "tx_source_seen", "block", "tx_included", "tx_replaced",
                "tx_dropped", "reorg", "pool_state")  # pipeline._KIND_NAMES
_GONE_OUTCOMES = ("applied", "ignored", "invalid")  # pipeline: check_gone, _life_metrics
#: Inclusion latency buckets, seconds (a block every 0.25-12 s; a transaction may wait minutes to hours).
_INCLUSION_BUCKETS = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600)
_BLOCK_OUTCOMES = ("stored", "duplicate", "invalid")  # pipeline: check_blocks, committed
_OUTCOMES = ("accepted", "duplicate_or_rejected")  # pipeline.IngestPipeline.committed
_REJECT_REASONS = (*REASON_NAMES.values(), "malformed_batch")  # validation + ingest_service
_EXHAUSTED_CAUSES = ("commit_queue_full", "too_many_subscribers", "too_many_filters")  # ingest, query_service
_STATS_REJECT_REASONS = (*ingest_stats.REASONS, "bad_session_id", "too_many_sessions")  # + pipeline
_STORAGE_FULL_CAUSES = ("map_full", "disk_full")  # writer
_QUERY_RPCS = tuple(query_pb2.DESCRIPTOR.services_by_name["Query"].methods_by_name)  # query_service._bad


def _zero(counter: Counter, values: Iterable[str]) -> None:
    for value in values:
        counter.labels(value)


class ProcessdMetrics:
    """Every processd metric; gauges over live structures are bound with ``set_function`` by the server."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.commit_envelopes = Histogram(f"{PREFIX}commit_envelopes", "Envelopes per group commit",
                                          buckets=_BATCH_BUCKETS, registry=r)
        self.commit_events = Histogram(f"{PREFIX}commit_events", "Events per group commit",
                                       buckets=_BATCH_BUCKETS, registry=r)
        self.commit_seconds = Histogram(f"{PREFIX}commit_seconds",
                                        "Group commit latency (dedup, seqs, puts, commit with fsync in sync mode)",
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.ack_seconds = Histogram(f"{PREFIX}ack_latency_seconds", "Batch received to ack sent",
                                     buckets=_LATENCY_BUCKETS, registry=r)
        self.events = Counter(f"{PREFIX}events", "Events committed to the log", ["kind"], registry=r)
        self.envelopes = Counter(f"{PREFIX}envelopes", "Envelopes received, by outcome", ["outcome"], registry=r)
        self.rejects = Counter(f"{PREFIX}rejects", "Envelopes rejected, by reason", ["reason"], registry=r)
        self.sightings = Counter(f"{PREFIX}sightings", "Later-source sightings (TxBatch.sightings) by "
                                 "outcome: stored, repeat, unknown_tx, over_limit, invalid", ["outcome"], registry=r)
        self.blocks = Counter(f"{PREFIX}blocks", "Blocks (TxBatch.blocks) by chain and outcome: stored, "
                              "duplicate (already stored: a resend or a second source), invalid (malformed, chain "
                              "not served), returned (a stored block stored again: a new block built on it after the "
                              "chain had left it, a reorg back)", ["chain_id", "outcome"], registry=r)
        self._pool_metrics(r)
        self._lifecycle_metrics(r)
        self.analysis_errors = Counter(f"{PREFIX}analysis_errors", "Transactions whose analysis raised (stored "
                                       "undecoded)", registry=r)
        self.pruned = Counter(f"{PREFIX}pruned_events", "Events removed by retention", registry=r)
        self.map_grows = Counter(f"{PREFIX}map_grows", "LMDB map size increases", registry=r)
        self.resource_exhausted = Counter(f"{PREFIX}resource_exhausted", "RESOURCE_EXHAUSTED answers, by cause",
                                          ["cause"], registry=r)
        self.subscriber_cuts = Counter(f"{PREFIX}subscriber_cuts", "Subscribers cut off, by reason", ["reason"],
                                       registry=r)
        self.ingest_stats_rejected = Counter(
            f"{PREFIX}ingest_stats_rejected", "ChainIngestStats entries of Ingest.Stream not kept (rejected for a "
            "bound, or evicted to make room), by reason; the batch's transactions are unaffected", ["reason"],
            registry=r)
        self.ingest_stats_bytes = Gauge(f"{PREFIX}ingest_stats_bytes", "Bytes of ChainIngestStats held (serialized "
                                        "size of the bounded copies)", registry=r)
        self.bad_requests = Counter(f"{PREFIX}bad_requests", "INVALID_ARGUMENT answers, by RPC", ["rpc"], registry=r)
        self.storage_full_groups = Counter(f"{PREFIX}storage_full_groups", "Commit groups refused as storage_full, by "
                                           "cause (map_full: map at its max size; disk_full: the write failed "
                                           "for lack of space or with an I/O error)", ["cause"], registry=r)
        self.disk_full = Gauge(f"{PREFIX}disk_full", "1 while ingest is refused because the last commit failed for "
                               "lack of disk space (retried every disk_full_retry_ms)", registry=r)
        self.storage_bytes = Gauge(f"{PREFIX}storage_bytes", "LMDB bytes in use", registry=r)
        self.map_size_bytes = Gauge(f"{PREFIX}map_size_bytes", "LMDB map size", registry=r)
        self.map_max_size_bytes = Gauge(f"{PREFIX}map_max_size_bytes", "Largest size the LMDB map may grow to "
                                        "(map_max_size_mb); at it, commit groups are refused as storage_full",
                                        registry=r)
        self.last_seq = Gauge(f"{PREFIX}last_seq", "Highest committed seq id", registry=r)
        self.subscribers = Gauge(f"{PREFIX}subscribers", "Live SubscribeEvents streams", registry=r)
        self._many_metrics(r)
        self.ingest_streams = Gauge(f"{PREFIX}ingest_streams", "Open Ingest.Stream calls", registry=r)
        self.queue_envelopes = Gauge(f"{PREFIX}commit_queue_envelopes", "Envelopes waiting for commit", registry=r)
        self.queue_capacity = Gauge(f"{PREFIX}commit_queue_capacity", "Commit queue bound (envelopes)", registry=r)
        self.read_model_entries = Gauge(f"{PREFIX}read_model_entries", "Entries per read model "
                                        "(window_held_values: event values the transaction windows refer to)",
                                        ["model"], registry=r)
        self.pool_workers = Gauge(f"{PREFIX}analysis_workers", "Analysis worker processes (0 = in-process)",
                                  registry=r)
        self.pool_inflight = Gauge(f"{PREFIX}analysis_inflight_batches", "Batches being prepared", registry=r)
        self.pool_restarts = FunctionCounter(f"{PREFIX}analysis_pool_restarts", "Analysis workers that died and "
                                             "were replaced (their batches were prepared in-process)", registry=r)
        self.pool_stall_kills = FunctionCounter(f"{PREFIX}analysis_stall_kills", "Analysis workers killed for "
                                                "holding batches longer than analysis_stall_timeout_ms without "
                                                "answering", registry=r)
        #: CPU of the analysis worker processes (process_cpu_seconds_total covers processd's main process only).
        self.worker_cpu = WorkerCpu(f"{PREFIX}analysis_workers_cpu_seconds", registry=r)
        self.replay_digest = Info(f"{PREFIX}replay", "Replay digest of the read models at the last check",
                                  registry=r)
        add_process_collectors(r)
        _zero(self.events, _EVENT_KINDS)
        _zero(self.lifecycle_gone, _GONE_OUTCOMES)
        _zero(self.envelopes, _OUTCOMES)
        _zero(self.rejects, _REJECT_REASONS)
        _zero(self.sightings, SIGHTING_OUTCOMES)
        _zero(self.resource_exhausted, _EXHAUSTED_CAUSES)
        _zero(self.subscriber_cuts, (CUT_SLOW, CUT_SLOW_STREAM))
        _zero(self.ingest_stats_rejected, _STATS_REJECT_REASONS)
        _zero(self.storage_full_groups, _STORAGE_FULL_CAUSES)
        _zero(self.bad_requests, _QUERY_RPCS)

    def _pool_metrics(self, r: CollectorRegistry) -> None:
        """The pool state path's metrics (issue 17): pool states by outcome, the pool read model's bound, the
        valuation's reserve lookups."""
        self.valuation_pools = Counter(f"{PREFIX}valuation_pools", "Pool reserves looked up for the valuation of "
                                       "V2 router swaps before their analysis, by outcome: found, unknown (the "
                                       "reserve source does not know the pair)", ["outcome"], registry=r)
        self.valuation_pair_cache = Gauge(f"{PREFIX}valuation_pair_cache_entries", "Entries of the pipeline's "
                                          "pair-address, route and route-plan caches (CREATE2 addresses and the "
                                          "routes' plans, each bounded: emptied at 65536)", registry=r)
        self.pool_states = Counter(f"{PREFIX}pool_states", "Pool states (TxBatch.pools) by outcome: stored (a "
                                   "POOL_STATE event), duplicate (already stored: a resend or another ingestd's copy), "
                                   "invalid (malformed, chain not served)",
                                   ["outcome"], registry=r)
        self.pool_view_evicted = FunctionCounter(f"{PREFIX}pool_view_evicted", "Pairs the pool read model evicted "
                                                 "(least recently updated) to stay within its bound", registry=r)
        self.pool_view_stale = FunctionCounter(f"{PREFIX}pool_view_stale", "Stored pool states the pool read model "
                                               "did not take (a block not newer than the one it holds for the pair)",
                                               registry=r)
        self.valuation_view_pairs = Gauge(f"{PREFIX}valuation_view_pairs", "Pairs the valuation's pool view holds "
                                          "(fed in commit order as batches are queued; bound: pool_max_pairs)",
                                          registry=r)
        self.valuation_view_evicted = FunctionCounter(f"{PREFIX}valuation_view_evicted", "Pairs the valuation's "
                                                      "pool view evicted (least recently updated) to stay within its "
                                                      "bound", registry=r)
        _zero(self.pool_states, _BLOCK_OUTCOMES)  # pipeline: check_pools, committed (same outcomes as blocks)

    def _many_metrics(self, r: CollectorRegistry) -> None:
        """SubscribeMany's metrics (issue 18; its cuts are ``subscriber_cuts{reason="slow_stream"}``), and the log walks
        of the unary reads."""
        self.log_walks = Gauge(f"{PREFIX}log_walks", "ScanEvents and ListTransactions pages being read in the "
                               "log-walk threads or waiting for one (processd.api.query_service)", registry=r)
        self.many_streams = Gauge(f"{PREFIX}many_streams", "Live SubscribeMany streams", registry=r)
        self.many_filters = Gauge(f"{PREFIX}many_filters", "Filters held by the live SubscribeMany streams",
                                  registry=r)
        self.many_messages = Counter(f"{PREFIX}many_messages", "Messages sent on SubscribeMany streams (events, "
                                     "acknowledgements; heartbeats not counted)", registry=r)

    def _lifecycle_metrics(self, r: CollectorRegistry) -> None:
        """The transaction lifecycle's metrics (issue 16)."""
        self.lifecycle = Counter(f"{PREFIX}lifecycle", "Tracked pending transactions settled, by chain and outcome: "
                                 "included, replaced, dropped_expired, dropped_evicted, dropped_nonce_passed",
                                 ["chain_id", "outcome"], registry=r)
        self.inclusion_latency = Histogram(f"{PREFIX}inclusion_latency_seconds", "Block timestamp minus first "
                                           "seen of the tracked transactions a block included, by chain",
                                           ["chain_id"], buckets=_INCLUSION_BUCKETS, registry=r)
        self.reorgs = Counter(f"{PREFIX}reorgs", "Reorgs seen, by chain and depth bucket (1, 2, 3-5, 6-15, 16+, "
                              "too_deep: deeper than lifecycle_max_reorg_depth)", ["chain_id", "depth"], registry=r)
        self.lifecycle_tracked = Gauge(f"{PREFIX}lifecycle_tracked_pending", "Pending transactions the lifecycle "
                                       "tracks (all chains)", registry=r)
        self.lifecycle_replaced_held = Gauge(f"{PREFIX}lifecycle_replaced_held", "Replaced transactions held until "
                                             "a block settles their nonce (a node may mine the original: it is "
                                             "then included); counted with lifecycle_tracked_pending against "
                                             "lifecycle_max_pending", registry=r)
        self.lifecycle_index_entries = Gauge(f"{PREFIX}lifecycle_index_entries", "Entries of the lifecycle's expiry "
                                             "heaps and tracking-order queues (all chains): settled transactions' "
                                             "entries linger until compacted, at most twice the tracked and held "
                                             "ones plus 1024 per chain", registry=r)
        self.lifecycle_tracked_max = Gauge(f"{PREFIX}lifecycle_tracked_pending_max", "Bound of "
                                           "lifecycle_tracked_pending (lifecycle_max_pending)", registry=r)
        self.lifecycle_overflow = Counter(f"{PREFIX}lifecycle_overflow", "Pending transactions left untracked "
                                          "because lifecycle_max_pending was reached", registry=r)
        self.lifecycle_gone = Counter(f"{PREFIX}lifecycle_gone", "TxGone reports by outcome: applied (a tracked "
                                      "transaction dropped as evicted), ignored (not tracked), invalid (malformed)",
                                      ["outcome"], registry=r)
        self.lifecycle_rebuild_seconds = Gauge(f"{PREFIX}lifecycle_rebuild_seconds", "Time the last rebuild of "
                                               "the lifecycle state from the log took", registry=r)
        self.lifecycle_process_restarts = FunctionCounter(
            f"{PREFIX}lifecycle_process_restarts", "Lifecycle processes lost (died or stopped answering) and "
            "replaced (the commit was aborted and done again)", registry=r)

    def serve(self, host: str, port: int) -> None:
        """Starts the /metrics HTTP endpoint (a daemon thread of prometheus-client)."""
        start_http_server(port, addr=host, registry=self.registry)


class SourceCollector(Collector):
    """Per (chain, source) first-seen wins and announcements, read at scrape time from the read models' copy of
    the ``agg`` counters (durable: the same values after a restart)."""

    def __init__(self, counters: Callable[[], dict[bytes, int]]) -> None:
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        wins = CounterMetricFamily(f"{PREFIX}source_first_seen_wins",
                                   "Stored transactions the source announced first", labels=["chain_id", "source"])
        seen = CounterMetricFamily(f"{PREFIX}source_seen",
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

class WorkerCpu(Collector):
    """CPU seconds (user + system) of the analysis worker processes, as one counter read at scrape time.

    The live workers' times come from ``/proc/<pid>/stat``; a worker that is gone (killed, replaced, stopped)
    keeps counting with the time last read from it, so the sum never goes down. The CPU a dying worker spent
    after the previous scrape is not counted. Scrapes may run concurrently (one thread each): a lock.
    """

    def __init__(self, name: str, registry: CollectorRegistry) -> None:
        self.name = name
        self.pids: Callable[[], list[int]] = list
        self._last: dict[int, float] = {}
        self._retired = 0.0
        self._lock = threading.Lock()
        self._tick = os.sysconf("SC_CLK_TCK")
        registry.register(self)

    def _family(self, value: float) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, "CPU seconds (user + system) of the analysis worker processes; "
                                   "process_cpu_seconds_total is processd's main process only", value=value)

    def describe(self) -> Iterator[Metric]:
        yield self._family(0)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now: dict[int, float] = {}
            for pid in self.pids():
                seconds = self._read(pid)
                if seconds is not None:
                    now[pid] = max(seconds, self._last.get(pid, 0.0))
            self._retired += sum(v for pid, v in self._last.items() if pid not in now)
            self._last = now
            total = self._retired + sum(now.values())
        yield self._family(total)

    def _read(self, pid: int) -> float | None:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / self._tick
