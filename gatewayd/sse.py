"""``GET /events/stream``: Server-Sent Events relayed from processd's SubscribeEvents stream.

Each event is one SSE message ``id: <seq_id>`` / ``event: <kind>`` / ``data: <event JSON>``. The stream
replays from ``from_seq_id`` (or just after a ``Last-Event-ID`` header, which browsers' EventSource sends
when it reconnects), then goes live; without either it starts at the current head (new events only).
A comment line is sent every ``heartbeat_s`` when nothing else flows, so proxies keep the connection and
clients can detect a dead one. If processd ends the subscription (restart, slow consumer cut off), the
gateway sends an ``event: error`` message and closes: the client reconnects with Last-Event-ID and loses
nothing.

Admission comes before the answer: a stream slot is reserved with no await between check and registration,
and processd's admission of the subscription is awaited before the 200 headers go out, so a client refused by
either cap gets a 503 with Retry-After, never a 200 followed by an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc
import orjson
from sanic import Request

from common.pb.v1 import query_pb2
from gatewayd.fanout import Fanout, Listener
from gatewayd.metrics import GatewayMetrics
from gatewayd.params import UINT64_MAX, event_filter, parse_uint
from gatewayd.processd_client import ProcessdClient, UpstreamError, map_rpc_error
from gatewayd.render import RenderCache, sse_frame

log = logging.getLogger(__name__)

#: Messages buffered between the gRPC reader and the HTTP writer; when full, gRPC flow control pushes back.
QUEUE_MESSAGES = 16
#: Response header processd's SubscribeEvents sends once the subscriber slot is reserved (before catch-up).
ADMITTED_HEADER = "mempulse-subscription"
#: Sent with it: the highest committed seq_id at admission (where a stream "from now" starts after).
HEAD_HEADER = "mempulse-head-seq-id"
_END = object()
_SHUTDOWN = object()


def format_events(events: Any, render: RenderCache | None = None, raw: bool = False) -> bytes:
    """SSE messages for a batch of protobuf events (one write for the whole batch), each on its own guard; with a
    transaction's raw bytes when ``raw`` (``?include=raw``)."""
    if render is not None:
        return b"".join(render.sse_frame(e, raw) for e in events)
    return b"".join(sse_frame(e, raw=raw) for e in events)


def _start_seq(request: Request, p: dict[str, Any]) -> int | None:
    """Where the stream starts: just after a ``Last-Event-ID`` header (a reconnecting EventSource) if there is one,
    else ``from_seq_id``; None = at the head (new events only)."""
    from_seq: int | None = p["from_seq_id"]
    last_event_id = request.headers.get("last-event-id")
    if last_event_id:
        from_seq = parse_uint("Last-Event-ID", last_event_id.strip(), 0, UINT64_MAX - 1, "invalid_cursor") + 1
    return from_seq


def _subscribe_request(p: dict[str, Any], from_seq: int | None) -> query_pb2.SubscribeEventsRequest:
    """processd's subscription for the stream parameters ``p``, from ``from_seq`` (None: from the head)."""
    return query_pb2.SubscribeEventsRequest(
        from_seq_id=from_seq or 0, from_head=from_seq is None, chain_id=p["chain_id"], kinds=p["kinds"],
        filter=event_filter(p, "events_stream"),
    )


def _error_event(code: str, message: str) -> bytes:
    """The final ``event: error`` SSE message of a stream."""
    return b"event: error\ndata: %s\n\n" % orjson.dumps({"error": {"code": code, "message": message}})


async def next_item(queue: asyncio.Queue[Any], heartbeat_s: float, response: Any) -> Any:
    """The next item a stream's reader put on ``queue``, with a heartbeat comment sent for every ``heartbeat_s``
    of waiting; None after a gateway shutdown, whose final ``event: error`` it sent (the plain and the sharded
    streams' relay loops)."""
    while True:
        try:
            item = await asyncio.wait_for(queue.get(), heartbeat_s)
        except TimeoutError:
            await response.send(b": heartbeat\n\n")
            continue
        if item is _SHUTDOWN:
            await response.send(_error_event("shutting_down", "gateway is stopping; reconnect"))
            return None
        return item


class EventStreamer:
    """Serves SSE streams, at most ``max_clients`` at a time, each with its own processd subscription."""

    def __init__(
        self,
        client: ProcessdClient,
        metrics: GatewayMetrics,
        max_clients: int,
        heartbeat_s: float,
        render: RenderCache | None = None,
    ) -> None:
        self.client = client
        self.render = render
        self.metrics = metrics
        self.max_clients = max_clients
        self.heartbeat_s = heartbeat_s
        # Open streams: handler task -> its message queue or shared-stream listener (to end it at shutdown).
        self._open: dict[asyncio.Task[Any], Any] = {}
        # Streams from the head share one processd subscription per filter (gatewayd/fanout.py).
        self.fanout = Fanout(client, metrics, heartbeat_s, lambda events, raw: format_events(events, render, raw))
        metrics.sse_queued_bytes.set_function(self.fanout.queued)
        #: The shared streams of each processd shard (gatewayd/sse_shards.py adds them), counted in sse_upstreams.
        self.shard_fanouts: list[Fanout] = []
        metrics.sse_upstreams.set_function(
            lambda: len(self.fanout.upstreams) + sum(len(f.upstreams) for f in self.shard_fanouts))
        metrics.sse_shard_queued_events.set_function(lambda: sum(f.queued() for f in self.shard_fanouts))

    @property
    def open_streams(self) -> int:
        """Streams being served right now."""
        return len(self._open)

    async def close(self) -> None:
        """Ends every open stream with a final ``event: error`` (server shutdown), so clients reconnect
        elsewhere or later with Last-Event-ID, and the server does not wait on them to stop."""
        for task, queue in list(self._open.items()):
            try:
                queue.put_nowait(_SHUTDOWN)
            except asyncio.QueueFull:
                task.cancel()
        await self.fanout.close()

    async def stream(self, request: Request, p: dict[str, Any]) -> None:
        """Streams events to the client until it disconnects or processd ends the subscription."""
        from_seq = _start_seq(request, p)
        raw = "raw" in p["include"]
        task = asyncio.current_task()
        assert task is not None
        # From the head: a listener of the shared upstream of its filter, unless processd lacks SubscribeMany.
        listener = Listener(request.transport) if from_seq is None and self.fanout.many_supported() else None
        queue: Any = listener if listener is not None else asyncio.Queue(QUEUE_MESSAGES)
        if not self._try_reserve(task, queue):
            self.metrics.sse_rejected.inc()
            raise UpstreamError(
                503,
                "too_many_streams",
                f"{self.max_clients} event streams are open; retry later",
                retriable=True,
                grpc_code="",
            )
        try:
            if listener is not None:
                try:
                    await self._stream_shared(request, p, raw, listener)
                    return
                except UpstreamError as exc:
                    if exc.grpc_code != "UNIMPLEMENTED":
                        raise
                # An older processd: this client takes its own subscription from the head, as before SubscribeMany.
                self.fanout.many_unimplemented()
                self.fanout.leave(listener)
                queue = self._open[task] = asyncio.Queue(QUEUE_MESSAGES)
            self.metrics.sse_streams.labels("own" if from_seq is not None else "fallback").inc()
            await self._stream_own(request, p, from_seq, raw, queue)
        finally:
            if listener is not None:
                self.fanout.leave(listener)
            self._open.pop(task, None)
            self.metrics.sse_clients.set(len(self._open))

    async def _stream_own(self, request: Request, p: dict[str, Any], from_seq: int | None, raw: bool,
                          queue: asyncio.Queue[Any]) -> None:
        """A stream on its own SubscribeEvents call (a cursor, or processd lacks SubscribeMany)."""
        call = self.client.subscribe_events(_subscribe_request(p, from_seq))
        reader: asyncio.Task[None] | None = None
        try:
            # Nothing has been sent to the client yet: a refusal by processd (its own subscriber cap), or processd
            # being down, is still a 503 JSON answer with Retry-After here, not a 200 followed by an error event
            # (which browsers retry every 2 s). The admission reports the head, so no ScanEvents probe is needed.
            head = await self._admitted(call, queue)
            if from_seq is None:
                from_seq = head + 1
            reader = asyncio.create_task(self._pump(call, queue))
            response = await request.respond(
                content_type="text/event-stream; charset=utf-8",
                headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
            )
            await response.send(b"retry: 2000\n: stream from seq_id %d, head %d\n\n" % (from_seq, head))
            await self._relay(response, queue, raw)
            await response.eof()
        finally:
            call.cancel()
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader

    async def _stream_shared(self, request: Request, p: dict[str, Any], raw: bool, listener: Listener) -> None:
        """A stream from the head, fed by the shared upstream of its filter (admission awaited before the 200)."""
        head = await self.fanout.join(p, raw, _subscribe_request(p, None), self._admitted, listener)
        self.metrics.sse_streams.labels("shared").inc()
        response = await request.respond(
            content_type="text/event-stream; charset=utf-8",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )
        await response.send(b"retry: 2000\n: stream from seq_id %d, head %d\n\n" % (head + 1, head))
        await listener.relay(response)
        await response.eof()

    async def _relay(self, response: Any, queue: asyncio.Queue[Any], raw: bool) -> None:
        """Writes what the reader puts on ``queue`` as SSE messages, with a heartbeat comment whenever nothing
        came for ``heartbeat_s``, until a shutdown, the end of the subscription or an upstream error (each sent
        as a final ``event: error``)."""
        while True:
            item = await next_item(queue, self.heartbeat_s, response)
            if item is None:
                return
            if item is _END:
                log.warning("processd ended the event subscription")
                await response.send(_error_event("stream_ended", "processd ended the stream; reconnect"))
                return
            if isinstance(item, UpstreamError):
                await response.send(_error_event(item.code, item.message))
                return
            if item.events:
                await response.send(format_events(item.events, self.render, raw))
                self.metrics.sse_events.inc(len(item.events))

    def _try_reserve(self, task: asyncio.Task[Any], queue: asyncio.Queue[Any]) -> bool:
        """Takes a stream slot for ``task``, or returns False when ``max_clients`` are held.

        Check and registration happen with no await between them: checking, awaiting processd, then registering
        let concurrent clients all pass the check (the cap was overshot). The caller releases in a ``finally``.
        """
        if len(self._open) >= self.max_clients:
            return False
        self._open[task] = queue
        self.metrics.sse_clients.set(len(self._open))
        return True

    async def _admitted(self, call: Any, queue: Any, method: str = "SubscribeEvents") -> int:
        """Waits until processd has admitted the subscription and returns the head it reported (the highest
        committed seq_id at admission), or raises the :class:`UpstreamError` its refusal or failure maps to.

        processd sends response headers carrying ``ADMITTED_HEADER`` and ``HEAD_HEADER`` as soon as it has
        reserved the subscriber slot, before any catch-up. A refused call is a trailers-only response: its headers
        come without that header (and ``call.done()`` may not be set yet when they are seen, hence the header, not
        ``done()``), so the next read raises its status. No answer within the gRPC deadline is a 503
        ``processd_unavailable``: taking silence for admission answered 200 to clients that processd then refused
        (a busy processd is exactly when its cap is reached), which browsers retry every 2 s. A processd that is
        down fails the call, which maps to a 503 too. ``method`` names the call in the error metric and message
        (``SubscribeMany`` for the shared streams).
        """
        try:
            metadata = dict(await asyncio.wait_for(call.initial_metadata(), self.client.timeout_s) or ())
            if ADMITTED_HEADER in metadata:
                return int(metadata.get(HEAD_HEADER, 0))
            msg = await asyncio.wait_for(call.read(), self.client.timeout_s)  # raises the refusal's status
        except TimeoutError:
            self.metrics.grpc_error(method, "DEADLINE_EXCEEDED")
            raise UpstreamError(
                503,
                "processd_unavailable",
                "processd did not open the event subscription in time",
                retriable=True,
                grpc_code="DEADLINE_EXCEEDED",
            ) from None
        except grpc.RpcError as err:
            self.metrics.grpc_error(method, err.code().name)
            raise map_rpc_error(method, err) from None
        if msg is grpc.aio.EOF:  # type: ignore[attr-defined]
            raise UpstreamError(
                503, "stream_ended", "processd ended the event subscription at once", retriable=True, grpc_code="OK"
            )
        queue.put_nowait(msg)
        return int(msg.last_seq_id)  # admitted without the headers: the first message says where the log stands

    async def _pump(self, call: Any, queue: asyncio.Queue[Any]) -> None:
        """Moves subscription messages into ``queue``; ends with ``_END`` or an :class:`UpstreamError`."""
        try:
            while True:
                msg = await call.read()
                if msg is grpc.aio.EOF:  # type: ignore[attr-defined]
                    await queue.put(_END)
                    return
                await queue.put(msg)
        except grpc.RpcError as err:
            if err.code() is not grpc.StatusCode.CANCELLED:
                log.warning("event subscription ended: %s %s", err.code().name, err.details())
                self.metrics.grpc_error("SubscribeEvents", err.code().name)
            await queue.put(map_rpc_error("SubscribeEvents", err))
