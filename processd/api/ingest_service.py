"""Ingest.Stream: the gRPC adapter of the ingest pipeline (``processd.pipeline``).

Each batch arrives as bytes (the method is registered without a request deserializer) and goes to
:meth:`IngestPipeline.accept <processd.pipeline.IngestPipeline.accept>`, which parses it once, prepares, admits
and queues it for commit; the acks are written back in batch order once their commits are durable.

Per stream, at most ``stream_max_inflight_batches`` batches are unacked: beyond that the handler stops reading,
so HTTP/2 flow control pushes back on the client instead of processd buffering. When the shared commit queue
stays full longer than ``queue_full_timeout_ms`` the stream ends with RESOURCE_EXHAUSTED (the client resends
its unacked batches; dedup makes that idempotent). Bytes that are not a ``TxBatch`` end the stream with
INVALID_ARGUMENT; a writer that stops or fails ends it with UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import grpc

from common.pb.v1 import ingest_pb2, ingest_pb2_grpc
from processd.metrics import ProcessdMetrics
from processd.pipeline import IngestPipeline, MalformedBatchError, PendingBatch
from processd.storage.crashpoints import CrashSwitch
from processd.storage.writer import QueueFullError, WriterStoppedError

log = logging.getLogger(__name__)


class IngestService(ingest_pb2_grpc.IngestServicer):
    """The Ingest gRPC service."""

    def __init__(self, pipeline: IngestPipeline, metrics: ProcessdMetrics, *, max_inflight_batches: int,
                 crash: CrashSwitch | None = None) -> None:
        self._pipeline = pipeline
        self._metrics = metrics
        self._max_inflight = max_inflight_batches
        self._crash = crash or CrashSwitch()
        self.open_streams = 0

    async def Stream(self, request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> None:
        inflight = asyncio.Semaphore(self._max_inflight)
        done: asyncio.Queue[tuple[PendingBatch, float] | None] = asyncio.Queue()
        stream = self._pipeline.open_stream()
        self.open_streams += 1
        self._metrics.ingest_streams.inc()
        ack_task = asyncio.create_task(self._send_acks(context, done, inflight))
        try:
            async for raw in request_iterator:
                await inflight.acquire()
                started = time.perf_counter()
                try:
                    pending = await self._pipeline.accept(raw, stream)
                except MalformedBatchError as exc:
                    self._metrics.rejects.labels("malformed_batch").inc()
                    await self._stop_acks(ack_task)
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
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
                done.put_nowait((pending, started))
            done.put_nowait(None)
            await ack_task
        finally:
            if not ack_task.done():
                await self._stop_acks(ack_task)
            self.open_streams -= 1
            self._metrics.ingest_streams.dec()
            self._pipeline.close_stream(stream)

    @staticmethod
    async def _stop_acks(ack_task: asyncio.Task[None]) -> None:
        """Cancels the ack task and waits for it, so that the caller is the only one touching the call."""
        ack_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await ack_task

    async def _send_acks(self, context: grpc.aio.ServicerContext,
                         done: asyncio.Queue[tuple[PendingBatch, float] | None],
                         inflight: asyncio.Semaphore) -> None:
        # Acks are written in batch order per stream: a batch's commit never finishes before an earlier one's
        # because one writer commits the queue in order.
        while True:
            item = await done.get()
            if item is None:
                return
            pending, started = item
            try:
                ack = await pending.acked()
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
