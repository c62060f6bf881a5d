"""The Query service's streaming RPCs: SubscribeEvents (catch-up from the log, then the live fan-out, with or
without an ``EventFilter``), SubscribeMany (many filters on one stream), their admission and heartbeats, and the
filtered walk of the log that a filtered ScanEvents shares with a filtered catch-up.

Apart from :mod:`processd.api.query_service` (the unary RPCs, over the read models and the log's reads) because
a stream lives across many commits: its admission slot, its subscriber's buffer and its heartbeats are a life of
their own. :class:`QueryStreams` is a base of ``QueryService``, which sets the attributes it declares.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import grpc

from common.pb.v1 import query_pb2
from processd.api.query_checks import QueryChecks
from processd.storage.eventlog import KIND_SEEN, EventLog
from processd.views.filter_index import FilterGroup, FilterIndex
from processd.views.filter_match import match_raw
from processd.views.filter_model import FilterError, TxFilter, compile_filter
from processd.views.many import ManyLimitError, ManyRequestError, heartbeat
from processd.views.subscribers import ManyStream, Subscriber, framed_message
from processd.views.subscriptions import SubscriptionHub
from processd.wire.encoding import scan_response

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0
SUBSCRIBE_PAGE = 500
#: Most bytes of events in one SubscribeEvents message (and at most the page budget): gatewayd buffers up to 16
#: messages per SSE stream, so a smaller chunk than a Query page keeps a stream of big events to ~16 MiB there.
SUBSCRIBE_MESSAGE_BYTES = 1 << 20
#: SubscribeEvents response headers, sent at admission: ``admitted``, and the highest committed seq_id then.
SUBSCRIPTION_HEADER = "mempulse-subscription"
#: A filtered catch-up reads this many events before its cursor, so a transaction whose first events are
#: before it (a resume in the middle of a transaction) is matched whole: TX_SEEN, TX_DECODED, <= 3 opportunities.
TX_EVENTS_BEFORE = 8
HEAD_HEADER = "mempulse-head-seq-id"
#: Sent with the admission of a subscription with an EventFilter: processd applies it (an older processd
#: ignores the field; the Python client then filters by itself).
FILTER_HEADER = "mempulse-filter"


class QueryStreams(QueryChecks):
    """SubscribeEvents and SubscribeMany over the event log and the subscription hub (see the module's doc)."""

    _log: EventLog
    _hub: SubscriptionHub
    scan_max_examined: int
    max_page_bytes: int
    subscribe_message_bytes: int
    max_filters_per_stream: int

    # ---- SubscribeEvents -----------------------------------------------------------------------------------

    async def SubscribeEvents(self, request: query_pb2.SubscribeEventsRequest,
                              context: grpc.aio.ServicerContext,
                              ) -> AsyncIterator[query_pb2.SubscribeEventsResponse | bytes]:
        """Admission (:meth:`_admitted`), then :meth:`_subscription`."""
        async with contextlib.aclosing(self._admitted(self._subscription(request, context), context)) as messages:
            async for msg in messages:
                yield msg

    async def _admitted(self, messages: AsyncGenerator[Any, None],
                        context: grpc.aio.ServicerContext) -> AsyncGenerator[Any, None]:
        """``messages`` in one of the hub's slots. The slot is reserved before any await, so concurrent calls
        cannot all pass the check (at most ``max_subscribers`` streams, catch-up included), and a refused call
        gets RESOURCE_EXHAUSTED at once, before any message; it is released when the stream ends."""
        hub = self._hub
        if not hub.try_reserve():
            self._metrics.resource_exhausted.labels("too_many_subscribers").inc()
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"too many subscribers (max {hub.max_subscribers})")
        try:
            async with contextlib.aclosing(messages):
                async for msg in messages:
                    yield msg
        finally:
            hub.release()

    async def _subscription(self, request: query_pb2.SubscribeEventsRequest,
                            context: grpc.aio.ServicerContext,
                            ) -> AsyncGenerator[query_pb2.SubscribeEventsResponse | bytes, None]:
        chain_id, kinds, event_filter = await self._event_selection(request, context, "SubscribeEvents")
        if event_filter is not None:
            async with contextlib.aclosing(self._filtered_subscription(request, context, event_filter)) as messages:
                async for msg in messages:
                    yield msg
            return
        hub = self._hub
        # Admitted: say so now with the response headers (gatewayd waits for them before it answers its client
        # 200, so a refusal becomes a 503 there, not a 200 followed by an error), not with the first message,
        # which may be a catch-up page or a heartbeat seconds away.
        # The head goes with them: a client starting "from now" learns where now is without a ScanEvents probe,
        # and the cursor below is taken from the same read, so nothing committed after it is skipped.
        head = self._log.last_seq()
        await context.send_initial_metadata(((SUBSCRIPTION_HEADER, "admitted"), (HEAD_HEADER, str(head))))
        sub = Subscriber(chain_id, kinds, hub.max_buffered)
        cursor = head + 1 if request.from_head else max(request.from_seq_id, 1)
        # Catch-up from LMDB in pages; each page's read transaction is freed before the (possibly slow) write
        # (EventLog.scan_page: a transaction held by this generator's frame would keep a reader slot per stream).
        # Pages are cut by bytes too: a stretch of big transactions must not make a message the gRPC limit
        # refuses, or every resume from the same seq would fail the same way.
        while True:
            events, next_seq, more, txn_last = self._log.scan_page(
                cursor, SUBSCRIBE_PAGE, chain_id=chain_id, kinds=kinds, max_examined=self.scan_max_examined,
                max_bytes=self.subscribe_message_bytes)
            cursor = max(cursor, next_seq) if more else max(cursor, txn_last + 1)
            if events:
                yield query_pb2.SubscribeEventsResponse(events=events, last_seq_id=txn_last)
            # Registration happens with no await since the check, so no commit slips between them.
            if cursor > hub.last_seq:
                sub.next_seq = cursor
                hub.register(sub)
                break
        # aclosing: a cancelled call closes the live part at once (it unregisters the subscriber, freeing the slot)
        async with contextlib.aclosing(self._live(sub, context, lambda: query_pb2.SubscribeEventsResponse(
                events=sub.take(SUBSCRIBE_PAGE, self.subscribe_message_bytes), last_seq_id=hub.last_seq))) as live:
            async for message in live:
                yield message

    async def _live(self, sub: Subscriber, context: grpc.aio.ServicerContext,
                    next_message: Callable[[], query_pb2.SubscribeEventsResponse | bytes],
                    ) -> AsyncGenerator[query_pb2.SubscribeEventsResponse | bytes, None]:
        """The live part of a registered subscription (filtered or not): heartbeats while nothing comes, the
        subscriber's buffer as ``next_message()`` pages when woken, RESOURCE_EXHAUSTED once it was cut; it
        unregisters on the way out."""
        hub = self._hub
        self._metrics.subscribers.inc()
        try:
            while not hub.closed:
                if not await sub.wakeup.wait(HEARTBEAT_S):
                    yield query_pb2.SubscribeEventsResponse(last_seq_id=hub.last_seq)
                    continue
                sub.wakeup.clear()
                if sub.cut_reason:
                    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                        f"subscriber too slow ({sub.cut_reason}); resume from your last seq_id")
                while sub.buffer:
                    yield next_message()
                    if sub.cut_reason:
                        break
        finally:
            sub.wakeup.close()
            hub.unregister(sub)
            self._metrics.subscribers.dec()

    # ---- filtered subscriptions ----------------------------------------------------------------------------

    async def _filtered_subscription(self, request: query_pb2.SubscribeEventsRequest,
                                     context: grpc.aio.ServicerContext, event_filter: TxFilter,
                                     ) -> AsyncGenerator[query_pb2.SubscribeEventsResponse | bytes, None]:
        """A SubscribeEvents call with an ``EventFilter``: catch-up from the log matched by transaction
        (:meth:`_filtered_chunk`), then the hub's filtered fan-out. Messages are serialized here, from framed
        events (``processd.api.server`` passes bytes through), so a live message costs a join, not a copy of
        parsed events."""
        hub = self._hub
        head = self._log.last_seq()
        await context.send_initial_metadata(((SUBSCRIPTION_HEADER, "admitted"), (HEAD_HEADER, str(head)),
                                             (FILTER_HEADER, "applied")))
        sub = Subscriber(0, frozenset(), hub.max_buffered, event_filter)
        group = FilterGroup(event_filter)
        index = FilterIndex([group])
        cursor = head + 1 if request.from_head else max(request.from_seq_id, 1)
        while True:
            entries, cursor, last = self._filtered_chunk(index, group, cursor)
            for page in self._pages([(b, n) for _, b, n in entries]):
                yield framed_message(page, last)
            # As in the unfiltered catch-up: no await between this check and the registration.
            if cursor > hub.last_seq:
                sub.next_seq = cursor
                hub.register(sub)
                break
        async with contextlib.aclosing(self._live(sub, context, lambda: sub.take_message(
                SUBSCRIBE_PAGE, self.subscribe_message_bytes, hub.last_seq))) as live:
            async for message in live:
                yield message

    def _filtered_chunk(self, index: FilterIndex, group: FilterGroup, cursor: int,
                        ) -> tuple[list[tuple[int, bytes, int]], int, int]:
        """The framed transactions (first seq framed, bytes, events) ``group``'s filter takes from up to
        SUBSCRIBE_PAGE events of the log from ``cursor``, the cursor after them, and the head then. A transaction
        that may go on past the chunk is left whole for the next one (the chunk ends before its TX_SEEN)."""
        head = self._log.last_seq()
        if cursor > head:
            return [], cursor, head
        last = min(head, cursor + SUBSCRIBE_PAGE - 1)
        events = self._log.raw_range(max(1, cursor - TX_EVENTS_BEFORE), last)
        next_cursor = last + 1
        if last < head:
            for i in range(len(events) - 1, -1, -1):
                seq, _, kind, _ = events[i]
                if seq <= cursor:
                    break
                if kind == KIND_SEEN:
                    del events[i:]
                    next_cursor = seq
                    break
        match_raw(index, events, self._log.tx_values_by_hash)
        kinds = group.filter.kinds
        framed = [(max(tx.seq, cursor), *entry) for tx in group.txs if (entry := tx.framed(kinds, cursor))[1]]
        index.begin()
        return framed, next_cursor, head

    def _filtered_scan(self, event_filter: TxFilter, start: int, limit: int) -> bytes:
        """A ScanEvents page with a filter: the log walked from ``start`` in chunks (:meth:`_filtered_chunk`)
        until ``limit`` events, the byte budget, the scan bound of events examined, or the head. The page ends at a
        transaction's boundary (it holds at least one whole transaction: a page may pass ``limit`` by the rest of
        its first); ``next_seq_id`` is where the next one starts."""
        group = FilterGroup(event_filter)
        index = FilterIndex([group])
        cursor, examined, head = start, 0, self._log.last_seq()
        parts: list[bytes] = []
        events = size = 0
        while cursor <= head and examined < self.scan_max_examined and events < limit:
            entries, next_cursor, head = self._filtered_chunk(index, group, cursor)
            for seq, entry, n in entries:
                over_bytes = size + len(entry) > self.max_page_bytes
                if events and (events + n > limit or over_bytes):
                    return scan_response(parts, seq, head, over_bytes)
                parts.append(entry)
                events += n
                size += len(entry)
            examined += next_cursor - cursor
            cursor = next_cursor
        return scan_response(parts, cursor, head, False)

    def _pages(self, entries: list[tuple[bytes, int]]) -> list[list[bytes]]:
        """Framed transactions cut into messages by events and bytes (each holds at least one)."""
        pages: list[list[bytes]] = []
        page: list[bytes] = []
        size = events = 0
        for entry, n in entries:
            if page and (events + n > SUBSCRIBE_PAGE or size + len(entry) > self.subscribe_message_bytes):
                pages.append(page)
                page, size, events = [], 0, 0
            page.append(entry)
            size += len(entry)
            events += n
        if page:
            pages.append(page)
        return pages

    # ---- SubscribeMany: many filters on one stream ------------------------------------------------------------

    async def SubscribeMany(self, request_iterator: AsyncIterator[query_pb2.SubscribeManyRequest],
                            context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        """Admission (one of the ``max_subscribers`` slots, as SubscribeEvents: :meth:`_admitted`), then
        :meth:`_many`."""
        async with contextlib.aclosing(self._admitted(self._many(request_iterator, context), context)) as messages:
            async for msg in messages:
                yield msg

    async def _many(self, requests: AsyncIterator[query_pb2.SubscribeManyRequest],
                    context: grpc.aio.ServicerContext) -> AsyncGenerator[bytes, None]:
        """A SubscribeMany stream: its requests read by a task of their own (:meth:`_many_requests`: filters
        added and removed between commits, acknowledged in the stream's buffer), and the buffer sent as
        serialized messages when woken, a heartbeat when idle for HEARTBEAT_S; a bad request or a cut ends it."""
        hub, metrics = self._hub, self._metrics
        stream = ManyStream(hub.max_buffered, self.max_filters_per_stream)
        await context.send_initial_metadata(((SUBSCRIPTION_HEADER, "admitted"), (HEAD_HEADER, str(hub.last_seq))))
        hub.add_stream(stream)
        reader = asyncio.get_running_loop().create_task(self._many_requests(requests, stream))
        metrics.many_streams.inc()
        try:
            while not hub.closed:
                if not await stream.wakeup.wait(HEARTBEAT_S):
                    yield heartbeat(hub.last_seq)
                    continue
                stream.wakeup.clear()
                if stream.error is not None:
                    await self._many_error(context, stream.error)
                if stream.cut_reason:
                    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                        f"stream too slow ({stream.cut_reason}); subscribe again")
                while stream.buffer:
                    yield stream.take_message(SUBSCRIBE_PAGE, self.subscribe_message_bytes, hub.last_seq)
                    metrics.many_messages.inc()
                    if stream.cut_reason:
                        break
        finally:
            reader.cancel()
            stream.wakeup.close()
            hub.drop_stream(stream)
            metrics.many_streams.dec()

    async def _many_error(self, context: grpc.aio.ServicerContext, exc: Exception) -> None:
        if isinstance(exc, ManyLimitError):
            self._metrics.resource_exhausted.labels("too_many_filters").inc()
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        self._metrics.bad_requests.labels("SubscribeMany").inc()
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    async def _many_requests(self, requests: AsyncIterator[query_pb2.SubscribeManyRequest],
                             stream: ManyStream) -> None:
        """Applies a stream's requests as they come (compiled first: a bad filter changes nothing); the first
        bad one is left in ``stream.error`` for the stream's loop to answer, and ends the reading."""
        try:
            async for request in requests:
                add = []
                for entry in request.add:
                    try:
                        add.append((entry.id, compile_filter(entry.filter if entry.HasField("filter") else None)))
                    except FilterError as exc:
                        raise ManyRequestError(f"add: filter id {entry.id}: {exc}") from exc
                self._hub.change_filters(stream, add, list(request.remove))
        except (ManyRequestError, ManyLimitError) as exc:
            stream.error = exc
            stream.wakeup.set()
        except grpc.aio.AioRpcError:
            log.debug("SubscribeMany: the request stream ended with an error", exc_info=True)
