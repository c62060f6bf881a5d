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
from collections import OrderedDict
from dataclasses import replace
from typing import Any

import grpc

from common.client import _convert
from common.client._stream import Backoff, ResumableStream
from common.client.errors import InvalidArgumentError
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


class Subscription(ResumableStream[Event]):
    """An async iterator of :class:`Event` that survives processd restarts (``Client.subscribe`` makes them).

    The stream starts at the first ``async for`` step (or ``start()``, or ``async with``); ``aclose()`` (or
    leaving the ``async with``, or stopping the client) ends it, after which iteration stops. If it cannot go on
    (processd refused the request, or unreachable for ``Backoff.max_attempts`` reconnects) the events already
    queued are delivered first, then the iteration raises the :class:`ClientError`.
    """

    method = "SubscribeEvents"
    label = "event subscription"

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
        super().__init__(queue_events=queue_events, backoff=backoff, idle_timeout_s=idle_timeout_s,
                         on_close=on_close)
        self.filter = flt
        self._stub = stub
        self._lookup_timeout_s = lookup_timeout_s
        # The seq the next stream starts from; None until processd has told the head (from_head).
        self._next_seq: int | None = None if from_seq is None else max(from_seq, 1)
        self._facts: OrderedDict[tuple[int, bytes], TxFacts] = OrderedDict()
        #: Whether the current stream's processd applies the whole filter (its admission says so).
        self._server_filters = False

    @property
    def resume_seq(self) -> int | None:
        """The seq the stream goes on from (events below it were queued or filtered out); None before processd
        reported the head of a subscription started from now."""
        return self._next_seq

    def _seq_of(self, item: Event) -> int:
        return item.seq_id

    def _resume_point(self) -> str:
        return "from the head" if self._next_seq is None else f"from seq {self._next_seq}"

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
