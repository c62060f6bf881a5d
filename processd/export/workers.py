"""Mapping ScanEvents pages in worker processes (``map_workers`` > 0), beside the exporter's own process.

Profiled (docs/export.md#benchmark), mapping events to columns is about two thirds of the exporter's CPU, nearly
all of it reading protobuf fields one Python object at a time, and it holds the GIL that the driver's INSERT
encoding needs too. A page's serialized bytes go to a worker, which parses and maps it and sends back the
columns (pickled: about a quarter of the mapping's cost); the exporter's process keeps the gRPC reads, the
INSERTs and the cursor, so the exactly-once logic is unchanged. Only catch-up pages (ScanEvents) go to the
workers: live SubscribeEvents messages are small and mapped in-process.

Bounded: a page is submitted when the reader queues it, so at most the read-ahead's pages are in the workers.
A worker that dies breaks the pool: :class:`MapperUnavailable` ends the session (retried like the others) and
the next session starts a new pool. Workers die with the exporter (``PR_SET_PDEATHSIG``), a SIGKILL included.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import multiprocessing
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from common.pb.v1 import query_pb2
from processd.export.errors import MapperUnavailable
from processd.export.mapper import Columns, columns_of

_PR_SET_PDEATHSIG = 1
_T = TypeVar("_T")


def map_page(raw: bytes) -> dict[str, Columns]:
    """The columns of one serialized ScanEventsResponse (runs in a worker)."""
    return columns_of(query_pb2.ScanEventsResponse.FromString(raw).events)


def _ready() -> int:
    return 0


def _init_worker(parent: int) -> None:
    if sys.platform.startswith("linux"):
        # die with the exporter, a kill -9 included: no orphaned workers holding memory after a crash (an
        # orphan would wait forever: it holds both ends of its task queue's pipe, so it never reads EOF)
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the exporter died while this worker was still starting: before the prctl
        os._exit(1)
    # the exporter's collector settings (processd.export.__main__.GC_THRESHOLDS): mapping makes no cycles
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


class MapperPool:
    """``workers`` spawned processes mapping pages; started on first use, again after a failure."""

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
        """Starts every worker (a spawn imports the mapper: done before the first page, not during it)."""
        await self._wait(asyncio.gather(*(self._run(_ready) for _ in range(self.workers))))

    def submit(self, raw: bytes) -> asyncio.Future[dict[str, Columns]]:
        """Maps one serialized page in a worker; await the result with :meth:`result`."""
        return self._run(map_page, raw)

    def _run(self, fn: Callable[..., _T], *args: object) -> asyncio.Future[_T]:
        try:
            return asyncio.get_running_loop().run_in_executor(self._executor(), fn, *args)
        except BrokenProcessPool as exc:  # a worker died since the last call: the pool takes no more work
            self.close()
            raise MapperUnavailable(f"a mapping worker died: {exc}") from exc

    async def result(self, fut: asyncio.Future[dict[str, Columns]]) -> dict[str, Columns]:
        """The columns of a submitted page; a dead worker raises :class:`MapperUnavailable`."""
        return await self._wait(fut)

    async def _wait(self, fut: Awaitable[_T]) -> _T:
        try:
            return await fut
        except BrokenProcessPool as exc:
            self.close()
            raise MapperUnavailable(f"a mapping worker died: {exc}") from exc

    def pids(self) -> list[int]:
        """The workers' process ids (for CPU accounting)."""
        processes = getattr(self._pool, "_processes", None) or {}
        return [p.pid for p in processes.values() if p.pid is not None]

    def close(self) -> None:
        """Stops the workers (pages still mapping are dropped: a new session rereads them). Idempotent."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
