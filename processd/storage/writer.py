"""The single writer: group commit of ingest batches into the LMDB event log.

Batches from every ingest stream wait in one bounded queue, in arrival order, while they are prepared
(validated, analysed, their events encoded: ``processd.analysis.prepare``, usually in analysis worker processes). When
the writer is idle it waits at most ``flush_interval_ms`` for more (or until ``flush_max_events`` envelopes are
queued), then one thread assigns seqs to the prepared batches at the head of the queue, deduplicates and
writes them all in ONE write transaction. While that transaction commits (fsync releases the GIL) the event
loop keeps receiving and the workers keep preparing the next group. Only after the commit returns are the
batches' acks resolved, the read models updated and live subscribers fed.

A batch's sightings (later sources of transactions, ``TxBatch.sightings``) are stored after its envelopes, in
the same write transaction, one TX_SOURCE_SEEN event each (:meth:`CommitWriter._store_sightings`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import lmdb

from common.pb.v1 import ingest_pb2, tx_pb2
from processd.errors import ProcessdError
from processd.storage.crashpoints import CrashSwitch
from processd.storage.diskfull import DiskFullGate, is_write_failure
from processd.storage.eventlog import (
    AGG_COMMITTED_NS,
    AGG_DECODED,
    AGG_HIGH_WATER,
    AGG_OPPS,
    AGG_RETAINED_TX,
    AGG_SOURCE,
    AGG_SOURCE_LATER,
    AGG_SOURCE_WINS,
    AGG_TX,
    CHAIN_SEQ,
    KIND_SEEN,
    KIND_SOURCE,
    META_LAST_SEQ,
    U64,
    EventLog,
    agg_chain_key,
    agg_feature_key,
    agg_source_key,
    decode_event,
    tx_key,
)
from processd.storage.group_commit import CommitResult, EventEntry, append_events, claim_hashes
from processd.wire.columns import BatchColumns
from processd.wire.encoding import event_header, source_seen_value

log = logging.getLogger(__name__)

STORAGE_FULL = ingest_pb2.REJECT_REASON_STORAGE_FULL
#: A validated TxSighting: (chain_id, 32-byte hash, source id, seen unix ns).
Sighting = tuple[int, bytes, str, int]
#: Where the counters of a chain's sources beyond ``max_sources_per_chain`` go (bounds the agg keys a client can
#: create with made-up source ids).
OTHER_SOURCES = "~other"
#: Outcomes of a sighting (label of ``mempulse_processd_sightings_total``); ``invalid`` is counted on receipt.
SIGHTING_OUTCOMES = ("stored", "repeat", "unknown_tx", "over_limit", "invalid")


class QueueFullError(ProcessdError):
    """The commit queue stayed full longer than the configured timeout (answer RESOURCE_EXHAUSTED)."""

    retriable = True


class WriterStoppedError(ProcessdError):
    """The writer is shutting down or failed; the batch was not committed (resend it)."""

    retriable = True


class _MapFull(ProcessdError):
    """Internal: the write transaction hit MapFullError and was aborted."""


@dataclass(slots=True)
class PendingBatch:
    """One ingest batch waiting for its group commit.

    ``prepared`` resolves to the batch's :class:`~processd.wire.columns.BatchColumns` (its valid transactions, after
    chain admission); ``rejected`` holds the reject counts of the others by then.
    """

    batch_seq: int
    #: Every envelope of the batch (``BatchColumns.reasons`` has a byte per envelope; chain admission reads it).
    envelopes: Sequence[tx_pb2.TxEnvelope]
    rejected: dict[int, int]
    received_ns: int
    future: asyncio.Future[ingest_pb2.IngestAck]
    prepared: asyncio.Future[BatchColumns]
    accepted: int = 0
    duplicates: int = 0
    first_seq: int = 0
    last_seq: int = 0
    #: Validated sightings of the batch, stored after its envelopes; and how many were stored / ignored.
    sightings: list[Sighting] = field(default_factory=list)
    sightings_stored: int = 0
    sightings_ignored: int = 0

    @property
    def size(self) -> int:
        """What the batch weighs in the commit queue: envelopes plus sightings."""
        return len(self.envelopes) + len(self.sightings)



def _sightings_of(tx_seen_values: list[bytes]) -> list[Sighting]:
    """(chain, hash, source, first seen) of duplicate envelopes, from their prepared TX_SEEN event values."""
    out: list[Sighting] = []
    for value in tx_seen_values:
        event = decode_event(value, 0)
        out.append((event.chain_id, event.tx_hash, event.source_id, event.first_seen_unix_ns))
    return out

class CommitWriter:
    """Owns the write side of the event log: queueing, group commit, map growth, retention."""

    def __init__(
        self,
        eventlog: EventLog,
        on_commit: Callable[[CommitResult], None],
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
    ) -> None:
        self.log = eventlog
        self._on_commit = on_commit
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
        self._chain_sources: dict[int, set[str]] = {}
        self._queue: deque[PendingBatch] = deque()
        self.queued_envelopes = 0
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="processd-writer")
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._failure: BaseException | None = None
        self.last_seq = 0
        self._agg: dict[bytes, int] = {}
        self.committing = False
        #: Whether commits should hand their encoded events to live subscribers (set by the server).
        self.want_events: Callable[[], bool] = lambda: True
        self.commits = 0
        self.map_grows = 0
        #: Set when the commit loop died (an LMDB error other than map or disk full): processd must exit.
        self.failed = asyncio.Event()

    # ---- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Loads the log's last seq and counters and starts the commit loop."""
        self.last_seq = self.log.last_seq()
        self._agg = self.log.load_aggregates()
        for key in self._agg:
            if key[:1] == AGG_SOURCE:
                self._chain_sources.setdefault(U64.unpack(key[1:9])[0], set()).add(key[10:].decode("utf-8", "replace"))
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

    # ---- submission --------------------------------------------------------------------------------------

    async def submit(self, batch: PendingBatch) -> None:
        """Queues a batch for commit; waits (gRPC flow control) while the queue is full.

        Raises QueueFullError after ``queue_full_timeout_ms`` of waiting and WriterStoppedError when stopping.
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
                if not batch.future.done():
                    batch.future.set_exception(WriterStoppedError(f"writer failed: {exc!r}"))
            raise

    def _take_group(self) -> list[PendingBatch]:
        """The prepared batches at the head of the queue, up to ``flush_max_events`` envelopes (at least one)."""
        group: list[PendingBatch] = []
        total = 0
        while self._queue and self._queue[0].prepared.done() and (
                not group or total + self._queue[0].size <= self.flush_max_events):
            batch = self._queue.popleft()
            total += batch.size
            group.append(batch)
        self.queued_envelopes -= total
        self._room.set()
        return group

    async def _commit_group(self, loop: asyncio.AbstractEventLoop, group: list[PendingBatch]) -> None:
        failed = [batch for batch in group if batch.prepared.exception() is not None]
        if failed:
            # Preparation cannot fail on valid protobuf (analysis errors are caught per transaction); if it does
            # anyway, those batches are not stored and their streams end (the client resends them).
            for batch in failed:
                log.error("preparing batch %d failed: %r", batch.batch_seq, batch.prepared.exception())
                batch.future.set_exception(WriterStoppedError(f"preparation failed: {batch.prepared.exception()!r}"))
            group = [batch for batch in group if batch.prepared.exception() is None]
        self.committing = True
        try:
            while True:
                if self.disk.blocked():  # a commit failed for lack of space a moment ago: do not hammer the disk
                    result = self._reject_storage_full(group, "disk_full", "disk full, retrying soon", quiet=True)
                    break
                try:
                    result = await loop.run_in_executor(self._executor, self._commit, group)
                    self.disk.succeeded()
                    break
                except _MapFull:
                    # No read transaction is open here: reads run synchronously on this event loop thread.
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
                if not batch.future.done():
                    batch.future.set_exception(WriterStoppedError(f"commit failed: {exc!r}"))
            raise
        finally:
            self.committing = False
        self.commits += 1
        try:
            self._on_commit(result)
        except Exception:
            # The data is committed; a read-model bug must not withhold the acks.
            log.exception("updating read models after commit %d failed", result.last_seq)
        for batch in group:
            if not batch.future.done():
                batch.future.set_result(self._ack(batch))

    def _grow_map(self) -> bool:
        current = self.log.map_size_bytes
        if current >= self.map_max_size_bytes:
            return False
        new_size = min(self.map_max_size_bytes, max(current * 2, current + (64 << 20)))
        log.warning("LMDB map full at %d MiB; growing to %d MiB", current >> 20, new_size >> 20)
        self.log.set_map_size(new_size)
        self.map_grows += 1
        return True

    def _reject_storage_full(self, group: list[PendingBatch], cause: str, why: str,
                             quiet: bool = False) -> CommitResult:
        total = 0
        for batch in group:
            n = len(batch.envelopes)
            total += n
            if n:
                batch.rejected[STORAGE_FULL] = batch.rejected.get(STORAGE_FULL, 0) + n
            batch.accepted = batch.duplicates = batch.first_seq = batch.last_seq = 0
            batch.sightings_stored = 0
        # While disk-full refusals repeat (no commit tried) one line per group would flood the log: the state
        # change is logged by DiskFullGate and the counts are in mempulse_processd_rejects_total.
        log.log(logging.DEBUG if quiet else logging.ERROR, "event log full (%s): rejected %d envelopes as "
                "storage_full", why, total)
        if self._on_storage_full is not None:
            self._on_storage_full(total, cause)
        return CommitResult(last_seq=self.last_seq, committed_ns=time.time_ns(), batches=len(group), envelopes=0)

    @staticmethod
    def _ack(batch: PendingBatch) -> ingest_pb2.IngestAck:
        return ingest_pb2.IngestAck(
            batch_seq=batch.batch_seq,
            first_seq_id=batch.first_seq,
            last_seq_id=batch.last_seq,
            accepted=batch.accepted,
            duplicates=batch.duplicates,
            rejected=[ingest_pb2.RejectCount(reason=r, count=c)  # type: ignore[arg-type]
                      for r, c in sorted(batch.rejected.items()) if c],
            sightings_stored=batch.sightings_stored,
            sightings_ignored=batch.sightings_ignored,
        )

    # ---- the write transaction (worker thread) ----------------------------------------------------------

    def _commit(self, group: list[PendingBatch]) -> CommitResult:
        started = time.perf_counter()
        self._crash.hit("before_put", len(group))
        eventlog = self.log
        env = eventlog.env
        assert env is not None
        seq = self.last_seq
        result = CommitResult(last_seq=seq, committed_ns=0, batches=len(group), envelopes=0)
        # Events for live subscribers are collected only while someone is subscribed; otherwise the hub reads
        # the committed range back from LMDB if a subscriber appears meanwhile (see SubscriptionHub.publish).
        want_events = self.want_events()
        events: list[EventEntry] = []
        result.events = events if want_events else None
        result.first_seq = seq + 1
        deltas: dict[bytes, int] = {}
        high_water: dict[int, int] = {}
        # (chain, category, protocol, decoded) -> transactions; per-chain tx / decoded / feature counts derive from
        # it once per commit instead of several counter updates per transaction.
        feature_tally: dict[tuple[int, int, str, bool, str], int] = {}
        opp_tally: dict[int, int] = {}
        txn = env.begin(write=True)
        try:
            hash_cursor = txn.cursor(db=eventlog.tx_db)
            events_cursor = txn.cursor(db=eventlog.events_db)
            chain_cursor = txn.cursor(db=eventlog.chain_db)
            for batch in group:
                columns = batch.prepared.result()
                result.analysis_errors += columns.analysis_errors
                n = len(columns.tx_key)
                columns, duplicate_values = claim_hashes(txn, eventlog.tx_db, hash_cursor, columns, seq + 1)
                duplicates = len(duplicate_values)
                if columns.tx_key:
                    first = seq + 1
                    seq += len(columns.values)
                    append_events(columns, first, result, events_cursor, chain_cursor,
                                  events if want_events else None)
                    for fkey, count in columns.tally.items():
                        feature_tally[fkey] = feature_tally.get(fkey, 0) + count
                    for chain_id, count in columns.opp_count.items():
                        opp_tally[chain_id] = opp_tally.get(chain_id, 0) + count
                    for chain_id, offset in columns.last_event.items():
                        high_water[chain_id] = first + offset
                    batch.first_seq, batch.last_seq = first, seq
                else:
                    batch.first_seq = batch.last_seq = 0
                batch.duplicates = duplicates
                batch.accepted = n - duplicates
                result.envelopes += n
                if batch.sightings:
                    seq = self._store_sightings(txn, batch, batch.sightings, seq, result, deltas, high_water,
                                                events if want_events else None)
                if duplicate_values:
                    # Another ingestd (one per node) sent the same transaction: its source is a later sighting.
                    seq = self._store_sightings(txn, batch, _sightings_of(duplicate_values), seq, result, deltas,
                                                high_water, events if want_events else None, from_duplicates=True)
            # Counters are tallied in plain ints and turned into agg keys once per commit.
            chain_tally: dict[int, list[int]] = {}  # chain -> [txs, decoded]
            for (chain_id, category, protocol, decoded, source_id), n in feature_tally.items():
                k = agg_source_key(chain_id, AGG_SOURCE_WINS, self._source_label(chain_id, source_id))
                deltas[k] = deltas.get(k, 0) + n
                tally = chain_tally.get(chain_id)
                if tally is None:
                    tally = chain_tally[chain_id] = [0, 0]
                tally[0] += n
                if decoded:
                    tally[1] += n
                k = agg_feature_key(chain_id, category, protocol)
                deltas[k] = deltas.get(k, 0) + n
            for chain_id, (n_tx, n_decoded) in chain_tally.items():
                for field_key, inc in ((AGG_TX, n_tx), (AGG_DECODED, n_decoded), (AGG_OPPS, opp_tally.get(chain_id, 0)),
                                       (AGG_RETAINED_TX, n_tx)):
                    if inc:
                        k = agg_chain_key(chain_id, field_key)
                        deltas[k] = deltas.get(k, 0) + inc
            if seq != self.last_seq:  # this commit stored events
                txn.put(META_LAST_SEQ, U64.pack(seq), db=eventlog.meta_db)
            committed_ns = time.time_ns()
            result.pruned_events = self._prune(txn, seq, committed_ns, deltas, seq - result.first_seq + 1)
            new_values = self._apply_aggregates(txn, deltas, high_water, committed_ns)
            self._crash.hit("after_put", len(group))
            txn.commit()
        except lmdb.MapFullError:
            txn.abort()
            raise _MapFull() from None
        except BaseException:
            txn.abort()
            raise
        self._crash.hit("after_commit", len(group))
        self.last_seq = seq
        self._agg.update(new_values)
        result.last_seq = seq
        result.committed_ns = committed_ns
        result.aggregates = new_values
        result.duration_s = time.perf_counter() - started
        return result

    def _source_label(self, chain_id: int, source_id: str) -> str:
        """The source id its counters are kept under: itself, or :data:`OTHER_SOURCES` past the per-chain bound."""
        known = self._chain_sources.get(chain_id)
        if known is None:
            known = self._chain_sources[chain_id] = set()
        if source_id in known:
            return source_id
        if len(known) < self.max_sources_per_chain:
            known.add(source_id)
            return source_id
        known.add(OTHER_SOURCES)  # (one slot over the bound at most)
        return OTHER_SOURCES

    def _store_sightings(self, txn: lmdb.Transaction, batch: PendingBatch, sightings: list[Sighting], seq: int,
                         result: CommitResult, deltas: dict[bytes, int], high_water: dict[int, int],
                         events: list[EventEntry] | None, from_duplicates: bool = False) -> int:
        """Stores ``sightings`` of ``batch`` (after its envelopes, so one of them may name a transaction of this
        very batch); returns the last seq used. Idempotent: a sighting of a transaction not in the log, a repeated
        (transaction, source), the first source itself, or one past ``max_sources_per_tx`` is only counted.

        ``from_duplicates``: the sightings are duplicate envelopes (another ingestd's, or a resend). They are not
        the batch's ``TxBatch.sightings`` (its ack does not count them), and a repeat, a resend's usual case, is
        not counted at all."""
        eventlog = self.log
        sources_db, tx_db, events_db, chain_db = (eventlog.sources_db, eventlog.tx_db, eventlog.events_db,
                                                  eventlog.chain_db)
        cursor = txn.cursor(db=sources_db)
        outcomes = result.sightings
        pack = U64.pack
        stored = 0
        for chain_id, tx_hash, source_id, seen_ns in sightings:
            key = tx_key(chain_id, tx_hash)
            raw = txn.get(key, db=tx_db)
            seen_value = txn.get(raw, db=events_db) if raw is not None else None
            if seen_value is None:
                outcomes["unknown_tx"] = outcomes.get("unknown_tx", 0) + 1
                continue
            tx_seq = U64.unpack(raw)[0]  # type: ignore[arg-type]
            # (upb parses a whole TX_SEEN value, calldata and all, faster than Python reads its header fields)
            first = decode_event(seen_value, tx_seq)
            first_seen_ns, first_source = first.first_seen_unix_ns, first.source_id
            if first.tx_hash != tx_hash:  # only the 16-byte key prefix matched: not this transaction
                outcomes["unknown_tx"] = outcomes.get("unknown_tx", 0) + 1
                continue
            source_key = key + source_id.encode()
            held = 1  # the first source, then the later ones under the transaction's key (one cursor seek)
            repeat = source_id == first_source
            positioned = cursor.set_range(key)
            while positioned and not repeat and cursor.key()[:len(key)] == key:
                repeat = cursor.key() == source_key
                held += 1
                positioned = cursor.next()
            if repeat:
                if not from_duplicates:
                    outcomes["repeat"] = outcomes.get("repeat", 0) + 1
                continue
            if held >= self.max_sources_per_tx:
                outcomes["over_limit"] = outcomes.get("over_limit", 0) + 1
                continue
            seq += 1
            value = source_seen_value(event_header(chain_id, tx_hash, first_seen_ns, batch.received_ns, source_id),
                                      chain_id, tx_hash, source_id, seen_ns, tx_seq)
            txn.put(pack(seq), value, db=events_db, append=True)
            txn.put(CHAIN_SEQ.pack(chain_id, seq), bytes((KIND_SOURCE,)), db=chain_db)
            txn.put(source_key, pack(seen_ns), db=sources_db)
            k = agg_source_key(chain_id, AGG_SOURCE_LATER, self._source_label(chain_id, source_id))
            deltas[k] = deltas.get(k, 0) + 1
            high_water[chain_id] = seq
            result.chains.add(chain_id)
            if events is not None:
                events.append((seq, chain_id, KIND_SOURCE, value))
            outcomes["stored"] = outcomes.get("stored", 0) + 1
            stored += 1
        if not from_duplicates:
            batch.sightings_stored += stored
            batch.sightings_ignored += len(sightings) - stored
        return seq

    def _apply_aggregates(self, txn: lmdb.Transaction, deltas: dict[bytes, int], high_water: dict[int, int],
                          committed_ns: int) -> dict[bytes, int]:
        agg_db = self.log.agg_db
        new_values: dict[bytes, int] = {}
        for key, delta in deltas.items():
            new_values[key] = max(0, self._agg.get(key, 0) + delta)
        for chain_id, hw in high_water.items():
            new_values[agg_chain_key(chain_id, AGG_HIGH_WATER)] = hw
            new_values[agg_chain_key(chain_id, AGG_COMMITTED_NS)] = committed_ns
        for key, value in new_values.items():
            txn.put(key, U64.pack(value), db=agg_db)
        return new_values

    def _prune(self, txn: lmdb.Transaction, last_seq: int, now_ns: int, deltas: dict[bytes, int],
               added: int) -> int:
        """Retention: deletes the oldest transactions (all their events) with their index entries.

        Bounded work per commit: it stops at the first transaction past the budget or within retention. A
        transaction goes whole, so the ``chain_seq`` entry (keyed by its TX_SEEN seq) never outlives events.
        """
        if not self.retention_max_events and not self.retention_max_age_ns:
            return 0
        eventlog = self.log
        budget = max(1024, 2 * added)
        cutoff_ns = now_ns - self.retention_max_age_ns if self.retention_max_age_ns else 0
        cur = txn.cursor(db=eventlog.events_db)
        positioned = cur.first()
        pruned = 0
        while positioned:
            value = cur.value()
            if value[0] == KIND_SEEN:  # a transaction starts: prune it whole, or stop here
                seq = U64.unpack(cur.key())[0]
                over_count = self.retention_max_events and last_seq - seq + 1 > self.retention_max_events
                event = decode_event(value, seq)
                if pruned >= budget or not (over_count or (cutoff_ns and event.received_unix_ns < cutoff_ns)):
                    break
                txn.delete(CHAIN_SEQ.pack(event.chain_id, seq), db=eventlog.chain_db)
                key = tx_key(event.chain_id, event.tx_hash)
                if txn.get(key, db=eventlog.tx_db) == U64.pack(seq):
                    txn.delete(key, db=eventlog.tx_db)
                k = agg_chain_key(event.chain_id, AGG_RETAINED_TX)
                deltas[k] = deltas.get(k, 0) - 1
                src = txn.cursor(db=eventlog.sources_db)
                found = src.set_range(key)
                while found and src.key()[:len(key)] == key:
                    found = src.delete()
            elif value[0] == KIND_SOURCE:  # a sighting committed after the transaction just pruned: its own entry
                event = decode_event(value, U64.unpack(cur.key())[0])
                txn.delete(CHAIN_SEQ.pack(event.chain_id, event.seq_id), db=eventlog.chain_db)
            # Any other event belongs to the transaction just pruned (a transaction's events are contiguous; a
            # sighting always follows its own transaction, so one met here is as old as the pruned ones).
            positioned = cur.delete() and bool(cur.key())
            pruned += 1
        return pruned
