"""The resumable event subscription behind ``Client.subscribe``.

One background task reads processd's ``SubscribeEvents`` stream into a bounded queue that the caller's
``async for`` drains. Each event the task has passed on (or dropped by the filter) advances the resume point, the
seq the next stream starts from; when the stream breaks (processd restarted or killed, the connection reset, a
slow-subscriber cut-off) the task reconnects with jittered exponential backoff and asks for the log from that
seq, so across any number of reconnects the caller gets each matching event once, in seq order. Events that
arrive below the resume point anyway are dropped (an extra guard; processd does not send them).

A slow consumer is never answered by dropping: when the queue is full the task stops reading, gRPC flow control
holds the stream, and processd, whose own per-subscriber buffer then fills, ends the stream with
RESOURCE_EXHAUSTED; the task reconnects and catches up from the log, which costs time, not events.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

import grpc

from common.client import _convert
from common.client.errors import ClientClosedError, ClientError, InvalidArgumentError, UnavailableError, from_rpc_error
from common.client.filter import Filter, TxFacts
from common.client.records import Event
from common.pb.v1 import events_pb2, query_pb2, query_pb2_grpc

log = logging.getLogger(__name__)

#: Response header processd's SubscribeEvents sends once the subscriber slot is reserved (before catch-up).
ADMITTED_HEADER = "mempulse-subscription"
#: Sent with it: the highest committed seq_id at admission (where a stream "from now" starts after).
HEAD_HEADER = "mempulse-head-seq-id"
#: Sent by a processd that applies the request's EventFilter (all of the Filter's fields).
FILTER_HEADER = "mempulse-filter"
#: Transactions whose filter facts are remembered (a bounded LRU; a forgotten one is looked up again).
FACTS_CACHE_TXS = 65_536

_SEEN = events_pb2.EVENT_KIND_TX_SEEN
_DECODED = events_pb2.EVENT_KIND_TX_DECODED
_WAKE = object()
#: The subscription was closed by its owner: iteration ends.
_CLOSED = object()


@dataclass(frozen=True, slots=True)
class Backoff:
    """How a subscription reconnects: after the n-th consecutive failure it waits
    ``min(max_s, initial_s * multiplier**(n-1))``, spread by +-``jitter`` (a fraction) so clients of one
    processd do not come back in step, and gives up after ``max_attempts`` consecutive failures (None: never).
    A stream that processd admitted resets the count.
    """

    initial_s: float = 0.1
    max_s: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if not (0 < self.initial_s <= self.max_s) or self.multiplier < 1 or not 0 <= self.jitter < 1:
            raise InvalidArgumentError(
                f"invalid backoff {self}: need 0 < initial_s <= max_s, multiplier >= 1, 0 <= jitter < 1")
        if self.max_attempts is not None and self.max_attempts < 0:
            raise InvalidArgumentError(f"invalid backoff {self}: max_attempts must be >= 0 or None")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before reconnect ``attempt`` (1 = the first after a failure)."""
        base = min(self.max_s, self.initial_s * self.multiplier ** max(attempt - 1, 0))
        return min(self.max_s, base * (1.0 + rng.uniform(-self.jitter, self.jitter)))


class Subscription:
    """An async iterator of :class:`Event` that survives processd restarts (``Client.subscribe`` makes them).

    The stream starts at the first ``async for`` step (or ``start()``, or ``async with``); ``aclose()`` (or
    leaving the ``async with``, or stopping the client) ends it, after which iteration stops. If it cannot go on
    (processd refused the request, or unreachable for ``Backoff.max_attempts`` reconnects) the events already
    queued are delivered first, then the iteration raises the :class:`ClientError`.
    """

    def __init__(
        self,
        stub: query_pb2_grpc.QueryStub,
        flt: Filter,
        from_seq: int | None,
        *,
        queue_events: int,
        backoff: Backoff,
        idle_timeout_s: float,
        lookup_timeout_s: float,
        on_close: Any = None,
    ) -> None:
        self.filter = flt
        self._stub = stub
        self._backoff = backoff
        self._idle_timeout_s = idle_timeout_s
        self._lookup_timeout_s = lookup_timeout_s
        self._on_close = on_close
        # The seq the next stream starts from; None until processd has told the head (from_head).
        self._next_seq: int | None = None if from_seq is None else max(from_seq, 1)
        self._queue: asyncio.Queue[Any] = asyncio.Queue(queue_events)
        self._final: BaseException | object | None = None
        self._task: asyncio.Task[None] | None = None
        self._facts: OrderedDict[tuple[int, bytes], TxFacts] = OrderedDict()
        #: Whether the current stream's processd applies the whole filter (its admission says so).
        self._server_filters = False
        self._rng = random.Random()
        self._last_seq = 0
        self._wakes = 0  # _WAKE markers in the queue
        #: The head processd reported when the first stream was admitted (None before).
        self.head_seq: int | None = None
        #: Streams opened after the first one (processd restarts, resets, cut-offs).
        self.reconnects = 0
        # Set when processd first admits the stream, or when the subscription ends before that.
        self._settled = asyncio.Event()

    @property
    def last_seq(self) -> int:
        """The seq of the last event this iterator returned (0 before the first): resume a later subscription
        with ``from_seq=last_seq + 1``."""
        return self._last_seq

    @property
    def resume_seq(self) -> int | None:
        """The seq the stream goes on from (events below it were queued or filtered out); None before processd
        reported the head of a subscription started from now."""
        return self._next_seq

    @property
    def pending(self) -> int:
        """Events queued for the consumer and not yet taken (how far behind the stream it is)."""
        return self._queue.qsize() - self._wakes

    async def start(self) -> Subscription:
        """Starts the background stream (idempotent)."""
        if self._task is None and self._final is None:
            self._task = asyncio.create_task(self._run(), name="mempulse-client-subscription")
        return self

    async def wait_admitted(self) -> int:
        """Starts the stream if needed, waits until processd has admitted it and returns the head it reported
        (the highest committed seq at admission): events committed after this returns are sure to be delivered.
        Raises the subscription's error if it ended first."""
        await self.start()
        await self._settled.wait()
        if self.head_seq is None:
            if isinstance(self._final, BaseException):
                raise self._final
            raise ClientClosedError("the subscription was closed before processd admitted it")
        return self.head_seq

    async def aclose(self) -> None:
        """Ends the stream; iteration stops after this. Safe to call twice."""
        if self._final is None:
            self._finish(_CLOSED)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                # Re-raise only if the caller itself is being cancelled, not because of the task we cancelled.
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
        if self._on_close is not None:
            self._on_close(self)
            self._on_close = None

    async def __aenter__(self) -> Subscription:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        if self._task is None and self._final is None:
            await self.start()
        while True:
            if self._final is _CLOSED:  # closed by its owner: what is still queued is not wanted any more
                raise StopAsyncIteration
            if self._queue.empty() and self._final is not None:
                if isinstance(self._final, BaseException):
                    raise self._final
                raise StopAsyncIteration
            item = await self._queue.get()
            if item is _WAKE:
                self._wakes -= 1
                continue
            self._last_seq = item.seq_id
            return item

    # ---- the background task --------------------------------------------------------------------------------

    def _finish(self, final: BaseException | object) -> None:
        if self._final is None:
            self._final = final
        self._settled.set()
        # Wake a consumer waiting on an empty queue; a full one is drained first and then sees _final.
        try:
            self._queue.put_nowait(_WAKE)
            self._wakes += 1
        except asyncio.QueueFull:
            pass

    async def _run(self) -> None:
        attempt = 0
        try:
            while True:
                admitted = [False]
                try:
                    await self._stream_once(admitted)
                    cause = "processd ended the stream"
                except grpc.RpcError as err:
                    mapped = from_rpc_error("SubscribeEvents", err)
                    if not mapped.retriable:
                        raise mapped from None
                    cause = f"{mapped.code}: {(err.details() or '')[:200]}"
                except TimeoutError:
                    cause = f"no message for {self._idle_timeout_s:g} s (processd sends a heartbeat every 5 s)"
                if admitted[0]:
                    attempt = 0
                attempt += 1
                if self._backoff.max_attempts is not None and attempt > self._backoff.max_attempts:
                    raise UnavailableError(
                        f"SubscribeEvents: gave up after {attempt - 1} reconnect attempts ({cause})",
                        method="SubscribeEvents", code="UNAVAILABLE")
                delay = self._backoff.delay(attempt, self._rng)
                log.warning("event subscription lost (%s); reconnecting in %.2f s from seq %s", cause, delay,
                            self._next_seq if self._next_seq is not None else "head")
                await asyncio.sleep(delay)
                self.reconnects += 1
        except ClientError as err:
            self._finish(err)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a bug must still end the caller's iteration, not hang it
            log.exception("event subscription failed")
            self._finish(ClientError(f"SubscribeEvents: the subscription failed: {err!r}", method="SubscribeEvents"))

    def _request(self) -> query_pb2.SubscribeEventsRequest:
        # The older fields as before (an older processd reads only them), and the whole filter (this release's
        # processd ANDs them with it, so it sends only what the filter takes).
        req = query_pb2.SubscribeEventsRequest(
            chain_id=self.filter.server_chain_id,
            kinds=sorted(_convert.KIND_TO_PB[k] for k in self.filter.server_kinds),
            filter=self.filter.to_pb(),
        )
        if self._next_seq is None:
            req.from_head = True
        else:
            req.from_seq_id = self._next_seq
        return req

    async def _stream_once(self, admitted: list[bool]) -> None:
        """One SubscribeEvents call, until it ends (returns) or fails (raises ``grpc.RpcError``/TimeoutError)."""
        call = self._stub.SubscribeEvents(self._request())
        try:
            metadata = dict(await asyncio.wait_for(call.initial_metadata(), self._idle_timeout_s) or ())
            if ADMITTED_HEADER in metadata:
                admitted[0] = True
                self._server_filters = metadata.get(FILTER_HEADER) == "applied"
                if self.filter.needs_server_filter and not self._server_filters:
                    raise InvalidArgumentError(
                        "this processd does not apply EventFilter (no mempulse-filter: applied): protocols, "
                        "tokens_in, tokens_out and min_score cannot be judged by the client", method="SubscribeEvents")
                if self.head_seq is None:
                    self.head_seq = int(metadata.get(HEAD_HEADER, "0"))
                if self._next_seq is None:
                    self._next_seq = self.head_seq + 1
                self._settled.set()
            while True:
                msg = await asyncio.wait_for(call.read(), self._idle_timeout_s)
                if msg is grpc.aio.EOF:  # type: ignore[attr-defined]
                    return
                admitted[0] = True
                await self._deliver(msg)
        finally:
            call.cancel()

    async def _deliver(self, msg: query_pb2.SubscribeEventsResponse) -> None:
        flt = self.filter
        # processd applied the whole filter (mempulse-filter: applied); an older one only the chain and kinds.
        client_side = flt.needs_tx_facts and not self._server_filters
        if client_side:
            self._learn(msg.events)
        for ev in msg.events:
            if self._next_seq is None:
                # A processd without from_head support sent no head: start with what it sends.
                self._next_seq = ev.seq_id
            if ev.seq_id < self._next_seq:
                continue
            kind = _convert.KIND_FROM_PB.get(ev.kind)
            ok = kind is not None and flt.matches_header(ev.chain_id, kind)
            if ok and client_side:
                facts = await self._facts_for(ev.chain_id, ev.tx_hash)
                ok = facts is not None and flt.matches_tx(facts)
            if ok:
                converted = _convert.event(ev)
                if converted is not None:
                    # Blocks while the consumer is behind: flow control, never a drop.
                    await self._queue.put(converted)
            self._next_seq = ev.seq_id + 1

    # ---- transaction facts for the client-side filter fields ------------------------------------------------

    def _remember(self, key: tuple[int, bytes], facts: TxFacts) -> None:
        self._facts[key] = facts
        self._facts.move_to_end(key)
        while len(self._facts) > FACTS_CACHE_TXS:
            self._facts.popitem(last=False)

    def _learn(self, events: Any) -> None:
        # A transaction's TX_SEEN and TX_DECODED are committed together at consecutive seqs, so both are
        # nearly always in one message: learning the whole message first judges its TX_SEEN by the method name
        # without a lookup.
        for ev in events:
            if ev.kind == _SEEN:
                tx = ev.tx_seen.tx
                self._remember((ev.chain_id, ev.tx_hash), TxFacts(
                    sender="0x" + tx.sender.hex(),
                    to="0x" + tx.to.hex() if tx.to else None,
                    value=int.from_bytes(tx.value, "big"),
                    selector="0x" + tx.input[:4].hex() if len(tx.input) >= 4 else None,
                ))
            elif ev.kind == _DECODED:
                key = (ev.chain_id, ev.tx_hash)
                known = self._facts.get(key)
                if known is not None:
                    self._remember(key, replace(known, method=ev.tx_decoded.features.method))

    async def _facts_for(self, chain_id: int, tx_hash: bytes) -> TxFacts | None:
        key = (chain_id, tx_hash)
        known = self._facts.get(key)
        if known is not None and (known.method is not None or not self.filter.needs_method_name):
            return known
        # Not seen on this stream (it started inside the transaction's events, or the cache forgot it): ask.
        # An UNAVAILABLE here propagates as grpc.RpcError and reconnects like a broken stream.
        try:
            resp = await self._stub.GetTransaction(
                query_pb2.GetTransactionRequest(chain_id=chain_id, hash=tx_hash), timeout=self._lookup_timeout_s)
        except grpc.RpcError as err:
            if err.code() is grpc.StatusCode.NOT_FOUND:
                # Pruned by retention since the event was read: nothing left to judge it by.
                log.debug("transaction 0x%s of chain %d is gone; its event is filtered out", tx_hash.hex(), chain_id)
                return None
            raise
        tx = resp.transaction.tx
        facts = TxFacts(
            sender="0x" + tx.sender.hex(),
            to="0x" + tx.to.hex() if tx.to else None,
            value=int.from_bytes(tx.value, "big"),
            selector="0x" + tx.input[:4].hex() if len(tx.input) >= 4 else None,
            method=resp.features.features.method if resp.HasField("features") else "",
        )
        self._remember(key, facts)
        return facts
