"""The lifecycle's computing part, apart from the log's writes: the tracker fed a commit's inputs, and the lifecycle
events it derives encoded as the log stores them.

:class:`LifeEngine` holds the :class:`~processd.storage.lifecycle.LifecycleTracker` and answers each input of a
commit (a batch's stored transactions, a block, TxGone reports) with plain data: the events' values encoded
(:func:`processd.wire.lifeencoding.life_encode`), their kinds, chains, hashes and one figure each (:data:`LifeGroup`),
which ``processd.storage.lifewrite.LifeWriter`` puts into the write transaction at the seqs it assigns. Only lists,
bytes and ints go in and out, so the engine runs either in the writer's thread or in a process of its own
(``processd.storage.lifeproc``, ``--lifecycle-process``, the default), where the tracker's work and the encoding do
not hold processd's GIL (issue 16: they were ~60 % of the lifecycle's cost in the main process). Every answer is a
function of the inputs in the order they are given, wherever it runs.

Restart: :meth:`LifeEngine.rebuild_env` re-runs a fresh tracker over the log from the lowest restart floor
(``AGG_LIFE_FLOOR``), reading the events the state depends on (TX_SEEN, BLOCK, evicted TX_DROPPED);
:meth:`LifeEngine.rebuild_path` does it in a process that opens the environment read-only for the walk.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import deque
from collections.abc import Iterable, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any

import lmdb

from common.pb.v1 import block_pb2, events_pb2
from processd.storage.layout import (
    AGG_CHAIN,
    AGG_FIRST_BLOCK,
    AGG_LIFE_FLOOR,
    KIND_BLOCK,
    KIND_DROPPED,
    KIND_REORG,
    KIND_SEEN,
    U64,
    decode_event,
    seq_key,
)
from processd.storage.lifecycle import EVICTED, LifecycleTracker
from processd.storage.lifestate import HASH as _HASH
from processd.storage.lifestate import LifeEvent, Pending
from processd.wire.columns import LIFE_ROW
from processd.wire.lifeencoding import life_encode

log = logging.getLogger(__name__)

#: A validated TxGone: (chain_id, 32-byte hash, source id, seen unix ns).
Gone = tuple[int, bytes, str, int]
#: Lifecycle events to store at consecutive seqs, encoded: (values, kinds, chain ids, transaction hashes (b"" for
#: a REORG), the TX_SEEN seq each names (its ``tx_life_seq`` key's first part; -1 for a REORG: ints, which cost the
#: pipe to the lifecycle process less than packed keys, and the writer packs both parts of the key in one call),
#: figures). The figure of each event is what its consumers need: the inclusion latency (ms) of a TX_INCLUDED, the
#: DropReason of a TX_DROPPED, depth * 2 + too_deep of a REORG, 0 for a TX_REPLACED.
LifeGroup = tuple[list[bytes], list[int], list[int], list[bytes], list[int], list[int]]
#: What the engine's state counts, for the metrics: (tracked, replaced held, index entries, overflow since start).
LifeStats = tuple[int, int, int, int]

#: A lifecycle event's kind, chain and hash (C-level).
_KIND, _CHAIN, _THIRD = itemgetter(0), itemgetter(1), itemgetter(2)
#: A :class:`Pending` from its fields as one tuple (C-level: no Python call per stored transaction).
_new_pending = functools.partial(tuple.__new__, Pending)


def pending_of(value: bytes | memoryview, seq: int) -> tuple[int, Pending]:
    """(chain id, :class:`Pending`) of a stored TX_SEEN value at ``seq`` (one upb parse of the event)."""
    event = events_pb2.Event.FromString(memoryview(value)[1:])  # type: ignore[arg-type]
    tx = event.tx_seen.tx
    bid = tx.max_fee_per_gas or tx.gas_price
    cancel = tx.to == tx.sender and not tx.input and not tx.value.strip(b"\x00")
    return event.chain_id, Pending(event.first_seen_unix_ns, seq, event.tx_hash, tx.sender, tx.nonce,
                                   int.from_bytes(bid, "big"), cancel)


def pendings_of_rows(rows: Sequence[tuple[bytes, bytes, int, bytes, int, bool]], positions: Iterable[int],
                     first: int, seen_at: Sequence[int]) -> list[Pending]:
    """The :class:`Pending` s of the unpacked ``LIFE_ROW`` s at ``positions`` (the transaction at position ``t`` is
    stored at seq ``first + seen_at[t]``). A LIFE_ROW is (hash, sender, nonce, bid, first seen, cancel); a Pending
    starts with first seen and seq (its own expiry heap entry) and holds the bid as an int (32 bytes where the row's
    32-byte string takes 65: the tracker keeps one per tracked transaction)."""
    new, from_bytes = _new_pending, int.from_bytes
    return [new((seen, first + seen_at[t], h, sender, nonce, from_bytes(bid, "big"), cancel, False))
            for t in positions for h, sender, nonce, bid, seen, cancel in (rows[t],)]


def encode_group(events: list[LifeEvent], received_ns: int, source_id: str) -> LifeGroup:
    """``events`` as the log stores them (:data:`LifeGroup`): the values, the TX_SEEN seq each names and the figures
    from one walk of the bodies (:func:`processd.wire.lifeencoding.life_encode`), the rest C-level maps."""
    values, tx_seqs, figures = life_encode(events, received_ns, source_id)
    return values, list(map(_KIND, events)), list(map(_CHAIN, events)), list(map(_THIRD, events)), tx_seqs, figures


class LifeEngine:
    """The tracker and the encoding of what it derives (module doc). One instance per tracker state; not
    thread-safe (the writer's thread, or the lifecycle process's only thread)."""

    def __init__(self, ttl_ms: int = 3_600_000, max_pending: int = 200_000, max_reorg_depth: int = 64) -> None:
        self.knobs = (ttl_ms, max_pending, max_reorg_depth)
        self.tracker = LifecycleTracker(ttl_ms=ttl_ms, max_pending=max_pending, max_reorg_depth=max_reorg_depth)
        #: Chains whose state the commit in progress changed (their AGG_LIFE_FLOOR is written by :meth:`finish`).
        self._touched: set[int] = set()
        #: Answers of calls made by :meth:`send`, not yet taken by :meth:`receive`.
        self._answers: deque[Any] = deque()

    # ---- calls answered later (the writer's overlap: processd.storage.lifewrite) --------------------------------

    def send(self, name: str, args: tuple[Any, ...]) -> None:
        """Makes the call ``name(*args)`` (one of :meth:`stored`, :meth:`block`) whose answer :meth:`receive` gives,
        in the order of the calls. Here it is made at once; the lifecycle process (``processd.storage.lifeproc``)
        makes it while the writer's thread goes on."""
        self._answers.append(getattr(self, name)(*args))

    def receive(self) -> Any:
        """The answer of the oldest call :meth:`send` made that was not received yet."""
        return self._answers.popleft()

    def discard(self) -> None:
        """Drops the answers not received (their write transaction was aborted)."""
        self._answers.clear()

    # ---- inputs of a commit ------------------------------------------------------------------------------

    def stored(self, chain_col: list[int], seen_at: list[int], life: bytes, seen_values: list[bytes] | None,
               first: int, received_ns: int) -> tuple[LifeGroup | None, dict[int, list[bytes]]]:
        """A batch's stored transactions (the transaction at position ``t`` of the columns is stored at seq
        ``first + seen_at[t]``), tracked when their chain is: the events they cause (replacements, late inclusions)
        and, per chain, the hashes now tracked as pending.

        A transaction's fields come from ``life`` (the batch's packed ``LIFE_ROW`` s, read by preparation);
        columns without it (built by hand) give each TX_SEEN value in ``seen_values`` instead (the rebuild's way:
        the same values, ``tests/processd/test_lifecycle_encoding.py``)."""
        chains = self.tracker.chains
        if len(set(chain_col)) == 1:  # one chain: the usual batch
            runs: list[tuple[int, Sequence[int]]] = [(chain_col[0], range(len(chain_col)))]
        else:  # runs of consecutive transactions of one chain, in order (so the events keep the batch's order)
            runs = []
            for t, chain_id in enumerate(chain_col):
                if runs and runs[-1][0] == chain_id:
                    runs[-1][1].append(t)  # type: ignore[attr-defined]
                else:
                    runs.append((chain_id, [t]))
        rows: list[tuple[bytes, bytes, int, bytes, int, bool]] | None = None
        events: list[LifeEvent] = []
        added: dict[int, list[bytes]] = {}
        for chain_id, positions in runs:
            chain = chains.get(chain_id)
            if chain is None:
                continue
            if seen_values is None:
                if rows is None:
                    rows = list(LIFE_ROW.iter_unpack(life))
                txs = pendings_of_rows(rows, positions, first, seen_at)
            else:
                txs = [pending_of(seen_values[t], first + seen_at[t])[1] for t in positions]
            events += self.tracker.pending_many(chain_id, txs)
            pending = chain.pending
            added.setdefault(chain_id, []).extend([p[_HASH] for p in txs if pending.get(p[_HASH]) is p])
        if not events:
            return None, added
        self._touched.update(map(_CHAIN, events))
        return encode_group(events, received_ns, ""), added

    def block(self, raw: bytes, seq: int, received_ns: int
              ) -> tuple[int, int, LifeGroup | None, list[bytes] | None]:
        """A new block (a serialized ``BlockEnvelope``) stored at ``seq``: its BlockSeen figures (inclusion latency
        p50, tracked inclusions), the events it causes, and, when it undid a reorg (which puts transactions back),
        every hash its chain now tracks as pending (else None)."""
        block = block_pb2.BlockEnvelope.FromString(raw)
        outcome = self.tracker.block(block, seq)
        self._touched.add(block.chain_id)
        group = encode_group(outcome.events, received_ns, block.source_id) if outcome.events else None
        snapshot = None
        if group is not None and KIND_REORG in group[1]:
            snapshot = list(self.tracker.chains[block.chain_id].pending)
        return outcome.latency_p50_ms, outcome.included_tracked, group, snapshot

    def gone(self, reports: list[Gone], received_ns: int) -> tuple[int, list[LifeGroup]]:
        """TxGone reports: a tracked transaction is dropped as evicted. (applied, the events of each report that
        applied)."""
        groups: list[LifeGroup] = []
        applied = 0
        for chain_id, tx_hash, source_id, _ in reports:
            events = self.tracker.gone(chain_id, tx_hash, source_id)
            if events:
                applied += len(events)
                self._touched.add(chain_id)
                groups.append(encode_group(events, received_ns, source_id))
        return applied, groups

    def finish(self, last_seq: int) -> tuple[dict[int, int], dict[int, int], LifeStats]:
        """The commit's end: per chain it changed, the restart floor (the commit's last seq + 1 when the chain's
        state holds nothing) and the tracked pending count; and the state's figures."""
        tracker = self.tracker
        floors = tracker.floors(self._touched, last_seq + 1)
        counts = {chain_id: tracker.pending_count(chain_id) for chain_id in floors}
        self._touched.clear()
        return floors, counts, self.stats()

    def stats(self) -> LifeStats:
        """(tracked, replaced held, index entries, overflow since start)."""
        t = self.tracker
        return t.tracked, t.held, t.index_entries(), t.counts["overflow"]

    def pending_sets(self) -> dict[int, list[bytes]]:
        """Per tracked chain, every hash tracked as pending (the writer's copy after a rebuild)."""
        return {chain_id: list(life.pending) for chain_id, life in self.tracker.chains.items()}

    # ---- restart -----------------------------------------------------------------------------------------

    def rebuild_env(self, env: lmdb.Environment, events_db: Any, counters: dict[bytes, int]) -> tuple[float, int]:
        """Re-runs a fresh tracker over the log from the lowest restart floor in ``counters`` (module doc); the
        chains whose first block precedes that floor are tracked from the start. (seconds, events walked)."""
        started = time.perf_counter()
        ttl_ms, max_pending, depth = self.knobs
        self.tracker = tracker = LifecycleTracker(ttl_ms=ttl_ms, max_pending=max_pending, max_reorg_depth=depth)
        self._touched.clear()
        floors = _chain_values(counters, AGG_LIFE_FLOOR)
        if not floors:
            return time.perf_counter() - started, 0
        start = min(floors.values())
        for chain_id, first in _chain_values(counters, AGG_FIRST_BLOCK).items():
            if first < start:
                tracker.activate(chain_id)
        walked = 0
        with env.begin(buffers=True) as txn:
            cur = txn.cursor(db=events_db)
            positioned = cur.set_range(seq_key(start))
            while positioned:
                value = cur.value()
                kind = value[0]
                walked += 1
                if kind == KIND_SEEN:
                    chain_id, tx = pending_of(value, U64.unpack(cur.key())[0])
                    tracker.pending(chain_id, tx)
                elif kind == KIND_BLOCK:
                    seq = U64.unpack(cur.key())[0]
                    tracker.block(decode_event(value, seq).block.block, seq)
                elif kind == KIND_DROPPED:
                    event = decode_event(value, U64.unpack(cur.key())[0])
                    if event.tx_dropped.reason == EVICTED:
                        tracker.gone(event.chain_id, event.tx_hash, event.tx_dropped.source_id)
                positioned = cur.next()
        tracker.counts = dict.fromkeys(tracker.counts, 0)
        elapsed = time.perf_counter() - started
        log.info("lifecycle rebuilt from seq %d: %d events in %.3f s, %d pending tracked on %d chains", start,
                 walked, elapsed, tracker.tracked, len(tracker.chains))
        return elapsed, walked

    def rebuild_path(self, path: str, counters: dict[bytes, int]) -> tuple[float, int]:
        """:meth:`rebuild_env` on the environment at ``path``, opened read-only for the walk (in the lifecycle
        process: the writer's process holds the environment, and LMDB forbids opening it twice in one process)."""
        env = lmdb.open(str(Path(path)), readonly=True, lock=True, max_dbs=16, readahead=False)
        try:
            return self.rebuild_env(env, env.open_db(b"events", create=False), counters)
        finally:
            env.close()


def _chain_values(counters: dict[bytes, int], field: bytes) -> dict[int, int]:
    """Per chain, the value of one ``agg`` per-chain field."""
    return {U64.unpack(key[1:9])[0]: value for key, value in counters.items()
            if key[:1] == AGG_CHAIN and key[9:] == field}
