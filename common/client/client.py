"""``Client``: typed async access to processd's Query service (reads and a resumable event subscription)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

import grpc

from common.client import _convert
from common.client._many import MAX_FILTERS, ManySubscription
from common.client._stream import Backoff
from common.client._subscribe import Subscription
from common.client.errors import ClientClosedError, InvalidArgumentError, from_rpc_error
from common.client.filter import MAX_CHAIN_ID, Filter
from common.client.records import (
    Event,
    EventKind,
    EventPage,
    FeatureRecord,
    Opportunity,
    Snapshot,
    TransactionDetail,
    TransactionPage,
)
from common.limits import MAX_PAGE_LIMIT, MAX_SCORE
from common.pb.v1 import events_pb2, query_pb2, query_pb2_grpc

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Largest message accepted from processd (its pages stay under half of its own 16 MiB limit by default).
MAX_RECEIVE_MESSAGE_BYTES = 64 * 1024 * 1024
#: The unary Query methods: retried by gRPC itself on UNAVAILABLE (the service config below). Derived from the
#: service descriptor, so a method added to the proto is retried too (the client may not wrap it yet).
UNARY_METHODS = tuple(m.name for m in query_pb2.DESCRIPTOR.services_by_name["Query"].methods
                      if not m.server_streaming)


def service_config(max_attempts: int = 4, initial_backoff_s: float = 0.1, max_backoff_s: float = 2.0) -> str:
    """The gRPC service config (JSON) of the client's channel: the unary Query methods are retried on
    UNAVAILABLE (processd down, restarting, or not yet serving) up to ``max_attempts`` times (gRPC caps it at
    5) with jittered exponential backoff. They are reads, so a retry cannot do anything twice. The stream is
    not in it: a server stream that delivered a message is never retried by gRPC, so the subscription resumes
    on its own (``_subscribe.py``).
    """
    if not 1 <= max_attempts <= 5:
        raise InvalidArgumentError(f"retry max_attempts must be 1..5 (gRPC's bound), got {max_attempts}")
    policy = {
        "name": [{"service": "mempulse.v1.Query", "method": m} for m in UNARY_METHODS],
        "retryPolicy": {
            "maxAttempts": max_attempts,
            "initialBackoff": f"{initial_backoff_s:g}s",
            "maxBackoff": f"{max_backoff_s:g}s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }
    return json.dumps({"methodConfig": [policy]})


def _check_uint(name: str, value: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= high:
        raise InvalidArgumentError(f"{name} must be an int in 0..{high}, got {value!r:.60}")
    return value


def _chain(chain_id: int) -> int:
    return _check_uint("chain_id", chain_id, MAX_CHAIN_ID)


def _limit(limit: int) -> int:
    return _check_uint("limit", limit, MAX_PAGE_LIMIT)


def _kinds(kinds: Iterable[EventKind | str]) -> list[events_pb2.EventKind]:
    if isinstance(kinds, str):
        raise InvalidArgumentError("kinds must be a collection of kinds, not one string")
    try:
        return sorted(_convert.KIND_TO_PB[EventKind(k)] for k in kinds)
    except ValueError:
        raise InvalidArgumentError(f"kinds: {list(kinds)!r:.100} holds an unknown kind") from None


def _tx_hash(value: str) -> bytes:
    text = value.lower() if isinstance(value, str) else ""
    if len(text) != 66 or not text.startswith("0x"):
        raise InvalidArgumentError(f"hash: {value!r:.80} is not a 0x-prefixed 32-byte hex hash")
    try:
        return bytes.fromhex(text[2:])
    except ValueError:
        raise InvalidArgumentError(f"hash: {value!r:.80} is not a 0x-prefixed 32-byte hex hash") from None


class Client:
    """An async client of processd's Query service: reads returning plain dataclasses, and event subscriptions
    that reconnect and resume on their own.

    ``async with Client("127.0.0.1:50051") as c:`` (or ``await c.start()`` ... ``await c.stop()``). Every unary
    call has a deadline (``timeout_s``, overridable per call) and is retried by gRPC on UNAVAILABLE
    (``retry_attempts``, see :func:`service_config`); failures raise :mod:`common.client.errors` classes, never
    ``grpc.RpcError``. ``reconnect`` is the subscriptions' :class:`Backoff`, ``queue_events`` each
    subscription's delivery queue, ``idle_timeout_s`` how long a stream may stay silent (processd sends a
    heartbeat every 5 s) before it is taken for dead and reopened.
    """

    def __init__(
        self,
        target: str,
        *,
        timeout_s: float = 5.0,
        retry_attempts: int = 4,
        reconnect: Backoff | None = None,
        queue_events: int = 1024,
        idle_timeout_s: float = 30.0,
        channel_options: Iterable[tuple[str, Any]] = (),
    ) -> None:
        if not isinstance(target, str) or not target:
            raise InvalidArgumentError(f"target must be 'host:port', got {target!r:.80}")
        if timeout_s <= 0 or idle_timeout_s <= 0 or queue_events < 1:
            raise InvalidArgumentError("timeout_s and idle_timeout_s must be > 0 and queue_events >= 1")
        self.target = target
        self.timeout_s = timeout_s
        self.reconnect = reconnect or Backoff()
        self.queue_events = queue_events
        self.idle_timeout_s = idle_timeout_s
        self._options = [
            ("grpc.max_receive_message_length", MAX_RECEIVE_MESSAGE_BYTES),
            ("grpc.enable_retries", 1),
            ("grpc.service_config", service_config(retry_attempts)),
            # Reconnect quickly after processd restarts: gRPC's own default backoff grows to 120 s.
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2000),
            ("grpc.keepalive_time_ms", 30000),
            ("grpc.keepalive_timeout_ms", 10000),
            *channel_options,
        ]
        self._channel: grpc.aio.Channel | None = None
        self._stub: query_pb2_grpc.QueryStub | None = None
        self._subscriptions: set[Subscription | ManySubscription] = set()

    # ---- lifecycle --------------------------------------------------------------------------------------------

    async def start(self) -> Client:
        """Opens the channel (it connects lazily: a processd that is down is not an error here). Idempotent."""
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self.target, options=self._options)
            self._stub = query_pb2_grpc.QueryStub(self._channel)
        return self

    async def stop(self) -> None:
        """Ends every subscription and closes the channel, cancelling calls in flight. Safe to call twice."""
        for sub in list(self._subscriptions):
            await sub.aclose()
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close(grace=None)

    async def __aenter__(self) -> Client:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def _query(self) -> query_pb2_grpc.QueryStub:
        if self._stub is None:
            raise ClientClosedError("the client is not started (use `async with Client(...)` or `await start()`)")
        return self._stub

    async def _call(self, method: str, fn: Callable[..., Awaitable[T]], request: Any, timeout_s: float | None) -> T:
        try:
            return await fn(request, timeout=timeout_s or self.timeout_s)
        except grpc.RpcError as err:
            raise from_rpc_error(method, err) from None

    # ---- reads ------------------------------------------------------------------------------------------------

    async def snapshot(self, chain_id: int = 0, *, tx_limit: int = 0, opp_limit: int = 0, min_score: int = 0,
                       feature_limit: int = 0, timeout_s: float | None = None) -> Snapshot:
        """The dashboard view: per-chain totals, top opportunities, recent transactions and features (limits: 0 =
        processd's default of 20)."""
        req = query_pb2.GetSnapshotRequest(
            chain_id=_chain(chain_id), tx_limit=_limit(tx_limit), opp_limit=_limit(opp_limit),
            min_score=_check_uint("min_score", min_score, MAX_SCORE), feature_limit=_limit(feature_limit))
        return _convert.snapshot(await self._call("GetSnapshot", self._query.GetSnapshot, req, timeout_s))

    async def transactions(self, chain_id: int = 0, *, limit: int = 0, cursor: int = 0, ascending: bool = False,
                           status: str = "", timeout_s: float | None = None) -> TransactionPage:
        """A page of stored transactions: newest first below ``cursor`` (0 = from the newest), or with
        ``ascending`` oldest first from ``cursor``; with ``status`` (``pending``, ``included``, ``replaced``,
        ``dropped``) only those in that lifecycle status. Follow ``next_cursor`` for the next page."""
        if status and status.upper() not in ("PENDING", "INCLUDED", "REPLACED", "DROPPED"):
            raise ValueError(f"status must be pending, included, replaced or dropped, got {status!r}")
        req = query_pb2.ListTransactionsRequest(
            chain_id=_chain(chain_id), limit=_limit(limit), cursor=_check_uint("cursor", cursor, 2**64 - 1),
            ascending=ascending,
            status="TX_LIFECYCLE_STATUS_" + (status.upper() or "UNSPECIFIED"))
        return _convert.transaction_page(
            await self._call("ListTransactions", self._query.ListTransactions, req, timeout_s))

    async def transaction(self, tx_hash: str, chain_id: int = 0, *, timeout_s: float | None = None
                          ) -> TransactionDetail:
        """One transaction with its features and opportunities (``chain_id`` 0 = whichever chain holds it);
        raises :class:`NotFoundError` when processd does not hold it."""
        req = query_pb2.GetTransactionRequest(chain_id=_chain(chain_id), hash=_tx_hash(tx_hash))
        return _convert.transaction_detail(
            await self._call("GetTransaction", self._query.GetTransaction, req, timeout_s))

    async def features(self, chain_id: int = 0, *, limit: int = 0, timeout_s: float | None = None
                       ) -> list[FeatureRecord]:
        """The most recent decoded features, newest first."""
        req = query_pb2.ListFeaturesRequest(chain_id=_chain(chain_id), limit=_limit(limit))
        resp = await self._call("ListFeatures", self._query.ListFeatures, req, timeout_s)
        return [_convert.feature_record(f) for f in resp.features]

    async def opportunities(self, chain_id: int = 0, *, limit: int = 0, min_score: int = 0,
                            timeout_s: float | None = None) -> list[Opportunity]:
        """Opportunities of processd's recent window with ``score >= min_score``, best first."""
        req = query_pb2.ListOpportunitiesRequest(chain_id=_chain(chain_id), limit=_limit(limit),
                                                 min_score=_check_uint("min_score", min_score, MAX_SCORE))
        resp = await self._call("ListOpportunities", self._query.ListOpportunities, req, timeout_s)
        return [_convert.opportunity(o) for o in resp.opportunities]

    async def events(self, from_seq: int = 1, *, limit: int = 0, chain_id: int = 0,
                     kinds: Iterable[EventKind | str] = (), timeout_s: float | None = None) -> EventPage:
        """One page of the event log from ``from_seq`` (inclusive), optionally one chain's and some kinds' only;
        ``next_seq_id`` continues it."""
        req = query_pb2.ScanEventsRequest(from_seq_id=_check_uint("from_seq", from_seq, 2**64 - 1),
                                          limit=_limit(limit), chain_id=_chain(chain_id), kinds=_kinds(kinds))
        return _convert.event_page(await self._call("ScanEvents", self._query.ScanEvents, req, timeout_s))

    async def scan(self, from_seq: int = 1, *, chain_id: int = 0, kinds: Iterable[EventKind | str] = (),
                   page_limit: int = 1000) -> AsyncIterator[Event]:
        """Every stored event from ``from_seq`` up to the head at the time each page is read, page by page."""
        kinds = list(kinds)
        while True:
            page = await self.events(from_seq, limit=page_limit, chain_id=chain_id, kinds=kinds)
            for ev in page.events:
                yield ev
            if page.next_seq_id > page.last_seq_id:
                return
            from_seq = page.next_seq_id

    # ---- subscription -----------------------------------------------------------------------------------------

    def subscribe(self, flt: Filter | None = None, *, from_seq: int | None = None) -> Subscription:
        """Events matching ``flt`` as they are committed: ``async for ev in client.subscribe(Filter(...))``.

        ``from_seq`` None (default) starts with the events committed after the subscription is admitted; an int
        replays the log from that seq (inclusive; 1 = the oldest retained) first, then goes live. Across processd
        restarts, resets and slow-consumer cut-offs the subscription reconnects (``reconnect`` backoff) and resumes
        after the last event it handled, so each matching event arrives once, in seq order. See
        :class:`Subscription`.
        """
        if flt is not None and not isinstance(flt, Filter):
            raise InvalidArgumentError(f"expected a Filter, got {type(flt).__name__}")
        if from_seq is not None:
            _check_uint("from_seq", from_seq, 2**64 - 1)
        sub = Subscription(
            self._query, flt or Filter(), from_seq, queue_events=self.queue_events, backoff=self.reconnect,
            idle_timeout_s=self.idle_timeout_s, lookup_timeout_s=self.timeout_s, on_close=self._subscriptions.discard)
        self._subscriptions.add(sub)
        return sub

    def subscribe_many(self, filters: Mapping[int, Filter] | None = None, *, from_seq: int | None = None
                       ) -> ManySubscription:
        """Many filters on one stream (processd's ``SubscribeMany``): ``async for te in client.subscribe_many({1:
        Filter(...), 2: Filter(...)})`` yields :class:`~common.client._many.TaggedEvent` s, each event once with
        the ids of the filters that take it. ``add`` / ``remove`` change the filters while it runs.

        ``from_seq`` None (default) starts each filter with the events committed after processd acknowledges it;
        an int replays the log from that seq (inclusive) for the filters given here first. Across processd
        restarts it reconnects (``reconnect`` backoff) and resumes after the last event it queued: SubscribeMany
        has no resume point of its own, so the gap is read from the log per filter (``ScanEvents``; see
        :class:`~common.client._many.ManySubscription`). Each call has the client's deadline.
        """
        held: dict[int, Filter] = {}
        for fid, flt in (filters or {}).items():
            if not isinstance(flt, Filter):
                raise InvalidArgumentError(f"filter {fid!r:.20}: expected a Filter, got {type(flt).__name__}")
            held[_check_uint("filter id", fid, 2**32 - 1)] = flt
        if len(held) > MAX_FILTERS:
            raise InvalidArgumentError(f"at most {MAX_FILTERS} filters on one stream, got {len(held)}")
        if from_seq is not None:
            _check_uint("from_seq", from_seq, 2**64 - 1)
        sub = ManySubscription(
            self._query, held, from_seq, queue_events=self.queue_events, backoff=self.reconnect,
            idle_timeout_s=self.idle_timeout_s, timeout_s=self.timeout_s, on_close=self._subscriptions.discard)
        self._subscriptions.add(sub)
        return sub
