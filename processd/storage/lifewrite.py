"""The lifecycle's part of a commit: feeding the tracker the commit's inputs, storing the events it returns, and
rebuilding it from the log at start.

:class:`LifeWriter` runs in the single writer's thread, inside the write transaction (``processd.storage.writer``
calls it for each batch's stored transactions, blocks and TxGone reports, in seq order), so a lifecycle event is
committed with its cause under the same ack. The state itself (:class:`processd.storage.lifecycle.LifecycleTracker`)
lives in memory: at start, and after an aborted write transaction left it ahead of the log, it is rebuilt by
re-running the tracker over the log from the lowest ``AGG_LIFE_FLOOR`` (:meth:`LifeWriter.rebuild`), which the
commits keep current. The rebuild reads only the events the state depends on (TX_SEEN, BLOCK, evicted TX_DROPPED)
from that seq on: with the default TTL of one hour, about an hour of the log.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

from common.pb.v1 import block_pb2, events_pb2
from processd.storage.eventlog import EventLog
from processd.storage.layout import (
    AGG_CHAIN,
    AGG_FIRST_BLOCK,
    AGG_LIFE_FLOOR,
    KIND_BLOCK,
    KIND_DROPPED,
    KIND_INCLUDED,
    KIND_REORG,
    KIND_SEEN,
    U64,
    agg_chain_key,
    decode_event,
)
from processd.storage.lifecycle import EVICTED, LifecycleTracker, LifeEvent, Pending
from processd.storage.logwrite import LogWrite
from processd.storage.records import CommitResult
from processd.wire.columns import LIFE_ROW, BatchColumns

log = logging.getLogger(__name__)

#: A validated TxGone: (chain_id, 32-byte hash, source id, seen unix ns).
Gone = tuple[int, bytes, str, int]


def pending_of(value: bytes | memoryview, seq: int) -> tuple[int, Pending]:
    """(chain id, :class:`Pending`) of a stored TX_SEEN value at ``seq`` (one upb parse of the event)."""
    event = events_pb2.Event.FromString(memoryview(value)[1:])  # type: ignore[arg-type]
    tx = event.tx_seen.tx
    bid = tx.max_fee_per_gas or tx.gas_price
    cancel = tx.to == tx.sender and not tx.input and not tx.value.strip(b"\x00")
    return event.chain_id, Pending(event.first_seen_unix_ns, seq, event.tx_hash, tx.sender, tx.nonce,
                                   int.from_bytes(bid, "big"), cancel)


#: A lifecycle event's kind, chain and body (C-level).
_KIND, _CHAIN, _BODY = itemgetter(0), itemgetter(1), itemgetter(4)
#: IncludedBody.inclusion_latency_ms (C-level).
_LATENCY = itemgetter(4)
#: A :class:`Pending` from its fields as one tuple (C-level: no Python call per stored transaction).
_new_pending = functools.partial(tuple.__new__, Pending)


def pendings_of_rows(rows: Sequence[tuple[bytes, bytes, int, bytes, int, bool]], positions: Iterable[int],
                     first: int, seen_at: Sequence[int]) -> list[Pending]:
    """The :class:`Pending` s of the unpacked ``LIFE_ROW`` s at ``positions`` (the transaction at position ``t`` is
    stored at seq ``first + seen_at[t]``). A LIFE_ROW is (hash, sender, nonce, bid, first seen, cancel); a Pending
    starts with first seen and seq (its own expiry heap entry) and holds the bid as an int (32 bytes where the row's
    32-byte string takes 65: the tracker keeps one per tracked transaction)."""
    new, from_bytes = _new_pending, int.from_bytes
    return [new((seen, first + seen_at[t], h, sender, nonce, from_bytes(bid, "big"), cancel, False))
            for t in positions for h, sender, nonce, bid, seen, cancel in (rows[t],)]


class LifeWriter:
    """The tracker and how a commit stores what it derives (module doc)."""

    def __init__(self, tracker: LifecycleTracker) -> None:
        self.tracker = tracker
        #: Chains whose lifecycle state a commit in progress changed (their AGG_LIFE_FLOOR is written).
        self._touched: set[int] = set()
        #: Set when a write transaction that fed the tracker was aborted: rebuild before the next commit.
        self.stale = False
        self.rebuild_s = 0.0
        self.rebuilt_events = 0
        #: Stored transactions whose envelope was not at hand (their TX_SEEN value was parsed instead).
        self.parsed = 0

    def begin(self) -> None:
        """A write transaction starts (a stale tracker must have been rebuilt by then: :meth:`rebuild`)."""
        self._touched.clear()

    # ---- inputs of a commit ------------------------------------------------------------------------------

    def stored(self, write: LogWrite, columns: BatchColumns, first: int, seq: int, received_ns: int,
               result: CommitResult) -> int:
        """The transactions a batch stored at ``first``...: tracked when their chain is; returns the last seq
        used by the replacements they caused (stored after the batch's events).

        A transaction's fields come from ``columns.life`` (read by preparation, in the workers: here it costs a
        tuple); columns without it (built by hand) have each TX_SEEN value parsed instead (the rebuild's way: the
        same values, ``tests/processd/test_lifecycle_encoding.py``)."""
        chains = self.tracker.chains
        if not chains or chains.keys().isdisjoint(columns.last_event):
            return seq
        chain_col, seen_at, life = columns.chain, columns.seen_at, columns.life
        if len(columns.last_event) == 1:  # one chain: the usual batch
            runs: list[tuple[int, Sequence[int]]] = [(chain_col[0], range(len(chain_col)))]
        else:  # runs of consecutive transactions of one chain, in order (so the events keep the batch's order)
            runs = []
            for t, chain_id in enumerate(chain_col):
                if runs and runs[-1][0] == chain_id:
                    runs[-1][1].append(t)  # type: ignore[attr-defined]
                else:
                    runs.append((chain_id, [t]))
        rows: list[tuple[bytes, bytes, int, bytes, int, bool]] | None = None
        for chain_id, positions in runs:
            if chain_id not in chains:
                continue
            if life:
                if rows is None:
                    rows = list(LIFE_ROW.iter_unpack(life))
                txs = pendings_of_rows(rows, positions, first, seen_at)
            else:
                self.parsed += len(positions)
                txs = [pending_of(columns.values[seen_at[t]], first + seen_at[t])[1] for t in positions]
            events = self.tracker.pending_many(chain_id, txs)
            if events:
                seq = self.store(write, events, seq, received_ns, "", result)
        return seq

    def block(self, write: LogWrite, block: block_pb2.BlockEnvelope, block_seq: int,
              received_ns: int) -> tuple[bytes, list[LifeEvent]]:
        """Stores a new block at ``block_seq``; returns its BLOCK value and the lifecycle events it causes (for
        :meth:`store`, after the caller recorded the block)."""
        outcome = self.tracker.block(block, block_seq)
        value = write.add_block(block_seq, block, received_ns, outcome.latency_p50_ms, outcome.included_tracked,
                               outcome.hashes)
        self._touched.add(block.chain_id)
        return value, outcome.events

    def gone(self, write: LogWrite, gone: Iterable[Gone], seq: int, received_ns: int,
             result: CommitResult) -> tuple[int, int]:
        """TxGone reports: a tracked transaction is dropped as evicted. Returns (applied, last seq used)."""
        applied = 0
        for chain_id, tx_hash, source_id, _ in gone:
            events = self.tracker.gone(chain_id, tx_hash, source_id)
            applied += len(events)
            seq = self.store(write, events, seq, received_ns, source_id, result)
        return applied, seq

    def store(self, write: LogWrite, events: list[LifeEvent], seq: int, received_ns: int, source_id: str,
              result: CommitResult) -> int:
        """Stores lifecycle events after ``seq`` (in one go: :meth:`LogWrite.add_life_events`); returns the last
        seq used. (The usual call holds one chain's events: its records are built with C-level maps.)"""
        if not events:
            return seq
        first = seq + 1
        kinds = list(map(_KIND, events))
        values = write.add_life_events(first, events, received_ns, source_id, kinds)
        n = len(values)
        seqs = range(first, first + n)
        chain_id = events[0][1]
        chains = list(map(_CHAIN, events))
        one_chain = chains.count(chain_id) == n
        if one_chain:
            result.chains.add(chain_id)
            self._touched.add(chain_id)
        else:
            result.chains.update(chains)
            self._touched.update(chains)
        records = list(zip(seqs, chains, kinds, values, strict=True))
        result.source_events.extend(records)
        if result.events is not None:
            result.events.extend(records)
        life_kinds = result.life_kinds
        for kind in set(kinds):
            life_kinds[kind] = life_kinds.get(kind, 0) + kinds.count(kind)
        bodies: list[Any] = list(map(_BODY, events))
        included = kinds.count(KIND_INCLUDED)
        if included:
            if not one_chain:  # (never from the writer's calls; by row)
                for c, k, b in zip(chains, kinds, bodies, strict=True):
                    if k == KIND_INCLUDED:
                        result.life_latencies.setdefault(c, []).append(b[4])
            elif included == n:  # a block's inclusions only: C-level
                result.life_latencies.setdefault(chain_id, []).extend(map(_LATENCY, bodies))
            else:
                result.life_latencies.setdefault(chain_id, []).extend(
                    [b[4] for k, b in zip(kinds, bodies, strict=True) if k == KIND_INCLUDED])
        if included != n:
            result.life_other.extend([(c, k, b[0] if k == KIND_DROPPED else _detail(k, b))
                                      for c, k, b in zip(chains, kinds, bodies, strict=True) if k != KIND_INCLUDED])
        return seqs[-1]

    def finish(self, write: LogWrite, last_seq: int, result: CommitResult) -> None:
        """Writes the restart floor of every chain this commit changed (the commit's last seq + 1 when the
        chain's state holds nothing), and their tracked pending counts into ``result``."""
        for chain_id, floor in self.tracker.floors(self._touched, last_seq + 1).items():
            write.set_counter(agg_chain_key(chain_id, AGG_LIFE_FLOOR), floor)
            result.life_pending[chain_id] = self.tracker.pending_count(chain_id)

    # ---- restart -----------------------------------------------------------------------------------------

    def rebuild(self, eventlog: EventLog, counters: dict[bytes, int]) -> None:
        """Re-runs the tracker over the log from the lowest restart floor (module doc); the tracker is reset
        first. The chains whose first block precedes that floor are tracked from the start."""
        started = time.perf_counter()
        knobs = self.tracker
        self.tracker = tracker = LifecycleTracker(ttl_ms=knobs.ttl_ns // 1_000_000, max_pending=knobs.max_pending,
                                                  max_reorg_depth=knobs.max_reorg_depth)
        floors = _chain_values(counters, AGG_LIFE_FLOOR)
        if not floors:
            self.stale = False
            return
        start = min(floors.values())
        for chain_id, first in _chain_values(counters, AGG_FIRST_BLOCK).items():
            if first < start:
                tracker.activate(chain_id)
        walked = 0
        with eventlog.begin() as txn:
            for seq, value in eventlog.values_from(txn, start):
                kind = value[0]
                walked += 1
                if kind == KIND_SEEN:
                    chain_id, tx = pending_of(value, seq)
                    tracker.pending(chain_id, tx)
                elif kind == KIND_BLOCK:
                    tracker.block(decode_event(value, seq).block.block, seq)
                elif kind == KIND_DROPPED:
                    event = decode_event(value, seq)
                    if event.tx_dropped.reason == EVICTED:
                        tracker.gone(event.chain_id, event.tx_hash, event.tx_dropped.source_id)
        tracker.counts = dict.fromkeys(tracker.counts, 0)
        self.stale = False
        self.rebuild_s = time.perf_counter() - started
        self.rebuilt_events = walked
        log.info("lifecycle rebuilt from seq %d: %d events in %.3f s, %d pending tracked on %d chains", start,
                 walked, self.rebuild_s, tracker.tracked, len(tracker.chains))


def _detail(kind: int, body: Any) -> int:
    """The figure of a lifecycle event its consumers need (``CommitResult.life_other``, ``life_latencies``)."""
    if kind == KIND_INCLUDED:
        return int(body[4])  # IncludedBody.inclusion_latency_ms
    if kind == KIND_DROPPED:
        return int(body[0])  # DroppedBody.reason
    if kind == KIND_REORG:
        return int(body.depth) * 2 + int(body.too_deep)
    return 0


def _chain_values(counters: dict[bytes, int], field: bytes) -> dict[int, int]:
    """Per chain, the value of one ``agg`` per-chain field."""
    return {U64.unpack(key[1:9])[0]: value for key, value in counters.items()
            if key[:1] == AGG_CHAIN and key[9:] == field}
