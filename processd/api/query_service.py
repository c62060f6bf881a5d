"""The Query gRPC service: read models for dashboards, LMDB cursors for paging, a live event tail.

Every LMDB read transaction here is opened and closed synchronously (never across an ``await``), so readers
never pin old pages while a client is slow, and the writer can grow the map between commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import grpc
import lmdb

from common import limits
from common.pb.v1 import events_pb2, query_pb2, query_pb2_grpc
from processd.errors import ProcessdError
from processd.metrics import ProcessdMetrics
from processd.storage.eventlog import KIND_DECODED, KIND_OPP, KIND_SEEN, EventLog, ScanStats
from processd.storage.layout import decode_event, seq_key
from processd.views.filter_index import FilterGroup, FilterIndex
from processd.views.filter_match import LogMatcher, match_raw
from processd.views.filter_model import FilterError, TxFilter, compile_filter
from processd.views.many import ManyLimitError, ManyRequestError, heartbeat
from processd.views.readmodels import ReadModels
from processd.views.subscriptions import ManyStream, Subscriber, SubscriptionHub, framed_message
from processd.views.tx_view import frame_event
from processd.wire.encoding import scan_response

log = logging.getLogger(__name__)

#: The shared table (common.limits): gatewayd's REST checks read the same bounds.
VALID_KINDS = frozenset(limits.EVENT_KINDS.values())
SNAPSHOT_DEFAULT_LIMIT = limits.SNAPSHOT_DEFAULT_LIMIT
HEARTBEAT_S = 5.0
SUBSCRIBE_PAGE = 500
#: What one later source adds to a StoredTx beyond its id's bytes: tags, lengths, the nanosecond time.
SOURCE_OVERHEAD_BYTES = 20
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


def _framed(value: Any, seq: int) -> bytes:
    """One ScanEventsResponse.events entry of a stored value (:func:`frame_event`, in scan's argument order)."""
    return frame_event(seq, value)


class BadRequestError(ProcessdError):
    """A request field is out of range (answered INVALID_ARGUMENT)."""

    retriable = False


#: The status a transaction's last lifecycle event gives it.
_STATUS_OF_KIND = {events_pb2.EVENT_KIND_TX_INCLUDED: query_pb2.TX_LIFECYCLE_STATUS_INCLUDED,
                   events_pb2.EVENT_KIND_TX_REPLACED: query_pb2.TX_LIFECYCLE_STATUS_REPLACED,
                   events_pb2.EVENT_KIND_TX_DROPPED: query_pb2.TX_LIFECYCLE_STATUS_DROPPED}


class QueryService(query_pb2_grpc.QueryServicer):
    """The Query gRPC service over the event log, read models and subscription hub."""

    def __init__(self, eventlog: EventLog, models: ReadModels, hub: SubscriptionHub, metrics: ProcessdMetrics, *,
                 default_limit: int = limits.DEFAULT_PAGE_LIMIT, max_limit: int = limits.MAX_PAGE_LIMIT,
                 scan_max_examined: int = 20000,
                 max_page_bytes: int = 8 << 20,
                 is_pending: Callable[[int, bytes], bool] | None = None,
                 max_filters_per_stream: int = 4096) -> None:
        self._log = eventlog
        #: Whether the lifecycle tracks (chain, hash) as pending now (the writer's tracker; None: lifecycle off).
        self._is_pending = is_pending
        self._models = models
        self._hub = hub
        self._metrics = metrics
        self.default_limit = default_limit
        self.max_limit = max_limit
        self.scan_max_examined = scan_max_examined
        #: Byte budget of a page (ProcessdConfig.page_bytes): pages end early and say ``truncated``.
        self.max_page_bytes = max_page_bytes
        self.subscribe_message_bytes = min(max_page_bytes, SUBSCRIBE_MESSAGE_BYTES)
        #: Filters one SubscribeMany stream may hold at once (ProcessdConfig.max_filters_per_stream).
        self.max_filters_per_stream = max_filters_per_stream
        hub.message_events, hub.message_bytes = SUBSCRIBE_PAGE, self.subscribe_message_bytes

    # ---- request checks ----------------------------------------------------------------------------------

    def _limit(self, value: int, default: int | None = None) -> int:
        if value == 0:
            return default if default is not None else self.default_limit
        return min(value, self.max_limit)

    @staticmethod
    def _chain(value: int) -> int:
        if value > limits.MAX_CHAIN_ID:
            raise BadRequestError(f"chain_id {value} out of range")
        return value

    @staticmethod
    def _kinds(values: list[int]) -> frozenset[int]:
        kinds = frozenset(values)
        bad = kinds - VALID_KINDS
        if bad:
            raise BadRequestError(f"unknown event kinds {sorted(bad)}")
        return kinds

    @staticmethod
    def _score(value: int) -> int:
        if value > limits.MAX_SCORE:
            raise BadRequestError(f"min_score must be 0..{limits.MAX_SCORE}, got {value}")
        return value

    @staticmethod
    def _filter(request: Any, chain_id: int = 0) -> TxFilter | None:
        """A list request's compiled ``filter`` (its kinds do not apply: a list holds one kind of record), or
        None when it has none (the request is answered exactly as before filters)."""
        if not request.HasField("filter") or not request.filter.ByteSize():
            return None
        return replace(compile_filter(request.filter, chain_id), kinds=frozenset())

    async def _bad(self, context: grpc.aio.ServicerContext, rpc: str, exc: BadRequestError) -> None:
        self._metrics.bad_requests.labels(rpc).inc()
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    def _with_sources(self, txs: list[query_pb2.StoredTx], later: bool = True, max_bytes: int = 0) -> int:
        """Fills ``StoredTx.sources``: the first source from the envelope, then (``later``) the later ones from
        ``tx_sources`` (one cursor seek per transaction, in one short read transaction). Returns how many of
        ``txs`` were filled: with ``max_bytes`` (> 0), the later sources of the transactions after the first count
        against it, and filling stops before a transaction that would pass it (the caller cuts the page there)."""
        filled = 0

        def fill(txn: object) -> None:
            nonlocal filled
            spent = 0
            for stored in txs:
                tx = stored.tx
                found = self._log.tx_sources(txn, tx.chain_id, tx.hash) if later else []  # type: ignore[arg-type]
                if max_bytes and found:
                    # An upper bound of what they add to the message: id, time, tags and lengths.
                    spent += sum(len(source_id.encode()) + SOURCE_OVERHEAD_BYTES for source_id, _ in found)
                    if filled and spent > max_bytes:
                        return
                stored.sources.add(source_id=tx.source_id, first_seen_unix_ns=tx.first_seen_unix_ns)
                for source_id, seen_ns in found:
                    stored.sources.add(source_id=source_id, first_seen_unix_ns=seen_ns)
                filled += 1

        if txs and later:
            self._log.read(fill)
        elif txs:
            fill(None)
        return filled

    # ---- unary RPCs --------------------------------------------------------------------------------------

    async def GetSnapshot(self, request: query_pb2.GetSnapshotRequest,
                          context: grpc.aio.ServicerContext) -> query_pb2.GetSnapshotResponse:
        try:
            chain_id = self._chain(request.chain_id)
            min_score = self._score(request.min_score)
        except BadRequestError as exc:
            await self._bad(context, "GetSnapshot", exc)
            raise
        m = self._models
        chains = [chain_id] if chain_id else m.chain_ids()
        # Only the transactions can be big (calldata); features and opportunities are small bounded records.
        txs, txs_truncated = m.recent_txs(chain_id, self._limit(request.tx_limit, SNAPSHOT_DEFAULT_LIMIT),
                                          self.max_page_bytes)
        # The snapshot reads only the read models (never the log): its transactions list their first source.
        self._with_sources(txs, later=False)
        return query_pb2.GetSnapshotResponse(
            chains=[m.chain_totals(c, min(request.coverage_top, limits.MAX_COVERAGE_SELECTORS)) for c in chains],
            replay=m.replay_point(0),
            feature_summary=m.feature_summary(chain_id),
            recent_features=m.recent_feature_records(chain_id, self._limit(request.feature_limit,
                                                                             SNAPSHOT_DEFAULT_LIMIT)),
            top_opportunities=m.top_opportunities(chain_id, self._limit(request.opp_limit, SNAPSHOT_DEFAULT_LIMIT),
                                                  min_score),
            recent_transactions=txs,
            last_seq_id=m.last_seq,
            recent_transactions_truncated=txs_truncated,
        )

    async def ListTransactions(self, request: query_pb2.ListTransactionsRequest,
                               context: grpc.aio.ServicerContext) -> query_pb2.ListTransactionsResponse:
        try:
            chain_id = self._chain(request.chain_id)
            event_filter = self._filter(request, chain_id)
        except (BadRequestError, FilterError) as exc:
            await self._bad(context, "ListTransactions", BadRequestError(str(exc)))
            raise
        limit = self._limit(request.limit)
        stats = ScanStats()
        extra: dict[str, Any] = {}
        if event_filter is not None:
            extra["keep"] = LogMatcher(self._log, event_filter)
        if request.status:
            by_status = self._status_keep(request.status)
            by_filter = extra.get("keep")
            extra["keep"] = by_status if by_filter is None else (
                lambda txn, seq: by_status(txn, seq) and by_filter(txn, seq))
        events, next_seq, more, last = self._log.scan_page(
            request.cursor, limit, chain_id=chain_id, kinds=frozenset({KIND_SEEN}),
            max_examined=self.scan_max_examined, descending=not request.ascending, stats=stats,
            max_bytes=self.max_page_bytes, **extra)
        txs = [query_pb2.StoredTx(seq_id=e.seq_id, tx=e.tx_seen.tx, received_unix_ns=e.received_unix_ns)
               for e in events]
        # Later sources take room too (up to max_sources_per_tx ids each): they share the page's byte budget.
        kept = self._with_sources(txs, max_bytes=max(0, self.max_page_bytes - stats.page_bytes) or 1)
        if kept < len(txs):
            del txs[kept:]
            stats.truncated = more = True
            # The cursor goes on right after the last transaction returned, in the page's direction.
            next_seq = txs[-1].seq_id + 1 if request.ascending else txs[-1].seq_id
        return query_pb2.ListTransactionsResponse(
            transactions=txs,
            next_cursor=next_seq if more else 0,
            last_seq_id=last,
            truncated=stats.truncated,
        )

    async def GetTransaction(self, request: query_pb2.GetTransactionRequest,
                             context: grpc.aio.ServicerContext) -> query_pb2.GetTransactionResponse:
        try:
            chain_id = self._chain(request.chain_id)
            if len(request.hash) != limits.HASH_BYTES:
                raise BadRequestError(f"hash must be {limits.HASH_BYTES} bytes, got {len(request.hash)}")
        except BadRequestError as exc:
            await self._bad(context, "GetTransaction", exc)
            raise
        # Through EventLog.read: the abort below raises from this frame, which must not hold the transaction.
        chains = [chain_id] if chain_id else self._models.chain_ids()
        events = self._log.read(lambda txn: self._find_any(txn, chains, request.hash))
        if not events:
            where = f"on chain {chain_id}" if chain_id else "on any chain"
            await context.abort(grpc.StatusCode.NOT_FOUND, f"transaction 0x{request.hash.hex()} not found {where}")
        response = query_pb2.GetTransactionResponse()
        seen = events[0]
        history = self._log.read(lambda txn: self._log.tx_life(txn, seen.chain_id, seen.tx_hash, seen.seq_id))
        response.status = self._status(seen.chain_id, seen.tx_hash, history)  # type: ignore[assignment]
        response.history.extend(history)
        for e in events:
            if e.kind == KIND_SEEN:
                stored = query_pb2.StoredTx(seq_id=e.seq_id, tx=e.tx_seen.tx, received_unix_ns=e.received_unix_ns)
                self._with_sources([stored])
                response.transaction.CopyFrom(stored)
            elif e.kind == KIND_DECODED:
                response.features.CopyFrom(query_pb2.FeatureRecord(seq_id=e.seq_id, chain_id=e.chain_id,
                                                                   tx_hash=e.tx_hash,
                                                                   features=e.tx_decoded.features))
            elif e.kind == KIND_OPP:
                response.opportunities.append(e.opp_detected.opportunity)
        return response

    def _status(self, chain_id: int, tx_hash: bytes, history: list[events_pb2.Event]) -> int:
        """A stored transaction's lifecycle status: PENDING while the tracker holds it (also after a reorg
        un-included it), else what its last lifecycle event says, else UNSPECIFIED (not tracked)."""
        if self._is_pending is not None and self._is_pending(chain_id, tx_hash):
            return query_pb2.TX_LIFECYCLE_STATUS_PENDING
        if history:
            return _STATUS_OF_KIND[history[-1].kind]
        return query_pb2.TX_LIFECYCLE_STATUS_UNSPECIFIED

    def _status_keep(self, status: int) -> Callable[[lmdb.Transaction, int], bool]:
        """ListTransactions' ``keep`` for a status: the transaction at a TX_SEEN seq has ``status``."""
        def keep(txn: lmdb.Transaction, seq: int) -> bool:
            value = txn.get(seq_key(seq), db=self._log.events_db)
            if value is None:
                return False
            seen = decode_event(value, seq)
            return self._status(seen.chain_id, seen.tx_hash,
                                self._log.tx_life(txn, seen.chain_id, seen.tx_hash, seq)) == status
        return keep

    def _find_any(self, txn: lmdb.Transaction, chains: list[int], tx_hash: bytes) -> list[events_pb2.Event]:
        """The events of ``tx_hash`` on the first of ``chains`` that holds it, by seq: the tx_hash index is keyed
        by (chain, hash prefix), so a lookup on any chain is one point read per chain held (a bounded set,
        ``max_chains``). The same hash on two chains resolves to the one stored first (the smallest seq_id), as
        gatewayd's per-chain lookups did before this moved here."""
        found = [events for c in chains if (events := self._log.find_tx(txn, c, tx_hash))]
        return min(found, key=lambda events: events[0].seq_id, default=[])

    async def ListFeatures(self, request: query_pb2.ListFeaturesRequest,
                           context: grpc.aio.ServicerContext) -> query_pb2.ListFeaturesResponse:
        try:
            chain_id = self._chain(request.chain_id)
            event_filter = self._filter(request, chain_id)
        except (BadRequestError, FilterError) as exc:
            await self._bad(context, "ListFeatures", BadRequestError(str(exc)))
            raise
        limit = self._limit(request.limit)
        if event_filter is None:
            return query_pb2.ListFeaturesResponse(features=self._models.recent_feature_records(chain_id, limit))
        # The window is bounded (recent_features): a filtered read walks at most all of it, in one read txn.
        matcher = LogMatcher(self._log, event_filter)
        records = self._log.read(lambda txn: self._models.recent_feature_records(
            chain_id, limit, lambda seq, chain: matcher(txn, seq, chain)))
        return query_pb2.ListFeaturesResponse(features=records)

    async def ListOpportunities(self, request: query_pb2.ListOpportunitiesRequest,
                                context: grpc.aio.ServicerContext) -> query_pb2.ListOpportunitiesResponse:
        try:
            chain_id = self._chain(request.chain_id)
            min_score = self._score(request.min_score)
            event_filter = self._filter(request, chain_id)
        except (BadRequestError, FilterError) as exc:
            await self._bad(context, "ListOpportunities", BadRequestError(str(exc)))
            raise
        limit = self._limit(request.limit)
        if event_filter is None:
            return query_pb2.ListOpportunitiesResponse(
                opportunities=self._models.top_opportunities(chain_id, limit, min_score))
        matcher = LogMatcher(self._log, event_filter)
        min_score = max(min_score, event_filter.min_score)
        # min_profit_wei picks opportunities too (not only their transactions), as min_score does on this list.
        opps = self._log.read(lambda txn: self._models.top_opportunities(
            chain_id, limit, min_score, lambda seq, chain: matcher(txn, seq, chain), event_filter.min_profit_wei))
        return query_pb2.ListOpportunitiesResponse(opportunities=opps)

    async def ListBlocks(self, request: query_pb2.ListBlocksRequest,
                         context: grpc.aio.ServicerContext) -> query_pb2.ListBlocksResponse:
        """The recent-blocks window (processd.views.blocks), newest first, from ``cursor`` (a seq_id, exclusive)."""
        try:
            chain_id = self._chain(request.chain_id)
        except BadRequestError as exc:
            await self._bad(context, "ListBlocks", exc)
            raise
        blocks, next_cursor = self._models.blocks.page(chain_id, self._limit(request.limit), request.cursor)
        return query_pb2.ListBlocksResponse(blocks=blocks, next_cursor=next_cursor)

    async def ScanEvents(self, request: query_pb2.ScanEventsRequest,
                         context: grpc.aio.ServicerContext) -> bytes:
        """A page of the log, serialized (``api.server`` sends bytes as they are)."""
        try:
            chain_id = self._chain(request.chain_id)
            kinds = self._kinds(list(request.kinds))
            event_filter = (compile_filter(request.filter, chain_id, kinds)
                            if request.HasField("filter") and request.filter.ByteSize() else None)
        except (BadRequestError, FilterError) as exc:
            await self._bad(context, "ScanEvents", BadRequestError(str(exc)))
            raise
        start = max(request.from_seq_id, 1)
        limit = self._limit(request.limit)
        if event_filter is not None:
            return self._filtered_scan(event_filter, start, limit)
        stats = ScanStats()
        # The stored values framed as they are (no decode and re-encode per event: the export reads the whole
        # log through here, docs/export.md#benchmark); the answer is serialized already (api.server passes it on).
        framed, next_seq, more, last = self._log.scan_page_as(
            _framed, start, limit, chain_id=chain_id, kinds=kinds, max_examined=self.scan_max_examined, stats=stats,
            max_bytes=self.max_page_bytes)
        # A walk that reached the end has looked at everything up to ``last``, matching or not.
        next_seq = max(next_seq, start) if more else max(start, last + 1)
        return scan_response(framed, next_seq, last, stats.truncated)

    # ---- streaming ---------------------------------------------------------------------------------------

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
        try:
            chain_id = self._chain(request.chain_id)
            kinds = self._kinds(list(request.kinds))
            event_filter = (compile_filter(request.filter, chain_id, kinds)
                            if request.HasField("filter") and request.filter.ByteSize() else None)
        except (BadRequestError, FilterError) as exc:
            await self._bad(context, "SubscribeEvents", BadRequestError(str(exc)))
            raise
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
