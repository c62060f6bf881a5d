"""Many filters on one resumable stream: ``Client.subscribe_many``, over processd's ``SubscribeMany``.

One background task holds the bidi stream: it sends the filters (``add`` / ``remove`` while it runs), and each
event processd sends once, with the ids of the filters that take it, goes to a bounded queue as a
:class:`TaggedEvent` (the :class:`~common.client.records.Event` of ``subscribe`` and those ids).

SubscribeMany is live only and has no resume point: an added filter takes the events from the seq its add is
acknowledged with (``ManyFilterAdded.from_seq_id``). So after the stream breaks (processd killed or restarted, the
connection reset, a slow-stream cut-off) the task reconnects with the subscriptions' backoff, adds every filter
again, and fills the gap of each one between the stream's resume point (one past the last event queued, or the
filter's own start if later) and its new ``from_seq_id`` from the log with ``ScanEvents`` and the same filter
(server side; a page examines at most processd's scan bound). The gap's events and those that came meanwhile on
the new stream are merged by seq (ids joined), so each event is queued once, in seq order. The resume point is
per stream, not per filter: a filter that took nothing for long is scanned from the last event any filter took.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc

from common.client import _convert
from common.client._stream import Backoff, ResumableStream
from common.client._subscribe import ADMITTED_HEADER, HEAD_HEADER
from common.client.errors import ClientClosedError, InvalidArgumentError
from common.client.filter import Filter
from common.client.records import Event
from common.pb.v1 import events_pb2, query_pb2, query_pb2_grpc

log = logging.getLogger(__name__)

#: processd's default ``max_filters_per_stream``: more on one stream ends it with RESOURCE_EXHAUSTED.
MAX_FILTERS = 4096
#: A gap is filled this many seqs at a time (what is merged in memory at once), each filter's pages within it.
CATCHUP_WINDOW_SEQS = 20_000
#: Events per ScanEvents page of a catch-up.
CATCHUP_PAGE_EVENTS = 1000
_MAX_ID = 2**32 - 1


@dataclass(frozen=True, slots=True)
class TaggedEvent:
    """One event of a many-filter subscription: the event, and the ids of the subscription's filters that take it
    (at least one; only filters still held when it was queued)."""

    event: Event
    filter_ids: frozenset[int]


def _check_id(fid: int) -> int:
    if not isinstance(fid, int) or isinstance(fid, bool) or not 0 <= fid <= _MAX_ID:
        raise InvalidArgumentError(f"filter id must be an int in 0..{_MAX_ID}, got {fid!r:.60}")
    return fid


def _check_filter(flt: Filter) -> Filter:
    if not isinstance(flt, Filter):
        raise InvalidArgumentError(f"expected a Filter, got {type(flt).__name__}")
    return flt


def _add_request(filters: Iterable[tuple[int, Filter]]) -> query_pb2.SubscribeManyRequest:
    return query_pb2.SubscribeManyRequest(add=[query_pb2.ManyFilter(id=fid, filter=flt.to_pb())
                                               for fid, flt in filters])


class ManySubscription(ResumableStream[TaggedEvent]):
    """An async iterator of :class:`TaggedEvent` over many filters on one stream (``Client.subscribe_many``),
    surviving processd restarts: each event any filter takes is delivered once, in seq order, with the ids of its
    filters (see the module docstring for how a reconnect resumes).

    The stream starts at the first ``async for`` step (or ``start()``, or ``async with``); :meth:`add` and
    :meth:`remove` change the filters while it runs (a filter added later takes events from the seq processd
    acknowledges it with, or from ``from_seq`` when given). ``wait_admitted()`` returns once processd has
    acknowledged the filters the stream was opened with. ``aclose()`` ends it. If it cannot go on (processd
    refused a filter, or unreachable for ``Backoff.max_attempts`` reconnects) the events already queued are
    delivered first, then the iteration raises the :class:`ClientError`.
    """

    method = "SubscribeMany"
    label = "many-filter subscription"

    def __init__(self, stub: query_pb2_grpc.QueryStub, filters: dict[int, Filter], from_seq: int | None, *,
                 queue_events: int, backoff: Backoff, idle_timeout_s: float, timeout_s: float,
                 on_close: Any = None) -> None:
        super().__init__(queue_events=queue_events, backoff=backoff, idle_timeout_s=idle_timeout_s,
                         on_close=on_close)
        self._stub = stub
        self._filters = dict(filters)
        #: Per filter, the first seq it takes (``from_seq``, else its first acknowledgement).
        self._since: dict[int, int] = {fid: max(from_seq, 1) for fid in filters} if from_seq is not None else {}
        self._timeout_s = timeout_s
        self._call: Any = None  # the current stream, once its filters are sent
        self._write_lock = asyncio.Lock()
        #: The seq of the last event queued (the stream's resume point is one past it).
        self._queued_seq = 0
        self._acked = asyncio.Event()  # set at each acknowledgement of an add (and when the subscription ends)

    @property
    def filters(self) -> dict[int, Filter]:
        """The filters held, by id (a copy)."""
        return dict(self._filters)

    def since(self, fid: int) -> int | None:
        """The first seq filter ``fid`` takes: ``from_seq`` for the filters given with it, else the seq processd
        acknowledged its first add with; None while not acknowledged (or not held)."""
        return self._since.get(fid) if fid in self._filters else None

    async def wait_added(self, fid: int) -> int:
        """Starts the stream if needed and waits until filter ``fid`` has a first seq (:meth:`since`): every event
        it takes from that seq on is delivered. Raises :class:`InvalidArgumentError` when ``fid`` is not held,
        or the subscription's error if it ends first."""
        await self.start()
        while True:
            since = self.since(fid)
            if since is not None:
                return since
            if fid not in self._filters:
                raise InvalidArgumentError(f"filter id {fid!r:.20} is not held")
            if self._final is not None:
                if isinstance(self._final, BaseException):
                    raise self._final
                raise ClientClosedError("the subscription was closed before processd acknowledged the filter")
            self._acked.clear()  # no await since the check above: an acknowledgement cannot slip in between
            await self._acked.wait()

    async def add(self, fid: int, flt: Filter) -> None:
        """Adds filter ``fid``, or replaces the one held under it (processd applies a request's remove before
        its add); on a running stream it is sent at once and takes the events from the seq processd
        acknowledges it with (:meth:`since`, :meth:`wait_added`)."""
        _check_id(fid)
        _check_filter(flt)
        replaced = fid in self._filters
        if not replaced and len(self._filters) >= MAX_FILTERS:
            raise InvalidArgumentError(f"at most {MAX_FILTERS} filters on one stream")
        self._filters[fid] = flt
        self._since.pop(fid, None)
        req = _add_request([(fid, flt)])
        if replaced:
            req.remove.append(fid)
        await self._send(req)

    async def remove(self, fid: int) -> None:
        """Removes filter ``fid`` (no-op if not held): its id is on no event queued after this."""
        if self._filters.pop(_check_id(fid), None) is not None:
            self._since.pop(fid, None)
            await self._send(query_pb2.SubscribeManyRequest(remove=[fid]))

    async def _send(self, req: query_pb2.SubscribeManyRequest) -> None:
        # The filters a stream is opened with and its ``_call`` are taken together (no await between), so a
        # change is either in that first request or sent here after it, never lost between the two.
        call = self._call
        if call is None:
            return  # not streaming: the next stream sends every filter held
        async with self._write_lock:
            try:
                await call.write(req)
            except (grpc.RpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
                pass  # the stream broke: the reconnect sends every filter held

    # ---- the background task --------------------------------------------------------------------------------

    def _seq_of(self, item: TaggedEvent) -> int:
        return item.event.seq_id

    def _resume_point(self) -> str:
        return f"after seq {self._queued_seq}"

    def _finish(self, final: BaseException | object) -> None:
        super()._finish(final)
        self._acked.set()

    async def _stream_once(self, admitted: list[bool]) -> None:
        """One SubscribeMany call, until it ends (returns) or fails (raises ``grpc.RpcError``/TimeoutError): the
        filters held are added, the gaps filled once all are acknowledged, then live events are queued."""
        call = self._stub.SubscribeMany()
        try:
            metadata = dict(await asyncio.wait_for(call.initial_metadata(), self._idle_timeout_s) or ())
            if ADMITTED_HEADER in metadata:
                admitted[0] = True
                if self.head_seq is None:
                    self.head_seq = int(metadata.get(HEAD_HEADER, "0"))
            async with self._write_lock:
                sent, self._call = dict(self._filters), call
                if sent:
                    await call.write(_add_request(sent.items()))
            acked: dict[int, int] = {}  # the filters sent at connect -> the seq each takes from
            held: list[query_pb2.ManyEvent] = []  # live events that came before every add was acknowledged
            caught_up = False
            if not sent:
                caught_up = True
                self._settled.set()
            while True:
                msg = await asyncio.wait_for(call.read(), self._idle_timeout_s)
                if msg is grpc.aio.EOF:  # type: ignore[attr-defined]
                    return
                admitted[0] = True
                for added in msg.added:
                    if added.id in self._filters:  # not removed meanwhile
                        self._since.setdefault(added.id, added.from_seq_id)
                    if added.id in sent:
                        acked[added.id] = added.from_seq_id
                if msg.added:
                    self._acked.set()
                if caught_up:
                    await self._deliver((ev.event, ev.filter_ids) for ev in msg.events)
                    continue
                held.extend(msg.events)
                if len(acked) == len(sent):
                    await self._catch_up(sent, acked, held)
                    caught_up, held = True, []
                    self._settled.set()
        finally:
            self._call = None
            call.cancel()

    async def _catch_up(self, sent: dict[int, Filter], acked: dict[int, int], held: list[query_pb2.ManyEvent]
                        ) -> None:
        """Queues, in seq order, what each filter of ``sent`` took between the resume point and the seq its add
        was acknowledged with (``acked``), read from the log window by window, merged with the live events
        ``held`` meanwhile."""
        resume = self._queued_seq + 1
        gaps = {fid: (max(resume, self._since.get(fid, start)), start) for fid, start in acked.items()}
        gaps = {fid: gap for fid, gap in gaps.items() if gap[0] < gap[1]}
        if gaps:
            low = min(lo for lo, _ in gaps.values())
            high = max(hi for _, hi in gaps.values())
            for start in range(low, high, CATCHUP_WINDOW_SEQS):
                end = min(start + CATCHUP_WINDOW_SEQS, high)
                merged: dict[int, tuple[events_pb2.Event, set[int]]] = {}
                for fid, (lo, hi) in gaps.items():
                    lo, hi = max(lo, start), min(hi, end)
                    if lo < hi:
                        for ev in await self._scan(sent[fid], lo, hi):
                            merged.setdefault(ev.seq_id, (ev, set()))[1].add(fid)
                for tagged in held:  # live events from before ``end``: their ids joined with the scans'
                    if tagged.event.seq_id < end:
                        merged.setdefault(tagged.event.seq_id, (tagged.event, set()))[1].update(tagged.filter_ids)
                held = [tagged for tagged in held if tagged.event.seq_id >= end]
                await self._deliver(merged[seq] for seq in sorted(merged))
        await self._deliver((ev.event, ev.filter_ids) for ev in held)

    async def _scan(self, flt: Filter, lo: int, hi: int) -> list[events_pb2.Event]:
        """The events ``flt`` takes in seqs ``lo`` to ``hi - 1``, from the log (ScanEvents with the filter)."""
        pb = flt.to_pb()
        out: list[events_pb2.Event] = []
        cursor = lo
        while cursor < hi:
            req = query_pb2.ScanEventsRequest(from_seq_id=cursor, limit=CATCHUP_PAGE_EVENTS)
            if pb is not None:
                req.filter.CopyFrom(pb)
            page = await self._stub.ScanEvents(req, timeout=self._timeout_s)
            out.extend(ev for ev in page.events if ev.seq_id < hi)
            if page.next_seq_id <= cursor:
                break  # nothing more stored (a gap past the head cannot be: acknowledged seqs are committed + 1)
            cursor = page.next_seq_id
        return out

    async def _deliver(self, events: Iterable[tuple[events_pb2.Event, Iterable[int]]]) -> None:
        for ev, ids in events:
            if ev.seq_id <= self._queued_seq:
                continue  # queued already (a guard: the merge sends each seq once)
            # An id counts from its filter's first seq on: a filter removed and added again under the same id may
            # still be sent its old incarnation's last events, below the new one's acknowledged seq.
            seq, since = ev.seq_id, self._since
            held = frozenset(i for i in ids if i in self._filters and since.get(i, seq + 1) <= seq)
            converted = _convert.event(ev) if held else None
            if converted is not None:
                await self._queue.put(TaggedEvent(converted, held))  # blocks while the consumer is behind
            self._queued_seq = ev.seq_id
