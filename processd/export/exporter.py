"""The exporter's lifecycle and tail loop: pages from processd -> rows -> batched inserts into ClickHouse.

Lifecycle like aiokafka's clients: ``await start()`` (returns at once; the work runs in a background task),
idempotent ``await stop()``, ``async with``. A failure either side (ClickHouse or processd away) ends the
session: it is counted, logged, waited out with backoff, and the next session resumes from what ClickHouse
holds (:meth:`processd.export.sink.ClickHouseSink.resume`). A non-retriable failure (schema mismatch) ends
the background task and fails every pending :meth:`Exporter.wait_exported`.

The stages overlap: a reader task keeps up to ``_READ_AHEAD_PAGES`` pages read ahead of the batching; each page
is mapped here and sent, one block per table, to the batch's INSERTs, which run on their own connections and
threads while the next page is mapped (:mod:`stream`); or, with ``map_workers``, up to that many catch-up batches
are parsed, mapped and inserted at once by worker processes (:mod:`workers`). Whatever wrote a batch, the cursor
moves past it only once it and every batch before it are in (:class:`_Writes`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from common.pb.v1 import query_pb2_grpc
from processd.export import colmap, source
from processd.export.config import ExportConfig
from processd.export.errors import ExportError, MapperUnavailable, SinkUnavailable
from processd.export.mapper import BatchSummary, Columns, empty_columns, rows_of, summary_of
from processd.export.metrics import STAGES, ExportMetrics
from processd.export.native import Columns as Block
from processd.export.schema import DATA_TABLES, EVENTS
from processd.export.sink import ClickHouseSink, ResumePoint
from processd.export.stream import Feed
from processd.export.workers import MapperPool

log = logging.getLogger(__name__)

#: Pages read ahead of the batching (each at most scan_page_events events or one SubscribeEvents message).
_READ_AHEAD_PAGES = 8

#: Most events of a batch a worker writes (the batch_rows of before the INSERTs were fed page by page): a worker
#: holds its whole batch as Python columns, and N workers need N batches to work at once; a batch fed page by page
#: here holds a few pages whatever its size.
WORKER_BATCH_EVENTS = 20_000

#: Called after each batch is written, with its summary and the write's completion time (unix ns).
BatchHook = Callable[[BatchSummary, int], None]


class Exporter:
    """Tails one processd's log into one ClickHouse database (or cluster)."""

    def __init__(self, config: ExportConfig, metrics: ExportMetrics | None = None,
                 on_batch: BatchHook | None = None) -> None:
        self.config = config
        self.metrics = metrics or ExportMetrics()
        self.on_batch = on_batch
        self.sink = ClickHouseSink(config)
        #: The batch worker processes (config.map_workers > 0), else None: batches are mapped and inserted here.
        self.mappers = MapperPool(config.map_workers) if config.map_workers else None
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._exported = 0
        self._head = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._stopped = False
        #: exit_at_head: the head at the first session's start (what a backfill run exports)
        self._target: int | None = None
        self._unknown_logged = False

    # ---- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> Exporter:
        """Starts the background task (returns at once)."""
        if self._task is None:
            if not colmap.available():  # e.g. installed without a C compiler: the same rows, about twice the CPU
                log.warning("the C page mapper (processd/export/_colmap) is not available: pages are mapped with "
                            "protobuf, about twice the CPU per row")
            self._task = asyncio.create_task(self._run(), name="mempulse-export")
            self._task.add_done_callback(self._on_done)
        return self

    async def stop(self) -> None:
        """Stops the background task and closes the connections. Idempotent; a batch being written finishes."""
        if self._stopped:
            return
        self._stopped = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.to_thread(self.sink.close)
        if self.mappers is not None:
            self.mappers.close()
        self._fail_waiters(self._failure or ExportError("exporter stopped"))

    async def __aenter__(self) -> Exporter:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_closed(self) -> None:
        """Waits until the background task ends (exit_at_head: once caught up); raises its failure."""
        if self._task is not None:
            await asyncio.shield(self._task)

    @property
    def exported_seq(self) -> int:
        """Highest seq written to ClickHouse (with everything before it)."""
        return self._exported

    @property
    def head_seq(self) -> int:
        """Highest committed seq processd last reported."""
        return self._head

    async def wait_exported(self, seq: int) -> None:
        """Returns once every event up to ``seq`` is in ClickHouse; raises the exporter's failure if it dies."""
        if self._exported >= seq:
            return
        if self._failure is not None or self._stopped:
            raise self._failure or ExportError("exporter stopped")
        if self._task is not None and self._task.done():  # exit_at_head: it finished before reaching ``seq``
            raise ExportError(f"the export ended at seq {self._exported}, before seq {seq}")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, fut))
        await fut

    def _on_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._failure = task.exception()
            self._fail_waiters(self._failure)  # type: ignore[arg-type]

    def _fail_waiters(self, exc: BaseException) -> None:
        waiters, self._waiters = self._waiters, []
        for _, fut in waiters:
            if not fut.done():
                fut.set_exception(exc)

    def _advance(self, exported: int) -> None:
        self._exported = exported
        self.metrics.exported_seq.set(exported)
        keep = []
        for seq, fut in self._waiters:
            if seq <= exported:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((seq, fut))
        self._waiters = keep

    # ---- the loop ----------------------------------------------------------------------------------------

    async def _run(self) -> None:
        base_s = self.config.retry_backoff_ms / 1000
        backoff = base_s
        while True:
            before = self._exported
            try:
                await self._session()
                return
            except ExportError as exc:
                if not exc.retriable:
                    log.error("export stopped: %s", exc)
                    raise
                self.metrics.failures.labels("sink" if isinstance(exc, SinkUnavailable) else
                                             "mapper" if isinstance(exc, MapperUnavailable) else "source").inc()
                backoff = base_s if self._exported > before else min(backoff * 2, 10 * base_s)
                log.warning("export interrupted at seq %d (%s); resuming in %.1f s", self._exported, exc, backoff)
                await asyncio.to_thread(self.sink.close)
                await asyncio.sleep(backoff)

    async def _session(self) -> None:
        cfg = self.config
        if cfg.create_schema:
            await asyncio.to_thread(self.sink.ensure_schema)
        point = await asyncio.to_thread(self.sink.resume)
        self._advance(point.next_seq - 1)
        log.info("export %r resuming at seq %d (%d rows past the cursor already stored)", cfg.name,
                 point.next_seq, point.present_rows)
        pages: asyncio.Queue[source.Page | BaseException] = asyncio.Queue(_READ_AHEAD_PAGES)
        if self.mappers is not None:
            await self.mappers.start()
        scan = source.ThreadScan(cfg.processd, cfg.max_message_bytes)
        async with source.channel(cfg.processd, cfg.max_message_bytes) as ch:
            reader = asyncio.create_task(self._read(query_pb2_grpc.QueryStub(ch), point.next_seq, pages, scan))
            try:
                await self._write_loop(point, pages)
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
                scan.close()

    async def _read(self, stub: query_pb2_grpc.QueryStub, from_seq: int,
                    pages: asyncio.Queue[source.Page | BaseException], scan: source.ThreadScan | None) -> None:
        # pages no larger than a batch: a batch then stays within batch_rows events (+ one page at most), so
        # batch_rows bounds how much a kill between its INSERTs leaves to skip (and a worker's batch in memory)
        page_events = min(self.config.scan_page_events, self.config.batch_rows)
        keep_raw = self.mappers is not None or colmap.available()
        try:
            async for page in source.tail(stub, from_seq, page_events, scan):
                if not keep_raw and page.raw is not None:
                    page.drop_raw()  # nothing maps from the bytes: not held in the read-ahead beside the parse
                await pages.put(page)
        except ExportError as exc:
            await pages.put(exc)

    async def _write_loop(self, point: ResumePoint, pages: asyncio.Queue[source.Page | BaseException]) -> None:
        cfg = self.config
        interval_s = cfg.flush_interval_ms / 1000
        batch = _Batch()
        next_seq = point.next_seq
        at_head = False
        # rows stored past the cursor by the interrupted batches: skipped while the reread passes them
        present = {t: keys for t, keys in point.present.items() if keys}
        present_until = max((seq for keys in present.values() for _, seq in keys), default=0)
        writes = _Writes(self)
        stages = {stage: self.metrics.stage_seconds.labels(stage) for stage in STAGES}
        try:
            while True:
                # at the head, a batch is written flush_interval after its first event at the latest; while catching
                # up, only once processd sent nothing for that long (a page merely slower than the rest of the
                # interval would cut a catch-up batch short: more, smaller parts)
                timeout = (None if not batch.events else interval_s if not at_head
                           else max(0.0, batch.first_at + interval_s - time.monotonic()))
                waited = time.perf_counter()
                try:
                    item = await asyncio.wait_for(pages.get(), timeout)
                except TimeoutError:
                    item = None
                stages["source_wait"].inc(time.perf_counter() - waited)
                self.metrics.read_ahead_pages.set(pages.qsize())
                if isinstance(item, BaseException):
                    raise item
                if item is not None:
                    self._head = item.head_seq
                    self.metrics.head_seq.set(item.head_seq)
                    if self._target is None:
                        self._target = item.head_seq
                    at_head = item.at_head
                    if item.count:
                        skipping = bool(present) and item.first_seq <= present_until
                        to_worker = item.raw is not None and self.mappers is not None and not skipping
                        if batch.events and to_worker != bool(batch.raw):  # a batch is a worker's or this process's
                            await writes.add(batch, next_seq)
                            batch = _Batch()
                        await self._add(batch, item, to_worker, present if skipping else None)
                        next_seq = item.last_seq + 1
                at_target = cfg.exit_at_head and self._target is not None and next_seq > self._target
                # the flush interval bounds the lag once caught up (or when processd is slow to answer); a
                # catch-up batch fills to batch_rows: fewer, larger INSERTs
                due = (item is None or at_head) and time.monotonic() - batch.first_at >= interval_s
                full = batch.events >= (min(cfg.batch_rows, WORKER_BATCH_EVENTS) if batch.raw else cfg.batch_rows)
                if batch.events and (full or due or at_target):
                    await writes.add(batch, next_seq)
                    batch = _Batch()
                if at_target and not batch.events:
                    await writes.drain()
                    log.info("exported up to seq %d, the head at start: exiting", self._exported)
                    return
        finally:
            # never leave a write running (in a thread or a worker) while the next session resumes
            await writes.close()

    async def _add(self, batch: _Batch, page: source.Page, to_worker: bool,
                   present: dict[str, set[tuple[int, int]]] | None) -> None:
        """Adds a page to the batch: serialized for a worker, or mapped here (minus the rows already stored) and
        sent as one block to each table's INSERT of the batch (:mod:`processd.export.stream`)."""
        if not batch.events:
            batch.first_at = time.monotonic()
        batch.events += page.count
        started = time.perf_counter()
        if to_worker:
            assert page.raw is not None
            batch.raw.append(page.raw)
            self.metrics.stage_seconds.labels("map").inc(time.perf_counter() - started)
            return
        columns = (self._skipping(page.events, present) if present is not None
                   else colmap.columns_of_page(page.raw, lambda: page.events))
        batch.add_summary(summary_of(columns))
        self.metrics.stage_seconds.labels("map").inc(time.perf_counter() - started)
        for table in DATA_TABLES:  # a table's INSERT opens with the batch's first rows for it
            table_columns = columns[table.name]
            if table_columns[0]:
                feed = batch.feeds.get(table.name)
                if feed is None:
                    feed = batch.feeds[table.name] = self.sink.feed(table)
                await feed.put(Block(table_columns))

    def _skipping(self, events: Sequence[Any], present: dict[str, set[tuple[int, int]]]) -> dict[str, Columns]:
        """The slow path, for the pages that overlap rows stored past the cursor: row by row, minus those rows."""
        out = empty_columns()
        for table, table_rows in rows_of(events).items():
            keys = present.get(table)
            if keys:
                kept = [r for r in table_rows if (r[0], r[1]) not in keys]
                self.metrics.skipped.inc(len(table_rows) - len(kept))
                table_rows = kept
            columns = out[table]
            for row in table_rows:
                for column, value in zip(columns, row, strict=True):
                    column.append(value)
        return out

    def _count_unknown(self, seqs: list[int]) -> None:
        """Counts the events of a kind this exporter does not know (logged once: a newer processd's kind stays
        newer for every batch, and its rows are still exported, as UNSPECIFIED)."""
        if seqs:
            self.metrics.unknown_kinds.inc(len(seqs))
            if not self._unknown_logged:
                self._unknown_logged = True
                log.warning("events of a kind this exporter does not know (first at seq %d): exported as kind "
                            "UNSPECIFIED without details, counted in mempulse_export_unknown_kinds_total; "
                            "upgrade the exporter", seqs[0])

    def _written(self, summary: BatchSummary, next_seq: int, started: float) -> None:
        """Book-keeping once a batch is in and the cursor moved past it."""
        done_ns = time.time_ns()
        self.metrics.insert_seconds.observe(time.perf_counter() - started)
        self.metrics.batches.inc()
        self._count_unknown(summary.unknown_seqs)  # after the write: a batch written again is counted once
        for table, rows in summary.rows.items():
            if rows:
                self.metrics.rows.labels(table).inc(rows)
        if summary.received_ns:
            self.metrics.lag_seconds.set(max(0, done_ns - summary.received_ns[-1]) / 1e9)
        self._advance(next_seq - 1)
        if self.on_batch is not None:
            self.on_batch(summary, done_ns)


@dataclass(slots=True)
class _Batch:
    """Events read since the last write: mapped here and fed to the batch's INSERTs (``feeds``, by table name) as
    they come, or, catch-up pages with workers, kept serialized for a worker (``raw``)."""

    feeds: dict[str, Feed] = field(default_factory=dict)
    summary: BatchSummary = field(default_factory=lambda: BatchSummary({}, [], []))
    raw: list[bytes] = field(default_factory=list)
    events: int = 0
    first_at: float = 0.0

    def add_summary(self, page: BatchSummary) -> None:
        """Adds a page's summary to the batch's."""
        rows = self.summary.rows
        for table, count in page.rows.items():
            rows[table] = rows.get(table, 0) + count
        self.summary.received_ns.extend(page.received_ns)
        self.summary.unknown_seqs.extend(page.unknown_seqs)


class _Writes:
    """The batches being written, in seq order: at most ``max(1, map_workers)`` at once. Each is a task that
    inserts its rows (a worker's batch starts at once in its worker; a batch mapped here was fed to its INSERTs
    page by page, which the task ends: the detail tables', then the events one) and then, once the batch before
    it is done, moves the cursor past it. A failure fails every later batch before its cursor moves."""

    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter
        self.depth = max(1, exporter.config.map_workers)
        self._tasks: deque[asyncio.Task[None]] = deque()
        self._jobs: list[concurrent.futures.Future[BatchSummary]] = []

    async def add(self, batch: _Batch, next_seq: int) -> None:
        """Starts writing ``batch`` (events below ``next_seq``); first waits while ``depth`` batches are."""
        waited = time.perf_counter()
        while len(self._tasks) >= self.depth:
            await self._tasks.popleft()  # raises its failure: the session ends
        metrics = self.exporter.metrics
        metrics.stage_seconds.labels("sink_wait").inc(time.perf_counter() - waited)
        previous = self._tasks[-1] if self._tasks else None
        ex = self.exporter
        if batch.raw:
            assert ex.mappers is not None
            self._jobs = [job for job in self._jobs if not job.done()]
            job = ex.mappers.submit(ex.config, batch.raw)
            self._jobs.append(job)
            task = asyncio.create_task(self._worker_batch(previous, job, next_seq))
        else:
            task = asyncio.create_task(self._own_batch(previous, batch, next_seq))
        self._tasks.append(task)
        metrics.batches_in_flight.set(sum(not t.done() for t in self._tasks))

    async def _worker_batch(self, previous: asyncio.Task[None] | None,
                            job: concurrent.futures.Future[BatchSummary], next_seq: int) -> None:
        ex = self.exporter
        started = time.perf_counter()
        assert ex.mappers is not None
        summary = await ex.mappers.result(job)
        if previous is not None:
            await previous
        await asyncio.to_thread(ex.sink.move_cursor, next_seq)
        ex._written(summary, next_seq, started)

    async def _own_batch(self, previous: asyncio.Task[None] | None, batch: _Batch, next_seq: int) -> None:
        ex = self.exporter
        started = time.perf_counter()
        # the detail tables' INSERTs end first, then the events one: a reader that sees an event row finds its
        # details (each INSERT's rows appear at its end, as one part)
        details = [feed for table, feed in batch.feeds.items() if table != EVENTS.name]
        for feed in details:
            feed.end()
        for feed in details:
            await asyncio.wrap_future(feed.done)
        events = batch.feeds.get(EVENTS.name)
        if events is not None:
            events.end()
            await asyncio.wrap_future(events.done)
        if previous is not None:
            await previous
        await asyncio.to_thread(ex.sink.move_cursor, next_seq)
        ex._written(batch.summary, next_seq, started)

    async def drain(self) -> None:
        """Waits until every batch is written (raises the first failure)."""
        while self._tasks:
            await self._tasks.popleft()
        self.exporter.metrics.batches_in_flight.set(0)

    async def close(self) -> None:
        """Waits until nothing is being written any more, here or in a worker (batches not started in a worker are
        dropped); a failure that is not an ExportError (a bug) is raised."""
        tasks, self._tasks = list(self._tasks), deque()
        self.exporter.metrics.batches_in_flight.set(0)
        if self.exporter.mappers is not None:
            await self.exporter.mappers.wait_idle(self._jobs)
        if tasks:
            await asyncio.wait(tasks)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None and not isinstance(
                    task.exception(), ExportError):
                raise task.exception()  # type: ignore[misc]
