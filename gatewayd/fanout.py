"""Shared processd subscriptions for ``/events/stream`` clients that start at the head.

Before this module every SSE client held its own ``SubscribeEvents`` call, so 1,000 clients were 1,000
processd subscribers (processd's own cap is 64 by default), each event was decoded, filtered and sent over gRPC
once per client, and each rendered once per client message. Now clients that start at the head (no
``from_seq_id``, no ``Last-Event-ID``: the usual dashboard) share one upstream subscription per filter: the
:class:`Upstream` reads it, renders each message once (the render cache's SSE frames) and offers the same bytes
to every :class:`Listener` of that filter. Clients with a cursor (a replay, a reconnect) keep their own
subscription (:mod:`gatewayd.sse`): their catch-up is theirs alone.

Since issue 18 the filters themselves share one processd call: every :class:`Upstream` (a distinct filter and
rendering) is a filter of the gateway's one ``SubscribeMany`` stream (:class:`SharedStream`), added when its first
client joins (it starts where processd's acknowledgement says) and removed when its last one leaves. processd
sends each event once with the ids of the filters that take it; the stream's reader renders each event once per
rendering (raw or not) and offers the frame to the upstreams whose ids it carries, so processd's messages follow
its commits, not the distinct filters of the gateway's clients.

A processd of an older release answers SubscribeMany with UNIMPLEMENTED: :meth:`Fanout.many_unimplemented` then
sends streams from the head to their own SubscribeEvents (:mod:`gatewayd.sse`, counted as
``sse_streams_total{path="fallback"}``, logged once) for :data:`MANY_RETRY_S`, after which SubscribeMany is tried
again. In front of several shards each shard has a fanout of its own (:mod:`gatewayd.shard_fanout`).

Bounded and fair: each listener queues at most :data:`LISTENER_MAX_BYTES` / :data:`LISTENER_MAX_MESSAGES`; a
client that falls that far behind (it does not read, or reads slower than the stream) is cut with the counted
reason ``slow_client`` (``mempulse_gatewayd_sse_cuts_total``) and an ``event: error`` when its socket still
takes one, never by growing a buffer or by slowing the others: the upstream never waits for a listener. The
rendered bytes are shared, so a listener's queue costs references, not copies.

The filter key is every stream parameter but the cursor (:func:`upstream_key`), so a filter parameter added to
the route is part of the key by itself: clients share an upstream only when processd would send them the same
events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import grpc
import orjson

from common.pb.v1 import query_pb2
from gatewayd.metrics import GatewayMetrics
from gatewayd.processd_client import ProcessdClient, UpstreamError, map_rpc_error

log = logging.getLogger(__name__)

#: Bytes a client may have queued (rendered SSE messages it has not taken yet) before it is cut.
LISTENER_MAX_BYTES = 1 << 20
#: Upstream batches a client may have queued before it is cut (bounds the deque when messages are small).
LISTENER_MAX_MESSAGES = 512
#: Messages read from processd within this window go to the clients as one write. Measured with 1,000 clients at
#: the demo rate (scripts/bench/sse_fanout.py): without it every commit woke 1,000 writer tasks.
FLUSH_INTERVAL_S = 0.02
#: A batch this large goes out at once, without waiting for the end of the window.
FLUSH_MAX_BYTES = 256 * 1024
#: Kernel send buffer of a shared-stream socket. Left to autotuning it grows to tcp_wmem's maximum (4 MiB here) for
#: a client that stopped reading, four times the queue bound, per client; 256 KiB still carries the unfiltered
#: stream at the demo rate (~0.4 MB/s) over a 100 ms round trip.
SOCKET_SNDBUF_BYTES = 256 * 1024
#: Seconds a gateway whose processd answered SubscribeMany with UNIMPLEMENTED (an older release) serves streams from
#: the head with their own SubscribeEvents before it tries SubscribeMany again (a rolling upgrade replaces it).
MANY_RETRY_S = 30.0
HEARTBEAT = b": heartbeat\n\n"
CUT_SLOW = "slow_client"
#: Internal: the client opening an upstream left before processd admitted it.
OPENER_LEFT = "opener_left"
#: Admission of a subscription: ``admit(call, queue, method) -> head`` (EventStreamer._admitted), raising
#: UpstreamError; ``method`` is the gRPC method its errors are counted under.
Admit = Callable[[Any, "asyncio.Queue[Any]", str], Awaitable[int]]


def upstream_key(p: dict[str, Any]) -> Hashable:
    """The sharing key of a stream's parameters: all of them but the cursor (lists as tuples)."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list | tuple | set | frozenset) else v)
                        for k, v in p.items() if k != "from_seq_id"))


def limit_send_buffer(transport: Any) -> None:
    """Caps a shared-stream client's kernel send buffer at :data:`SOCKET_SNDBUF_BYTES` (None: no socket)."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_SNDBUF_BYTES)


def error_frame(code: str, message: str) -> bytes:
    """The final ``event: error`` SSE message of a stream."""
    return b"event: error\ndata: %s\n\n" % orjson.dumps({"error": {"code": code, "message": message}})


class Listener:
    """One client's bounded queue of rendered SSE bytes, written to its socket by its handler task."""

    __slots__ = ("final", "last_write", "pending", "queued", "sending", "transport", "upstream", "wakeup")
    #: The bound of ``queued``: bytes here (a subclass queuing other things counts in its own unit).
    MAX_QUEUED = LISTENER_MAX_BYTES

    def __init__(self, transport: Any) -> None:
        self.pending: deque[bytes] = deque()
        self.queued = 0
        self.wakeup = asyncio.Event()
        #: The stream's last message (an ``event: error``); set once, the stream ends after it.
        self.final: bytes | None = None
        self.sending = False
        self.transport = transport
        limit_send_buffer(transport)
        self.last_write = time.monotonic()
        self.upstream: Upstream | None = None

    def offer(self, blob: bytes) -> bool:
        """Queues ``blob``; False when that would pass the bounds (the caller cuts the client)."""
        if self.final is not None:
            return True
        # An empty queue takes any batch (a batch is bounded by FLUSH_MAX_BYTES + one message).
        if self.pending and (self.queued + len(blob) > self.MAX_QUEUED
                             or len(self.pending) >= LISTENER_MAX_MESSAGES):
            return False
        self.pending.append(blob)
        self.queued += len(blob)
        self.wakeup.set()
        return True

    def finish(self, frame: bytes, drop_pending: bool = False) -> None:
        """Ends the stream with ``frame`` after what is queued (or instead of it when ``drop_pending``)."""
        if self.final is not None:
            return
        if drop_pending:
            self.pending.clear()
            self.queued = 0
        self.final = frame
        self.wakeup.set()

    def put_nowait(self, item: Any) -> None:
        """Shutdown hook of :class:`gatewayd.sse.EventStreamer` (it ends open streams through their queue)."""
        self.finish(error_frame("shutting_down", "gateway is stopping; reconnect"))

    async def relay(self, response: Any) -> None:
        """Writes queued bytes to the client until the final message."""
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            if self.pending:
                data = b"".join(self.pending) if len(self.pending) > 1 else self.pending[0]
                self.pending.clear()
                self.queued = 0
                self.sending = True
                await response.send(data)
                self.sending = False
                self.last_write = time.monotonic()
            if self.final is not None:
                await response.send(self.final)
                return


def many_filter(request: query_pb2.SubscribeEventsRequest) -> query_pb2.EventFilter:
    """The ``EventFilter`` of a from-head SubscribeEvents request, its own ``chain_id`` and ``kinds`` folded in
    (a SubscribeMany filter has only the filter; REST's filter parameters set neither field)."""
    f = query_pb2.EventFilter()
    if request.HasField("filter"):
        f.CopyFrom(request.filter)
    if request.chain_id:
        del f.chain_ids[:]
        f.chain_ids.append(request.chain_id)
    if request.kinds:
        del f.kinds[:]
        f.kinds.extend(request.kinds)
    return f


class SharedStream:
    """The gateway's one ``SubscribeMany`` call to processd: opened (admission awaited) by the first client from
    the head, its requests written one at a time by a writer task, its messages read by a reader that hands
    each event's frame to the upstreams of the filter ids it carries. When processd ends it, every upstream's
    clients get the final error and the next client opens a new one."""

    def __init__(self, fanout: Fanout) -> None:
        self.fanout = fanout
        self.call: Any = None
        #: The admission (processd's head), awaited by every client that needs the call meanwhile.
        self.opened: asyncio.Future[int] | None = None
        self.by_id: dict[int, Upstream] = {}
        self._next_id = 0
        self._requests: asyncio.Queue[query_pb2.SubscribeManyRequest] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    async def ensure_open(self, admit: Admit) -> None:
        """Opens the call unless it is open (the first caller awaits processd's admission, the others its result);
        raises :class:`UpstreamError` when processd refuses or fails."""
        if self.opened is None:
            self.opened = asyncio.get_running_loop().create_future()
            first: asyncio.Queue[Any] = asyncio.Queue(1)
            try:
                self.call = self.fanout.client.subscribe_many()
                head = await admit(self.call, first, "SubscribeMany")
            except BaseException as exc:
                opened, self.opened = self.opened, None
                if self.call is not None:
                    self.call.cancel()
                    self.call = None
                opened.set_exception(exc if isinstance(exc, Exception) else UpstreamError(
                    503, OPENER_LEFT, "the subscription was cancelled", retriable=True, grpc_code="CANCELLED"))
                opened.exception()  # retrieved: no "never retrieved" warning when no one else waits
                raise
            self.opened.set_result(head)
            self.fanout.many_worked()
            self._tasks = [asyncio.create_task(self._read(None if first.empty() else first.get_nowait())),
                           asyncio.create_task(self._write())]
            return
        await asyncio.shield(self.opened)

    def add(self, upstream: Upstream, event_filter: query_pb2.EventFilter) -> None:
        """Adds ``upstream``'s filter under a new id; its ``ready`` gets the acknowledged start (from_seq - 1)."""
        self._next_id = fid = (self._next_id + 1) % (1 << 32)
        upstream.fid = fid
        self.by_id[fid] = upstream
        self._requests.put_nowait(query_pb2.SubscribeManyRequest(add=[query_pb2.ManyFilter(id=fid,
                                                                                         filter=event_filter)]))

    def remove(self, upstream: Upstream) -> None:
        """Removes ``upstream``'s filter (its last client left)."""
        if self.by_id.get(upstream.fid) is upstream:
            del self.by_id[upstream.fid]
            self._requests.put_nowait(query_pb2.SubscribeManyRequest(remove=[upstream.fid]))

    async def _write(self) -> None:
        """Writes the queued requests in order (a gRPC call takes one write at a time)."""
        while True:
            request = await self._requests.get()
            try:
                await self.call.write(request)
            except (grpc.RpcError, asyncio.InvalidStateError) as err:  # the call ended: the reader reports it
                log.debug("SubscribeMany write failed: %s", err)
                return

    async def _read(self, first: Any) -> None:
        """Reads the call until it ends, then ends every upstream's streams with the reason."""
        try:
            if first is not None:
                self._take(first)
            while True:
                msg = await self.call.read()
                if msg is grpc.aio.EOF:  # type: ignore[attr-defined]
                    log.warning("processd ended the shared event subscription")
                    self._end(error_frame("stream_ended", "processd ended the stream; reconnect"))
                    return
                self._take(msg)
        except grpc.RpcError as err:
            if err.code() is not grpc.StatusCode.CANCELLED:
                log.warning("shared event subscription ended: %s %s", err.code().name, err.details())
                self.fanout.metrics.grpc_error("SubscribeMany", err.code().name)
            mapped = map_rpc_error("SubscribeMany", err)
            self._end(error_frame(mapped.code, mapped.message))

    def _take(self, msg: Any) -> None:
        """Acknowledgements to their upstreams, then each event rendered once per rendering it needs and offered
        to the upstreams of its filter ids."""
        by_id = self.by_id
        for added in msg.added:
            upstream = by_id.get(added.id)
            if upstream is not None and not upstream.ready.done():
                upstream.last_seq = upstream.flushed_seq = added.from_seq_id - 1
                upstream.ready.set_result(upstream.last_seq)
        fmt = self.fanout.format
        for item in msg.events:
            frames: dict[bool, bytes] = {}
            event = item.event
            for fid in item.filter_ids:
                upstream = by_id.get(fid)
                if upstream is None or not upstream.ready.done():
                    continue  # removed meanwhile (a late event of it), or not acknowledged (cannot be)
                frame = frames.get(upstream.raw)
                if frame is None:
                    frame = frames[upstream.raw] = fmt((event,), upstream.raw)
                upstream.take_frame(frame, event.seq_id)

    def _end(self, frame: bytes) -> None:
        upstreams = list(self.by_id.values())
        self.close()
        for upstream in upstreams:
            upstream.end(frame)

    def close(self) -> None:
        """Cancels the call and its tasks; the next client opens a new one."""
        if self.call is not None:
            self.call.cancel()
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self.call, self.opened, self._tasks = None, None, []
        self.by_id = {}
        self._requests = asyncio.Queue()


class Upstream:
    """One filter (and rendering) of the shared stream, and the listeners it feeds."""

    def __init__(self, fanout: Fanout, key: Hashable, raw: bool) -> None:
        self.fanout = fanout
        self.key = key
        self.raw = raw
        self.listeners: set[Listener] = set()
        #: Its id on the shared stream (SharedStream.add).
        self.fid = 0
        self.ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        #: seq_id of the last event batched, and of the last one offered to the listeners (from_seq_id - 1 before
        #: any): a client that joins now receives exactly the matching events after ``flushed_seq`` (those batched
        #: and not flushed yet included).
        self.last_seq = 0
        self.flushed_seq = 0
        self._batch: list[bytes] = []
        self._batch_events = 0
        self._batch_bytes = 0
        self._flush: asyncio.TimerHandle | None = None

    async def open(self, request: query_pb2.SubscribeEventsRequest, admit: Admit) -> None:
        """Adds its filter to the shared stream (opened first if need be) and waits for processd's
        acknowledgement; the start (or the error) goes to ``ready``."""
        shared = self.fanout.shared
        try:
            while True:
                try:
                    await shared.ensure_open(admit)
                    break
                except UpstreamError as exc:
                    if exc.code != OPENER_LEFT:  # another filter's opener left before the admission: open anew
                        raise
            shared.add(self, many_filter(request))
            await asyncio.shield(self.ready)
        except BaseException as exc:
            shared.remove(self)
            if not self.ready.done():
                # The opener's client went away (cancelled) before the acknowledgement: the waiters open anew.
                self.ready.set_exception(exc if isinstance(exc, Exception) else UpstreamError(
                    503, OPENER_LEFT, "the subscription was cancelled", retriable=True, grpc_code="CANCELLED"))
                self.ready.exception()
            self.fanout.drop(self)
            raise

    def take_frame(self, frame: bytes, seq: int) -> None:
        """Batches one event's rendered frame for the next flush."""
        self._batch.append(frame)
        self._batch_events += 1
        self._batch_bytes += len(frame)
        self.last_seq = seq
        if self._batch_bytes >= FLUSH_MAX_BYTES:
            if self._flush is not None:
                self._flush.cancel()
            self.flush()
        elif self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(FLUSH_INTERVAL_S, self.flush)

    def flush(self) -> None:
        """Offers the batched bytes to every listener; a listener over its bounds is cut."""
        self._flush = None
        if not self._batch:
            return
        blob = b"".join(self._batch) if len(self._batch) > 1 else self._batch[0]
        events, self._batch, self._batch_events, self._batch_bytes = self._batch_events, [], 0, 0
        self.flushed_seq = self.last_seq
        slow = [listener for listener in self.listeners if not listener.offer(blob)]
        for listener in slow:
            self.fanout.cut(listener, CUT_SLOW)
        self.fanout.metrics.sse_events.inc(events * (len(self.listeners)))

    def end(self, frame: bytes) -> None:
        """The shared stream ended: what is batched, then ``frame``, to every listener."""
        self.flush()
        for listener in self.listeners:
            listener.finish(frame)
        if not self.ready.done():
            self.ready.set_exception(UpstreamError(503, "stream_ended", "processd ended the event subscription",
                                                   retriable=True, grpc_code="OK"))
            self.ready.exception()
        self.fanout.drop(self)

    def close(self) -> None:
        """Removes its filter from the shared stream (no listener left, or shutdown)."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        self.fanout.shared.remove(self)


class Fanout:
    """The shared upstreams of one gateway, by :func:`upstream_key`."""

    def __init__(self, client: ProcessdClient, metrics: GatewayMetrics, heartbeat_s: float,
                 format_events: Callable[[Any, bool], bytes]) -> None:
        self.client = client
        self.metrics = metrics
        self.heartbeat_s = heartbeat_s
        self.format = format_events
        self.upstreams: dict[Hashable, Upstream] = {}
        #: The one processd call every upstream is a filter of.
        self.shared = SharedStream(self)
        self._heartbeats: asyncio.Task[None] | None = None
        #: Until when (monotonic) processd is taken not to implement SubscribeMany; 0: it is taken to.
        self._many_refused_until = 0.0
        self._many_warned = False

    def many_supported(self) -> bool:
        """False while processd is taken not to implement SubscribeMany (its last answer, at most
        :data:`MANY_RETRY_S` ago): streams from the head then take their own SubscribeEvents."""
        return time.monotonic() >= self._many_refused_until

    def many_unimplemented(self) -> None:
        """processd answered SubscribeMany with UNIMPLEMENTED (an older release): streams from the head take their
        own SubscribeEvents for :data:`MANY_RETRY_S`, then SubscribeMany is tried again. Logged once (and again
        only after SubscribeMany worked in between)."""
        self._many_refused_until = time.monotonic() + MANY_RETRY_S
        if not self._many_warned:
            self._many_warned = True
            log.warning("processd does not implement SubscribeMany (an older release?): SSE streams from the head "
                        "get their own SubscribeEvents subscription; SubscribeMany is tried again every %.0f s",
                        MANY_RETRY_S)

    def many_worked(self) -> None:
        """processd admitted a SubscribeMany call: a later refusal is logged again."""
        self._many_refused_until = 0.0
        self._many_warned = False

    def _new_upstream(self, key: Hashable, raw: bool) -> Upstream:
        """The upstream of a new filter (a subclass's own kind: gatewayd/shard_fanout.py)."""
        return Upstream(self, key, raw)

    def queued(self) -> int:
        """What waits in every listener's queue, in the listeners' unit (:attr:`Listener.MAX_QUEUED`: bytes for a
        client, events for a shard sink); the gauges read it at scrape time."""
        return sum(lis.queued for up in self.upstreams.values() for lis in up.listeners)

    async def join(self, p: dict[str, Any], raw: bool, request: query_pb2.SubscribeEventsRequest, admit: Admit,
                   listener: Listener) -> int:
        """Adds ``listener`` to the upstream of ``p`` (opening it, admission awaited, for the first client) and
        returns the seq_id it starts after; raises :class:`UpstreamError` when processd refuses or fails."""
        key = (upstream_key(p), raw)
        upstream = self.upstreams.get(key)
        if upstream is None:
            upstream = self.upstreams[key] = self._new_upstream(key, raw)
            await upstream.open(request, admit)
        else:
            try:
                await asyncio.shield(upstream.ready)
            except UpstreamError as exc:
                if exc.code != OPENER_LEFT:
                    raise
                return await self.join(p, raw, request, admit, listener)
        if upstream.key not in self.upstreams or not upstream.ready.done():
            raise UpstreamError(503, "stream_ended", "processd ended the event subscription at once",
                                retriable=True, grpc_code="OK")
        # No await from here: the listener gets every event after last_seq, and none before.
        listener.upstream = upstream
        upstream.listeners.add(listener)
        if self._heartbeats is None and self.heartbeat_s > 0:
            self._heartbeats = asyncio.create_task(self._heartbeat_loop())
        return upstream.flushed_seq

    def leave(self, listener: Listener) -> None:
        """Removes a listener (its client is gone or its stream ended); the last one closes the upstream."""
        upstream, listener.upstream = listener.upstream, None
        if upstream is None:
            return
        upstream.listeners.discard(listener)
        if not upstream.listeners:
            self.drop(upstream)
            upstream.close()

    def drop(self, upstream: Upstream) -> None:
        """Forgets ``upstream`` (ended or empty): the next client of its filter opens a new one."""
        if self.upstreams.get(upstream.key) is upstream:
            del self.upstreams[upstream.key]

    def cut(self, listener: Listener, reason: str) -> None:
        """Ends a listener's stream for ``reason`` (counted). A writer stuck on a full socket cannot send the
        error message: its connection is aborted instead, which ends its handler."""
        self.metrics.sse_cuts.labels(reason).inc()
        listener.finish(error_frame(reason, "this client fell too far behind the stream and was cut off; "
                                    "reconnect with Last-Event-ID"), drop_pending=True)
        upstream = listener.upstream
        if upstream is not None:
            upstream.listeners.discard(listener)
        if listener.sending and listener.transport is not None:
            listener.transport.abort()

    async def _heartbeat_loop(self) -> None:
        """One timer for every listener: a heartbeat to each that had nothing written for ``heartbeat_s``."""
        while self.upstreams:
            await asyncio.sleep(self.heartbeat_s / 2)
            idle_since = time.monotonic() - self.heartbeat_s
            for upstream in list(self.upstreams.values()):
                for listener in list(upstream.listeners):
                    if listener.last_write < idle_since and not listener.pending:
                        listener.last_write = time.monotonic()
                        if not listener.offer(HEARTBEAT):
                            self.cut(listener, CUT_SLOW)
        self._heartbeats = None

    async def close(self) -> None:
        """Ends every shared stream (shutdown) and cancels the upstream calls."""
        for upstream in list(self.upstreams.values()):
            for listener in upstream.listeners:
                listener.put_nowait(None)
            upstream.close()
        self.upstreams.clear()
        self.shared.close()
        if self._heartbeats is not None:
            self._heartbeats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeats
