"""The exporter's lifecycle and tail loop: pages from processd -> rows -> batched inserts into ClickHouse.

Lifecycle like aiokafka's clients: ``await start()`` (returns at once; the work runs in a background task),
idempotent ``await stop()``, ``async with``. A failure either side (ClickHouse or processd away) ends the
session: it is counted, logged, waited out with backoff, and the next session resumes from what ClickHouse
holds (:meth:`processd.export.sink.ClickHouseSink.resume`). A non-retriable failure (schema mismatch) ends
the background task and fails every pending :meth:`Exporter.wait_exported`.

One batch write is in flight while the next batch is read and mapped (the write runs in a thread: the driver
blocks), so reading from processd and inserting into ClickHouse overlap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from common.pb.v1 import query_pb2_grpc
from processd.export import source
from processd.export.config import ExportConfig
from processd.export.errors import ExportError, MapperUnavailable, SinkUnavailable
from processd.export.mapper import (
    Columns,
    columns_of,
    empty_columns,
    extend_columns,
    row_count,
    rows_of,
    unknown_kinds,
)
from processd.export.metrics import ExportMetrics
from processd.export.schema import EVENTS
from processd.export.sink import ClickHouseSink, ResumePoint
from processd.export.workers import MapperPool

log = logging.getLogger(__name__)

#: Pages read ahead of the mapper (each at most scan_page_events events or one SubscribeEvents message).
_READ_AHEAD_PAGES = 8
#: Column of received_ns in every row (schema._HEAD).
_RECEIVED_COL = 5

BatchHook = Callable[[dict[str, Columns], int], None]


class Exporter:
    """Tails one processd's log into one ClickHouse database (or cluster)."""

    def __init__(self, config: ExportConfig, metrics: ExportMetrics | None = None,
                 on_batch: BatchHook | None = None) -> None:
        self.config = config
        self.metrics = metrics or ExportMetrics()
        #: Called after each batch is written, with its columns by table and the write's completion time (unix ns).
        self.on_batch = on_batch
        self.sink = ClickHouseSink(config)
        #: The mapping worker processes (config.map_workers > 0), else None: pages are mapped in this process.
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
        async with source.channel(cfg.processd, cfg.max_message_bytes) as ch:
            reader = asyncio.create_task(self._read(query_pb2_grpc.QueryStub(ch), point.next_seq, pages,
                                                    source.raw_scan(ch) if self.mappers is not None else None))
            try:
                await self._write_loop(point, pages)
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)

    async def _read(self, stub: query_pb2_grpc.QueryStub, from_seq: int,
                    pages: asyncio.Queue[source.Page | BaseException], scan: source.RawScan | None) -> None:
        # pages no larger than a batch: a batch then stays within batch_rows events (+ one page at most), so
        # batch_rows bounds the memory a batch holds and how much a kill between its INSERTs leaves to skip
        page_events = min(self.config.scan_page_events, self.config.batch_rows)
        try:
            async for page in source.tail(stub, from_seq, page_events, scan):
                if page.raw is not None and page.events and self.mappers is not None:
                    # mapped in a worker while it waits in the queue (bounded: the queue's pages at most)
                    page.columns, page.raw = self.mappers.submit(page.raw), None
                await pages.put(page)
        except ExportError as exc:
            await pages.put(exc)

    async def _write_loop(self, point: ResumePoint, pages: asyncio.Queue[source.Page | BaseException]) -> None:
        cfg = self.config
        interval_s = cfg.flush_interval_ms / 1000
        rows = empty_columns()
        read = 0  # events read into ``rows`` (skipped ones included: the cursor passes them too)
        next_seq = point.next_seq
        first_at = 0.0
        # rows stored past the cursor by the interrupted batch: skipped while the reread passes them
        present = {t: keys for t, keys in point.present.items() if keys}
        present_until = max((seq for keys in present.values() for _, seq in keys), default=0)
        writing: asyncio.Task[None] | None = None
        try:
            while True:
                timeout = max(0.0, first_at + interval_s - time.monotonic()) if read else None
                try:
                    item = await asyncio.wait_for(pages.get(), timeout)
                except TimeoutError:
                    item = None
                if isinstance(item, BaseException):
                    raise item
                if item is not None:
                    self._head = item.head_seq
                    self.metrics.head_seq.set(item.head_seq)
                    if self._target is None:
                        self._target = item.head_seq
                    events = item.events
                    if events:
                        if not read:
                            first_at = time.monotonic()
                        if present and events[0].seq_id <= present_until:
                            if item.columns is not None:  # a worker's columns are not used here: not awaited
                                item.columns.cancel()
                            self._add_skipping(rows, events, present)
                        else:
                            extend_columns(rows, await self._columns(item))
                        read += len(events)
                        next_seq = events[-1].seq_id + 1
                at_target = cfg.exit_at_head and self._target is not None and next_seq > self._target
                if read and (read >= cfg.batch_rows or time.monotonic() - first_at >= interval_s or at_target):
                    if writing is not None:
                        await writing
                    writing = asyncio.create_task(self._write(rows, next_seq))
                    rows, read = empty_columns(), 0
                if at_target and not read:
                    if writing is not None:
                        await writing
                    log.info("exported up to seq %d, the head at start: exiting", self._exported)
                    return
        finally:
            if writing is not None:
                # never leave a write running in its thread while the next session resumes on the connection
                await asyncio.wait({writing})
                if not writing.cancelled() and writing.exception() is not None and not isinstance(
                        writing.exception(), ExportError):
                    raise writing.exception()  # type: ignore[misc]

    async def _columns(self, page: source.Page) -> dict[str, Columns]:
        """A page's columns: from its mapping worker, or mapped here."""
        if page.columns is not None and self.mappers is not None:
            return await self.mappers.result(page.columns)
        return columns_of(page.events)

    def _add_skipping(self, rows: dict[str, Columns], events: Sequence[Any],
                      present: dict[str, set[tuple[int, int]]]) -> None:
        """The slow path, for the pages that overlap rows stored past the cursor: row by row, minus those rows."""
        for table, table_rows in rows_of(events).items():
            keys = present.get(table)
            if keys:
                kept = [r for r in table_rows if (r[0], r[1]) not in keys]
                self.metrics.skipped.inc(len(table_rows) - len(kept))
                table_rows = kept
            columns = rows[table]
            for row in table_rows:
                for column, value in zip(columns, row, strict=True):
                    column.append(value)

    def _count_unknown(self, rows: dict[str, Columns]) -> None:
        """Counts the events of a kind this exporter does not know (logged once: a newer processd's kind stays
        newer for every batch, and its rows are still exported, as UNSPECIFIED)."""
        seqs = unknown_kinds(rows)
        if seqs:
            self.metrics.unknown_kinds.inc(len(seqs))
            if not self._unknown_logged:
                self._unknown_logged = True
                log.warning("events of a kind this exporter does not know (first at seq %d): exported as kind "
                            "UNSPECIFIED without details, counted in mempulse_export_unknown_kinds_total; "
                            "upgrade the exporter", seqs[0])

    async def _write(self, rows: dict[str, Columns], next_seq: int) -> None:
        started = time.perf_counter()
        await asyncio.to_thread(self.sink.write, rows, next_seq)
        done_ns = time.time_ns()
        self.metrics.insert_seconds.observe(time.perf_counter() - started)
        self.metrics.batches.inc()
        self._count_unknown(rows)  # after the write: a batch written again after a failure is counted once
        for table, columns in rows.items():
            if row_count(columns):
                self.metrics.rows.labels(table).inc(row_count(columns))
        received = rows[EVENTS.name][_RECEIVED_COL]
        if received:
            self.metrics.lag_seconds.set(max(0, done_ns - received[-1]) / 1e9)
        self._advance(next_seq - 1)
        if self.on_batch is not None:
            self.on_batch(rows, done_ns)
