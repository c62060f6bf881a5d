"""Runs batch preparation (validation, decoding, features, ranking, event encoding) off the writer's thread.

With ``analysis_workers`` > 0 the batches go to that many worker processes, so that preparation runs on other
cores while the single writer commits: CPython's GIL would otherwise keep processd on one core, and
preparation is most of its CPU per transaction. With 0 (or a custom analysis function, which cannot be sent to
another process) they are prepared in one thread of this process.

Each worker has two pipes, driven from the event loop with asyncio pipe transports: no helper threads, no
cross-thread wake-ups (``concurrent.futures.ProcessPoolExecutor`` costs a feeder and a manager thread that
contend for the GIL with the writer: several microseconds per transaction here). Frames use
``multiprocessing.Connection``'s format (a signed 32-bit big-endian length, then the bytes), so the worker side
is plain ``recv_bytes``/``send_bytes``. A job is ``received_ns`` (8 bytes), the length (4 bytes) of the batch's
pool reserves in ``marshal`` format (``None`` when no reserve source is configured;
:mod:`processd.analysis.valuation.state`), those, then the serialized ``TxBatch``; a result
is a :class:`~processd.wire.columns.BatchColumns` in ``marshal`` format (only lists, bytes, ints and strings: about
twice as fast as pickle both ways, and the pipe is private to processd). A worker answers its jobs in order.

A worker that dies (killed, out of memory) is noticed by the end of its result pipe: the batches it held are
prepared again in this process, a new worker replaces it and ``restarts`` counts it. Nothing is lost; those
acks are only later. Workers die with processd (``PR_SET_PDEATHSIG``), also after kill -9.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import functools
import logging
import marshal
import multiprocessing
import os
import signal
import struct
import sys
import time
from collections import deque
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import IO, TYPE_CHECKING, Any

from processd.analysis.analyzer import AnalyzeFn, Analyzer, default_analyzer, encode_analysis
from processd.analysis.prepare import AnalyzeEncoded, prepare_batch
from processd.analysis.valuation.pairs import Venues
from processd.analysis.valuation.state import WireReserves, from_wire
from processd.errors import ProcessdError
from processd.wire.columns import BatchColumns

if TYPE_CHECKING:  # the loader imports eth-abi: loaded only when there are user ABIs
    from processd.analysis.decoding.userabi import UserAbis

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_LENGTH = struct.Struct("!i")
_READY = b"ready"
_PIPE_BYTES = 1 << 20  # Linux's default /proc/sys/fs/pipe-max-size
#: Workers replaced one after another without a result in between before the pool gives up on processes.
MAX_FUTILE_RESTARTS = 5


class PoolStoppedError(ProcessdError):
    """The pool is stopped; the batch was not prepared."""

    retriable = True


def _worker_main(jobs: Connection, results: Connection, chain_ids: frozenset[int], max_input_bytes: int,
                 user_abis: UserAbis | None = None, venues: Venues | None = None) -> None:
    """A worker process: prepares the batches it is sent until its job pipe closes. ``user_abis`` (processd
    --abi-dir) arrive loaded, pickled with the process arguments: a worker never reads the ABI files itself, so
    every worker and the in-process analyzer decode with the very ABIs processd validated at start."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    # Ctrl-C and a SIGTERM to the process group (systemd, a supervisor, `kill -- -pgid`) reach the workers too:
    # processd decides. Its stop() lets them finish the batches in flight, closes their job pipes (EOF: the
    # worker returns) and kills any that linger; if processd dies, PR_SET_PDEATHSIG kills them. A worker that
    # died of the group's SIGTERM first was logged as an ERROR and its batches prepared again in-process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    analyzer = Analyzer(user_abis=user_abis, venues=venues) if user_abis or venues else default_analyzer()
    try:
        results.send_bytes(_READY)
    except BrokenPipeError:
        return  # processd closed its end before this worker was ready
    while True:
        try:
            frame = jobs.recv_bytes()
        except EOFError:
            return
        received_ns = int.from_bytes(frame[:8], "big")
        size = int.from_bytes(frame[8:12], "big")
        wire = marshal.loads(frame[12:12 + size])
        columns = prepare_batch(frame[12 + size:], received_ns, analyzer, chain_ids, max_input_bytes,
                                None if wire is None else from_wire(wire))
        try:
            results.send_bytes(marshal.dumps(tuple(columns)))
        except BrokenPipeError:
            return  # processd closed its end (stopping, or gone): nothing to answer to


class _ResultReader(asyncio.Protocol):
    """Splits a worker's result pipe into frames and hands them to its :class:`_Worker`.

    Results are a few hundred KiB and arrive in pipe-sized chunks: the chunks of a frame are kept in a list and
    joined once, rather than appended to a growing buffer and copied out again.
    """

    def __init__(self, worker: _Worker) -> None:
        self.worker = worker
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.need = 4  # bytes that complete the current length header or frame

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        while self.buffered >= self.need:
            joined = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
            size = _LENGTH.unpack_from(joined)[0]
            end = 4 + size
            if len(joined) < end:
                self.chunks = [joined]
                self.need = end
                return
            self.worker.on_frame(memoryview(joined)[4:end])
            rest = joined[end:]
            self.chunks = [rest] if rest else []
            self.buffered = len(rest)
            self.need = 4

    def connection_lost(self, exc: Exception | None) -> None:
        self.worker.on_lost()


#: Jobs sent to one worker and not yet answered: one being prepared, one waiting in its pipe. The rest wait in the
#: pool's queue: batches go to whichever worker frees up first, and asyncio's write buffer never holds megabytes
#: (it trims written bytes off the front of a bytearray, a copy of everything behind them on every write).
CREDIT = 2
#: (batch bytes, received_ns, reserves in marshal format, result).
_Job = tuple[bytes, int, bytes, "asyncio.Future[BatchColumns]"]
_NO_RESERVES = marshal.dumps(None)


class _Worker:
    """One worker process, its pipes and the jobs it holds (at most :data:`CREDIT`, answered in order)."""

    def __init__(self, pool: AnalysisPool, process: BaseProcess, write: asyncio.WriteTransport) -> None:
        self.pool = pool
        self.process = process
        self.write = write
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.jobs: deque[_Job] = deque()
        self.alive = True
        #: When the worker last answered, or was handed work while idle (the stall watchdog's clock).
        self.progress_at = time.monotonic()

    def send(self, job: _Job) -> None:
        raw, received_ns, reserves, _ = job
        if not self.jobs:
            self.progress_at = time.monotonic()
        self.jobs.append(job)
        self.write.writelines((_LENGTH.pack(len(raw) + 12 + len(reserves)), received_ns.to_bytes(8, "big"),
                               len(reserves).to_bytes(4, "big"), reserves, raw))

    def on_frame(self, frame: memoryview) -> None:
        if not self.ready.done():
            self.ready.set_result(None)
            return
        _, _, _, future = self.jobs.popleft()
        self.progress_at = time.monotonic()
        self.pool.futile_restarts = 0
        if not future.done():
            future.set_result(BatchColumns(*marshal.loads(frame)))
        self.pool.dispatch()

    def on_lost(self) -> None:
        if not self.alive:
            return
        self.alive = False
        self.write.close()
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(f"analysis worker exited with {self.process.exitcode}"))
        self.pool.worker_lost(self)


class AnalysisPool:
    """Prepares ingest batches in worker processes or in one thread; ``start()``, ``stop()`` (idempotent)."""

    def __init__(self, *, workers: int, chain_ids: frozenset[int], max_input_bytes: int,
                 analyze: AnalyzeFn | None = None, stall_timeout_ms: int = 10_000,
                 user_abis: UserAbis | None = None, venues: Venues | None = None) -> None:
        self.workers = 0 if analyze is not None else workers
        self.stall_timeout_s = stall_timeout_ms / 1000
        self._chain_ids = chain_ids
        self._max_input_bytes = max_input_bytes
        self._user_abis = user_abis
        self._venues = venues
        self._local_analyzer: Analyzer | AnalyzeEncoded = (
            (lambda envelope: encode_analysis(analyze(envelope))) if analyze is not None
            else Analyzer(user_abis=user_abis, venues=venues) if user_abis or venues else default_analyzer())
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="processd-prepare")
        self._workers: list[_Worker] = []
        #: Jobs waiting for a worker's credit (FIFO: batches are prepared roughly in arrival order).
        self._queue: deque[_Job] = deque()
        #: Batches handed out and not yet prepared.
        self.inflight = 0
        #: Dead workers replaced so far.
        self.restarts = 0
        #: Workers killed because they held batches without answering for ``stall_timeout_ms``.
        self.stall_kills = 0
        self.futile_restarts = 0
        self._stopped = False
        self._tasks: set[asyncio.Task[None]] = set()

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (read by the metrics thread: one list copy, no iteration race)."""
        return [w.process.pid for w in list(self._workers) if w.process.pid is not None]

    # ---- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> AnalysisPool:
        """Starts the worker processes (if any) and waits until each has loaded the decoders."""
        for _ in range(self.workers):
            self._workers.append(await self._spawn())
        await asyncio.gather(*(w.ready for w in self._workers))
        if self.workers:
            log.info("analysis pool: %d worker processes", self.workers)
            self._background(self._watch_stalls())
        return self

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)  # a reference, or the loop may let a pending task be collected
        task.add_done_callback(self._tasks.discard)

    async def _watch_stalls(self) -> None:
        """Kills a worker that holds batches without answering (stopped, deadlocked, swapping): its batches are
        then prepared here and it is replaced, as for any dead worker. A 500-transaction batch takes ~10 ms."""
        interval = min(1.0, self.stall_timeout_s / 4)
        while not self._stopped:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for worker in list(self._workers):
                if worker.alive and worker.jobs and now - worker.progress_at > self.stall_timeout_s:
                    log.error("analysis worker %s held %d batches for %.1f s without answering; killing it",
                              worker.process.pid, len(worker.jobs), now - worker.progress_at)
                    self.stall_kills += 1
                    with contextlib.suppress(OSError, ValueError):
                        worker.process.kill()  # EOF on its result pipe -> worker_lost

    async def _spawn(self) -> _Worker:
        loop = asyncio.get_running_loop()
        ctx = multiprocessing.get_context("spawn")
        job_read, job_write = ctx.Pipe(duplex=False)
        result_read, result_write = ctx.Pipe(duplex=False)
        process = ctx.Process(target=_worker_main, name="processd-analysis", daemon=True,
                              args=(job_read, result_write, self._chain_ids, self._max_input_bytes,
                                    self._user_abis, self._venues))
        # Started from the event loop's thread: PR_SET_PDEATHSIG fires when the *thread* that forked the worker
        # ends, so an executor thread would do for processd's life only by accident.
        process.start()
        job_read.close()  # the child's ends: closing ours lets EOF tell us the child is gone
        result_write.close()
        write_transport, _ = await loop.connect_write_pipe(asyncio.Protocol, _own_file(job_write, "wb"))
        worker = _Worker(self, process, write_transport)
        await loop.connect_read_pipe(lambda: _ResultReader(worker), _own_file(result_read, "rb"))
        return worker

    async def stop(self) -> None:
        """Stops the workers after the batches in flight (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        for task in list(self._tasks):
            task.cancel()
        loop = asyncio.get_running_loop()
        pending = [f for w in self._workers for (_, _, _, f) in w.jobs] + [f for (_, _, _, f) in self._queue]
        if pending:
            await asyncio.wait(pending, timeout=10)
        for worker in self._workers:
            worker.alive = False
            worker.write.close()  # EOF on its job pipe: the worker returns
        deadline = time.monotonic() + 5
        for worker in self._workers:
            await loop.run_in_executor(None, worker.process.join, max(0.1, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                await loop.run_in_executor(None, worker.process.join, 1)
        self._workers.clear()
        await loop.run_in_executor(None, self._thread.shutdown)

    async def __aenter__(self) -> AnalysisPool:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ---- work --------------------------------------------------------------------------------------------

    async def prepare(self, raw: bytes, received_ns: int,
                      reserves: tuple[WireReserves, ...] | None = None) -> BatchColumns:
        """The :data:`BatchColumns` of one serialized ``TxBatch``, valued on ``reserves`` (None: no reserve source;
        :func:`processd.analysis.valuation.state.to_wire` rows: the pool state the pipeline gathered for it)."""
        if self._stopped:
            raise PoolStoppedError("analysis pool is stopped")
        self.inflight += 1
        packed = _NO_RESERVES if reserves is None else marshal.dumps(reserves)
        try:
            if not self._workers:
                return await self._prepare_here(raw, received_ns, packed)
            future: asyncio.Future[BatchColumns] = asyncio.get_running_loop().create_future()
            self._queue.append((raw, received_ns, packed, future))
            self.dispatch()
            return await future
        finally:
            self.inflight -= 1

    @property
    def ready_workers(self) -> int:
        """Worker processes that said they are ready and take batches now (a replacement counts once ready)."""
        return len(self._workers)

    def dispatch(self) -> None:
        """Sends queued jobs to workers with credit left, the least busy first."""
        queue = self._queue
        while queue:
            worker = min(self._workers, key=_load, default=None)
            if worker is None or len(worker.jobs) >= CREDIT:
                return
            worker.send(queue.popleft())

    def _prepare_all_here(self, jobs: deque[_Job]) -> None:
        for raw, received_ns, reserves, future in jobs:
            self._prepare_here(raw, received_ns, reserves).add_done_callback(functools.partial(_relay, target=future))
        jobs.clear()

    def _prepare_here(self, raw: bytes, received_ns: int, reserves: bytes) -> asyncio.Future[BatchColumns]:
        return asyncio.get_running_loop().run_in_executor(self._thread, self._prepare_columns, raw, received_ns,
                                                          reserves)

    def _prepare_columns(self, raw: bytes, received_ns: int, reserves: bytes) -> BatchColumns:
        wire = marshal.loads(reserves)
        return prepare_batch(raw, received_ns, self._local_analyzer, self._chain_ids, self._max_input_bytes,
                             None if wire is None else from_wire(wire))

    def worker_lost(self, worker: _Worker) -> None:
        """A worker's result pipe closed: re-prepare its batches here and replace it."""
        if worker in self._workers:
            self._workers.remove(worker)
        if self._stopped:
            for _, _, _, future in worker.jobs:
                if not future.done():
                    future.set_exception(PoolStoppedError("analysis pool stopped"))
            return
        log.error("analysis worker %s exited with %s; preparing its %d batches here", worker.process.pid,
                  worker.process.exitcode, len(worker.jobs))
        self._prepare_all_here(worker.jobs)
        if not self._workers:
            self._prepare_all_here(self._queue)  # nobody left to send them to until a replacement is ready
        self.restarts += 1
        self.futile_restarts += 1
        if self.futile_restarts > MAX_FUTILE_RESTARTS:
            log.error("analysis workers keep dying; preparing every batch in-process from now on")
            return
        self._background(self._replace())

    async def _replace(self) -> None:
        try:
            worker = await self._spawn()
            await worker.ready
        except Exception:
            log.exception("could not start a replacement analysis worker")
            return
        if self._stopped:
            worker.alive = False
            worker.write.close()
            return
        self._workers.append(worker)
        self.dispatch()


def _own_file(conn: Connection, mode: str) -> IO[bytes]:
    """A file object owning a duplicate of ``conn``'s descriptor (``conn`` is closed), for asyncio pipe transports."""
    fd = os.dup(conn.fileno())
    conn.close()
    # A batch is a few hundred KiB: with the default 64 KiB pipe buffer each one costs several write/read wake-ups.
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)  # Linux only
    return os.fdopen(fd, mode)


def _load(worker: _Worker) -> int:
    return len(worker.jobs)


def _relay(done: asyncio.Future[BatchColumns], target: asyncio.Future[BatchColumns]) -> None:
    if target.done():
        return
    if done.exception() is not None:
        target.set_exception(done.exception())  # type: ignore[arg-type]
    else:
        target.set_result(done.result())
