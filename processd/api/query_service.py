"""The Query gRPC service: read models for dashboards, LMDB cursors for paging, a live event tail.

This module holds the service and its unary RPCs; the streaming ones (SubscribeEvents, SubscribeMany) are
:mod:`processd.api.query_streams`' and the request checks both use are :mod:`processd.api.query_checks`'
(``QueryService`` derives from their classes). Every LMDB read transaction here is opened and closed
synchronously (never across an ``await``), so readers never pin old pages while a client is slow, and the writer
can grow the map between commits.

The two walks of the log (a ScanEvents page and a ListTransactions page: up to ``scan_max_examined`` events, tens
of milliseconds) run in a small pool of threads (:data:`LOG_WALK_THREADS`) instead of on the event loop, where
they held every ingest ack and every other request behind them: one client paging through ScanEvents with a
filter took ingest's ack latency from a p99 of 7 ms to 220 ms; in a thread, 10 ms (``scripts/bench/scan_ingest.py``).
The GIL is shared, so they cost the same CPU; but the loop gets its turn every switch interval. Such a read goes
through the log's read gate, which the writer's map growth waits for (``processd.storage.readgate``).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc
import lmdb

from common import limits
from common.pb.v1 import events_pb2, query_pb2, query_pb2_grpc
from processd.api.query_checks import VALID_KINDS, BadRequestError
from processd.api.query_streams import SUBSCRIBE_MESSAGE_BYTES, SUBSCRIBE_PAGE, QueryStreams
from processd.metrics import ProcessdMetrics
from processd.storage.eventlog import KIND_DECODED, KIND_OPP, KIND_SEEN, EventLog, ScanStats
from processd.storage.layout import decode_event, seq_key
from processd.views.filter_match import LogMatcher
from processd.views.filter_model import FilterError, TxFilter
from processd.views.readmodels import ReadModels
from processd.views.subscriptions import SubscriptionHub
from processd.views.tx_view import frame_event
from processd.wire.encoding import scan_response

# VALID_KINDS and BadRequestError are the checks' (query_checks), re-exported for the service's users.
__all__ = ["SNAPSHOT_DEFAULT_LIMIT", "SOURCE_OVERHEAD_BYTES", "VALID_KINDS", "BadRequestError", "QueryService"]

SNAPSHOT_DEFAULT_LIMIT = limits.SNAPSHOT_DEFAULT_LIMIT
#: What one later source adds to a StoredTx beyond its id's bytes: tags, lengths, the nanosecond time.
SOURCE_OVERHEAD_BYTES = 20
#: Threads that walk the log for ScanEvents and ListTransactions pages (module doc). Two: one walk does not wait for
#: another short one, and a page (bounded by ``scan_max_examined`` and the byte budget) is at most tens of ms.
LOG_WALK_THREADS = 2
_T = TypeVar("_T")


def _framed(value: Any, seq: int) -> bytes:
    """One ScanEventsResponse.events entry of a stored value (:func:`frame_event`, in scan's argument order)."""
    return frame_event(seq, value)


#: The status a transaction's last lifecycle event gives it.
_STATUS_OF_KIND = {events_pb2.EVENT_KIND_TX_INCLUDED: query_pb2.TX_LIFECYCLE_STATUS_INCLUDED,
                   events_pb2.EVENT_KIND_TX_REPLACED: query_pb2.TX_LIFECYCLE_STATUS_REPLACED,
                   events_pb2.EVENT_KIND_TX_DROPPED: query_pb2.TX_LIFECYCLE_STATUS_DROPPED}


class QueryService(QueryStreams, query_pb2_grpc.QueryServicer):
    """The Query gRPC service over the event log, read models and subscription hub: the unary RPCs here, the
    streams from :class:`~processd.api.query_streams.QueryStreams`, the request checks from
    :class:`~processd.api.query_checks.QueryChecks`."""

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
        self._walks = ThreadPoolExecutor(max_workers=LOG_WALK_THREADS, thread_name_prefix="mempulse-log-walk")
        #: Walks of the log submitted to the threads and not finished (running or waiting for a thread).
        self.log_walks = 0

    async def _off_loop(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` in a log-walk thread, as a read of the log's read gate (module doc)."""
        self.log_walks += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._walks, self._log.reads.read, functools.partial(fn, *args))
        finally:
            self.log_walks -= 1

    def close(self) -> None:
        """Waits for the log walks in progress (before the log closes) and refuses new ones (idempotent)."""
        self._walks.shutdown(wait=True, cancel_futures=True)

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
        return await self._off_loop(self._transactions_page, request, chain_id, event_filter)

    def _transactions_page(self, request: query_pb2.ListTransactionsRequest, chain_id: int,
                           event_filter: TxFilter | None) -> query_pb2.ListTransactionsResponse:
        """A ListTransactions page (in a log-walk thread)."""
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
        chain_id, kinds, event_filter = await self._event_selection(request, context, "ScanEvents")
        start = max(request.from_seq_id, 1)
        limit = self._limit(request.limit)
        if event_filter is not None:
            return await self._off_loop(self._filtered_scan, event_filter, start, limit)
        return await self._off_loop(self._plain_scan, chain_id, kinds, start, limit)

    def _plain_scan(self, chain_id: int, kinds: frozenset[int], start: int, limit: int) -> bytes:
        """An unfiltered ScanEvents page (in a log-walk thread)."""
        stats = ScanStats()
        # The stored values framed as they are (no decode and re-encode per event: the export reads the whole
        # log through here, docs/export.md#benchmark); the answer is serialized already (api.server passes it on).
        framed, next_seq, more, last = self._log.scan_page_as(
            _framed, start, limit, chain_id=chain_id, kinds=kinds, max_examined=self.scan_max_examined, stats=stats,
            max_bytes=self.max_page_bytes)
        # A walk that reached the end has looked at everything up to ``last``, matching or not.
        next_seq = max(next_seq, start) if more else max(start, last + 1)
        return scan_response(framed, next_seq, last, stats.truncated)
