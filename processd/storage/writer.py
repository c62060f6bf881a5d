"""The single writer: queueing, grouping and acks of ingest batches around group commits to the event log.

Batches from every ingest stream wait in one bounded queue, in arrival order, while they are prepared
(validated, analysed, their events encoded: ``processd.analysis.prepare``, usually in analysis worker processes). When
the writer is idle it waits at most ``flush_interval_ms`` for more (or until ``flush_max_events`` envelopes are
queued), then one thread assigns seqs to the prepared batches at the head of the queue and writes them all in ONE
write transaction, through ``processd.storage.logwrite`` (which owns every write of the layout: dedup, events,
indexes, sightings, retention, counters, ``last_seq``). While that transaction commits (fsync releases the GIL)
the event loop keeps receiving and the workers keep preparing the next group. Only after the commit returns is
the :class:`CommitListener` told (read models, live subscribers) and the batches released to their acks
(:attr:`CommitJob.done`).

What one batch stores, in order, is :class:`processd.storage.batchstore.BatchStore`'s:
its envelopes, its sightings (later sources of transactions, ``TxBatch.sightings``: one TX_SOURCE_SEEN event each),
its blocks (``TxBatch.blocks``: one BLOCK event each unless already stored), its TxGone reports and its pool states
(``TxBatch.pools``: one POOL_STATE event each unless already stored), all in the commit's write transaction, so a
batch is acked only after the commit that stores its blocks and pool states. The lifecycle events that the
commit's transactions and blocks cause (``processd.storage.lifewrite``) follow them at the commit's end, in the same
transaction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import lmdb

from common.pb.v1 import block_pb2, pool_pb2
from processd.errors import ProcessdError
from processd.storage.batchstore import BatchStore
from processd.storage.crashpoints import CrashSwitch
from processd.storage.diskfull import DiskFullGate, is_write_failure
from processd.storage.eventlog import EventLog
from processd.storage.lifeengine import Gone
from processd.storage.lifeproc import LifeProcess, LifeProcessLost
from processd.storage.lifewrite import Engine, LifeWriter
from processd.storage.logwrite import LogCounters, LogWrite, Sighting
from processd.storage.records import CommitResult
from processd.wire.columns import BatchColumns

log = logging.getLogger(__name__)



class CommitListener(Protocol):
    """Who hears of the writer's commits: the read side (read models, live subscribers) behind one object."""

    def wants_events(self) -> bool:
        """Whether the next commit should collect its events for live subscribers (someone is subscribed)."""
        ...

    def committed(self, result: CommitResult) -> None:
        """A commit is durable: update the read side. Called on the event loop, before the group's acks."""
        ...


class QueueFullError(ProcessdError):
    """The commit queue stayed full longer than the configured timeout (answer RESOURCE_EXHAUSTED)."""

    retriable = True


class WriterStoppedError(ProcessdError):
    """The writer is shutting down or failed; the batch was not committed (resend it)."""

    retriable = True


#: Lifecycle processes lost in a row on one group before the writer gives up (fails, and processd exits): a child
#: that dies on every attempt is a bug, not a transient.
MAX_LIFE_RESTARTS = 3


class _MapFull(ProcessdError):
    """Internal: the write transaction hit MapFullError and was aborted."""


@dataclass(slots=True)
class CommitJob:
    """One ingest batch in the commit queue (``processd.pipeline.PendingBatch`` makes it and builds the ack).

    In: ``prepared`` resolves to the batch's :class:`~processd.wire.columns.BatchColumns` (its valid, admitted
    transactions), and its validated sightings. Out: where and how it was stored. ``done`` resolves (to None) once
    the commit holding it is durable and the :class:`CommitListener` was told; with WriterStoppedError when it was
    not stored.
    """

    batch_seq: int
    #: The batch's envelopes, valid or not (what a storage-full refusal rejects, and what the queue counts).
    envelopes: int
    received_ns: int
    prepared: asyncio.Future[BatchColumns]
    done: asyncio.Future[None]
    #: Validated sightings of the batch, stored after its envelopes; and how many were stored / ignored.
    sightings: list[Sighting] = field(default_factory=list)
    sightings_stored: int = 0
    sightings_ignored: int = 0
    #: Validated blocks of the batch, stored after its sightings; and how many were stored / already stored.
    blocks: list[block_pb2.BlockEnvelope] = field(default_factory=list)
    blocks_stored: int = 0
    blocks_duplicate: int = 0
    #: Validated TxGone reports of the batch, applied after its blocks; and how many were applied / ignored.
    gone: list[Gone] = field(default_factory=list)
    gone_stored: int = 0
    gone_ignored: int = 0
    #: Validated pool states of the batch, stored after its blocks and TxGone reports; and how many were stored /
    #: already stored.
    pools: list[pool_pb2.PoolState] = field(default_factory=list)
    pools_stored: int = 0
    pools_duplicate: int = 0
    accepted: int = 0
    duplicates: int = 0
    first_seq: int = 0
    last_seq: int = 0
    #: Refused as storage_full (map at its maximum, or the disk full): nothing of it was stored.
    storage_full: bool = False

    @property
    def size(self) -> int:
        """What the batch weighs in the commit queue: envelopes plus sightings plus blocks plus TxGone reports plus
        pool states."""
        return self.envelopes + len(self.sightings) + len(self.blocks) + len(self.gone) + len(self.pools)


class CommitWriter:
    """The one writer of the event log: bounded commit queue, group commits, map growth, storage-full refusals and
    acks. What a commit writes, and how, is ``processd.storage.logwrite``'s."""

    def __init__(
        self,
        eventlog: EventLog,
        listener: CommitListener,
        *,
        flush_interval_ms: int = 2,
        flush_max_events: int = 32768,
        queue_max_envelopes: int = 65536,
        queue_full_timeout_ms: int = 5000,
        map_max_size_bytes: int = 1 << 36,
        retention_max_events: int = 0,
        retention_max_age_s: int = 0,
        crash: CrashSwitch | None = None,
        on_storage_full: Callable[[int, str], None] | None = None,
        disk_full_retry_ms: int = 1000,
        max_sources_per_tx: int = 16,
        max_sources_per_chain: int = 64,
        lifecycle: Engine | None = None,
        max_reorg_depth: int = 64,
    ) -> None:
        self.log = eventlog
        self._listener = listener
        self.flush_interval_s = flush_interval_ms / 1000
        self.flush_max_events = flush_max_events
        self.queue_max_envelopes = queue_max_envelopes
        self.queue_full_timeout_s = queue_full_timeout_ms / 1000
        self.map_max_size_bytes = map_max_size_bytes
        self.retention_max_events = retention_max_events
        self.retention_max_age_ns = retention_max_age_s * 1_000_000_000
        self._crash = crash or CrashSwitch()
        #: Called with the envelopes refused as storage_full and the cause (``map_full`` / ``disk_full``).
        self._on_storage_full = on_storage_full
        self.disk = DiskFullGate(eventlog.path, disk_full_retry_ms)
        #: Sources kept per transaction (the first included) and distinct sources counted per chain.
        self.max_sources_per_tx = max_sources_per_tx
        self.max_sources_per_chain = max_sources_per_chain
        self._counters = LogCounters({}, max_sources_per_chain)
        #: The transaction lifecycle (None: not tracked, lifecycle_enabled off): its engine in this thread
        #: (``LifeEngine``) or in the lifecycle process (``LifeProcess``).
        self.life = LifeWriter(lifecycle) if lifecycle is not None else None
        self._batches = BatchStore(self.life, max_sources_per_tx=max_sources_per_tx, max_reorg_depth=max_reorg_depth)
        self._queue: deque[CommitJob] = deque()
        self.queued_envelopes = 0
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="processd-writer")
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failure: BaseException | None = None
        self.last_seq = 0
        self.committing = False
        self.commits = 0
        self.map_grows = 0
        #: Set when the commit loop died (an LMDB error other than map or disk full): processd must exit.
        self.failed = asyncio.Event()

    # ---- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Loads the log's last seq and counters and starts the commit loop."""
        self.last_seq = self.log.last_seq()
        self._counters = LogCounters(self.log.load_aggregates(), self.max_sources_per_chain)
        if self.life is not None:
            if isinstance(self.life.engine, LifeProcess):
                self.life.engine.start()  # (from the event loop's thread: see LifeProcess.start)
            self.life.rebuild(self.log, self._counters.values)
        self._task = asyncio.create_task(self._run(), name="processd-writer")

    async def stop(self) -> None:
        """Commits everything already queued, then stops (idempotent)."""
        self._stopping = True
        self._wakeup.set()
        self._room.set()
        if self._task is not None:
            try:
                await self._task
            except Exception:
                if self._failure is None:
                    raise  # already logged and reported through ``failed`` otherwise
            finally:
                self._task = None
                self._executor.shutdown(wait=True)
        if self.life is not None and isinstance(self.life.engine, LifeProcess):
            self.life.engine.stop()

    # ---- submission --------------------------------------------------------------------------------------

    async def submit(self, batch: CommitJob, on_queued: Callable[[], None] | None = None) -> None:
        """Queues a batch for commit; waits (gRPC flow control) while the queue is full.

        ``on_queued`` runs just before the batch joins the queue, with no await in between, so what it does happens
        in the order the batches are committed (the pipeline feeds its valuation view and starts the preparation
        there). Raises QueueFullError after ``queue_full_timeout_ms`` of waiting and WriterStoppedError when
        stopping (``on_queued`` not run).
        """
        n = batch.size
        deadline = time.monotonic() + self.queue_full_timeout_s
        while self.queued_envelopes + n > self.queue_max_envelopes and self.queued_envelopes > 0:
            self._check_running()
            self._room.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise QueueFullError(f"commit queue full ({self.queued_envelopes} envelopes)")
            try:
                await asyncio.wait_for(self._room.wait(), remaining)
            except TimeoutError:
                raise QueueFullError(f"commit queue full ({self.queued_envelopes} envelopes)") from None
        self._check_running()
        if on_queued is not None:
            on_queued()
        self._queue.append(batch)
        self.queued_envelopes += n
        self._wakeup.set()

    def _check_running(self) -> None:
        if self._failure is not None:
            raise WriterStoppedError(f"writer failed: {self._failure!r}")
        if self._stopping:
            raise WriterStoppedError("processd is shutting down")

    # ---- commit loop -------------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not self._queue:
                    if self._stopping:
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                if self.queued_envelopes < self.flush_max_events and self.flush_interval_s > 0 and not self._stopping:
                    # Writer idle and little queued: give other streams a moment to join this commit.
                    await asyncio.sleep(self.flush_interval_s)
                head = self._queue[0].prepared
                if not head.done():
                    await asyncio.wait((head,))
                group = self._take_group()
                await self._commit_group(loop, group)
        except BaseException as exc:
            self._failure = exc
            self.failed.set()
            log.exception("writer failed; failing queued batches")
            while self._queue:
                batch = self._queue.popleft()
                if not batch.done.done():
                    batch.done.set_exception(WriterStoppedError(f"writer failed: {exc!r}"))
            raise

    def _take_group(self) -> list[CommitJob]:
        """The prepared batches at the head of the queue, up to ``flush_max_events`` envelopes (at least one)."""
        group: list[CommitJob] = []
        total = 0
        while self._queue and self._queue[0].prepared.done() and (
                not group or total + self._queue[0].size <= self.flush_max_events):
            batch = self._queue.popleft()
            total += batch.size
            group.append(batch)
        self.queued_envelopes -= total
        self._room.set()
        return group

    async def _commit_group(self, loop: asyncio.AbstractEventLoop, group: list[CommitJob]) -> None:
        failed = [batch for batch in group if batch.prepared.exception() is not None]
        if failed:
            # Preparation cannot fail on valid protobuf (analysis errors are caught per transaction); if it does
            # anyway, those batches are not stored and their streams end (the client resends them).
            for batch in failed:
                log.error("preparing batch %d failed: %r", batch.batch_seq, batch.prepared.exception())
                batch.done.set_exception(WriterStoppedError(f"preparation failed: {batch.prepared.exception()!r}"))
            group = [batch for batch in group if batch.prepared.exception() is None]
        self.committing = True
        lost = 0
        try:
            while True:
                if self.disk.blocked():  # a commit failed for lack of space a moment ago: do not hammer the disk
                    result = self._reject_storage_full(group, "disk_full", "disk full, retrying soon", quiet=True)
                    break
                try:
                    result = await loop.run_in_executor(self._executor, self._commit, group)
                    self.disk.succeeded()
                    break
                except LifeProcessLost as exc:
                    lost += 1
                    if lost > MAX_LIFE_RESTARTS:
                        raise
                    self._restart_life(exc)
                except _MapFull:
                    # No read transaction is open here: reads run on this event loop thread, or in worker threads
                    # that set_map_size waits for (processd.storage.readgate).
                    if not self._grow_map():
                        result = self._reject_storage_full(
                            group, "map_full", f"map {self.log.map_size_bytes >> 20} MiB = max")
                        break
                except lmdb.Error as exc:
                    if not is_write_failure(exc):
                        raise
                    # Aborted before its meta page was written: the log is at its last commit and still usable.
                    result = self._reject_storage_full(group, "disk_full", self.disk.failed(exc))
                    break
        except BaseException as exc:
            # Nothing of this group was committed: fail its batches (their streams end, clients resend).
            for batch in group:
                if not batch.done.done():
                    batch.done.set_exception(WriterStoppedError(f"commit failed: {exc!r}"))
            raise
        finally:
            self.committing = False
        self.commits += 1
        try:
            self._listener.committed(result)
        except Exception:
            # The data is committed; a read-model bug must not withhold the acks.
            log.exception("updating read models after commit %d failed", result.last_seq)
        for batch in group:
            if not batch.done.done():
                batch.done.set_result(None)

    def _restart_life(self, exc: LifeProcessLost) -> None:
        """The lifecycle process was lost in a commit (aborted, so nothing of it is in the log): a new one, whose
        state the next attempt rebuilds from the log (``LifeWriter.stale``)."""
        assert self.life is not None and isinstance(self.life.engine, LifeProcess)
        log.error("%s; restarting it and committing the group again", exc)
        self.life.engine.restart()
        assert self.log.env is not None
        self.log.env.reader_check()  # (a child killed in its rebuild's read leaves a stale reader slot)

    def _grow_map(self) -> bool:
        current = self.log.map_size_bytes
        if current >= self.map_max_size_bytes:
            return False
        new_size = min(self.map_max_size_bytes, max(current * 2, current + (64 << 20)))
        log.warning("LMDB map full at %d MiB; growing to %d MiB", current >> 20, new_size >> 20)
        self.log.set_map_size(new_size)
        self.map_grows += 1
        return True

    def _reject_storage_full(self, group: list[CommitJob], cause: str, why: str,
                             quiet: bool = False) -> CommitResult:
        total = 0
        for batch in group:
            total += batch.envelopes
            batch.storage_full = True
            batch.accepted = batch.duplicates = batch.first_seq = batch.last_seq = 0
            batch.sightings_stored = batch.blocks_stored = batch.blocks_duplicate = 0
            batch.pools_stored = batch.pools_duplicate = 0
            batch.gone_stored = batch.gone_ignored = 0
        # While disk-full refusals repeat (no commit tried) one line per group would flood the log: the state
        # change is logged by DiskFullGate and the counts are in mempulse_processd_rejects_total.
        log.log(logging.DEBUG if quiet else logging.ERROR, "event log full (%s): rejected %d envelopes as "
                "storage_full", why, total)
        if self._on_storage_full is not None:
            self._on_storage_full(total, cause)
        return CommitResult(last_seq=self.last_seq, committed_ns=time.time_ns(), batches=len(group), envelopes=0)

    # ---- the write transaction (worker thread) ----------------------------------------------------------

    def _commit(self, group: list[CommitJob]) -> CommitResult:
        started = time.perf_counter()
        self._crash.hit("before_put", len(group))
        seq = self.last_seq
        result = CommitResult(last_seq=seq, committed_ns=0, batches=len(group), envelopes=0)
        # Events for live subscribers are collected only while someone is subscribed; otherwise the hub reads
        # the committed range back from LMDB if a subscriber appears meanwhile (see SubscriptionHub.publish).
        result.events = [] if self._listener.wants_events() else None
        result.first_seq = seq + 1
        life = self.life
        if life is not None:
            if life.stale:  # an aborted transaction fed it: back to what the log says
                life.rebuild(self.log, self._counters.values)
        write = LogWrite(self.log, self._counters)
        try:
            for batch in group:
                seq = self._batches.store(write, batch, seq, result)
            if life is not None:
                seq = life.finish(write, seq, result)
            write.count_stored()
            if seq != self.last_seq:  # this commit stored events
                write.put_last_seq(seq)
            committed_ns = time.time_ns()
            result.pruned_events = write.prune(seq, committed_ns, seq - result.first_seq + 1,
                                               self.retention_max_events, self.retention_max_age_ns)
            new_values = write.put_counters(committed_ns)
            self._crash.hit("after_put", len(group))
            write.commit()
        except lmdb.MapFullError:
            write.abort()
            if life is not None:
                life.stale = True
            raise _MapFull() from None
        except BaseException:
            write.abort()
            if life is not None:
                life.stale = True
            raise
        self._crash.hit("after_commit", len(group))
        self.last_seq = seq
        self._counters.values.update(new_values)
        result.last_seq = seq
        result.committed_ns = committed_ns
        result.aggregates = new_values
        result.duration_s = time.perf_counter() - started
        return result
