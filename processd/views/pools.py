"""The pool read model (issue 17): the latest reserves of each Uniswap V2-style pair, per (chain, pair), as of which
block, for the valuation to read (``lookup``).

Fed with ``PoolState`` bodies (``proto/common/pb/v1/pool.proto``) in log order: a state replaces the one held when
its block is higher, or at the same height with another hash (a reorg: the later one stored wins); the same
(block, hash) again, or an older block, is ``stale`` and leaves the state as it is, so applying the same sequence
again (a replay of the log, a restart's rebuild) gives the same read model. Malformed bodies are counted, never
applied. Bounded: ``max_pairs`` pairs, the least recently updated evicted (counted).

Fed from the log: the writer stores each pool state as an ``EVENT_KIND_POOL_STATE`` event (``Event.pool_state``,
field 19) in the batch's commit, and after the commit the read models apply the commit's states in seq order
(:meth:`PoolView.add`); at start :meth:`PoolView.rebuild` gives what applying every retained POOL_STATE event in
seq order gives, reading one event per pair (one walk of the ``pools`` index finds each pair's newest), so a
restart, kill -9 included, holds what the live view held, and a replay of the log gives the same view. Retention
prunes POOL_STATE events like blocks: a pair whose states were all pruned is held by the live view until it is
evicted or replaced, but not after a restart. processd never reads pool state from the node.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field

import lmdb

from common.pb.v1 import pool_pb2
from processd.storage.eventlog import U64, EventLog, decode_event, seq_key
from processd.storage.records import PoolStateEntry

#: Largest chain id (``common.chains.MAX_CHAIN_ID``), repeated so that the read model imports only the contract.
_MAX_CHAIN_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class PoolReserves:
    """One pair's reserves after ``block_number`` (addresses 20 raw bytes; ``token0 < token1``)."""

    chain_id: int
    pair: bytes
    token0: bytes
    token1: bytes
    reserve0: int
    reserve1: int
    block_number: int


@dataclass(slots=True)
class PoolCounters:
    """What :meth:`PoolView.apply` did, by outcome."""

    applied: int = 0
    stale: int = 0
    malformed: int = 0
    evicted: int = 0


@dataclass
class PoolView:
    """Latest reserves per (chain, pair) (module doc)."""

    max_pairs: int = 100_000
    counters: PoolCounters = field(default_factory=PoolCounters)
    _held: OrderedDict[tuple[int, bytes], tuple[PoolReserves, bytes]] = field(default_factory=OrderedDict)

    def __len__(self) -> int:
        return len(self._held)

    def apply(self, state: pool_pb2.PoolState) -> bool:
        """Takes ``state`` if it is newer than the one held (module doc); whether it was taken."""
        if not well_formed(state):
            self.counters.malformed += 1
            return False
        key = (state.chain_id, bytes(state.pair))
        held = self._held.get(key)
        if held is not None:
            reserves, block_hash = held
            if state.block_number < reserves.block_number or (
                    state.block_number == reserves.block_number and state.block_hash == block_hash):
                self.counters.stale += 1
                return False
            del self._held[key]  # re-inserted last: the most recently updated
        elif len(self._held) >= self.max_pairs:
            self._held.popitem(last=False)
            self.counters.evicted += 1
        self._held[key] = (PoolReserves(state.chain_id, key[1], bytes(state.token0), bytes(state.token1),
                                        int.from_bytes(state.reserve0, "big"), int.from_bytes(state.reserve1, "big"),
                                        state.block_number), bytes(state.block_hash))
        self.counters.applied += 1
        return True

    def add(self, entries: list[PoolStateEntry]) -> None:
        """Applies a commit's stored POOL_STATE events (in seq order)."""
        for seq, _, value in entries:
            self.apply(decode_event(value, seq).pool_state.state)

    def rebuild(self, eventlog: EventLog) -> int:
        """Fills the model from the log (at start, before any commit); returns the events read.

        What applying every retained POOL_STATE event in seq order would hold, reading only one event per pair:
        a pair ends with the state of its highest block, and of the states at that height the one stored last
        (same height, another hash: a reorg replaces; the same hash is never stored twice). One walk of the
        ``pools`` index (keyed chain, pair, number, hash; values are seqs) finds each pair's (number, seq) maximum;
        those events are applied in seq order, so the eviction order is the live model's too. (Only a model that
        evicted a pair and later took an older state of it again can differ from its rebuild: it then holds
        that older state, the rebuild the newest.)"""
        def read(txn: lmdb.Transaction) -> list[pool_pb2.PoolState]:
            best: dict[bytes, tuple[int, int]] = {}
            for key, value in txn.cursor(db=eventlog.pools_db):
                pair_key, number, seq = bytes(key[:28]), U64.unpack(key[28:36])[0], U64.unpack(value)[0]
                held = best.get(pair_key)
                if held is None or (number, seq) > held:
                    best[pair_key] = (number, seq)
            states = []
            for seq in sorted(seq for _, seq in best.values()):
                raw = txn.get(seq_key(seq), db=eventlog.events_db)
                if raw is not None:
                    states.append(decode_event(raw, seq).pool_state.state)
            return states
        states = eventlog.read(read)
        for state in states:
            self.apply(state)
        return len(states)

    def digest_into(self, h: hashlib._Hash) -> None:
        """Adds the held reserves (sorted by chain and pair) to a read-model digest."""
        for (chain_id, pair), (r, block_hash) in sorted(self._held.items()):
            h.update(b"P" + U64.pack(chain_id) + pair + r.token0 + r.token1 + U64.pack(r.block_number) + block_hash
                     + r.reserve0.to_bytes(32, "big") + r.reserve1.to_bytes(32, "big"))

    def lookup(self, chain_id: int, pair: bytes) -> PoolReserves | None:
        """The reserves held for ``pair`` (20 bytes) on ``chain_id``, or None when none are known."""
        held = self._held.get((chain_id, pair))
        return held[0] if held is not None else None


def well_formed(state: pool_pb2.PoolState) -> bool:
    """Whether ``state`` can be stored and applied: a chain id, 20-byte addresses (``token0 < token1``), reserves
    of at most 32 bytes, a 32-byte block hash (what the pipeline checks before the writer stores a pool state)."""
    return (0 < state.chain_id <= _MAX_CHAIN_ID and len(state.pair) == 20 and len(state.factory) == 20
            and len(state.token0) == 20 and len(state.token1) == 20 and state.token0 < state.token1
            and len(state.reserve0) <= 32 and len(state.reserve1) <= 32 and len(state.block_hash) == 32)
