"""The lifecycle's part of a commit: feeding the engine the commit's inputs, storing the events it answers, and
keeping the writer's copy of what is pending.

:class:`LifeWriter` runs in the single writer's thread, inside the write transaction (``processd.storage.writer``
calls it for each batch's stored transactions, blocks and TxGone reports, in seq order), so a lifecycle event is
committed with its cause under the same ack. The state and the encoding are the engine's
(:class:`processd.storage.lifeengine.LifeEngine`, in this thread, or the same in the lifecycle process:
:class:`processd.storage.lifeproc.LifeProcess`); this module assigns the seqs, puts the values and their index
entries (:meth:`processd.storage.logwrite.LogWrite.put_life_events`) and fills the commit's lifecycle figures.

A batch's stored transactions and a block are *sent* to the engine as the writer meets them, and the events they
cause are stored when the engine's answers are taken (:meth:`LifeWriter.drain`): at the commit's end
(:meth:`LifeWriter.finish`), in the order sent, after every event of the commit's batches; so with the engine in its
process the child tracks and encodes while the writer's thread puts the commit's other events (issue 16: waiting
for each answer put the child's work and the writer's end to end on the commit's critical path). A block's BLOCK
event keeps its place (its seq, ``chain_seq`` and ``blocks`` entries are written when it is met, so a copy of it
later in the commit is a duplicate); its value, which holds the tracker's figures, is put when its answer comes.
A TxGone report is the one input taken at once: what was sent before it is stored first, then its TX_DROPPED, so the
log's order of the tracker's inputs (TX_SEEN, BLOCK, an eviction's TX_DROPPED) is the order the engine took them,
which the rebuild replays. The state lives in memory: at start, and after an aborted write transaction left it
ahead of the log, it is rebuilt by re-running the tracker over the log from the lowest ``AGG_LIFE_FLOOR``
(:meth:`LifeWriter.rebuild`), which the commits keep current.

What is pending is asked by readers on the event loop (``GetTransaction``'s status, ``ListTransactions(status=)``,
the snapshot's pending count), where the engine may be in another process: :attr:`LifeWriter.pending` is a copy,
per tracked chain, of the hashes the tracker holds as pending, kept exact from the engine's answers (the hashes each
stored batch got tracked, minus those of every TX_INCLUDED, TX_REPLACED and TX_DROPPED; a reorg's answer is the
chain's whole set), and replaced whole by a rebuild.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, NamedTuple, Protocol

from common.pb.v1 import block_pb2
from processd.storage.eventlog import EventLog
from processd.storage.layout import (
    AGG_LIFE_FLOOR,
    KIND_BLOCK,
    KIND_DROPPED,
    KIND_INCLUDED,
    KIND_REPLACED,
    agg_chain_key,
)
from processd.storage.lifeengine import Gone, LifeEngine, LifeGroup, LifeStats
from processd.storage.logwrite import LogWrite
from processd.storage.records import CommitResult
from processd.wire.columns import BatchColumns

log = logging.getLogger(__name__)

__all__ = ["Engine", "Gone", "LifeWriter"]


class Engine(Protocol):
    """What the writer calls: :class:`LifeEngine` itself, or :class:`processd.storage.lifeproc.LifeProcess`. A batch's
    stored transactions and a block go by :meth:`send` (``"stored"``, ``"block"``: :meth:`LifeEngine.stored`,
    :meth:`LifeEngine.block`, answered by :meth:`receive` in order); the rest are called and answered at once."""

    def send(self, name: str, args: tuple[Any, ...]) -> None: ...

    def receive(self) -> Any: ...

    def discard(self) -> None: ...

    def gone(self, reports: list[Gone], received_ns: int) -> tuple[int, list[LifeGroup]]: ...

    def finish(self, last_seq: int) -> tuple[dict[int, int], dict[int, int], LifeStats]: ...

    def pending_sets(self) -> dict[int, list[bytes]]: ...

    def stats(self) -> LifeStats: ...


#: The kinds that settle a pending transaction (its hash leaves :attr:`LifeWriter.pending`).
_SETTLING = frozenset((KIND_INCLUDED, KIND_REPLACED, KIND_DROPPED))


class _SentBlock(NamedTuple):
    """A block sent to the engine, waiting for its answer (:meth:`LifeWriter.drain`): what its value needs, and where
    its records are in the commit's result."""

    block: block_pb2.BlockEnvelope
    seq: int
    received_ns: int
    seen_pending: int
    at_blocks: int
    at_source: int
    at_events: int  # (-1: no events list)


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
        #: The calls sent to the engine whose answers are not stored yet, in order: None for a batch's stored
        #: transactions, a :class:`_SentBlock` for a block (module doc).
        self._sent: deque[_SentBlock | None] = deque()
        #: Answers dropped since start because their write transaction was aborted (MapFull, a disk error) after
        #: its inputs were sent: the state was rebuilt instead.
        self.dropped_answers = 0

    def is_pending(self, chain_id: int, tx_hash: bytes) -> bool:
        """Whether the tracker holds the transaction as pending (a set lookup: safe beside the writer's thread)."""
        held = self.pending.get(chain_id)
        return held is not None and tx_hash in held

    # ---- inputs of a commit ------------------------------------------------------------------------------

    def stored(self, write: LogWrite, columns: BatchColumns, first: int, received_ns: int) -> None:
        """The transactions a batch stored at ``first``...: sent to the engine, tracked when their chain is (the
        replacements they cause are stored by :meth:`drain`)."""
        pending = self.pending
        if not pending or pending.keys().isdisjoint(columns.last_event):
            return
        seen_values = None
        if not columns.life:  # (columns built by hand: the engine parses the TX_SEEN values)
            self.parsed += len(columns.seen_at)
            seen_values = [columns.values[at] for at in columns.seen_at]
        self.engine.send("stored", (columns.chain, columns.seen_at, columns.life, seen_values, first, received_ns))
        self._sent.append(None)

    def block(self, write: LogWrite, block: block_pb2.BlockEnvelope, block_seq: int, received_ns: int,
              result: CommitResult, again: bool = False) -> None:
        """A new block at ``block_seq`` (``again``: a stored one the chain went back to,
        ``processd.storage.blockbranch``): indexed and counted now, sent to the engine; its value (which holds the
        tracker's figures) and the lifecycle events it causes are stored by :meth:`drain`. Its records in
        ``result`` are made now, in seq order, and filled in then."""
        seen_pending = write.index_block(block_seq, block, again)
        self.engine.send("block", (block.SerializeToString(), block_seq, received_ns))
        chain_id = block.chain_id
        sent = _SentBlock(block, block_seq, received_ns, seen_pending, len(result.blocks), len(result.source_events),
                          len(result.events) if result.events is not None else -1)
        result.blocks.append((block_seq, chain_id, b""))
        result.add_event(block_seq, chain_id, KIND_BLOCK, b"")
        self._sent.append(sent)
        self.pending.setdefault(chain_id, set())

    def drain(self, write: LogWrite, seq: int, result: CommitResult) -> int:
        """Takes the engine's answers to what was sent and stores them in the order sent, after ``seq``: a batch's
        replacements, a block's value and then its events. Returns the last seq used."""
        sent, engine, pending = self._sent, self.engine, self.pending
        while sent:
            item = sent.popleft()
            if item is None:
                group, added = engine.receive()
                for chain_id, hashes in added.items():
                    pending[chain_id].update(hashes)
            else:
                p50, included, group, snapshot = engine.receive()
                block = item.block
                value = write.put_block(item.seq, block, item.received_ns, item.seen_pending, p50, included,
                                        append=False)
                chain_id = block.chain_id
                result.blocks[item.at_blocks] = (item.seq, chain_id, value)
                record = (item.seq, chain_id, KIND_BLOCK, value)
                result.source_events[item.at_source] = record
                if item.at_events >= 0 and result.events is not None:
                    result.events[item.at_events] = record
                if snapshot is not None:  # a reorg put transactions back: the chain's set as the tracker holds it
                    pending[chain_id] = set(snapshot)  # (one rebinding: a reader never sees it half-filled)
            if group is not None:
                seq = self.store(write, group, seq, result)
        return seq

    def gone(self, write: LogWrite, gone: list[Gone], seq: int, received_ns: int,
             result: CommitResult) -> tuple[int, int]:
        """TxGone reports: a tracked transaction is dropped as evicted. What was sent before is stored first (a
        TX_DROPPED of an eviction is an input of the tracker's rebuild: its place among the log's TX_SEEN and BLOCK
        events must be where the engine took it). Returns (applied, last seq used)."""
        if not self.pending:
            return 0, seq
        seq = self.drain(write, seq, result)
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

    def finish(self, write: LogWrite, seq: int, result: CommitResult) -> int:
        """The commit's end: stores what is still owed (:meth:`drain`), then writes the restart floor of every chain
        this commit changed (the commit's last seq + 1 when the chain's state holds nothing), and their tracked
        pending counts into ``result``. Returns the commit's last seq."""
        seq = self.drain(write, seq, result)
        floors, counts, self.stats = self.engine.finish(seq)
        for chain_id, floor in floors.items():
            write.set_counter(agg_chain_key(chain_id, AGG_LIFE_FLOOR), floor)
        result.life_pending.update(counts)
        self.pending_counts.update(counts)
        return seq

    # ---- restart -----------------------------------------------------------------------------------------

    def rebuild(self, eventlog: EventLog, counters: dict[bytes, int]) -> None:
        """Re-runs the tracker over the log from the lowest restart floor (module doc), in the engine's thread or
        process; then takes its pending sets and figures."""
        engine = self.engine
        self.dropped_answers += len(self._sent)
        self._sent.clear()
        engine.discard()  # (answers to an aborted transaction's calls)
        if isinstance(engine, LifeEngine):
            assert eventlog.env is not None
            self.rebuild_s, self.rebuilt_events = engine.rebuild_env(eventlog.env, eventlog.events_db, counters)
        else:
            self.rebuild_s, self.rebuilt_events = engine.rebuild_path(str(eventlog.path), counters)  # type: ignore[attr-defined]
        self.pending = {chain_id: set(hashes) for chain_id, hashes in engine.pending_sets().items()}
        self.pending_counts = {chain_id: len(hashes) for chain_id, hashes in self.pending.items()}
        self.stats = engine.stats()
        self.stale = False

