"""Ingest.Stream: hands batches to preparation and the group-commit writer, and acks after the commit.

Each batch arrives as bytes (the method is registered without a request deserializer): processd parses it once
(session, batch seq, chain stats; envelope chain ids when admission needs them), and the same bytes go to the
analysis pool, which validates, decodes and encodes it (``processd.analysis.prepare``). Chain admission (at most
``max_chains`` chains, in arrival order) and reject counting then happen here, on the event loop, before the
writer commits the batch.

Per stream, at most ``stream_max_inflight_batches`` batches are unacked: beyond that the handler stops reading,
so HTTP/2 flow control pushes back on the client instead of processd buffering. When the shared commit queue
stays full longer than ``queue_full_timeout_ms`` the stream ends with RESOURCE_EXHAUSTED (the client resends
its unacked batches; dedup makes that idempotent).

A batch's sightings (``TxBatch.sightings``: later sources of transactions) are checked here (malformed ones are
counted as ``invalid`` and ignored) and stored by the writer after the batch's envelopes; a batch of sightings
only skips preparation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import grpc
from google.protobuf.message import DecodeError

from common.chains import MAX_CHAIN_ID
from common.pb.v1 import ingest_pb2, ingest_pb2_grpc
from processd.analysis.pool import AnalysisPool
from processd.analysis.validation import MAX_SOURCE_ID_CHARS, OK, REASON_NAMES
from processd.metrics import ProcessdMetrics
from processd.storage.crashpoints import CrashSwitch
from processd.storage.logwrite import Sighting
from processd.storage.writer import CommitWriter, PendingBatch, QueueFullError, WriterStoppedError
from processd.views.ingest_stats import RateLimitedLog
from processd.views.readmodels import ReadModels
from processd.wire.columns import BatchColumns, keep_only

log = logging.getLogger(__name__)

UNKNOWN_CHAIN = ingest_pb2.REJECT_REASON_UNKNOWN_CHAIN
#: Bounds on the ingest sessions one stream may announce (each is a key of the held stats).
MAX_SESSION_ID_CHARS = 128
MAX_SESSIONS_PER_STREAM = 64


class IngestService(ingest_pb2_grpc.IngestServicer):
    """The Ingest gRPC service."""

    def __init__(self, writer: CommitWriter, pool: AnalysisPool, models: ReadModels, metrics: ProcessdMetrics, *,
                 max_inflight_batches: int, crash: CrashSwitch | None = None, max_chains: int = 1024) -> None:
        self._writer = writer
        self._pool = pool
        self._models = models
        self._metrics = metrics
        self._max_inflight = max_inflight_batches
        self._crash = crash or CrashSwitch()
        self._max_chains = max_chains
        #: Chains that may be stored (those already in the read models, then new ones up to max_chains).
        self._admitted: set[int] = set()
        self._session_streams: dict[str, int] = {}
        #: Resolved once the latest batch handed to preparation has been through chain admission.
        self._admitted_through: asyncio.Future[None] | None = None
        self.open_streams = 0
        self._stats_log = RateLimitedLog()
        models.ingest_stats.on_reject = self._stats_rejected

    def _stats_rejected(self, reason: str, count: int, detail: str) -> None:
        self._metrics.ingest_stats_rejected.labels(reason).inc(count)
        self._stats_log.warn(reason, count, detail)

    def _track_session(self, session_id: str, sessions: set[str]) -> str:
        """Records the stream's session; a reason when its stats must not be kept (id too long, too many ids)."""
        if session_id in sessions:
            return ""
        if len(session_id) > MAX_SESSION_ID_CHARS:
            return "bad_session_id"  # a key of the held stats: a 10 MB id would be held as long as the stream
        if len(sessions) >= MAX_SESSIONS_PER_STREAM:
            return "too_many_sessions"
        sessions.add(session_id)
        self._session_streams[session_id] = self._session_streams.get(session_id, 0) + 1
        return ""

    def prepare(self, batch: ingest_pb2.TxBatch, future: asyncio.Future[ingest_pb2.IngestAck],
                raw: bytes | None = None) -> PendingBatch:
        """A :class:`PendingBatch` whose preparation has started (``raw``: the batch's bytes, if at hand)."""
        pending = PendingBatch(batch_seq=batch.batch_seq, envelopes=batch.envelopes, rejected={},
                               received_ns=time.time_ns(), future=future, prepared=None)  # type: ignore[arg-type]
        previous = self._admitted_through
        admitted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._admitted_through = admitted
        pending.prepared = asyncio.ensure_future(
            self._prepare(pending, raw if raw is not None else batch.SerializeToString(), previous, admitted))
        return pending

    async def _prepare(self, pending: PendingBatch, raw: bytes, previous: asyncio.Future[None] | None,
                       admitted: asyncio.Future[None]) -> BatchColumns:
        try:
            columns = await self._pool.prepare(raw, pending.received_ns)
            # Batches are prepared in parallel and finish in any order; chain admission (max_chains) follows
            # arrival order, as the commits do.
            if previous is not None:
                await previous
            return self._admit(pending, columns)
        finally:
            if not admitted.done():
                admitted.set_result(None)

    def sightings_only(self, batch: ingest_pb2.TxBatch, future: asyncio.Future[ingest_pb2.IngestAck]) -> PendingBatch:
        """A :class:`PendingBatch` for a batch without envelopes (nothing to prepare)."""
        prepared: asyncio.Future[BatchColumns] = asyncio.get_running_loop().create_future()
        prepared.set_result(BatchColumns(b"", 0, [], [], [], [], [], [], [], [], {}, {}, {}))
        return PendingBatch(batch_seq=batch.batch_seq, envelopes=(), rejected={}, received_ns=time.time_ns(),
                            future=future, prepared=prepared)

    def check_sightings(self, batch: ingest_pb2.TxBatch) -> tuple[list[Sighting], int]:
        """The batch's well-formed sightings, and the number of malformed ones (counted, ignored)."""
        good: list[Sighting] = []
        for s in batch.sightings:
            source_id = s.source_id
            if (len(s.hash) == 32 and 0 < s.chain_id <= MAX_CHAIN_ID and 0 < len(source_id) <= MAX_SOURCE_ID_CHARS
                    and s.seen_unix_ns):
                good.append((s.chain_id, s.hash, source_id, s.seen_unix_ns))
        bad = len(batch.sightings) - len(good)
        if bad:
            self._metrics.sightings.labels("invalid").inc(bad)
        return good, bad

    def _admit(self, pending: PendingBatch, columns: BatchColumns) -> BatchColumns:
        """Chain admission and reject counting; the transactions that may be stored."""
        admitted = self._admitted
        reasons = columns.reasons
        if not any(reasons) and columns.last_event.keys() <= admitted:
            return columns  # the usual batch: all valid, all chains known
        rejected = pending.rejected
        envelopes = pending.envelopes
        refused: set[int] = set()
        for index, reason in enumerate(reasons):
            chain_id = envelopes[index].chain_id
            if chain_id not in admitted and reason != UNKNOWN_CHAIN:
                # Bounded: at most max_chains distinct chains get counters and windows.
                if len(admitted) < self._max_chains:
                    admitted.add(chain_id)
                elif reason == OK:
                    reason = UNKNOWN_CHAIN
                    refused.add(chain_id)
            if reason == OK:
                continue
            rejected[reason] = rejected.get(reason, 0) + 1
            self._metrics.rejects.labels(REASON_NAMES[reason]).inc()
            if chain_id in admitted:
                self._models.count_reject(chain_id, reason)
        return keep_only(columns, [c not in refused for c in columns.chain]) if refused else columns

    def admit_known_chains(self, chain_ids: list[int]) -> None:
        """Admits the chains already in the log (called at start, after the read models are rebuilt)."""
        self._admitted.update(chain_ids)

    async def Stream(self, request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> None:
        loop = asyncio.get_running_loop()
        inflight = asyncio.Semaphore(self._max_inflight)
        done: asyncio.Queue[tuple[asyncio.Future[ingest_pb2.IngestAck], float] | None] = asyncio.Queue()
        sessions: set[str] = set()
        self.open_streams += 1
        self._metrics.ingest_streams.inc()
        ack_task = asyncio.create_task(self._send_acks(context, done, inflight))
        try:
            async for raw in request_iterator:
                await inflight.acquire()
                started = time.perf_counter()
                try:
                    batch = ingest_pb2.TxBatch.FromString(raw)
                except DecodeError as exc:
                    self._metrics.rejects.labels("malformed_batch").inc()
                    await self._stop_acks(ack_task)
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed TxBatch: {exc}")
                # Stats are bounded and copied (processd.views.ingest_stats); whatever happens to them, the batch's
                # transactions go on below.
                refused = self._track_session(batch.session_id, sessions) if batch.session_id else ""
                if batch.chain_stats:
                    if not refused:
                        self._models.update_ingest_stats(batch.session_id, batch.chain_stats)
                    else:
                        self._stats_rejected(refused, len(batch.chain_stats), f"session id of "
                                             f"{len(batch.session_id)} chars, {len(sessions)} sessions on the stream")
                future: asyncio.Future[ingest_pb2.IngestAck] = loop.create_future()
                sightings, bad_sightings = self.check_sightings(batch) if batch.sightings else ([], 0)
                if batch.envelopes or sightings:
                    pending = (self.prepare(batch, future, raw) if batch.envelopes
                               else self.sightings_only(batch, future))
                    pending.sightings = sightings
                    pending.sightings_ignored = bad_sightings
                    try:
                        await self._writer.submit(pending)
                    except QueueFullError as exc:
                        self._metrics.resource_exhausted.labels("commit_queue_full").inc()
                        # Only one task may operate on the call: let the ack task write the acks of the
                        # batches already queued (they are committed or about to be), then abort here.
                        # Aborting while it is inside context.write() made grpc core answer INTERNAL.
                        # The status is set and the handler returns (rather than context.abort()), so no
                        # second operation is started on the call while grpc core finishes it.
                        done.put_nowait(None)
                        with contextlib.suppress(Exception):
                            await ack_task
                        context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
                        context.set_details(str(exc))
                        return
                    except WriterStoppedError as exc:
                        await self._stop_acks(ack_task)
                        await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
                else:
                    future.set_result(ingest_pb2.IngestAck(batch_seq=batch.batch_seq, sightings_ignored=bad_sightings))
                done.put_nowait((future, started))
            done.put_nowait(None)
            await ack_task
        finally:
            if not ack_task.done():
                await self._stop_acks(ack_task)
            self.open_streams -= 1
            self._metrics.ingest_streams.dec()
            for sid in sessions:
                left = self._session_streams.get(sid, 1) - 1
                if left <= 0:
                    self._session_streams.pop(sid, None)
                    self._models.end_session(sid)
                else:
                    self._session_streams[sid] = left

    @staticmethod
    async def _stop_acks(ack_task: asyncio.Task[None]) -> None:
        """Cancels the ack task and waits for it, so that the caller is the only one touching the call."""
        ack_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await ack_task

    async def _send_acks(self, context: grpc.aio.ServicerContext,
                         done: asyncio.Queue[tuple[asyncio.Future[ingest_pb2.IngestAck], float] | None],
                         inflight: asyncio.Semaphore) -> None:
        # Acks are written in batch order per stream: a batch's commit never finishes before an earlier one's
        # because one writer commits the queue in order.
        while True:
            item = await done.get()
            if item is None:
                return
            future, started = item
            try:
                ack = await future
            except WriterStoppedError as exc:
                with contextlib.suppress(Exception):  # abort() raises to end the call
                    await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
                return
            await context.write(ack)
            self._metrics.ack_seconds.observe(time.perf_counter() - started)
            self._crash.hit("after_ack", 1)
            inflight.release()


def add_ingest_service(service: IngestService, server: grpc.aio.Server) -> None:
    """Registers ``mempulse.v1.Ingest`` with the batches delivered as bytes (see the module doc)."""
    handler = grpc.stream_stream_rpc_method_handler(
        service.Stream, request_deserializer=None, response_serializer=ingest_pb2.IngestAck.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("mempulse.v1.Ingest", {"Stream": handler}),))
