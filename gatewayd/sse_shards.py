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

Subscriptions from a shard's head share that shard's one ``SubscribeMany`` stream (:mod:`gatewayd.shard_fanout`,
the one-processd gateway's filter registry, one per shard). One that comes back after its shard went away joins
it again: the events its filter took after the last one read up to where the shared stream starts are read with
ScanEvents first, so it resumes with no gap and takes no subscriber slot of its own. A stream resumed from a
position (a composite ``Last-Event-ID``, ``from_seq_id=0``) keeps its own ``SubscribeEvents`` per shard for its
catch-up, as the one-processd gateway's streams with a cursor do; so does every stream from the head while a
shard answers SubscribeMany with UNIMPLEMENTED (an older release: ``sse_streams_total{path="fallback"}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc
from sanic import Request

from common.limits import MAX_PAGE_LIMIT
from common.pb.v1 import query_pb2
from gatewayd.fanout import limit_send_buffer
from gatewayd.merge import EXHAUSTED, decode_cursor, encode_cursor
from gatewayd.params import UINT64_MAX, ParamError, parse_uint
from gatewayd.processd_client import UpstreamError, map_rpc_error
from gatewayd.render import sse_frame
from gatewayd.shard_fanout import ShardFanout, ShardSink
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
        #: Per shard index, its shared SubscribeMany stream (streams from a shard's head are filters of it).
        self._fanouts: dict[int, ShardFanout] = {}
        self.closing = False

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
        limit_send_buffer(request.transport)  # a client that stops reading is cut, not buffered for in the kernel
        try:
            admitted = [asyncio.Event() for _ in shards]
            failures: list[UpstreamError | None] = [None] * len(shards)
            pumps = [asyncio.create_task(self._pump(i, s, p, positions, queue, admitted[i], failures,
                                                    request.transport))
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
                    queue: asyncio.Queue[Any], admitted: asyncio.Event, failures: list[UpstreamError | None],
                    transport: Any) -> None:
        """Keeps a subscription to ``shard`` open (:class:`_Pump`)."""
        await _Pump(self, i, shard, p, positions, queue, admitted, failures, transport).run()

    def fanout(self, shard: Shard) -> ShardFanout:
        """``shard``'s shared SubscribeMany stream (made on first use)."""
        fanout = self._fanouts.get(shard.index)
        if fanout is None:
            fanout = self._fanouts[shard.index] = ShardFanout(shard.client, self.streamer.metrics)
            self.streamer.shard_fanouts.append(fanout)
        return fanout

    async def close(self) -> None:
        """Ends every shard's shared stream (shutdown; the streams themselves end through the streamer)."""
        self.closing = True
        for fanout in self._fanouts.values():
            await fanout.close()

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
            if isinstance(item, bytes):  # the stream was cut (slow_client): its final event: error
                await response.send(item)
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


class _Pump:
    """One stream's subscription to one shard, kept open: from the shard's head as a filter of its shared
    SubscribeMany stream (:class:`ShardFanout`), else (a position to resume from, or a processd without
    SubscribeMany) its own SubscribeEvents from just after the last event of that shard read (``read``). Puts
    ``(i, message)`` on the stream's queue; a lost subscription is retried every :data:`RETRY_S`."""

    def __init__(self, owner: ShardedStreams, i: int, shard: Shard, p: dict[str, Any], positions: list[int],
                 queue: asyncio.Queue[Any], admitted: asyncio.Event, failures: list[UpstreamError | None],
                 transport: Any) -> None:
        self.owner, self.i, self.shard, self.p, self.positions = owner, i, shard, p, positions
        self.queue, self.admitted, self.failures, self.transport = queue, admitted, failures, transport
        self.read = positions[i]
        #: True once a subscription of it ended (or failed): it joins the shared stream again, caught up from read.
        self.lost = False
        self.metrics = owner.streamer.metrics

    async def run(self) -> None:
        """Subscribes until cancelled (the stream ended) or the stream is cut as slow."""
        fanout = self.owner.fanout(self.shard)
        while True:
            try:
                # From the head, or back after the shard went away (a short gap, caught up by ScanEvents): the shared
                # stream. A stream resumed from a position keeps its own SubscribeEvents (its catch-up is its own).
                if fanout.many_supported() and (self.read == EXHAUSTED or self.lost):
                    try:
                        if await self._shared(fanout):
                            return
                    except UpstreamError as exc:
                        if exc.grpc_code != "UNIMPLEMENTED":
                            raise
                        fanout.many_unimplemented()  # an older processd: its own SubscribeEvents at once
                        continue
                else:
                    await self._own()
            except Exception as exc:  # whatever ends a subscription, the shard is retried: never a silent stop
                if not self._failed(_upstream_error(exc)):
                    return
            await asyncio.sleep(RETRY_S)

    def _failed(self, err: UpstreamError) -> bool:
        """Records why the subscription ended; False when it is not to be retried (refused before admission)."""
        i = self.i
        self.lost = True
        self.metrics.grpc_error("SubscribeEvents", err.grpc_code or "UNKNOWN")
        if err.code in ("processd_unavailable", "processd_overloaded", "stream_ended"):
            self.shard._mark(False, err.message)
            err = shard_error(self.shard.spec, err.message)
        elif not self.admitted.is_set():
            self.failures[i] = err
            self.admitted.set()
            return False
        self.failures[i] = err
        self.admitted.set()
        return True

    def _up(self, head: int, last: int = 0) -> None:
        """The subscription was admitted at ``head`` (``last``: the last event already put, 0 if none)."""
        if last:
            self.read = last
        elif self.read == EXHAUSTED:
            self.read = self.positions[self.i] = head  # nothing of it sent yet: the stream starts at its head
        self.shard._mark(True)
        self.failures[self.i] = None
        self.admitted.set()

    async def _shared(self, fanout: ShardFanout) -> bool:
        """Follows the shard's shared stream until it ends (raises, to resume from ``read``); True when this stream
        was cut as slow (its final message is queued, or its connection aborted when the queue is full) or the
        gateway stops."""
        sink = ShardSink()
        try:
            head = await fanout.join(self.p, False, _subscribe_request(self.p, None), self.owner.streamer._admitted,
                                     sink)
            self.metrics.sse_streams.labels("shared").inc()
            if self.read != EXHAUSTED and self.read < head:
                await self._catch_up(head)  # the shard was away: what it committed since, then the shared stream
            self._up(head)
            while True:
                batch = await sink.get()
                if isinstance(batch, bytes):
                    if self.owner.closing:  # gateway shutdown: the stream ends through the streamer
                        return True
                    if not sink.cut:
                        raise UpstreamError(503, "stream_ended", "processd ended the shared subscription",
                                            retriable=True, grpc_code="OK")
                    try:
                        self.queue.put_nowait(batch)
                    except asyncio.QueueFull:  # its writer is stuck on a full socket: end the connection
                        if self.transport is not None:
                            self.transport.abort()
                    return True
                if self.read != EXHAUSTED and int(batch[0].seq_id) <= self.read:  # its log went back (restored)
                    batch = [e for e in batch if e.seq_id > self.read]
                    if not batch:
                        continue
                self.read = int(batch[-1].seq_id)
                await self.queue.put((self.i, _Batch(batch)))
        finally:
            fanout.leave(sink)

    async def _catch_up(self, head: int) -> None:
        """The events of the stream's filter after ``read`` up to ``head`` (where the shared stream takes over), in
        ScanEvents pages: a unary read, not one more of processd's subscriber slots per stream."""
        sub = _subscribe_request(self.p, None)
        from_seq = self.read + 1
        while from_seq <= head:
            page = await self.shard.client.scan_events(query_pb2.ScanEventsRequest(
                from_seq_id=from_seq, limit=MAX_PAGE_LIMIT, chain_id=sub.chain_id, kinds=sub.kinds, filter=sub.filter))
            events = [e for e in page.events if e.seq_id <= head]
            if events:
                self.read = int(events[-1].seq_id)
                await self.queue.put((self.i, _Batch(events)))
            if page.next_seq_id <= from_seq:  # no progress (cannot be): the shared stream goes on from head
                break
            from_seq = int(page.next_seq_id)
        self.read = head

    async def _own(self) -> None:
        """Its own SubscribeEvents from just after ``read`` (from the head: processd lacks SubscribeMany)."""
        read = self.read
        self.metrics.sse_streams.labels("fallback" if read == EXHAUSTED else "own").inc()
        call = self.shard.client.subscribe_events(_subscribe_request(self.p, None if read == EXHAUSTED else read + 1))
        try:
            sink = _Sink(self.queue, self.i)
            self._up(await self.owner.streamer._admitted(call, sink), sink.last)
            while True:
                msg = await call.read()
                if msg is grpc.aio.EOF:  # type: ignore[attr-defined]
                    raise UpstreamError(503, "stream_ended", "processd ended the subscription", retriable=True,
                                        grpc_code="OK")
                if msg.events:
                    self.read = int(msg.events[-1].seq_id)
                await self.queue.put((self.i, msg))
        finally:
            call.cancel()


class _Batch:
    """Events of one shard's shared stream, as the relay takes a subscription message (``.events``)."""

    __slots__ = ("events",)

    def __init__(self, events: list[Any]) -> None:
        self.events = events


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
