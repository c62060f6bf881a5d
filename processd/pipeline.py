"""The ingest pipeline: one object owns an ingest batch from its bytes to its ack.

    raw TxBatch -> parse -> prepare -> admit -> commit -> publish -> ack

* **parse** (:meth:`IngestPipeline.accept`): ``TxBatch.FromString`` on the event loop, once. Bytes that are not a
  ``TxBatch`` raise :class:`MalformedBatchError` before anything is queued. The session id and ``chain_stats``
  go to the ingest health (``processd.views.ingest_stats``), sightings are checked here.
* **prepare**: the same bytes go to the analysis pool (``processd.analysis.pool``), which validates, analyses and
  encodes the envelopes in worker processes (``processd.analysis.prepare``). It starts as the batch joins the
  commit queue (:meth:`IngestPipeline._queued`, in commit order): the batch's pool states go into the valuation's
  pool view first, then the reserves its swaps are valued on are read from it, so valuations follow the log's
  order, never the commits' timing (docs/valuation.md).
* **admit** (:meth:`IngestPipeline._admit`): chain admission (at most ``max_chains`` chains, in arrival order)
  and reject counting, on the event loop.
* **commit**: the batch's :class:`~processd.storage.writer.CommitJob` waits in the single writer's queue
  (``processd.storage.writer``), which stores it in a group commit.
* **publish** (:meth:`IngestPipeline.committed`, the writer's
  :class:`~processd.storage.writer.CommitListener`): read models, live subscribers, metrics.
* **ack** (:meth:`PendingBatch.acked`): the ``IngestAck``, once the commit holding the batch is durable.

``processd.api.ingest_service`` is only the gRPC adapter: it reads a stream's bytes into :meth:`accept`, writes
the acks back in order and maps the errors to status codes.

Why the event loop parses the whole batch, and the worker parses its copy again (measured, 500 envelopes per
batch, this machine, busy): upb's ``TxBatch.FromString`` costs 86-185 us per batch (161-423 KB); reading only
the fields the event loop needs in Python (top-level tags, skipping the envelopes by length) costs 175-200 us,
so it is no cheaper. A view type declaring the envelopes as opaque bytes parses in 12-21 us, but then a batch
whose envelopes are not protobuf would reach the analysis workers and fail there, after it is queued behind its
stream's earlier batches, instead of ending the stream with INVALID_ARGUMENT on receipt; the saving is 0.2-0.3 us
per transaction against the writer's ~14. Handing the worker's parse back instead (the worker returning the
header) would leave the event loop without the batch's size and sightings when it queues the batch (in arrival
order, under the queue's bound). The worker's second parse runs in another process, off the event loop's GIL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from common.chains import MAX_CHAIN_ID
from common.pb.v1 import block_pb2, ingest_pb2, pool_pb2, tx_pb2
from processd.analysis.pool import AnalysisPool
from processd.analysis.validation import MAX_SOURCE_ID_CHARS, OK, REASON_NAMES
from processd.analysis.valuation.pairs import Venues, pair_cache_entries
from processd.analysis.valuation.state import PoolReserves, ReserveSource, WireReserves, to_wire
from processd.analysis.valuation.value import gather
from processd.commitmetrics import CommitMetrics
from processd.errors import ProcessdError
from processd.metrics import ProcessdMetrics
from processd.storage.eventlog import EventLog
from processd.storage.lifeengine import Gone
from processd.storage.logwrite import Sighting
from processd.storage.records import CommitResult
from processd.storage.writer import CommitJob, CommitListener, CommitWriter
from processd.views.ingest_stats import RateLimitedLog
from processd.views.pools import PoolView, well_formed
from processd.views.readmodels import ReadModels
from processd.views.subscriptions import SubscriptionHub
from processd.wire.columns import BatchColumns, keep_only

log = logging.getLogger(__name__)

UNKNOWN_CHAIN = ingest_pb2.REJECT_REASON_UNKNOWN_CHAIN
STORAGE_FULL = ingest_pb2.REJECT_REASON_STORAGE_FULL
#: Bounds on the ingest sessions one stream may announce (each is a key of the held stats).
MAX_SESSION_ID_CHARS = 128
MAX_SESSIONS_PER_STREAM = 64
#: Transactions one block may list (ingestd sends at most its max_block_txs, 10,000 by default): the writer looks
#: each one up (seen_pending, one getmulti) and the lifecycle settles it, so this bounds one block's cost in the
#: commit.
MAX_BLOCK_TXS = 20_000


class MalformedBatchError(ProcessdError):
    """The bytes of an ingest batch are not a ``TxBatch`` (the stream ends with INVALID_ARGUMENT)."""

    retriable = False


@dataclass(slots=True)
class IngestStream:
    """What the pipeline keeps per ingest stream: the ingest sessions it announced."""

    sessions: set[str] = field(default_factory=set)


@dataclass(slots=True)
class PendingBatch:
    """One ingest batch between its receipt and its ack.

    ``job`` is its place in the writer's queue (None when there is nothing to store: no envelopes and no valid
    sighting); ``rejected`` holds the reject counts of its envelopes once it is admitted.
    """

    batch_seq: int
    #: Every envelope of the batch (``BatchColumns.reasons`` has a byte per envelope; chain admission reads it).
    envelopes: Sequence[tx_pb2.TxEnvelope]
    received_ns: int
    job: CommitJob | None = None
    rejected: dict[int, int] = field(default_factory=dict)
    #: Malformed sightings of the batch (counted as ``invalid`` on receipt, never stored).
    sightings_invalid: int = 0
    #: Blocks of the batch refused on receipt (malformed, chain not served), never stored.
    blocks_invalid: int = 0
    #: Pool states of the batch refused on receipt (malformed, chain not served), never stored.
    pools_invalid: int = 0
    #: TxGone reports of the batch refused on receipt (malformed), never applied.
    gone_invalid: int = 0

    async def acked(self) -> ingest_pb2.IngestAck:
        """The batch's ack once its commit is durable; raises WriterStoppedError when it was not stored."""
        if self.job is not None:
            await self.job.done
        return self.ack()

    def ack(self) -> ingest_pb2.IngestAck:
        """The ``IngestAck`` of the batch (after its commit)."""
        job = self.job
        if job is None:
            return ingest_pb2.IngestAck(batch_seq=self.batch_seq, sightings_ignored=self.sightings_invalid,
                                        blocks_ignored=self.blocks_invalid, gone_ignored=self.gone_invalid,
                                        pools_ignored=self.pools_invalid)
        rejected = self.rejected
        if job.storage_full and (job.envelopes or job.blocks or job.pools or job.gone):
            # (its blocks, TxGone reports and pool states count too: a batch of them only must also be resent, not
            # taken as acked; a gone report left out here was lost)
            rejected = {**rejected, STORAGE_FULL: rejected.get(STORAGE_FULL, 0) + job.envelopes + len(job.blocks)
                        + len(job.gone) + len(job.pools)}
        return ingest_pb2.IngestAck(
            batch_seq=self.batch_seq,
            first_seq_id=job.first_seq,
            last_seq_id=job.last_seq,
            accepted=job.accepted,
            duplicates=job.duplicates,
            rejected=[ingest_pb2.RejectCount(reason=r, count=c)  # type: ignore[arg-type]
                      for r, c in sorted(rejected.items()) if c],
            sightings_stored=job.sightings_stored,
            sightings_ignored=self.sightings_invalid + job.sightings_ignored,
            blocks_stored=job.blocks_stored,
            blocks_ignored=self.blocks_invalid + job.blocks_duplicate,
            pools_stored=job.pools_stored,
            pools_ignored=self.pools_invalid + job.pools_duplicate,
            gone_stored=job.gone_stored,
            gone_ignored=self.gone_invalid + job.gone_ignored,
        )


class ViewReserveSource:
    """A :class:`~processd.views.pools.PoolView` as the valuation's
    :class:`~processd.analysis.valuation.state.ReserveSource`: the view's reserves in the analysis' type (views/
    may not import analysis/, so the pipeline, which may import both, adapts)."""

    def __init__(self, view: PoolView) -> None:
        self._view = view

    def lookup(self, chain_id: int, pair: bytes) -> PoolReserves | None:
        """The view's reserves of ``pair`` on ``chain_id``, or None."""
        r = self._view.lookup(chain_id, pair)
        if r is None:
            return None
        return PoolReserves(r.chain_id, r.pair, r.token0, r.token1, r.reserve0, r.reserve1, r.block_number)


class IngestPipeline:
    """Owns every ingest batch from its bytes to its ack (module doc); builds and listens to the single writer."""

    def __init__(self, writer: Callable[[CommitListener], CommitWriter], pool: AnalysisPool, models: ReadModels,
                 hub: SubscriptionHub, metrics: ProcessdMetrics, *, max_chains: int = 1024,
                 chain_ids: frozenset[int] = frozenset(), reserve_source: ReserveSource | None = None,
                 venues: Venues | None = None, valuation: bool = True, pool_max_pairs: int = 100_000) -> None:
        """``reserve_source``: where swaps' reserves are read (tests); None with ``valuation`` = the pipeline's own
        log-ordered pool view (the default); None without it = no valuation (heuristic scores)."""
        self.writer = writer(self)
        #: The valuation's own pool view (None when a reserve source is given or valuation is off): fed with each
        #: batch's pool states in commit order as the batch is queued (:meth:`_queued`), rebuilt from the log at
        #: start (:meth:`rebuild_valuation_view`). Not the read model's PoolView, which is fed after each commit.
        self._valuation_view: PoolView | None = None
        if reserve_source is None and valuation:
            self._valuation_view = PoolView(max_pairs=pool_max_pairs)
            reserve_source = ViewReserveSource(self._valuation_view)
        #: Where each batch's pool reserves are read before its analysis (None: no valuation, heuristic scores).
        self._reserve_source = reserve_source
        self._venues = venues or Venues()
        self._pool = pool
        self._models = models
        self._hub = hub
        self._metrics = metrics
        self._max_chains = max_chains
        #: Chains served (empty = any): blocks of others are refused as invalid (envelopes: unknown_chain).
        self._chain_ids = chain_ids
        #: Chains that may be stored (those already in the read models, then new ones up to max_chains).
        self._admitted: set[int] = set()
        self._session_streams: dict[str, int] = {}
        #: Resolved once the latest batch handed to preparation has been through chain admission.
        self._admitted_through: asyncio.Future[None] | None = None
        self._stats_log = RateLimitedLog()
        self._commit_metrics = CommitMetrics(metrics)
        models.ingest_stats.on_reject = self._stats_rejected

    # ---- receipt (parse) ---------------------------------------------------------------------------------

    async def accept(self, raw: bytes, stream: IngestStream) -> PendingBatch:
        """Parses one batch's bytes and takes it into the pipeline (:meth:`accept_batch`).

        Raises MalformedBatchError (nothing was queued), QueueFullError or WriterStoppedError (from the writer).
        """
        try:
            batch = ingest_pb2.TxBatch.FromString(raw)
        except DecodeError as exc:
            raise MalformedBatchError(f"malformed TxBatch: {exc}") from None
        return await self.accept_batch(batch, raw, stream)

    async def accept_batch(self, batch: ingest_pb2.TxBatch, raw: bytes, stream: IngestStream) -> PendingBatch:
        """Records the batch's ingest stats, starts its preparation and queues it for commit; waits (gRPC flow
        control) while the commit queue is full."""
        # Stats are bounded and copied (processd.views.ingest_stats); whatever happens to them, the batch's
        # transactions go on below.
        refused = self._track_session(batch.session_id, stream.sessions) if batch.session_id else ""
        if batch.chain_stats:
            if not refused:
                self._models.update_ingest_stats(batch.session_id, batch.chain_stats)
            else:
                self._stats_rejected(refused, len(batch.chain_stats), f"session id of {len(batch.session_id)} "
                                     f"chars, {len(stream.sessions)} sessions on the stream")
        sightings, bad_sightings = self.check_sightings(batch) if batch.sightings else ([], 0)
        blocks, bad_blocks = self.check_blocks(batch) if batch.blocks else ([], 0)
        gone, bad_gone = self.check_gone(batch) if batch.gone else ([], 0)
        pools, bad_pools = self.check_pools(batch) if batch.pools else ([], 0)
        pending = PendingBatch(batch_seq=batch.batch_seq, envelopes=batch.envelopes, received_ns=0,
                               sightings_invalid=bad_sightings, blocks_invalid=bad_blocks, gone_invalid=bad_gone,
                               pools_invalid=bad_pools)
        if batch.envelopes or sightings or blocks or gone or pools:
            pending.received_ns = time.time_ns()
            loop = asyncio.get_running_loop()
            # A batch of sightings, blocks, TxGone reports or pool states only has nothing to prepare; one with
            # envelopes gets its preparation in _queued, which replaces this future.
            prepared: asyncio.Future[BatchColumns] = loop.create_future()
            prepared.set_result(BatchColumns(b"", 0, [], [], [], [], [], [], [], [], {}, {}, {}, [], [], []))
            job = pending.job = CommitJob(
                batch_seq=batch.batch_seq, envelopes=len(batch.envelopes), received_ns=pending.received_ns,
                prepared=prepared, done=loop.create_future(), sightings=sightings, blocks=blocks, gone=gone,
                pools=pools)
            await self.writer.submit(job, on_queued=lambda: self._queued(pending, job, batch, raw))
        return pending

    def _queued(self, pending: PendingBatch, job: CommitJob, batch: ingest_pb2.TxBatch, raw: bytes) -> None:
        """As the batch joins the commit queue (the writer calls this in commit order, docs/valuation.md): its
        valid pool states go to the valuation view, then its swaps' reserves are read and its preparation starts.
        So the reserves a batch is valued on are a function of the batches before it in the log and of its own
        pool states (which count for its own swaps), never of when an earlier batch's commit finished."""
        if self._valuation_view is not None:
            for state in job.pools:
                self._valuation_view.apply(state)
        if batch.envelopes:
            job.prepared = self._prepare(pending, raw, self._reserves(batch))

    def open_stream(self) -> IngestStream:
        """The state of a new ingest stream."""
        return IngestStream()

    def close_stream(self, stream: IngestStream) -> None:
        """Forgets a stream's sessions (their held stats go when no other stream announces them)."""
        for sid in stream.sessions:
            left = self._session_streams.get(sid, 1) - 1
            if left <= 0:
                self._session_streams.pop(sid, None)
                self._models.end_session(sid)
            else:
                self._session_streams[sid] = left

    def _track_session(self, session_id: str, sessions: set[str]) -> str:
        """Records the stream's session; a reason when its stats must not be kept (id too long, too many ids)."""
        if session_id in sessions:
            return ""
        if len(session_id) > MAX_SESSION_ID_CHARS:
            return "bad_session_id"  # a key of the held stats: a 10 MB id would be held as long as the stream
        if len(sessions) >= MAX_SESSIONS_PER_STREAM:
            return "too_many_sessions"
        sessions.add(session_id)
        self._session_streams[session_id] = self._session_streams.get(session_id, 0) + 1
        return ""

    def _stats_rejected(self, reason: str, count: int, detail: str) -> None:
        self._metrics.ingest_stats_rejected.labels(reason).inc(count)
        self._stats_log.warn(reason, count, detail)

    def check_sightings(self, batch: ingest_pb2.TxBatch) -> tuple[list[Sighting], int]:
        """The batch's well-formed sightings, and the number of malformed ones (counted, ignored)."""
        good: list[Sighting] = []
        for s in batch.sightings:
            source_id = s.source_id
            if (len(s.hash) == 32 and 0 < s.chain_id <= MAX_CHAIN_ID and 0 < len(source_id) <= MAX_SOURCE_ID_CHARS
                    and s.seen_unix_ns):
                good.append((s.chain_id, s.hash, source_id, s.seen_unix_ns))
        bad = len(batch.sightings) - len(good)
        if bad:
            self._metrics.sightings.labels("invalid").inc(bad)
        return good, bad

    def check_gone(self, batch: ingest_pb2.TxBatch) -> tuple[list[Gone], int]:
        """The batch's well-formed TxGone reports, and the number of malformed ones
        (``mempulse_processd_lifecycle_gone_total{outcome="invalid"}``, acked as ignored)."""
        good: list[Gone] = []
        for g in batch.gone:
            if (len(g.hash) == 32 and 0 < g.chain_id <= MAX_CHAIN_ID and len(g.source_id) <= MAX_SOURCE_ID_CHARS
                    and g.reason == ingest_pb2.GONE_REASON_EVICTED):
                good.append((g.chain_id, g.hash, g.source_id, g.seen_unix_ns))
        bad = len(batch.gone) - len(good)
        if bad:
            self._metrics.lifecycle_gone.labels("invalid").inc(bad)
        return good, bad

    def check_blocks(self, batch: ingest_pb2.TxBatch) -> tuple[list[block_pb2.BlockEnvelope], int]:
        """The batch's well-formed blocks of chains this processd may store, and the number of the others
        (``mempulse_processd_blocks_total{outcome="invalid"}``, acked as ignored, never stored)."""
        good: list[block_pb2.BlockEnvelope] = []
        for block in batch.blocks:
            if self._block_ok(block) and self._admit_block_chain(block.chain_id):
                good.append(block)
            else:
                self._metrics.blocks.labels(str(block.chain_id), "invalid").inc()
        return good, len(batch.blocks) - len(good)

    def check_pools(self, batch: ingest_pb2.TxBatch) -> tuple[list[pool_pb2.PoolState], int]:
        """The batch's well-formed pool states of chains this processd may store, and the number of the others
        (``mempulse_processd_pool_states_total{outcome="invalid"}``, acked as ignored, never stored)."""
        good = [state for state in batch.pools if well_formed(state) and self._admit_block_chain(state.chain_id)]
        bad = len(batch.pools) - len(good)
        if bad:
            self._metrics.pool_states.labels("invalid").inc(bad)
        return good, bad

    @staticmethod
    def _block_ok(block: block_pb2.BlockEnvelope) -> bool:
        """Hashes of 32 bytes, senders of 20, a bounded transaction list and source id, a known chain id."""
        if not (0 < block.chain_id <= MAX_CHAIN_ID and len(block.hash) == 32 and len(block.parent_hash) == 32
                and len(block.base_fee) <= 32 and len(block.txs) <= MAX_BLOCK_TXS
                and len(block.source_id) <= MAX_SOURCE_ID_CHARS):
            return False
        return all(len(tx.hash) == 32 and len(tx.sender) == 20 and len(tx.effective_gas_price) <= 32
                   for tx in block.txs)

    def _admit_block_chain(self, chain_id: int) -> bool:
        """Whether blocks of ``chain_id`` may be stored: a served chain, admitted like envelopes' (max_chains)."""
        if self._chain_ids and chain_id not in self._chain_ids:
            return False
        if chain_id in self._admitted:
            return True
        if len(self._admitted) < self._max_chains:
            self._admitted.add(chain_id)
            return True
        return False

    # ---- prepare and admit -------------------------------------------------------------------------------

    def _reserves(self, batch: ingest_pb2.TxBatch) -> tuple[WireReserves, ...] | None:
        """The pool reserves the batch's V2 router swaps are valued on, read now from the reserve source (the
        analysis gets them as an input, so it stays a function of what it is given); None without a source."""
        source = self._reserve_source
        if source is None:
            return None
        venues = self._venues
        routers = venues.router_addresses  # a set lookup first: most transactions are not router swaps
        # (A router of another chain than the envelope's needs no test here: its route has no plan, and gather
        # skips it.)
        calls = [(e.chain_id, to, e.input) for e in batch.envelopes if (to := e.to) in routers]
        if not calls:
            return ()
        found, unknown = gather(calls, source, venues)
        self._metrics.valuation_pools.labels("found").inc(len(found))
        self._metrics.valuation_pools.labels("unknown").inc(unknown)
        self._metrics.valuation_pair_cache.set(pair_cache_entries())
        return to_wire(found)

    def _prepare(self, pending: PendingBatch, raw: bytes,
                 reserves: tuple[WireReserves, ...] | None = None) -> asyncio.Future[BatchColumns]:
        """Starts the batch's preparation; the future resolves to its admitted columns."""
        previous = self._admitted_through
        admitted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._admitted_through = admitted
        return asyncio.ensure_future(self._prepare_and_admit(pending, raw, previous, admitted, reserves))

    async def _prepare_and_admit(self, pending: PendingBatch, raw: bytes, previous: asyncio.Future[None] | None,
                                 admitted: asyncio.Future[None],
                                 reserves: tuple[WireReserves, ...] | None = None) -> BatchColumns:
        try:
            columns = await self._pool.prepare(raw, pending.received_ns, reserves)
            # Batches are prepared in parallel and finish in any order; chain admission (max_chains) follows
            # arrival order, as the commits do.
            if previous is not None:
                await previous
            return self._admit(pending, columns)
        finally:
            if not admitted.done():
                admitted.set_result(None)

    def _admit(self, pending: PendingBatch, columns: BatchColumns) -> BatchColumns:
        """Chain admission and reject counting; the transactions that may be stored."""
        admitted = self._admitted
        reasons = columns.reasons
        if not any(reasons) and columns.last_event.keys() <= admitted:
            return columns  # the usual batch: all valid, all chains known
        rejected = pending.rejected
        envelopes = pending.envelopes
        refused: set[int] = set()
        for index, reason in enumerate(reasons):
            chain_id = envelopes[index].chain_id
            if chain_id not in admitted and reason != UNKNOWN_CHAIN:
                # Bounded: at most max_chains distinct chains get counters and windows.
                if len(admitted) < self._max_chains:
                    admitted.add(chain_id)
                elif reason == OK:
                    reason = UNKNOWN_CHAIN
                    refused.add(chain_id)
            if reason == OK:
                continue
            rejected[reason] = rejected.get(reason, 0) + 1
            self._metrics.rejects.labels(REASON_NAMES[reason]).inc()
            if chain_id in admitted:
                self._models.count_reject(chain_id, reason)
        return keep_only(columns, [c not in refused for c in columns.chain]) if refused else columns

    def rebuild_valuation_view(self, eventlog: EventLog) -> int:
        """Fills the valuation view from the log at start, as the read model's (the states of the batches committed
        before this start); returns the events read (0 without a valuation view)."""
        return self._valuation_view.rebuild(eventlog) if self._valuation_view is not None else 0

    @property
    def valuation_view(self) -> PoolView | None:
        """The valuation's pool view (None when a reserve source was given or valuation is off)."""
        return self._valuation_view

    def admit_known_chains(self, chain_ids: list[int]) -> None:
        """Admits the chains already in the log (called at start, after the read models are rebuilt)."""
        self._admitted.update(chain_ids)

    # ---- publish (the writer's CommitListener) -----------------------------------------------------------

    def wants_events(self) -> bool:
        """Whether the next commit should collect its events: is anyone subscribed live?"""
        return self._hub.wants_events()

    def committed(self, result: CommitResult) -> None:
        """After each commit, before its acks: read models, live subscribers, metrics."""
        self._models.apply(result)
        self._hub.publish_commit(result)
        self._commit_metrics.record(result, self.writer)


