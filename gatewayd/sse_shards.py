"""``GET /events/stream`` in front of several processd shards: one subscription per shard, merged into one stream.

With a ``chain_id`` the stream is its owner's alone and its ids are that shard's seq ids, as with one processd.
Without one, every shard is subscribed and each SSE message's ``id`` is a composite position,
``m1.sse.<layout>.<p0>.<p1>...``: per shard, the seq id of the last event of that shard sent so far (``x`` =
none known yet: that shard was down when the stream opened). A client that reconnects with it as
``Last-Event-ID`` resumes every shard just after what it got from it: no gap, no duplicate. Events of one shard
keep their seq order; shards are interleaved as their events arrive.

A shard that goes away mid-stream does not end the stream: the others keep flowing, and that shard's
subscription is retried every :data:`RETRY_S` from just after its last event sent, so when it is back its events
resume with no gap. A shard down when the stream opens is joined from its head once it is back. Only when every
shard refuses the subscription is the answer a 503 (before any 200, as with one processd).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc
from sanic import Request

from common.pb.v1 import query_pb2
from gatewayd.merge import EXHAUSTED, decode_cursor, encode_cursor
from gatewayd.params import UINT64_MAX, ParamError, parse_uint
from gatewayd.processd_client import UpstreamError, map_rpc_error
from gatewayd.render import sse_frame
from gatewayd.shards import Shard, ShardSet, shard_error
from gatewayd.sse import QUEUE_MESSAGES, EventStreamer, _subscribe_request, next_item

log = logging.getLogger(__name__)

#: Seconds between two attempts to subscribe again to a shard that went away.
RETRY_S = 1.0
_ROUTE = "sse"


class ShardedStreams:
    """Serves ``/events/stream`` over :class:`ShardSet`; slots, cap and shutdown are ``streamer``'s."""

    def __init__(self, shards: ShardSet, streamer: EventStreamer) -> None:
        self.shards = shards
        self.streamer = streamer

    def _start(self, request: Request, p: dict[str, Any], shards: list[Shard]) -> list[int]:
        """Per streamed shard, the seq id of the last event already delivered (:data:`EXHAUSTED`: from the
        head). One shard: a plain Last-Event-ID / from_seq_id as with one processd; several: the composite id."""
        last_event_id = (request.headers.get("last-event-id") or "").strip()
        if len(shards) == 1:
            if last_event_id:
                return [parse_uint("Last-Event-ID", last_event_id, 0, UINT64_MAX - 1, "invalid_cursor")]
            return [EXHAUSTED if p["from_seq_id"] is None else max(p["from_seq_id"], 1) - 1]
        if last_event_id:
            return decode_cursor("Last-Event-ID", last_event_id, _ROUTE, self.shards.fingerprint, len(shards))
        if p["from_seq_id"] not in (None, 0):
            raise ParamError("invalid_cursor", "from_seq_id: seq ids are per processd shard; without chain_id "
                             "give 0 (every shard from its oldest) or resume with Last-Event-ID", "from_seq_id")
        return [EXHAUSTED if p["from_seq_id"] is None else 0] * len(shards)

    async def stream(self, request: Request, p: dict[str, Any]) -> None:
        """Streams until the client leaves or the gateway stops."""
        shards = [self.shards.shard_of(p["chain_id"])] if p["chain_id"] else list(self.shards.shards)
        positions = self._start(request, p, shards)
        streamer = self.streamer
        task = asyncio.current_task()
        assert task is not None
        queue: asyncio.Queue[Any] = asyncio.Queue(QUEUE_MESSAGES)
        if not streamer._try_reserve(task, queue):
            streamer.metrics.sse_rejected.inc()
            raise UpstreamError(503, "too_many_streams", f"{streamer.max_clients} event streams are open; retry "
                                "later", retriable=True, grpc_code="")
        pumps: list[asyncio.Task[None]] = []
        try:
            admitted = [asyncio.Event() for _ in shards]
            failures: list[UpstreamError | None] = [None] * len(shards)
            pumps = [asyncio.create_task(self._pump(i, s, p, positions, queue, admitted[i], failures))
                     for i, s in enumerate(shards)]
            await asyncio.gather(*(a.wait() for a in admitted))
            if all(f is not None for f in failures):  # nobody answers: a 503 before any 200, as with one processd
                raise failures[0]  # type: ignore[misc]
            response = await request.respond(content_type="text/event-stream; charset=utf-8",
                                             headers={"cache-control": "no-cache", "x-accel-buffering": "no"})
            down = [s.spec.name for s, f in zip(shards, failures, strict=True) if f is not None]
            await response.send(b"retry: 2000\n: stream over %d processd shard(s)%s\n\n" % (
                len(shards), (", waiting for " + ", ".join(down)).encode() if down else b""))
            await self._relay(response, queue, positions, len(shards) > 1, "raw" in p["include"])
            await response.eof()
        finally:
            for pump in pumps:
                pump.cancel()
            for pump in pumps:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump
            streamer._open.pop(task, None)
            streamer.metrics.sse_clients.set(len(streamer._open))

    async def _pump(self, i: int, shard: Shard, p: dict[str, Any], positions: list[int],
                    queue: asyncio.Queue[Any], admitted: asyncio.Event, failures: list[UpstreamError | None]) -> None:
        """Keeps a subscription to ``shard`` open, from just after the last event of it read (``read``),
        putting ``(i, message)`` on ``queue``; a lost subscription is retried every :data:`RETRY_S`."""
        read = positions[i]
        while True:
            self.streamer.metrics.sse_streams.labels("own").inc()
            call = shard.client.subscribe_events(_subscribe_request(p, None if read == EXHAUSTED else read + 1))
            try:
                sink = _Sink(queue, i)
                head = await self.streamer._admitted(call, sink)
                if sink.last:
                    read = sink.last
                elif read == EXHAUSTED:
                    read = positions[i] = head  # nothing of it sent yet: the stream starts at its head
                shard._mark(True)
                failures[i] = None
                admitted.set()
                while True:
                    msg = await call.read()
                    if msg is grpc.aio.EOF:  # type: ignore[attr-defined]
                        raise UpstreamError(503, "stream_ended", "processd ended the subscription", retriable=True,
                                            grpc_code="OK")
                    if msg.events:
                        read = int(msg.events[-1].seq_id)
                    await queue.put((i, msg))
            except Exception as exc:  # whatever ends a subscription, the shard is retried: never a silent stop
                err = _upstream_error(exc)
                self.streamer.metrics.grpc_error("SubscribeEvents", err.grpc_code or "UNKNOWN")
                if err.code in ("processd_unavailable", "processd_overloaded", "stream_ended"):
                    shard._mark(False, err.message)
                    err = shard_error(shard.spec, err.message)
                elif not admitted.is_set():
                    failures[i] = err
                    admitted.set()
                    return
                failures[i] = err
                admitted.set()
            finally:
                call.cancel()
            await asyncio.sleep(RETRY_S)

    async def _relay(self, response: Any, queue: asyncio.Queue[Any], positions: list[int], composite: bool,
                     raw: bool) -> None:
        """Writes the pumps' messages as SSE messages (composite ids when ``composite``), heartbeats when idle."""
        render = self.streamer.render
        metrics = self.streamer.metrics
        fingerprint = self.shards.fingerprint
        while True:
            item = await next_item(queue, self.streamer.heartbeat_s, response)
            if item is None:
                return
            i, msg = item
            if not msg.events:
                continue
            frames = []
            for e in msg.events:
                frame = render.sse_frame(e, raw) if render is not None else sse_frame(e, raw=raw)
                if composite:
                    positions[i] = int(e.seq_id)
                    frame = b"id: %s%s" % (encode_cursor(_ROUTE, fingerprint, positions).encode(),
                                           frame[frame.index(b"\n"):])
                frames.append(frame)
            await response.send(b"".join(frames))
            metrics.sse_events.inc(len(msg.events))


def _upstream_error(exc: Exception) -> UpstreamError:
    """What ended a shard's subscription, as the gateway's error (unexpected ones count as unreachable)."""
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, grpc.RpcError):
        return map_rpc_error("SubscribeEvents", exc)
    log.warning("a shard's event subscription failed: %r", exc)
    return UpstreamError(503, "processd_unavailable", f"subscription failed: {exc!r}"[:200], retriable=True,
                         grpc_code="UNKNOWN")


class _Sink:
    """What :meth:`EventStreamer._admitted` puts a first message on (admission without headers), tagged."""

    def __init__(self, queue: asyncio.Queue[Any], index: int) -> None:
        self.queue = queue
        self.index = index
        #: seq id of the last event put (0: none).
        self.last = 0

    def put_nowait(self, msg: query_pb2.SubscribeEventsResponse) -> None:
        self.queue.put_nowait((self.index, msg))
        if msg.events:
            self.last = int(msg.events[-1].seq_id)
