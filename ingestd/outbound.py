"""Outbound stream of one chain to processd: bounded queue -> TxBatch -> gRPC ``Ingest.Stream``.

Every batch with envelopes is kept until processd acknowledges it (after its LMDB commit) and resent, in
order, after a reconnect; processd deduplicates by (chain_id, hash), so a resend never duplicates. At most
``max_unacked`` batches are outstanding: when processd is slow the unacked window fills, the writer
pauses, the bounded queue fills, and :meth:`Outbound.try_enqueue` starts refusing (the caller counts
``outbound_queue_full``). Nothing here ever blocks the caller.

The queue also carries ``TxSighting``s (later announcements by other sources, ``ingestd.sourcelog``), in the
same FIFO order as the envelopes: a sighting queued after its envelope goes in the envelope's batch or a later
one, so processd has stored the transaction when it reads the sighting. It carries the chain's new blocks
(``BlockEnvelope``, ``ingestd.blocks``) too: they ride in ``TxBatch.blocks``, are kept and resent with their
batch until acked, and processd stores each (chain, block hash) once. And the ``TxGone`` reports of the pending
tracker (``ingestd.pending``), in ``TxBatch.gone``, kept and resent the same way; and the pool states of the pairs
pending swaps touch (``PoolState``, ``ingestd.pools``), queued right after their block, in ``TxBatch.pools``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from common.pb.v1 import block_pb2, ingest_pb2, ingest_pb2_grpc, pool_pb2, tx_pb2
from ingestd.drops import DropReason
from ingestd.errors import IngestdError
from ingestd.linger import batch_delay_s
from ingestd.metrics import BlockDrop, ChainStats, Histograms

log = logging.getLogger(__name__)

#: What the outbound queue carries, in FIFO order.
_Item = tx_pb2.TxEnvelope | tx_pb2.TxSighting | block_pb2.BlockEnvelope | ingest_pb2.TxGone | pool_pb2.PoolState


@dataclass(slots=True)
class _Unacked:
    batch: ingest_pb2.TxBatch
    first_seen_ns: list[int]
    sent_mono: float = 0.0
    #: > 0 while waiting to resend after a storage_full answer (monotonic due time).
    retry_at: float = 0.0
    attempts: int = 0
    #: What earlier answers for this batch already counted (a resend is answered for the whole batch again).
    delivered_before: int = 0
    rejected_before: dict[int, int] = field(default_factory=dict)


class Outbound:
    """Owns one gRPC stream to processd for one chain. ``start()``, ``try_enqueue()``, ``stop()``."""

    def __init__(self, target: str, session_id: str, stats: ChainStats, histograms: Histograms, *,
                 capacity: int = 20_000, batch_size: int = 500, flush_s: float = 0.01, max_unacked: int = 64,
                 stats_interval_s: float = 1.0, max_message_bytes: int = 16 * 1024 * 1024,
                 max_batch_bytes: int = 4 * 1024 * 1024, linger_s: float = 0.0,
                 reconnect_max_s: float = 5.0, stats_source: Callable[[], ingest_pb2.ChainIngestStats] | None = None):
        self.target = target
        self.session_id = session_id
        self.stats = stats
        self.capacity = capacity
        self.batch_size = batch_size
        self.flush_s = flush_s
        # A partial batch waits until its oldest item was announced this long ago (ingestd.linger says why).
        self.linger_ns = int(linger_s * 1e9)
        self.max_unacked = max_unacked
        self.stats_interval_s = stats_interval_s
        self.max_message_bytes = max_message_bytes
        self.max_batch_bytes = min(max_batch_bytes, max_message_bytes // 2)
        self.reconnect_max_s = reconnect_max_s
        self._stats_source = stats_source or stats.to_proto
        self._chain_label = stats.name
        self._batch_hist = histograms.outbound_batch_size.labels(stats.name)
        self._ack_hist = histograms.ack_latency.labels(stats.name)
        self._stream_ack_hist = histograms.stream_ack_latency.labels(stats.name)
        self._queue: deque[_Item] = deque()
        self._wake = asyncio.Event()
        self._acked = asyncio.Event()
        self._unacked: dict[int, _Unacked] = {}
        self._retrying = 0  # unacked batches waiting to be resent after storage_full
        self._seq = 0
        self._last_stats = 0.0
        self._task: asyncio.Task[None] | None = None
        self._channel: grpc.aio.Channel | None = None
        self._closing = False

    @property
    def depth(self) -> int:
        """Envelopes and sightings queued and not yet in a batch."""
        return len(self._queue)

    @property
    def unacked_batches(self) -> int:
        return len(self._unacked)

    @property
    def unacked_envelopes(self) -> int:
        return sum(len(u.first_seen_ns) for u in self._unacked.values())

    def try_enqueue(self, item: _Item) -> bool:
        """Queues an envelope, a sighting, a block or a TxGone unless the queue is at capacity (returns False; the
        caller counts the drop)."""
        if len(self._queue) >= self.capacity or self._closing:
            return False
        self._queue.append(item)
        if len(self._queue) >= self.batch_size or not self._wake.is_set():
            self._wake.set()
        return True

    async def start(self) -> None:
        """Opens the channel and starts the sender task."""
        if self._task is not None:
            return
        options = [("grpc.max_send_message_length", self.max_message_bytes),
                   ("grpc.max_receive_message_length", self.max_message_bytes),
                   ("grpc.keepalive_time_ms", 20_000), ("grpc.keepalive_timeout_ms", 20_000),
                   ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 2000)]
        self._channel = grpc.aio.insecure_channel(self.target, options=options)
        self._task = asyncio.create_task(self._run(), name=f"outbound-{self._chain_label}")

    async def stop(self, grace_s: float) -> None:
        """Flushes queued envelopes and waits up to ``grace_s`` for acks; what is left is counted as
        ``shutdown`` drops. Idempotent."""
        if self._task is None:
            return
        self._closing = True
        self._wake.set()
        deadline = time.monotonic() + grace_s
        while (self._queue or self._unacked) and time.monotonic() < deadline and not self._task.done():
            self._acked.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acked.wait(), min(0.05, max(0.0, deadline - time.monotonic())))
        task, self._task = self._task, None
        task.cancel()
        # asyncio.wait: the sender's own outcome is not ours to raise, and a cancellation of stop() itself must
        # not be swallowed; the bound keeps shutdown finite even if the sender ignored the cancel.
        await asyncio.wait({task}, timeout=5.0)
        if not task.done():
            log.error("outbound sender of chain=%s did not stop within 5 s of its cancellation", self._chain_label)
        lost = sum(1 for item in self._queue if type(item) is tx_pb2.TxEnvelope) + self.unacked_envelopes
        blocks_lost = (sum(1 for item in self._queue if type(item) is block_pb2.BlockEnvelope)
                       + sum(len(u.batch.blocks) for u in self._unacked.values()))
        gone_lost = (sum(1 for item in self._queue if type(item) is ingest_pb2.TxGone)
                     + sum(len(u.batch.gone) for u in self._unacked.values()))
        if gone_lost and self.stats.pending is not None:
            self.stats.pending.gone_shutdown += gone_lost
        if blocks_lost and self.stats.blocks is not None:
            self.stats.blocks.drops[BlockDrop.SHUTDOWN] += blocks_lost
        if lost:
            self.stats.drops.add(DropReason.SHUTDOWN, count=lost, detail="unacked at shutdown")
            log.warning("shutdown chain=%s envelopes_not_acked=%d", self._chain_label, lost)
        self._queue.clear()
        self._unacked.clear()
        if self._channel is not None:
            await self._channel.close(grace=0.2)

    # -- sender ------------------------------------------------------------------------------------------

    def _next_batch(self, with_stats: bool) -> tuple[ingest_pb2.TxBatch, list[int]] | None:
        n = min(len(self._queue), self.batch_size)
        if n == 0 and not with_stats:
            return None
        # Bounded by count and by bytes, so a batch of large calldata never exceeds processd's gRPC message
        # limit (a batch that can never be delivered would be resent forever). One envelope always goes.
        envelopes: list[tx_pb2.TxEnvelope] = []
        sightings: list[tx_pb2.TxSighting] = []
        blocks: list[block_pb2.BlockEnvelope] = []
        gone: list[ingest_pb2.TxGone] = []
        pools: list[pool_pb2.PoolState] = []
        size = taken = 0
        while taken < n:
            item = self._queue[0]
            item_size = item.ByteSize()
            if taken and size + item_size > self.max_batch_bytes:
                break
            self._queue.popleft()
            kind = type(item)
            (sightings if kind is tx_pb2.TxSighting else blocks if kind is block_pb2.BlockEnvelope
             else gone if kind is ingest_pb2.TxGone else pools if kind is pool_pb2.PoolState
             else envelopes).append(item)  # type: ignore[arg-type]
            size += item_size
            taken += 1
        self._seq += 1
        batch = ingest_pb2.TxBatch(session_id=self.session_id, batch_seq=self._seq, envelopes=envelopes,
                                   sightings=sightings, blocks=blocks, gone=gone, pools=pools)
        if with_stats:
            batch.chain_stats.append(self._stats_source())
        return batch, [e.first_seen_unix_ns for e in envelopes]

    async def _run(self) -> None:
        delay = 0.1
        first = True
        while True:
            if not first:
                self.stats.stream_reconnects += 1
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(self.reconnect_max_s, delay * 2)
            first = False
            assert self._channel is not None
            stub = ingest_pb2_grpc.IngestStub(self._channel)
            call = stub.Stream(wait_for_ready=True)
            reader = asyncio.create_task(self._read_acks(call))
            try:
                self._retrying = 0
                for seq in sorted(self._unacked):  # resend what the previous stream left unacked, in order
                    self._unacked[seq].retry_at = 0.0
                    self._unacked[seq].sent_mono = time.monotonic()
                    await call.write(self._unacked[seq].batch)
                    self.stats.batches_resent += 1
                    self.stats.envelopes_sent += len(self._unacked[seq].batch.envelopes)
                delay = 0.1
                await self._write_loop(call, reader)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    call.cancel()
                reader.cancel()
                raise
            except (grpc.aio.AioRpcError, grpc.aio.UsageError, StreamBroken, asyncio.InvalidStateError) as exc:
                # InvalidStateError('RPC already finished.') is what call.write() raises when processd died
                # between two writes; like the others it only means "reconnect and resend".
                log.warning("processd stream broken chain=%s unacked_batches=%d error=%s", self._chain_label,
                            len(self._unacked), _rpc_error_text(exc))
            except Exception:
                # Anything else is a bug, but this loop is the only way envelopes reach processd: log it loudly
                # and reconnect (the unacked window is kept), rather than die silently and stop delivering.
                log.exception("unexpected error in the processd stream chain=%s; reconnecting", self._chain_label)
            finally:
                reader.cancel()
                # Wait for the reader without suppressing CancelledError: when stop() cancels this task while it
                # waits here, swallowing the cancel would send it round the loop to reconnect forever (and
                # stop() would wait for it forever: an ingestd that ignored SIGTERM with processd down).
                await asyncio.wait({reader})
                with contextlib.suppress(Exception):
                    call.cancel()

    async def _resend_due(self, call: grpc.aio.StreamStreamCall, now: float) -> None:
        """Resends batches whose storage_full retry time has come."""
        for entry in [e for e in self._unacked.values() if e.retry_at and e.retry_at <= now]:
            entry.retry_at = 0.0
            self._retrying -= 1
            entry.sent_mono = now
            self.stats.batches_resent += 1
            self.stats.envelopes_sent += len(entry.batch.envelopes)
            await call.write(entry.batch)

    async def _write_loop(self, call: grpc.aio.StreamStreamCall, reader: asyncio.Task[None]) -> None:
        while True:
            if reader.done():
                raise StreamBroken(str(reader.exception() or "ack stream ended"))
            now = time.monotonic()
            if self._retrying:
                await self._resend_due(call, now)
            stats_due = now - self._last_stats >= self.stats_interval_s
            wait_cap = 0.1 if self._retrying else self.stats_interval_s
            if len(self._unacked) >= self.max_unacked:
                self._acked.clear()
                await self._wait_any(self._acked, reader, wait_cap)
                continue
            if len(self._queue) < self.batch_size and not stats_due and not self._closing:
                if not self._queue:
                    self._wake.clear()
                    timeout = min(wait_cap, max(0.0, self.stats_interval_s - (now - self._last_stats)))
                    await self._wait_any(self._wake, reader, timeout)
                    continue
                # busy stream: let the batch fill for flush_s; any stream: until its oldest item is linger old
                delay = batch_delay_s(_seen_ns(self._queue[0]), time.time_ns(), self.linger_ns,
                                      self.flush_s if self._unacked else 0.0, len(self._queue))
                if delay > 0:
                    await asyncio.sleep(delay)
            item = self._next_batch(stats_due)
            if item is None:
                continue
            batch, first_seen = item
            if stats_due:
                self._last_stats = time.monotonic()
            if batch.envelopes or batch.sightings or batch.blocks or batch.gone or batch.pools:
                self._unacked[batch.batch_seq] = _Unacked(batch, first_seen, time.monotonic())
                self._batch_hist.observe(len(batch.envelopes))
                self.stats.envelopes_sent += len(batch.envelopes)
            await call.write(batch)

    @staticmethod
    async def _wait_any(event: asyncio.Event, reader: asyncio.Task[None], wait_s: float) -> None:
        waiter = asyncio.create_task(event.wait())
        try:
            await asyncio.wait({waiter, reader}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()

    async def _read_acks(self, call: grpc.aio.StreamStreamCall) -> None:
        while True:
            ack = await call.read()
            if not isinstance(ack, ingest_pb2.IngestAck):  # grpc.aio.EOF
                raise StreamBroken("processd closed the stream")
            self._on_ack(ack)

    def _on_ack(self, ack: ingest_pb2.IngestAck) -> None:
        self.stats.acks += 1
        entry = self._unacked.get(ack.batch_seq)
        if entry is None or entry.retry_at:
            return  # a stats-only batch, a duplicate ack after a resend, or a batch already waiting to retry
        if not any(rc.reason == ingest_pb2.REJECT_REASON_STORAGE_FULL for rc in ack.rejected):
            # (a storage_full answer is resent whole: its sightings are counted by the final answer)
            self.stats.sightings_stored += ack.sightings_stored
            self.stats.sightings_ignored += ack.sightings_ignored
            if self.stats.blocks is not None:
                self.stats.blocks.stored += ack.blocks_stored
                self.stats.blocks.ignored += ack.blocks_ignored
            if self.stats.pending is not None:
                self.stats.pending.gone_stored += ack.gone_stored
                self.stats.pending.gone_ignored += ack.gone_ignored
            if self.stats.pools is not None:
                self.stats.pools.stored += ack.pools_stored
                self.stats.pools.ignored += ack.pools_ignored
        storage_full = 0
        rejected = 0
        for rc in ack.rejected:
            if rc.reason == ingest_pb2.REJECT_REASON_STORAGE_FULL:
                storage_full += rc.count
                continue
            rejected += rc.count
            new = rc.count - entry.rejected_before.get(rc.reason, 0)
            if new > 0:
                entry.rejected_before[rc.reason] = rc.count
                self.stats.drops.add(DropReason.REJECTED, count=new, detail=_reason_name(rc.reason))
        stored = max(0, len(entry.first_seen_ns) - rejected - storage_full)
        self.stats.delivered += max(0, stored - entry.delivered_before)
        entry.delivered_before = max(entry.delivered_before, stored)
        if storage_full and not self._closing:
            # processd's log is full: nothing is lost yet. Resend the whole batch later (stored envelopes come
            # back as duplicates); meanwhile it holds its place in the unacked window, which back-pressures.
            entry.attempts += 1
            entry.retry_at = time.monotonic() + min(5.0, 0.25 * 2 ** entry.attempts)
            self._retrying += 1
            self.stats.storage_full_retries += 1
            if entry.attempts == 1:
                log.warning("processd storage full chain=%s batch_seq=%d not_stored=%d: will resend",
                            self._chain_label, ack.batch_seq, storage_full)
            self._acked.set()
            return
        if storage_full:
            self.stats.drops.add(DropReason.REJECTED, count=storage_full, detail="REJECT_REASON_STORAGE_FULL")
        del self._unacked[ack.batch_seq]
        self._stream_ack_hist.observe(time.monotonic() - entry.sent_mono)
        now = time.time_ns()
        observe = self._ack_hist.observe
        for ns in entry.first_seen_ns:
            observe((now - ns) / 1e9)
        self._acked.set()


def _seen_ns(item: _Item) -> int:
    """When the source announced ``item`` (unix ns)."""
    kind = type(item)
    if kind is pool_pb2.PoolState:
        return 0  # no announcement time: never holds a partial batch back
    return item.first_seen_unix_ns if kind is tx_pb2.TxEnvelope else item.seen_unix_ns  # type: ignore[union-attr]


def _reason_name(reason: int) -> str:
    return ingest_pb2.RejectReason.Name(reason) if reason in ingest_pb2.RejectReason.values() else str(reason)


class StreamBroken(IngestdError):
    """The ack stream ended or failed; the sender reconnects and resends unacked batches."""

    retriable = True


def _rpc_error_text(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"
