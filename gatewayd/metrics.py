"""Prometheus metrics of gatewayd, in a registry of their own (one per app, so tests can build many apps)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from common.promutil import FunctionCounter, add_process_collectors
from gatewayd.render import RECORD_KINDS

__all__ = ["CONTENT_TYPE_LATEST", "PREFIX", "GatewayMetrics"]

#: The prefix of every gatewayd series (docs/operations.md#metrics).
PREFIX = "mempulse_gatewayd_"

#: Why the gateway cuts an SSE client (the label values of ``sse_cuts_total``).
SSE_CUT_REASONS = ("slow_client",)
#: Which processd call serves an SSE stream's subscription (the label values of ``sse_streams_total``): ``shared``
#: a filter of the gateway's SubscribeMany stream, ``own`` its own SubscribeEvents (from a cursor, with one processd
#: or per shard), ``fallback`` its own SubscribeEvents from the head (processd does not implement SubscribeMany).
SSE_PATHS = ("shared", "own", "fallback")
_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class GatewayMetrics:
    """Counters and histograms of the gateway; label children are cached so the hot path does no lookups."""

    def __init__(self, routes: tuple[str, ...] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        add_process_collectors(r)
        # Per-request figures are kept in plain dicts and exposed by a collector at scrape time: the standard
        # Counter/Histogram take a lock per increment, which is most of the metrics cost per request.
        self.request_stats = RequestStats(routes=routes)
        r.register(self.request_stats)
        self._answer_metrics(r)
        self._limit_metrics(r)
        self._connection_metrics(r)
        self.render_errors = Counter(
            f"{PREFIX}render_errors_total",
            "Records that could not be rendered and were sent as a render_error marker, by record kind",
            ["record"],
            registry=r,
        )
        for record in RECORD_KINDS:  # present at zero from start
            self.render_errors.labels(record)
        self._error_children: dict[str, Counter] = {}

    def _answer_metrics(self, r: CollectorRegistry) -> None:
        """Error answers, failed processd calls and the caches that answer without processd."""
        self.errors = Counter(
            f"{PREFIX}errors_total", "Error answers by stable error code", ["code"], registry=r
        )
        self.grpc_errors = Counter(
            f"{PREFIX}grpc_errors_total",
            "Failed processd calls, by method and gRPC status",
            ["method", "grpc_code"],
            registry=r,
        )
        self.coalesced = Counter(
            f"{PREFIX}coalesced_requests_total",
            "Requests answered from a concurrent identical processd call (single-flight)",
            registry=r,
        )
        self.cache_hits = Counter(
            f"{PREFIX}cache_hits_total",
            "Requests answered from the micro-cache of newest-items views (cache_ttl_ms)",
            registry=r,
        )
        self.render_cache_bytes = Gauge(
            f"{PREFIX}render_cache_bytes",
            "Bytes of rendered transaction/feature JSON kept (bounded)",
            registry=r,
        )
        self.render_cache_entries = Gauge(
            f"{PREFIX}render_cache_entries", "Records in the rendered-JSON cache", registry=r
        )
        self.shard_up = Gauge(
            f"{PREFIX}shard_up", "1 while a processd shard answers (several processd only), by shard", ["shard"],
            registry=r,
        )
        self.partial_answers = Counter(
            f"{PREFIX}partial_answers_total",
            "All-chain answers sent without the chains of a processd shard that was down (partial: true)",
            registry=r,
        )

    def _limit_metrics(self, r: CollectorRegistry) -> None:
        """The bounded tables of the rate limit and of failed API keys."""
        self.ratelimit_keys = Gauge(
            f"{PREFIX}ratelimit_keys", "Token buckets in the rate-limit table (bounded)", registry=r
        )
        self.ratelimit_evictions = FunctionCounter(
            f"{PREFIX}ratelimit_evictions", "Buckets evicted from the full rate-limit table", registry=r
        )
        self.auth_failure_addresses = Gauge(
            f"{PREFIX}auth_failure_addresses",
            "Client addresses in the failed-API-key table (bounded by rate_limit_max_keys)",
            registry=r,
        )

    def _connection_metrics(self, r: CollectorRegistry) -> None:
        """SSE streams and HTTP connections: open, refused, cut."""
        self.sse_clients = Gauge(f"{PREFIX}sse_clients", "Open /events/stream connections", registry=r)
        self.sse_events = Counter(f"{PREFIX}sse_events_total", "Events sent over SSE", registry=r)
        self.sse_rejected = Counter(
            f"{PREFIX}sse_rejected_total",
            "SSE connections refused because sse_max_clients were open",
            registry=r,
        )
        self.sse_cuts = Counter(
            f"{PREFIX}sse_cuts_total",
            "SSE clients cut off by the gateway, by reason (slow_client: its bounded queue overflowed)",
            ["reason"],
            registry=r,
        )
        for reason in SSE_CUT_REASONS:  # present at zero from start
            self.sse_cuts.labels(reason)
        self.sse_streams = Counter(
            f"{PREFIX}sse_streams_total",
            "processd subscriptions taken for SSE streams, by path (shared: a filter of the SubscribeMany stream; "
            "own: its own SubscribeEvents; fallback: its own SubscribeEvents because processd lacks SubscribeMany)",
            ["path"],
            registry=r,
        )
        for path in SSE_PATHS:
            self.sse_streams.labels(path)
        self.sse_upstreams = Gauge(
            f"{PREFIX}sse_upstreams", "processd subscriptions shared by SSE clients that started at the head",
            registry=r,
        )
        self.sse_queued_bytes = Gauge(
            f"{PREFIX}sse_queued_bytes",
            "Bytes of SSE messages waiting in the per-client queues (each bounded; a client over its bound is cut)",
            registry=r,
        )
        self.sse_shard_queued_events = Gauge(
            f"{PREFIX}sse_shard_queued_events",
            "Events waiting in the sharded streams' queues on each shard's shared stream (each bounded; a stream "
            "over its bound is cut)",
            registry=r,
        )
        self.connections = Gauge(
            f"{PREFIX}connections", "Open HTTP connections (admitted by the per-address cap)", registry=r
        )
        self.connections_refused = Counter(
            f"{PREFIX}connections_refused_total",
            "Connections answered 503 at accept because their address had max_connections_per_address open",
            registry=r,
        )
        self.header_timeouts = Counter(
            f"{PREFIX}header_timeouts_total",
            "Connections cut because a request head was not complete within header_timeout_s",
            registry=r,
        )
        self.bad_requests = Counter(
            f"{PREFIX}bad_requests_total",
            "Requests whose head could not be parsed (answered 400; logged at most once per 10 s)",
            registry=r,
        )

    def count(self, route: str, status: int) -> None:
        """Counts one answered request."""
        self.request_stats.count(route, status)

    def observe(self, route: str, status: int, duration_s: float) -> None:
        """Counts one answered request and its latency."""
        self.request_stats.observe(route, status, duration_s)

    def error(self, code: str) -> None:
        """Counts one error answer by its code."""
        child = self._error_children.get(code)
        if child is None:
            child = self._error_children[code] = self.errors.labels(code)
        child.inc()

    def render_error(self, record: str) -> None:
        """Counts one record rendered as a ``render_error`` marker."""
        self.render_errors.labels(record).inc()

    def grpc_error(self, method: str, grpc_code: str) -> None:
        """Counts one failed processd call."""
        self.grpc_errors.labels(method, grpc_code).inc()

    def render(self, refresh: Callable[[], None] | None = None) -> bytes:
        """Text exposition of every metric (``refresh`` updates gauges first)."""
        if refresh is not None:
            refresh()
        return generate_latest(self.registry)


class RequestStats(Collector):
    """Requests by (route, status) and latency histograms by route, without locks (one event loop thread)."""

    def __init__(self, buckets: tuple[float, ...] = _LATENCY_BUCKETS_S, routes: tuple[str, ...] = ()) -> None:
        self.buckets = buckets
        self.counts: dict[tuple[str, int], int] = {}
        # The latency histogram of every route exists at zero from start (statuses are not known up front).
        self.bucket_counts: dict[str, list[int]] = {route: [0] * (len(buckets) + 1) for route in routes}
        self.sums: dict[str, float] = dict.fromkeys(routes, 0.0)

    def count(self, route: str, status: int) -> None:
        """Counts one answered request."""
        key = (route, status)
        self.counts[key] = self.counts.get(key, 0) + 1

    def observe(self, route: str, status: int, duration_s: float) -> None:
        """Counts one answered request and puts its latency in the route's histogram."""
        key = (route, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        counts = self.bucket_counts.get(route)
        if counts is None:
            counts = self.bucket_counts[route] = [0] * (len(self.buckets) + 1)
            self.sums[route] = 0.0
        counts[bisect_left(self.buckets, duration_s)] += 1
        self.sums[route] += duration_s

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            f"{PREFIX}requests", "HTTP requests answered, by route and status", labels=["route", "status"]
        )
        for (route, status), n in sorted(self.counts.items()):
            requests.add_metric([route, str(status)], n)
        yield requests
        latency = HistogramMetricFamily(
            f"{PREFIX}request_duration_seconds",
            "Time to answer an HTTP request, by route (SSE streams are not timed)",
            labels=["route"],
        )
        for route, counts in sorted(self.bucket_counts.items()):
            cumulative, running = [], 0
            for bound, n in zip((*(str(b) for b in self.buckets), "+Inf"), counts, strict=True):
                running += n
                cumulative.append((bound, running))
            latency.add_metric([route], cumulative, self.sums[route])
        yield latency
