"""The lifecycle's part of a commit: feeding the engine the commit's inputs, storing the events it answers, and
keeping the writer's copy of what is pending.

:class:`LifeWriter` runs in the single writer's thread, inside the write transaction (``processd.storage.writer``
calls it for each batch's stored transactions, blocks and TxGone reports, in seq order), so a lifecycle event is
committed with its cause under the same ack. The state and the encoding are the engine's
(:class:`processd.storage.lifeengine.LifeEngine`, in this thread, or the same in the lifecycle process:
:class:`processd.storage.lifeproc.LifeProcess`); this module assigns the seqs, puts the values and their index
entries (:meth:`processd.storage.logwrite.LogWrite.put_life_events`) and fills the commit's lifecycle figures.
The state lives in memory: at start, and after an aborted write transaction left it ahead of the log, it is rebuilt
by re-running the tracker over the log from the lowest ``AGG_LIFE_FLOOR`` (:meth:`LifeWriter.rebuild`), which the
commits keep current.

What is pending is asked by readers on the event loop (``GetTransaction``'s status, ``ListTransactions(status=)``,
the snapshot's pending count), where the engine may be in another process: :attr:`LifeWriter.pending` is a copy,
per tracked chain, of the hashes the tracker holds as pending, kept exact from the engine's answers (the hashes each
stored batch got tracked, minus those of every TX_INCLUDED, TX_REPLACED and TX_DROPPED; a reorg's answer is the
chain's whole set), and replaced whole by a rebuild.
"""

from __future__ import annotations

import logging
from typing import Protocol

from common.pb.v1 import block_pb2
from processd.storage.eventlog import EventLog
from processd.storage.layout import AGG_LIFE_FLOOR, KIND_DROPPED, KIND_INCLUDED, KIND_REPLACED, agg_chain_key
from processd.storage.lifeengine import Gone, LifeEngine, LifeGroup, LifeStats
from processd.storage.logwrite import LogWrite
from processd.storage.records import CommitResult
from processd.wire.columns import BatchColumns

log = logging.getLogger(__name__)

__all__ = ["Engine", "Gone", "LifeWriter"]


class Engine(Protocol):
    """What the writer calls: :class:`LifeEngine` itself, or :class:`processd.storage.lifeproc.LifeProcess`."""

    def stored(self, chain_col: list[int], seen_at: list[int], life: bytes, seen_values: list[bytes] | None,
               first: int, received_ns: int) -> tuple[LifeGroup | None, dict[int, list[bytes]]]: ...

    def block(self, raw: bytes, seq: int, received_ns: int
              ) -> tuple[int, int, list[bytes], LifeGroup | None, list[bytes] | None]: ...

    def gone(self, reports: list[Gone], received_ns: int) -> tuple[int, list[LifeGroup]]: ...

    def finish(self, last_seq: int) -> tuple[dict[int, int], dict[int, int], LifeStats]: ...

    def pending_sets(self) -> dict[int, list[bytes]]: ...

    def stats(self) -> LifeStats: ...


#: The kinds that settle a pending transaction (its hash leaves :attr:`LifeWriter.pending`).
_SETTLING = frozenset((KIND_INCLUDED, KIND_REPLACED, KIND_DROPPED))


class LifeWriter:
    """The engine and how a commit stores what it derives (module doc)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: Per tracked chain, the hashes the tracker holds as pending (module doc).
        self.pending: dict[int, set[bytes]] = {}
        #: Tracked pending transactions per chain as of the last commit that changed the chain.
        self.pending_counts: dict[int, int] = {}
        #: (tracked, replaced held, index entries, overflow since start) as of the last commit.
        self.stats: LifeStats = (0, 0, 0, 0)
        #: Set when a write transaction that fed the engine was aborted: rebuild before the next commit.
        self.stale = False
        self.rebuild_s = 0.0
        self.rebuilt_events = 0
        #: Stored transactions whose envelope was not at hand (their TX_SEEN value was parsed instead).
        self.parsed = 0

    def is_pending(self, chain_id: int, tx_hash: bytes) -> bool:
        """Whether the tracker holds the transaction as pending (a set lookup: safe beside the writer's thread)."""
        held = self.pending.get(chain_id)
        return held is not None and tx_hash in held

    # ---- inputs of a commit ------------------------------------------------------------------------------

    def stored(self, write: LogWrite, columns: BatchColumns, first: int, seq: int, received_ns: int,
               result: CommitResult) -> int:
        """The transactions a batch stored at ``first``...: tracked when their chain is; returns the last seq
        used by the replacements they caused (stored after the batch's events)."""
        pending = self.pending
        if not pending or pending.keys().isdisjoint(columns.last_event):
            return seq
        seen_values = None
        if not columns.life:  # (columns built by hand: the engine parses the TX_SEEN values)
            self.parsed += len(columns.seen_at)
            seen_values = [columns.values[at] for at in columns.seen_at]
        group, added = self.engine.stored(columns.chain, columns.seen_at, columns.life, seen_values, first,
                                          received_ns)
        if group is not None:
            seq = self.store(write, group, seq, result)
        for chain_id, hashes in added.items():
            pending[chain_id].update(hashes)
        return seq

    def block(self, write: LogWrite, block: block_pb2.BlockEnvelope, block_seq: int,
              received_ns: int) -> tuple[bytes, LifeGroup | None]:
        """Stores a new block at ``block_seq``; returns its BLOCK value and the lifecycle events it causes (for
        :meth:`store`, after the caller recorded the block)."""
        p50, included, hashes, group, snapshot = self.engine.block(block.SerializeToString(), block_seq, received_ns)
        value = write.add_block(block_seq, block, received_ns, p50, included, hashes)
        if snapshot is not None:  # a reorg put transactions back: the chain's set as the tracker holds it now
            self.pending[block.chain_id] = set(snapshot)  # (one rebinding: a reader never sees it half-filled)
        else:
            self.pending.setdefault(block.chain_id, set())
        return value, group

    def gone(self, write: LogWrite, gone: list[Gone], seq: int, received_ns: int,
             result: CommitResult) -> tuple[int, int]:
        """TxGone reports: a tracked transaction is dropped as evicted. Returns (applied, last seq used)."""
        if not self.pending:
            return 0, seq
        applied, groups = self.engine.gone(gone, received_ns)
        for group in groups:
            seq = self.store(write, group, seq, result)
        return applied, seq

    def store(self, write: LogWrite, group: LifeGroup, seq: int, result: CommitResult) -> int:
        """Stores a group of lifecycle events after ``seq`` (:meth:`LogWrite.put_life_events`), records them in
        ``result`` and takes the transactions they settle out of :attr:`pending`; returns the last seq used."""
        values, kinds, chains, hashes, tx_seqs, figures = group
        first = seq + 1
        n = len(values)
        write.put_life_events(first, values, kinds, chains, tx_seqs, figures)
        seqs = range(first, first + n)
        chain_id = chains[0]
        one_chain = chains.count(chain_id) == n
        if one_chain:
            result.chains.add(chain_id)
        else:
            result.chains.update(chains)
        records = list(zip(seqs, chains, kinds, values, strict=True))
        result.source_events.extend(records)
        if result.events is not None:
            result.events.extend(records)
        life_kinds = result.life_kinds
        for kind in set(kinds):
            life_kinds[kind] = life_kinds.get(kind, 0) + kinds.count(kind)
        included = kinds.count(KIND_INCLUDED)
        if included:
            if not one_chain:  # (never from the writer's calls; by row)
                for c, k, f in zip(chains, kinds, figures, strict=True):
                    if k == KIND_INCLUDED:
                        result.life_latencies.setdefault(c, []).append(f)
            elif included == n:  # a block's inclusions only: C-level
                result.life_latencies.setdefault(chain_id, []).extend(figures)
            else:
                result.life_latencies.setdefault(chain_id, []).extend(
                    [f for k, f in zip(kinds, figures, strict=True) if k == KIND_INCLUDED])
        if included != n:
            result.life_other.extend([(c, k, f) for c, k, f in zip(chains, kinds, figures, strict=True)
                                      if k != KIND_INCLUDED])
        self._settle(chains, kinds, hashes, one_chain)
        return seqs[-1]

    def _settle(self, chains: list[int], kinds: list[int], hashes: list[bytes], one_chain: bool) -> None:
        """Takes the hashes settled by stored events out of :attr:`pending` (a REORG's empty hash is in no set)."""
        if one_chain:
            held = self.pending.get(chains[0])
            if held is not None:
                held.difference_update(hashes)
            return
        for chain_id, kind, tx_hash in zip(chains, kinds, hashes, strict=True):
            held = self.pending.get(chain_id)
            if held is not None and kind in _SETTLING:
                held.discard(tx_hash)

    def finish(self, write: LogWrite, last_seq: int, result: CommitResult) -> None:
        """Writes the restart floor of every chain this commit changed (the commit's last seq + 1 when the
        chain's state holds nothing), and their tracked pending counts into ``result``."""
        floors, counts, self.stats = self.engine.finish(last_seq)
        for chain_id, floor in floors.items():
            write.set_counter(agg_chain_key(chain_id, AGG_LIFE_FLOOR), floor)
        result.life_pending.update(counts)
        self.pending_counts.update(counts)

    # ---- restart -----------------------------------------------------------------------------------------

    def rebuild(self, eventlog: EventLog, counters: dict[bytes, int]) -> None:
        """Re-runs the tracker over the log from the lowest restart floor (module doc), in the engine's thread or
        process; then takes its pending sets and figures."""
        engine = self.engine
        if isinstance(engine, LifeEngine):
            assert eventlog.env is not None
            self.rebuild_s, self.rebuilt_events = engine.rebuild_env(eventlog.env, eventlog.events_db, counters)
        else:
            self.rebuild_s, self.rebuilt_events = engine.rebuild_path(str(eventlog.path), counters)  # type: ignore[attr-defined]
        self.pending = {chain_id: set(hashes) for chain_id, hashes in engine.pending_sets().items()}
        self.pending_counts = {chain_id: len(hashes) for chain_id, hashes in self.pending.items()}
        self.stats = engine.stats()
        self.stale = False

