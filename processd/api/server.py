"""ProcessdServer: wires the event log, ingest pipeline (with the writer), read models, subscriptions and gRPC
services together."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from common.pb.v1 import ingest_pb2, query_pb2
from processd.analysis.analyzer import AnalyzeFn
from processd.analysis.pool import AnalysisPool
from processd.analysis.valuation.pairs import load_venues
from processd.analysis.valuation.state import ReserveSource
from processd.api.ingest_service import IngestService, add_ingest_service
from processd.api.query_service import QueryService
from processd.config import ProcessdConfig
from processd.metrics import ProcessdMetrics, SourceCollector
from processd.pipeline import IngestPipeline
from processd.storage.crashpoints import CrashSwitch
from processd.storage.eventlog import DAMAGE_ERRORS, EventLog
from processd.storage.lifeengine import LifeEngine
from processd.storage.lifeproc import LifeProcess
from processd.storage.logcheck import DATA_FILE, DamagedLogError
from processd.storage.writer import CommitWriter
from processd.views.readmodels import ReadModels
from processd.views.subscriptions import SubscriptionHub

if TYPE_CHECKING:
    from processd.analysis.decoding.userabi import UserAbis

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    ingest_pb2.DESCRIPTOR.services_by_name["Ingest"].full_name,
    query_pb2.DESCRIPTOR.services_by_name["Query"].full_name,
)


def _serialize_framed(message: query_pb2.SubscribeEventsResponse | query_pb2.ScanEventsResponse
                      | query_pb2.SubscribeManyResponse | bytes) -> bytes:
    """The response serializer of the RPCs that may answer already serialized bytes (:data:`FRAMED_RPCS`): a
    filtered subscription yields its messages serialized (``QueryService._filtered_subscription``: framed events
    joined), the others yield messages; ScanEvents answers its page as the stored values framed; SubscribeMany
    yields only serialized messages (``processd.views.many``)."""
    return message if isinstance(message, bytes) else message.SerializeToString()


#: The Query RPCs whose servicer methods may return serialized responses.
FRAMED_RPCS = frozenset({"SubscribeEvents", "ScanEvents", "SubscribeMany"})


def add_query_service(servicer: QueryService, server: grpc.aio.Server) -> None:
    """``add_QueryServicer_to_server`` with :func:`_serialize_framed` for :data:`FRAMED_RPCS`: the handlers are
    built from the service descriptor, so every RPC of query.proto is served as the generated code would."""
    service = query_pb2.DESCRIPTOR.services_by_name["Query"]
    handlers = {}
    for method in service.methods:
        request_type = getattr(query_pb2, method.input_type.name)
        response_type = getattr(query_pb2, method.output_type.name)
        serializer = _serialize_framed if method.name in FRAMED_RPCS else response_type.SerializeToString
        make = (grpc.stream_stream_rpc_method_handler if method.client_streaming
                else grpc.unary_stream_rpc_method_handler if method.server_streaming
                else grpc.unary_unary_rpc_method_handler)
        handlers[method.name] = make(getattr(servicer, method.name), request_deserializer=request_type.FromString,
                                     response_serializer=serializer)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)  # type: ignore[attr-defined]


class _Gate(grpc.aio.ServerInterceptor):
    """Answers UNAVAILABLE to Ingest/Query calls until the event log is open (health/reflection pass)."""

    def __init__(self) -> None:
        self.ready = False

    async def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        if self.ready or not handler_call_details.method.startswith("/mempulse."):
            return await continuation(handler_call_details)
        handler = await continuation(handler_call_details)
        if handler is None:
            return None

        async def unavailable(_request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "processd is starting (event log not open yet)")

        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(
                unavailable, handler.request_deserializer, handler.response_serializer)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(
                unavailable, handler.request_deserializer, handler.response_serializer)
        return grpc.unary_unary_rpc_method_handler(
            unavailable, handler.request_deserializer, handler.response_serializer)


class ProcessdServer:
    """The processd daemon as an object: ``await start()``, ``await stop()`` (idempotent), or ``async with``."""

    def __init__(self, config: ProcessdConfig,
                 analyze: AnalyzeFn | None = None,
                 crash: CrashSwitch | None = None,
                 reserve_source: ReserveSource | None = None) -> None:
        """``reserve_source``: where the pipeline reads the pool reserves each batch's swaps are valued on; None =
        the pipeline's own pool view, fed with the logged pool states in commit order (``config.valuation``, on
        by default; off: no valuation, heuristic scores; docs/valuation.md)."""
        self.config = config
        # First: a bad ABI file (changed since load_config checked it) is a ConfigError before anything is opened.
        user_abis = _user_abis(config)
        venues = load_venues(config.valuation_venues_file, config.valuation_max_capital_wei)
        self.metrics = ProcessdMetrics()
        self.eventlog = EventLog(config.data_dir, config.map_size_mb << 20, sync=config.durability == "sync",
                                 start_empty_over_damaged=config.start_empty_over_damaged_log)
        self.models = ReadModels(config.recent_tx_per_chain, config.recent_features, config.opportunity_window,
                                 pool_max_pairs=config.pool_max_pairs)
        self.metrics.registry.register(SourceCollector(lambda: self.models.counters))
        self.hub = SubscriptionHub(config.max_subscribers, config.subscriber_queue_events,
                                   on_cut=lambda reason: self.metrics.subscriber_cuts.labels(reason).inc(),
                                   read_range=self.eventlog.raw_range, tx_lookup=self.eventlog.tx_values_by_hash)
        self.crash = crash or CrashSwitch.from_env()
        # A custom analysis function (tests) cannot be sent to worker processes: it runs in-process.
        self.pool = AnalysisPool(workers=config.analysis_workers, chain_ids=config.chain_ids,
                                 max_input_bytes=config.max_input_bytes, analyze=analyze,
                                 stall_timeout_ms=config.analysis_stall_timeout_ms,
                                 user_abis=user_abis, venues=venues)
        # The pipeline builds the single writer and is the one it tells of its commits.
        writer = functools.partial(
            CommitWriter, self.eventlog,
            flush_interval_ms=config.flush_interval_ms, flush_max_events=config.flush_max_events,
            queue_max_envelopes=config.commit_queue_max_envelopes,
            queue_full_timeout_ms=config.queue_full_timeout_ms,
            map_max_size_bytes=config.map_max_size_mb << 20,
            retention_max_events=config.retention_max_events, retention_max_age_s=config.retention_max_age_s,
            crash=self.crash, on_storage_full=self._on_storage_full, disk_full_retry_ms=config.disk_full_retry_ms,
            max_sources_per_tx=config.max_sources_per_tx, max_sources_per_chain=config.max_sources_per_chain,
            lifecycle=(LifeProcess if config.lifecycle_process else LifeEngine)(
                config.lifecycle_ttl_ms, config.lifecycle_max_pending, config.lifecycle_max_reorg_depth)
            if config.lifecycle_enabled else None,
            max_reorg_depth=config.lifecycle_max_reorg_depth,
        )
        self.pipeline = IngestPipeline(writer, self.pool, self.models, self.hub, self.metrics,
                                       max_chains=config.max_chains, chain_ids=config.chain_ids,
                                       reserve_source=reserve_source, venues=venues, valuation=config.valuation,
                                       pool_max_pairs=config.pool_max_pairs)
        self.writer = self.pipeline.writer
        self.models.pending_of = self._pending_count
        self.metrics.lifecycle_tracked_max.set(config.lifecycle_max_pending if config.lifecycle_enabled else 0)
        self.ingest = IngestService(self.pipeline, self.metrics,
                                    max_inflight_batches=config.stream_max_inflight_batches, crash=self.crash)
        self.query = QueryService(self.eventlog, self.models, self.hub, self.metrics,
                                  default_limit=config.default_page_limit, max_limit=config.max_page_limit,
                                  scan_max_examined=config.scan_max_examined, max_page_bytes=config.page_bytes,
                                  is_pending=self._is_pending if config.lifecycle_enabled else None,
                                  max_filters_per_stream=config.max_filters_per_stream)
        self.health = HealthServicer()
        self._gate = _Gate()
        self._server: grpc.aio.Server | None = None
        self.port = 0
        self._started = False
        self._stopped = False
        self.digest = ""
        self._digest_task: asyncio.Task[None] | None = None

    def _is_pending(self, chain_id: int, tx_hash: bytes) -> bool:
        """Whether the lifecycle tracks the transaction as pending now (a set lookup in the writer's copy:
        ``LifeWriter.pending``, safe beside the writer's thread)."""
        life = self.writer.life
        return life is not None and life.is_pending(chain_id, tx_hash)

    def _life_restarts(self) -> int:
        engine = self.writer.life.engine if self.writer.life is not None else None
        return engine.restarts if isinstance(engine, LifeProcess) else 0

    def _pending_count(self, chain_id: int) -> int:
        life = self.writer.life
        return len(life.pending.get(chain_id, ())) if life is not None else 0

    @property
    def address(self) -> str:
        return f"{self.config.listen_host}:{self.port}"

    async def start(self) -> ProcessdServer:
        """Binds the port (health NOT_SERVING), opens the log, rebuilds read models, then serves."""
        cfg = self.config
        options = [
            ("grpc.max_receive_message_length", cfg.max_message_bytes),
            ("grpc.max_send_message_length", cfg.max_message_bytes),
            ("grpc.so_reuseport", 0),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.http2.max_pings_without_data", 0),
        ]
        server = grpc.aio.server(options=options, interceptors=[self._gate])
        add_ingest_service(self.ingest, server)
        add_query_service(self.query, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            server)
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        try:
            self.port = server.add_insecure_port(f"{cfg.listen_host}:{cfg.listen_port}")
        except RuntimeError as exc:
            raise OSError(f"cannot listen on {cfg.listen_host}:{cfg.listen_port}: {exc}") from exc
        if self.port == 0:
            raise OSError(f"cannot listen on {cfg.listen_host}:{cfg.listen_port} (port in use?)")
        self._server = server
        await server.start()
        self._started = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.eventlog.open)
        await loop.run_in_executor(None, self._rebuild)
        self.hub.last_seq = self.models.last_seq
        self.pipeline.admit_known_chains(self.models.chain_ids())
        await self.pool.start()
        await self.writer.start()
        self._bind_gauges()
        self.digest = self.models.digest()
        self.metrics.replay_digest.info({"digest": self.digest, "last_seq": str(self.models.last_seq)})
        log.info("replay digest at start: %s (last seq %d)", self.digest, self.models.last_seq)
        if cfg.metrics_port:
            self.metrics.serve(cfg.listen_host, cfg.metrics_port)
        self._digest_task = asyncio.create_task(self._refresh_digest(), name="processd-digest")
        self._gate.ready = True
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("processd listening on %s", self.address)
        return self

    def _rebuild(self) -> None:
        """Rebuilds the read models; a log LMDB or protobuf cannot read there is damaged (one line, exit 2)."""
        try:
            self.models.rebuild(self.eventlog)
            self.pipeline.rebuild_valuation_view(self.eventlog)
        except (*DAMAGE_ERRORS, DecodeError) as exc:
            # The read models are half built by now, so --start-empty-over-damaged-log is not applied here: the
            # operator moves the files aside (or restores them) and restarts. Closed now, so that stop() does not
            # report a replay digest of a log it could not read.
            self.eventlog.close()
            raise DamagedLogError(f"{self.eventlog.path / DATA_FILE} is damaged (found while rebuilding the read "
                                  f"models: {exc}): restore it or move it aside") from None

    async def _refresh_digest(self, interval_s: float = 10.0) -> None:
        """Keeps ``mempulse_processd_replay_info`` current (the digest costs O(window sizes), so not per commit)."""
        seen = self.models.last_seq
        while True:
            await asyncio.sleep(interval_s)
            if self.models.last_seq != seen:
                seen = self.models.last_seq
                self.metrics.replay_digest.info({"digest": self.models.digest(), "last_seq": str(seen)})

    def _bind_gauges(self) -> None:
        m = self.metrics
        m.storage_bytes.set_function(lambda: self.eventlog.storage_bytes() if self.eventlog.env else 0)
        m.map_size_bytes.set_function(lambda: self.eventlog.map_size_bytes)
        m.map_max_size_bytes.set(self.writer.map_max_size_bytes)
        m.last_seq.set_function(lambda: self.models.last_seq)
        m.many_filters.set_function(lambda: self.hub.stream_filters)
        m.queue_envelopes.set_function(lambda: self.writer.queued_envelopes)
        m.queue_capacity.set(self.config.commit_queue_max_envelopes)
        m.disk_full.set_function(lambda: int(self.writer.disk.full))
        m.pool_workers.set(self.pool.workers)
        m.pool_inflight.set_function(lambda: self.pool.inflight)
        m.pool_restarts.set_function(lambda: self.pool.restarts)
        m.pool_stall_kills.set_function(lambda: self.pool.stall_kills)
        m.worker_cpu.pids = self.pool.worker_pids
        m.ingest_stats_bytes.set_function(lambda: self.models.ingest_stats.total_bytes)
        m.pool_view_evicted.set_function(lambda: self.models.pools.counters.evicted)
        m.pool_view_stale.set_function(lambda: self.models.pools.counters.stale)
        view = self.pipeline.valuation_view
        if view is not None:
            m.valuation_view_pairs.set_function(view.__len__)
            m.valuation_view_evicted.set_function(lambda: view.counters.evicted)
        m.lifecycle_rebuild_seconds.set_function(lambda: self.writer.life.rebuild_s if self.writer.life else 0.0)
        m.log_walks.set_function(lambda: self.query.log_walks)
        m.lifecycle_process_restarts.set_function(self._life_restarts)
        for name in ("recent_tx", "recent_features", "window_held_values", "opportunities", "counters",
                     "ingest_stats", "chains", "pools", "inclusion_latencies"):
            m.read_model_entries.labels(name).set_function(self._size_getter(name))

    def _size_getter(self, name: str) -> Callable[[], float]:
        return lambda: self.models.sizes()[name]

    def _on_storage_full(self, count: int, cause: str) -> None:
        self.metrics.rejects.labels("storage_full").inc(count)
        self.metrics.storage_full_groups.labels(cause).inc()

    async def stop(self, grace_s: float = 2.0) -> None:
        """NOT_SERVING, stop accepting, commit everything queued, close the log (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        if self._started:
            await self.health.enter_graceful_shutdown()
        if self._digest_task is not None:
            self._digest_task.cancel()
        self.hub.close()
        if self._server is not None:
            await self._server.stop(grace_s)
        self.query.close()  # (a log walk still in its thread ends before the log closes)
        await self.writer.stop()
        await self.pool.stop()
        if self.eventlog.env is not None:
            self.digest = self.models.digest()
            self.metrics.replay_digest.info({"digest": self.digest, "last_seq": str(self.models.last_seq)})
            log.info("replay digest at stop: %s (last seq %d)", self.digest, self.models.last_seq)
        self.eventlog.close()

    async def __aenter__(self) -> ProcessdServer:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()


def _user_abis(config: ProcessdConfig) -> UserAbis | None:
    """The user ABIs of ``config.abi_dir`` (None without one); :class:`ConfigError` on a bad file."""
    if config.abi_dir is None:
        return None
    # Imported here: the loader imports eth-abi, which a processd without --abi-dir need not load.
    from processd.analysis.decoding.userabi import load_abi_dir
    abis = load_abi_dir(config.abi_dir)
    log.info("user ABIs from %s: %d unscoped selectors, %d (chain, address, selector) scoped ones, "
             "%d duplicate definitions ignored", config.abi_dir, len(abis.unscoped), len(abis.scoped), abis.shadowed)
    return abis
