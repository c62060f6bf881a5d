"""The log side of the export: pages of events from processd's Query service, in seq order, from a seq on.

Catch-up reads ScanEvents pages (large pages, no per-subscriber buffer in processd) until a page reaches the
head the scan reported; then one SubscribeEvents stream from the next seq carries the live events. A stream
that ends (processd restarted, or cut this subscriber as too slow: RESOURCE_EXHAUSTED) goes back to scanning
from the next seq not yet returned, so no event is skipped or repeated.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

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


#: ScanEvents returning the response's bytes (parsed here, and again by a batch worker): a :class:`ThreadScan`.
RawScan = Callable[[query_pb2.ScanEventsRequest], Awaitable[bytes]]

#: Seconds a ScanEvents call may take.
SCAN_TIMEOUT_S = 60.0


class ThreadScan:
    """ScanEvents over a blocking channel, each call in a thread, so the next catch-up page is read while the
    event loop maps the one before: over the asyncio channel a page's bytes are read only when the loop is free,
    and with each page mapped for tens of ms the export spent a good part of its time waiting for pages
    (``source_wait``, docs/export.md#benchmark). The blocking call waits in gRPC's C core with the GIL released.
    Returns the serialized response (:data:`RawScan`). ``close()`` closes the channel, cancelling a call in flight.
    """

    def __init__(self, target: str, max_message_bytes: int) -> None:
        self._channel = grpc.insecure_channel(target, options=_options(max_message_bytes))
        self._call = self._channel.unary_unary("/mempulse.v1.Query/ScanEvents",
                                               request_serializer=query_pb2.ScanEventsRequest.SerializeToString,
                                               response_deserializer=None)

    async def __call__(self, request: query_pb2.ScanEventsRequest) -> bytes:
        return bytes(await asyncio.to_thread(self._call, request, timeout=SCAN_TIMEOUT_S))

    def close(self) -> None:
        self._channel.close()


def _options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", 4 * 1024 * 1024)]


def channel(target: str, max_message_bytes: int) -> grpc.aio.Channel:
    """An insecure channel to processd that accepts its largest pages."""
    return grpc.aio.insecure_channel(target, options=_options(max_message_bytes))


async def tail(stub: query_pb2_grpc.QueryStub, from_seq: int, page_events: int,
               scan: RawScan | None = None) -> AsyncIterator[Page]:
    """Every event from ``from_seq`` on, forever (scan, then subscribe; back to scanning when a stream ends).
    With ``scan`` (:class:`ThreadScan`) the catch-up pages also carry their bytes (:attr:`Page.raw`).

    Raises :class:`SourceUnavailable` when processd cannot be reached (the caller retries with backoff)."""
    next_seq = max(from_seq, 1)
    while True:
        try:
            while True:  # catch-up
                request = query_pb2.ScanEventsRequest(from_seq_id=next_seq, limit=page_events)
                raw = await scan(request) if scan is not None else None
                resp = (query_pb2.ScanEventsResponse.FromString(raw) if raw is not None
                        else await stub.ScanEvents(request, timeout=SCAN_TIMEOUT_S))
                next_seq = max(next_seq, resp.next_seq_id)
                yield Page(resp.events, resp.last_seq_id, raw, at_head=next_seq > resp.last_seq_id)
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
