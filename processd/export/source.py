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
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from common.pb.v1 import events_pb2, query_pb2, query_pb2_grpc
from processd.export import colmap
from processd.export.errors import MalformedPage, SourceUnavailable

log = logging.getLogger(__name__)


class Page:
    """Events in seq order (maybe none: a heartbeat) and the highest committed seq processd reported with them.

    A catch-up page read raw may come unparsed: its count and seqs read from its bytes (:func:`colmap.page_summary`),
    its messages parsed only if something asks for :attr:`events` (the protobuf mapper, the replay skip): the C
    mapper reads the bytes."""

    __slots__ = ("_events", "at_head", "count", "first_seq", "head_seq", "last_seq", "raw")

    def __init__(self, events: Sequence[events_pb2.Event] | None, head_seq: int, raw: bytes | None = None,
                 at_head: bool = True, summary: colmap.PageSummary | None = None) -> None:
        self._events = events
        self.head_seq = head_seq
        #: The ScanEvents page as processd sent it, when read raw (for the C mapper and the batch workers).
        self.raw = raw
        #: Whether the events reach the head processd reported (a live message, or the last page of a catch-up):
        #: the exporter's flush interval applies only then, so catch-up batches fill to batch_rows.
        self.at_head = at_head
        if events is not None:
            self.count = len(events)
            self.first_seq, self.last_seq = (events[0].seq_id, events[-1].seq_id) if events else (0, 0)
        else:
            assert summary is not None and raw is not None
            self.count, self.first_seq, self.last_seq = summary.event_count, summary.first_seq, summary.last_seq

    @property
    def events(self) -> Sequence[events_pb2.Event]:
        """The events, parsed from :attr:`raw` on first use (:class:`MalformedPage` if protobuf refuses them)."""
        if self._events is None:
            assert self.raw is not None
            self._events = parse_page(self.raw).events
        return self._events

    def drop_raw(self) -> None:
        """Lets go of the bytes (parsing them first if nothing did)."""
        if self._events is None:
            self._events = self.events
        self.raw = None


def parse_page(raw: bytes) -> query_pb2.ScanEventsResponse:
    """A serialized ScanEventsResponse parsed; :class:`MalformedPage` when protobuf refuses it."""
    try:
        return query_pb2.ScanEventsResponse.FromString(raw)
    except DecodeError as exc:
        raise MalformedPage(f"processd sent a ScanEvents page protobuf cannot parse ({len(raw)} bytes): {exc}") from exc


#: Seconds a ScanEvents call may take.
SCAN_TIMEOUT_S = 60.0
#: Catch-up pages a :class:`ThreadScan` fetches ahead of the reader (beside the exporter's read-ahead queue).
SCAN_AHEAD_PAGES = 2
#: Seconds between a waiting fetch thread's checks that its reader is gone.
_STOP_POLL_S = 0.25

#: A fetched page and the response's next_seq_id.
_Fetched = tuple[Page, int]


class ThreadScan:
    """The catch-up pages (ScanEvents) fetched by a thread of their own over a blocking channel, each asked for as
    soon as the one before it arrived, up to :data:`SCAN_AHEAD_PAGES` ahead of the reader.

    Why (docs/export.md#benchmark): asked for from the event loop, the next page was requested only when the loop
    was free between two pages' mapping, and processd, idle in between, answered after that; the export waited for
    pages more than half of its time (``source_wait``) while processd's CPU stayed low. The blocking call waits in
    gRPC's C core with the GIL released. What the reader needs of a page (its count, seqs, next seq) is read from
    its bytes by the C mapper, or, without it, the page is parsed here (:class:`Page`). ``close()`` closes the
    channel, cancelling a call in flight.
    """

    def __init__(self, target: str, max_message_bytes: int) -> None:
        self._channel = grpc.insecure_channel(target, options=_options(max_message_bytes))
        self._call = self._channel.unary_unary("/mempulse.v1.Query/ScanEvents",
                                               request_serializer=query_pb2.ScanEventsRequest.SerializeToString,
                                               response_deserializer=None)

    async def pages(self, from_seq: int, limit: int) -> AsyncIterator[_Fetched]:
        """The pages from ``from_seq`` (``limit`` events each) to the first one that reaches the head processd
        reports, each with its next_seq_id. Raises the call's ``grpc.RpcError``, or :class:`MalformedPage`."""
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
        while True:
            while not slots.acquire(timeout=_STOP_POLL_S):  # SCAN_AHEAD_PAGES wait for the reader
                if stop.is_set():
                    return
            if stop.is_set():
                return
            try:
                raw = bytes(self._call(query_pb2.ScanEventsRequest(from_seq_id=seq, limit=limit),
                                       timeout=SCAN_TIMEOUT_S))
                page, next_seq = _page_of(raw, seq)
            except Exception as exc:  # the reader raises it (an RpcError, or bytes protobuf refuses)
                deliver(exc)
                return
            seq = next_seq
            deliver((page, next_seq))
            if page.at_head:  # the head as processd reported it: the reader subscribes now
                deliver(None)
                return

    def close(self) -> None:
        self._channel.close()


def _page_of(raw: bytes, seq: int) -> tuple[Page, int]:
    """A fetched page (asked for from ``seq``) and the seq to ask for next."""
    summary = colmap.page_summary(raw)
    if summary is not None:
        next_seq = max(seq, summary.next_seq_id)
        return Page(None, summary.last_seq_id, raw, next_seq > summary.last_seq_id, summary), next_seq
    resp = parse_page(raw)
    next_seq = max(seq, resp.next_seq_id)
    return Page(resp.events, resp.last_seq_id, raw, next_seq > resp.last_seq_id), next_seq


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
                async for page, page_next in scan.pages(next_seq, page_events):
                    next_seq = max(next_seq, page_next)
                    yield page
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
