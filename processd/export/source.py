"""The log side of the export: pages of events from processd's Query service, in seq order, from a seq on.

Catch-up reads ScanEvents pages (large pages, no per-subscriber buffer in processd) until a page reaches the
head the scan reported; then one SubscribeEvents stream from the next seq carries the live events. A stream
that ends (processd restarted, or cut this subscriber as too slow: RESOURCE_EXHAUSTED) goes back to scanning
from the next seq not yet returned, so no event is skipped or repeated.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from common.pb.v1 import events_pb2, query_pb2, query_pb2_grpc
from processd.export.errors import SourceUnavailable

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Page:
    """Events in seq order (maybe none: a heartbeat) and the highest committed seq processd reported with them."""

    events: Sequence[events_pb2.Event]
    head_seq: int
    #: A ScanEvents page as processd sent it, when read raw (for the batch workers: processd.export.workers).
    raw: bytes | None = None
    #: Whether the events reach the head processd reported (a live message, or the last page of a catch-up): the
    #: exporter's flush interval applies only then, so catch-up batches fill to batch_rows (fewer, larger INSERTs).
    at_head: bool = True


#: Seconds a ScanEvents call may take.
SCAN_TIMEOUT_S = 60.0
#: Catch-up pages a :class:`ThreadScan` fetches ahead of the reader (beside the exporter's read-ahead queue).
SCAN_AHEAD_PAGES = 2
#: Seconds between a waiting fetch thread's checks that its reader is gone.
_STOP_POLL_S = 0.25

_Fetched = tuple[bytes, query_pb2.ScanEventsResponse]


class ThreadScan:
    """The catch-up pages (ScanEvents) fetched by a thread of their own over a blocking channel, each asked for as
    soon as the one before it arrived, up to :data:`SCAN_AHEAD_PAGES` ahead of the reader, and parsed there.

    Why (docs/export.md#benchmark): asked for from the event loop, the next page was requested only when the loop
    was free between two pages' mapping, and processd, idle in between, answered after that; the export waited for
    pages more than half of its time (``source_wait``) while processd's CPU stayed low. The blocking call waits in
    gRPC's C core with the GIL released. ``close()`` closes the channel, cancelling a call in flight.
    """

    def __init__(self, target: str, max_message_bytes: int) -> None:
        self._channel = grpc.insecure_channel(target, options=_options(max_message_bytes))
        self._call = self._channel.unary_unary("/mempulse.v1.Query/ScanEvents",
                                               request_serializer=query_pb2.ScanEventsRequest.SerializeToString,
                                               response_deserializer=None)

    async def pages(self, from_seq: int, limit: int) -> AsyncIterator[_Fetched]:
        """The pages from ``from_seq`` (``limit`` events each) to the first one that reaches the head processd
        reports, as (bytes, parsed). Raises the call's ``grpc.RpcError``."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Queue[_Fetched | BaseException | None] = asyncio.Queue()  # bounded by ``slots``
        slots = threading.Semaphore(SCAN_AHEAD_PAGES)
        stop = threading.Event()

        def deliver(item: _Fetched | BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(ready.put_nowait, item)
            except RuntimeError:  # the loop closed: nobody reads any more
                stop.set()

        threading.Thread(target=self._fetch, args=(from_seq, limit, slots, stop, deliver), daemon=True,
                         name="export-scan").start()
        try:
            while (item := await ready.get()) is not None:
                slots.release()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()

    def _fetch(self, seq: int, limit: int, slots: threading.Semaphore, stop: threading.Event,
               deliver: Callable[[Any], None]) -> None:
        parse = query_pb2.ScanEventsResponse.FromString
        while True:
            while not slots.acquire(timeout=_STOP_POLL_S):  # SCAN_AHEAD_PAGES wait for the reader
                if stop.is_set():
                    return
            if stop.is_set():
                return
            try:
                raw = bytes(self._call(query_pb2.ScanEventsRequest(from_seq_id=seq, limit=limit),
                                       timeout=SCAN_TIMEOUT_S))
                resp = parse(raw)
            except Exception as exc:  # the reader raises it (an RpcError, or bytes protobuf refuses)
                deliver(exc)
                return
            seq = max(seq, resp.next_seq_id)
            deliver((raw, resp))
            if seq > resp.last_seq_id:  # the head as processd reported it: the reader subscribes now
                deliver(None)
                return

    def close(self) -> None:
        self._channel.close()


def _options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", 4 * 1024 * 1024)]


def channel(target: str, max_message_bytes: int) -> grpc.aio.Channel:
    """An insecure channel to processd that accepts its largest pages."""
    return grpc.aio.insecure_channel(target, options=_options(max_message_bytes))


async def tail(stub: query_pb2_grpc.QueryStub, from_seq: int, page_events: int,
               scan: ThreadScan | None = None) -> AsyncIterator[Page]:
    """Every event from ``from_seq`` on, forever (scan, then subscribe; back to scanning when a stream ends).
    With ``scan`` (:class:`ThreadScan`) the catch-up pages also carry their bytes (:attr:`Page.raw`).

    Raises :class:`SourceUnavailable` when processd cannot be reached (the caller retries with backoff)."""
    next_seq = max(from_seq, 1)
    while True:
        try:
            if scan is not None:  # catch-up, fetched ahead by its thread
                async for raw, resp in scan.pages(next_seq, page_events):
                    next_seq = max(next_seq, resp.next_seq_id)
                    yield Page(resp.events, resp.last_seq_id, raw, at_head=next_seq > resp.last_seq_id)
            else:
                while True:  # catch-up
                    resp = await stub.ScanEvents(query_pb2.ScanEventsRequest(from_seq_id=next_seq, limit=page_events),
                                                 timeout=SCAN_TIMEOUT_S)
                    next_seq = max(next_seq, resp.next_seq_id)
                    yield Page(resp.events, resp.last_seq_id, at_head=next_seq > resp.last_seq_id)
                    if next_seq > resp.last_seq_id:
                        break
            log.debug("caught up at seq %d: subscribing", next_seq - 1)
            call = stub.SubscribeEvents(query_pb2.SubscribeEventsRequest(from_seq_id=next_seq))
            try:
                async for msg in call:
                    events = [ev for ev in msg.events if ev.seq_id >= next_seq]
                    if events:
                        next_seq = events[-1].seq_id + 1
                    yield Page(events, msg.last_seq_id)
            finally:
                call.cancel()
            log.info("processd ended the event stream at seq %d: scanning again", next_seq - 1)
        except grpc.RpcError as exc:  # the aio channel's AioRpcError, or the blocking one's (ThreadScan)
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                # cut off as too slow (or refused: too many subscribers): scanning needs no subscriber slot
                log.warning("processd cut the event stream (%s): scanning from seq %d", exc.details(), next_seq)
                continue
            raise SourceUnavailable(f"processd Query: {exc.code().name}: {exc.details()}") from exc
