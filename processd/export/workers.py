"""Catch-up batches parsed, mapped and inserted by worker processes (``map_workers`` > 0), beside the exporter's
own process.

The exporter's CPU is mostly per-row work under one GIL: mapping events to columns and encoding them for the
INSERT. A worker does both for a whole batch (mapping with :mod:`processd.export.colmap`, C where it can, as the
exporter does; since mapping is C, workers are slower than the default on the machines measured:
docs/export.md#benchmark): the exporter hands it the batch's ScanEvents
pages as processd sent them (bytes: pickling them is a copy), the worker parses, maps and inserts them (one
columnar INSERT per table, on its own ClickHouse connection) and sends back a :class:`BatchSummary` (row counts,
the events' received times). So N workers map and insert N batches at once, and the exporter's process keeps only
the gRPC reads, the batching and the cursor. Only catch-up pages (ScanEvents) go to the workers: live
SubscribeEvents messages are small and written in-process.

Exactly once is unchanged (:mod:`processd.export.sink`): a worker never moves the cursor; the exporter moves it
past a batch once that batch and every batch before it are in (:class:`processd.export.exporter.Exporter`), so
rows past the cursor are at most the batches in flight, which a resume finds and skips as before.

Bounded: at most ``map_workers`` batches are in the workers. A worker that dies breaks the pool:
:class:`MapperUnavailable` ends the session (retried like the others) and the next session starts a new pool.
Workers die with the exporter (``PR_SET_PDEATHSIG``), a SIGKILL included.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import functools
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from common.gctune import tune_gc
from common.pb.v1 import events_pb2
from processd.export import colmap
from processd.export.config import ExportConfig
from processd.export.errors import MapperUnavailable
from processd.export.mapper import BatchSummary, empty_columns, extend_columns, summary_of
from processd.export.sink import ClickHouseSink
from processd.export.source import parse_page

_PR_SET_PDEATHSIG = 1
_T = TypeVar("_T")
#: The worker process's ClickHouse connection (one per worker, opened at its first batch, reopened after a failure
#: by the sink itself).
_sink: ClickHouseSink | None = None


def write_pages(config: ExportConfig, pages: Sequence[bytes]) -> BatchSummary:
    """Parses, maps and inserts one batch of serialized ScanEventsResponses (runs in a worker): one INSERT per
    table, never the cursor. A ClickHouse failure raises :class:`SinkUnavailable` back to the exporter."""
    global _sink
    if _sink is None or _sink.config != config:
        _sink = ClickHouseSink(config)
    columns = empty_columns()
    for raw in pages:
        extend_columns(columns, colmap.columns_of_page(raw, functools.partial(_events_of, raw)))
    summary = summary_of(columns)  # before the INSERT: the driver rewrites the lists
    _sink.insert(columns)
    return summary


def _events_of(raw: bytes) -> Sequence[events_pb2.Event]:
    return parse_page(raw).events


def _ready() -> int:
    return 0


def _init_worker(parent: int) -> None:
    if sys.platform.startswith("linux"):
        # die with the exporter, a kill -9 included: no orphaned workers holding memory after a crash (an
        # orphan would wait forever: it holds both ends of its task queue's pipe, so it never reads EOF)
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the exporter died while this worker was still starting: before the prctl
        os._exit(1)
    tune_gc()  # the exporter's collector settings: mapping makes no cycles


class MapperPool:
    """``workers`` spawned processes writing batches; started on first use, again after a failure."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the exporter's process has gRPC's threads, which a fork would copy mid-state
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker, initargs=(os.getpid(),))
        return self._pool

    async def start(self) -> None:
        """Starts every worker (a spawn imports the mapper: done before the first batch, not during it)."""
        await asyncio.gather(*(self.result(self._submit(_ready)) for _ in range(self.workers)))

    def submit(self, config: ExportConfig, pages: Sequence[bytes]) -> concurrent.futures.Future[BatchSummary]:
        """Writes one batch of serialized pages in a worker (:func:`write_pages`); await it with :meth:`result`.
        The future is the pool's own: :meth:`wait_idle` can wait for a batch a cancelled caller left running."""
        return self._submit(write_pages, config, list(pages))

    def _submit(self, fn: Callable[..., _T], *args: object) -> concurrent.futures.Future[_T]:
        try:
            return self._executor().submit(fn, *args)
        except BrokenProcessPool as exc:  # a worker died since the last call: the pool takes no more work
            self.close()
            raise MapperUnavailable(f"a mapping worker died: {exc}") from exc

    async def result(self, fut: concurrent.futures.Future[_T]) -> _T:
        """The result of a submitted call; a dead worker raises :class:`MapperUnavailable`, a failure inside the
        worker (ClickHouse away: :class:`SinkUnavailable`) is raised as it was raised there."""
        try:
            return await asyncio.wrap_future(fut)
        except BrokenProcessPool as exc:
            self.close()
            raise MapperUnavailable(f"a mapping worker died: {exc}") from exc

    @staticmethod
    async def wait_idle(futures: Sequence[concurrent.futures.Future[BatchSummary]]) -> None:
        """Returns once none of ``futures`` is running in a worker any more (those not started are cancelled): a
        session never resumes while a batch of the previous one may still be inserting."""
        running = [f for f in futures if not f.cancel() and not f.done()]
        if running:
            await asyncio.to_thread(concurrent.futures.wait, running)

    def pids(self) -> list[int]:
        """The workers' process ids (for CPU accounting)."""
        processes = getattr(self._pool, "_processes", None) or {}
        return [p.pid for p in processes.values() if p.pid is not None]

    def close(self) -> None:
        """Stops the workers (batches not started are dropped: a new session rereads them). Idempotent."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
