"""One shared ``SubscribeMany`` stream per processd shard for the sharded ``/events/stream`` (gatewayd/sse_shards.py).

Before this module every sharded SSE client held one ``SubscribeEvents`` call per shard (1,000 clients x 2 shards
= 2,000 processd subscriptions). Now a client's subscription to a shard that starts at that shard's head is a
listener of the shard's :class:`ShardFanout`: the same filter registry and ``SubscribeMany`` stream as the
one-processd gateway's (:class:`gatewayd.fanout.Fanout` / :class:`gatewayd.fanout.SharedStream`, one per shard),
but fed events instead of rendered bytes, since each sharded stream writes its own composite ``id`` (its position
in every shard) on every message. A subscription that resumes from a position (a composite ``Last-Event-ID``, or
a shard that went away and is back) keeps its own ``SubscribeEvents`` from there, as the one-processd gateway's
streams with a cursor do.

Bounded: each listener (:class:`ShardSink`) queues at most :data:`SINK_MAX_EVENTS` events in at most
:data:`gatewayd.fanout.LISTENER_MAX_MESSAGES` batches; a stream that falls that far behind is cut with the counted
reason ``slow_client``, as on the one-processd path: the shared stream never waits for a client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Any

from gatewayd.fanout import CUT_SLOW, Fanout, Listener, Upstream
from gatewayd.metrics import GatewayMetrics
from gatewayd.processd_client import ProcessdClient

#: Events a sharded stream may have queued from one shard's shared stream before it is cut as slow (about the
#: one-processd path's 1 MiB of rendered messages at the demo's event sizes).
SINK_MAX_EVENTS = 2048


def _the_events(events: Any, raw: bool) -> Any:
    """The shard fanout's "rendering" of an event: the event itself (each stream renders its own ids)."""
    return events[0]


class ShardSink(Listener):
    """One sharded stream's bounded queue of event batches from one shard's shared stream, read by its pump."""

    #: Its queue holds batches of events, bounded in events (:meth:`Listener.offer`).
    MAX_QUEUED = SINK_MAX_EVENTS

    def __init__(self) -> None:
        super().__init__(None)
        #: True once the stream was cut (its queue overflowed): it ends, it is not resumed.
        self.cut = False

    def finish(self, frame: bytes, drop_pending: bool = False) -> None:
        """Ends the sink with ``frame`` (a cut drops what is queued: the stream ends with it)."""
        if self.final is None and drop_pending:
            self.cut = True
        super().finish(frame, drop_pending)

    async def get(self) -> Any:
        """The next batch of events (a list), or the final ``event: error`` frame (bytes) once the sink ended."""
        while True:
            if self.pending:
                batch = self.pending.popleft()
                self.queued -= len(batch)
                return batch
            if self.final is not None:
                return self.final
            self.wakeup.clear()
            await self.wakeup.wait()


class ShardUpstream(Upstream):
    """One filter of a shard's shared stream: hands the events of each processd message to its sinks at once."""

    def take_frame(self, frame: Any, seq: int) -> None:
        """Batches one event (the fanout's "frame" is the event) for the flush at the end of this loop pass."""
        self._batch.append(frame)
        self.last_seq = seq
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(0, self.flush)

    def flush(self) -> None:
        """Offers the batched events to every sink; a sink over its bounds is cut."""
        self._flush = None
        if not self._batch:
            return
        events: Any = self._batch  # events, not bytes (take_frame)
        self._batch = []
        self.flushed_seq = self.last_seq
        slow = [sink for sink in self.listeners if not sink.offer(events)]
        for sink in slow:
            self.fanout.cut(sink, CUT_SLOW)


class ShardFanout(Fanout):
    """The shared upstreams of one shard (no heartbeats: the sharded stream's relay sends its own)."""

    def __init__(self, client: ProcessdClient, metrics: GatewayMetrics) -> None:
        super().__init__(client, metrics, 0.0, _the_events)

    def _new_upstream(self, key: Hashable, raw: bool) -> Upstream:
        return ShardUpstream(self, key, raw)
