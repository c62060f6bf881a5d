"""Runs batch preparation (validation, decoding, features, ranking, event encoding) off the writer's thread.

With ``analysis_workers`` > 0 the batches go to that many worker processes, so that preparation runs on other
cores while the single writer commits: CPython's GIL would otherwise keep processd on one core, and
preparation is about three quarters of its CPU per transaction. With 0 (or a custom analysis function, which
cannot be sent to another process) they are prepared in one thread of this process.

A worker that dies (killed, out of memory) breaks the pool: the batches it held are prepared again in this
process, the pool is replaced and ``processd_analysis_pool_restarts_total`` counts it. Nothing is lost; the
acks of those batches are only later. Workers die with processd (``PR_SET_PDEATHSIG``), also after kill -9.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import signal
import sys
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from processd.analysis import AnalyzeFn, default_analyzer, encode_analysis
from processd.prepare import AnalyzeEncoded, PreparedBatch, prepare_batch

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1

# Set in each worker process by _init_worker (module globals: the job function must be picklable by name).
_worker_settings: tuple[AnalyzeEncoded, frozenset[int], int] | None = None


def _init_worker(chain_ids: frozenset[int], max_input_bytes: int) -> None:
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: processd decides
    global _worker_settings
    _worker_settings = (default_analyzer().analyze_encoded, chain_ids, max_input_bytes)


def _prepare_in_worker(raw: bytes, received_ns: int) -> PreparedBatch:
    assert _worker_settings is not None
    analyze, chain_ids, max_input_bytes = _worker_settings
    return prepare_batch(raw, received_ns, analyze, chain_ids, max_input_bytes)


def _warm_up(delay_s: float) -> int:
    time.sleep(delay_s)  # holds this worker so the next warm-up job starts another one
    return 0


class AnalysisPool:
    """Prepares ingest batches in worker processes or in one thread; ``start()``, ``stop()`` (idempotent)."""

    def __init__(self, *, workers: int, chain_ids: frozenset[int], max_input_bytes: int,
                 analyze: AnalyzeFn | None = None) -> None:
        self.workers = 0 if analyze is not None else workers
        self._chain_ids = chain_ids
        self._max_input_bytes = max_input_bytes
        self._local_analyze: AnalyzeEncoded = (
            (lambda envelope: encode_analysis(analyze(envelope))) if analyze is not None
            else default_analyzer().analyze_encoded)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="processd-prepare")
        self._processes: ProcessPoolExecutor | None = None
        #: Batches handed out and not yet prepared.
        self.inflight = 0
        self.restarts = 0
        self._stopped = False

    def _new_process_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(self._chain_ids, self._max_input_bytes))

    async def start(self) -> AnalysisPool:
        """Starts the worker processes (if any) and waits until each has loaded the decoders."""
        if self.workers:
            self._processes = self._new_process_pool()
            loop = asyncio.get_running_loop()
            await asyncio.gather(*(loop.run_in_executor(self._processes, _warm_up, 0.2) for _ in range(self.workers)))
            log.info("analysis pool: %d worker processes", self.workers)
        return self

    async def prepare(self, raw: bytes, received_ns: int) -> PreparedBatch:
        """The :data:`PreparedBatch` of one serialized ``TxBatch``."""
        loop = asyncio.get_running_loop()
        self.inflight += 1
        try:
            pool = self._processes
            if pool is not None:
                try:
                    return await loop.run_in_executor(pool, _prepare_in_worker, raw, received_ns)
                except BrokenProcessPool:
                    self._replace_broken(pool)
            return await loop.run_in_executor(self._thread, prepare_batch, raw, received_ns, self._local_analyze,
                                              self._chain_ids, self._max_input_bytes)
        finally:
            self.inflight -= 1

    def _replace_broken(self, pool: ProcessPoolExecutor) -> None:
        if self._processes is not pool or self._stopped:
            return  # another batch already replaced it
        log.error("an analysis worker process died; preparing its batches here and starting a new pool")
        self.restarts += 1
        pool.shutdown(wait=False, cancel_futures=True)
        self._processes = self._new_process_pool()

    async def stop(self) -> None:
        """Stops the workers after the batches in flight (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        executors: list[Executor] = [self._thread]
        if self._processes is not None:
            executors.append(self._processes)
        loop = asyncio.get_running_loop()
        for executor in executors:
            await loop.run_in_executor(None, executor.shutdown)

    async def __aenter__(self) -> AnalysisPool:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
