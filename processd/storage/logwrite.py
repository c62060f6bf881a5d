"""Every write of the event log's layout (``processd.storage.layout``), inside one LMDB write transaction.

The single writer (``processd.storage.writer``) decides what goes into a commit and when; :class:`LogWrite` is how
it goes into the log: hash claims (dedup), events and their ``chain_seq`` entries, sightings and their
``tx_sources`` entries, retention, the ``agg`` counters and ``meta.last_seq``. :class:`LogCounters` holds the
counters as last committed between commits.

Batches are written on whole columns (``processd.wire.columns``) with ``map``, ``zip`` and ``putmulti``: this is
the part of processd that cannot run in parallel, so it has no Python loop per transaction or event (event
values come complete from preparation). Sightings are a Python loop each, paid only by multi-source chains.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from common.pb.v1 import block_pb2, events_pb2, pool_pb2
from processd.storage.eventlog import EventLog
from processd.storage.layout import (
    AGG_BLOCK_TXS,
    AGG_BLOCKS,
    AGG_COMMITTED_NS,
    AGG_DECODED,
    AGG_DROPPED,
    AGG_FIRST_BLOCK,
    AGG_HIGH_WATER,
    AGG_INCLUDED,
    AGG_OPPS,
    AGG_POOL_STATES,
    AGG_PRIVATE,
    AGG_REORGS,
    AGG_REORGS_DEEP,
    AGG_REPLACED,
    AGG_RETAINED_TX,
    AGG_SOURCE,
    AGG_SOURCE_LATER,
    AGG_SOURCE_WINS,
    AGG_TX,
    CHAIN_SEQ,
    KIND_BLOCK,
    KIND_DROPPED,
    KIND_INCLUDED,
    KIND_POOL_STATE,
    KIND_REORG,
    KIND_REPLACED,
    KIND_SEEN,
    KIND_SOURCE,
    LIFE_KINDS,
    LIFE_SEQ,
    META_LAST_SEQ,
    TX_KEY_HASH_BYTES,
    U64,
    agg_chain_key,
    agg_feature_key,
    agg_source_key,
    block_key,
    decode_event,
    life_tx_seq,
    pool_key,
    tx_key,
)
from processd.wire.columns import BatchColumns, FeatureKey, keep_only
from processd.wire.encoding import (
    block_value,
    event_header,
    pool_state_value,
    source_seen_value,
)

log = logging.getLogger(__name__)

#: A validated TxSighting: (chain_id, 32-byte hash, source id, seen unix ns).
Sighting = tuple[int, bytes, str, int]
#: Where the counters of a chain's sources beyond ``max_sources_per_chain`` go (bounds the agg keys a client can
#: create with made-up source ids).
OTHER_SOURCES = "~other"
#: Outcomes of a sighting (label of ``mempulse_processd_sightings_total``); ``invalid`` is counted on receipt.
SIGHTING_OUTCOMES = ("stored", "repeat", "unknown_tx", "over_limit", "invalid")


#: The ``agg`` counter of each lifecycle kind.
_LIFE_AGG = {KIND_INCLUDED: AGG_INCLUDED, KIND_REPLACED: AGG_REPLACED, KIND_DROPPED: AGG_DROPPED,
             KIND_REORG: AGG_REORGS}
_KIND_BYTES = {kind: bytes((kind,)) for kind in _LIFE_AGG}


class LogCounters:
    """The ``agg`` counters as last committed, and the sources they are kept for (bounded per chain)."""

    def __init__(self, values: dict[bytes, int], max_sources_per_chain: int) -> None:
        self.values = values
        self.max_sources_per_chain = max_sources_per_chain
        self._chain_sources: dict[int, set[str]] = {}
        for key in values:
            if key[:1] == AGG_SOURCE:
                self._chain_sources.setdefault(U64.unpack(key[1:9])[0], set()).add(key[10:].decode("utf-8", "replace"))

    def source_label(self, chain_id: int, source_id: str) -> str:
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


def duplicate_sightings(tx_seen_values: list[bytes]) -> list[Sighting]:
    """(chain, hash, source, first seen) of duplicate envelopes, from their prepared TX_SEEN event values."""
    out: list[Sighting] = []
    for value in tx_seen_values:
        event = decode_event(value, 0)
        out.append((event.chain_id, event.tx_hash, event.source_id, event.first_seen_unix_ns))
    return out


class LogWrite:
    """One write transaction on the event log (begun here; :meth:`commit` or :meth:`abort` ends it).

    Counter changes are collected as deltas and written once, by :meth:`put_counters`.
    """

    def __init__(self, eventlog: EventLog, counters: LogCounters) -> None:
        env = eventlog.env
        assert env is not None
        self.log = eventlog
        self.counters = counters
        self.txn = env.begin(write=True)
        try:
            self._hash_cursor = self.txn.cursor(db=eventlog.tx_db)
            self._events_cursor = self.txn.cursor(db=eventlog.events_db)
            self._chain_cursor = self.txn.cursor(db=eventlog.chain_db)
        except BaseException:
            self.txn.abort()
            raise
        self._sources_cursor: Any = None
        self._life_cursor: Any = None
        self.deltas: dict[bytes, int] = {}
        #: Counters set (not added to) by this transaction: the lifecycle's restart marks.
        self.sets: dict[bytes, int] = {}
        self.high_water: dict[int, int] = {}
        #: Blocks indexed by this transaction whose value is not put yet, by seq (``processd.storage.blockbranch``
        #: reads a stored block's envelope from here first).
        self.unput_blocks: dict[int, block_pb2.BlockEnvelope] = {}
        # (chain, category, protocol, decoded, source) -> transactions; per-chain tx / decoded / feature counts
        # derive from it once per commit instead of several counter updates per transaction.
        self._feature_tally: dict[FeatureKey, int] = {}
        self._opp_tally: dict[int, int] = {}

    def commit(self) -> None:
        """Commits (fsync'd with ``--durability sync``)."""
        self.txn.commit()

    def abort(self) -> None:
        """Aborts: the log stays at its last commit."""
        self.txn.abort()

    # ---- batches -----------------------------------------------------------------------------------------

    def claim_hashes(self, columns: BatchColumns, first: int) -> tuple[BatchColumns, list[bytes]]:
        """Dedup: puts every transaction's (chain, hash) -> TX_SEEN seq; returns the new ones and the TX_SEEN event
        values of the duplicates (whose source the writer records as a later sighting when it is another one).

        The usual batch has no duplicate: one ``putmulti`` with no-overwrite adds every key. When it added fewer,
        the keys it did add (their value is the seq assigned here) are taken back and the batch is redone without
        the duplicates (already stored, or twice in this batch), so seqs stay contiguous.
        """
        txn, tx_db, cursor = self.txn, self.log.tx_db, self._hash_cursor
        u64 = U64.pack
        seqs = list(map(u64, map(first.__add__, columns.seen_at)))
        _, added = cursor.putmulti(zip(columns.tx_key, seqs, strict=True), dupdata=False, overwrite=False)
        if added == len(seqs):
            return columns, []
        # False: stored before this batch (or twice in it).
        keep = [txn.get(key, db=tx_db) == value for key, value in zip(columns.tx_key, seqs, strict=True)]
        for key, mine in zip(columns.tx_key, keep, strict=True):
            if mine:
                txn.delete(key, db=tx_db)
        duplicates = [columns.values[at] for at, mine in zip(columns.seen_at, keep, strict=True) if not mine]
        columns = keep_only(columns, keep)
        seqs = list(map(u64, map(first.__add__, columns.seen_at)))
        _, added = cursor.putmulti(zip(columns.tx_key, seqs, strict=True), dupdata=False, overwrite=False)
        assert added == len(seqs), "a transaction hash seen twice after removing duplicates"
        return columns, duplicates

    def append(self, columns: BatchColumns, first: int) -> None:
        """Puts the events and ``chain_seq`` entries of one deduplicated batch whose first seq is ``first``, and
        tallies its counters. Only C-level loops (``map``, ``zip``, ``putmulti``) per transaction and event."""
        values = columns.values
        seqs = range(first, first + len(values))
        # Seqs only grow, so the events db is appended to.
        self._events_cursor.putmulti(zip(map(U64.pack, seqs), values, strict=True), append=True)
        seen = list(map(first.__add__, columns.seen_at))
        self._chain_cursor.putmulti(zip(map(CHAIN_SEQ.pack, columns.chain, seen), columns.tx_kinds, strict=True))
        feature_tally, opp_tally, high_water = self._feature_tally, self._opp_tally, self.high_water
        for fkey, count in columns.tally.items():
            feature_tally[fkey] = feature_tally.get(fkey, 0) + count
        for chain_id, count in columns.opp_count.items():
            opp_tally[chain_id] = opp_tally.get(chain_id, 0) + count
        for chain_id, offset in columns.last_event.items():
            high_water[chain_id] = first + offset

    def count_stored(self) -> None:
        """Turns the tallies of the batches appended into ``agg`` deltas (once per commit, in plain ints)."""
        deltas = self.deltas
        chain_tally: dict[int, list[int]] = {}  # chain -> [txs, decoded]
        for (chain_id, category, protocol, decoded, source_id), n in self._feature_tally.items():
            k = agg_source_key(chain_id, AGG_SOURCE_WINS, self.counters.source_label(chain_id, source_id))
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
            for field_key, inc in ((AGG_TX, n_tx), (AGG_DECODED, n_decoded),
                                   (AGG_OPPS, self._opp_tally.get(chain_id, 0)), (AGG_RETAINED_TX, n_tx)):
                if inc:
                    k = agg_chain_key(chain_id, field_key)
                    deltas[k] = deltas.get(k, 0) + inc

    # ---- sightings ---------------------------------------------------------------------------------------

    def add_sighting(self, seq: int, sighting: Sighting, received_ns: int,
                     max_sources_per_tx: int) -> tuple[str, bytes]:
        """Stores ``sighting`` as a TX_SOURCE_SEEN event at ``seq`` if it is new: ``("stored", value)``; otherwise
        only its outcome (``unknown_tx``, ``repeat``: its first source or a (transaction, source) already stored,
        ``over_limit``: the transaction has ``max_sources_per_tx`` sources, the first included) and ``b""``."""
        chain_id, tx_hash, source_id, seen_ns = sighting
        txn, eventlog = self.txn, self.log
        key = tx_key(chain_id, tx_hash)
        raw = txn.get(key, db=eventlog.tx_db)
        seen_value = txn.get(raw, db=eventlog.events_db) if raw is not None else None
        if seen_value is None:
            return "unknown_tx", b""
        tx_seq = U64.unpack(raw)[0]  # type: ignore[arg-type]
        # (upb parses a whole TX_SEEN value, calldata and all, faster than Python reads its header fields)
        first = decode_event(seen_value, tx_seq)
        if first.tx_hash != tx_hash:  # only the 16-byte key prefix matched: not this transaction
            return "unknown_tx", b""
        source_key = key + source_id.encode()
        held = 1  # the first source, then the later ones under the transaction's key (one cursor seek)
        repeat = source_id == first.source_id
        cursor = self._sources_cursor
        if cursor is None:
            cursor = self._sources_cursor = txn.cursor(db=eventlog.sources_db)
        positioned = cursor.set_range(key)
        while positioned and not repeat and cursor.key()[:len(key)] == key:
            repeat = cursor.key() == source_key
            held += 1
            positioned = cursor.next()
        if repeat:
            return "repeat", b""
        if held >= max_sources_per_tx:
            return "over_limit", b""
        value = source_seen_value(event_header(chain_id, tx_hash, first.first_seen_unix_ns, received_ns, source_id),
                                  chain_id, tx_hash, source_id, seen_ns, tx_seq)
        txn.put(U64.pack(seq), value, db=eventlog.events_db, append=True)
        txn.put(CHAIN_SEQ.pack(chain_id, seq), bytes((KIND_SOURCE,)), db=eventlog.chain_db)
        txn.put(source_key, U64.pack(seen_ns), db=eventlog.sources_db)
        k = agg_source_key(chain_id, AGG_SOURCE_LATER, self.counters.source_label(chain_id, source_id))
        self.deltas[k] = self.deltas.get(k, 0) + 1
        self.high_water[chain_id] = seq
        return "stored", value

    # ---- blocks ------------------------------------------------------------------------------------------

    def has_block(self, block: block_pb2.BlockEnvelope) -> bool:
        """Whether ``block``'s (chain, number, hash) is stored already (a resend, or another ingestd's copy)."""
        return self.txn.get(block_key(block.chain_id, block.number, block.hash), db=self.log.blocks_db) is not None

    def add_block(self, seq: int, block: block_pb2.BlockEnvelope, received_ns: int, again: bool = False) -> bytes:
        """Stores ``block`` (not stored yet: :meth:`has_block`) as a BLOCK event at ``seq`` with no lifecycle figures
        (the lifecycle off); returns its value: its index entries and counts (:meth:`index_block`), then its value
        (:meth:`put_block`)."""
        return self.put_block(seq, block, received_ns, self.index_block(seq, block, again))

    def index_block(self, seq: int, block: block_pb2.BlockEnvelope, again: bool = False) -> int:
        """Everything of a new block's BLOCK event at ``seq`` but its value: its ``chain_seq`` and ``blocks`` entries
        (so :meth:`has_block` knows it at once) and counts. Returns its ``seen_pending``: how many of its transactions
        the ``tx_hash`` index holds now, at the block's place in the log (one ``getmulti`` of their keys: a block's
        transactions are bounded by ingestd's max_block_txs and processd's check); the others are counted as never
        seen pending (``AGG_PRIVATE``). ``again``: a stored block the chain went back to
        (``processd.storage.blockbranch``): its ``blocks`` entry moves to ``seq``, the counts stay (counted once)."""
        txn, eventlog = self.txn, self.log
        chain_id = block.chain_id
        hashes = [tx.hash for tx in block.txs]  # (each field read once: every upb read allocates)
        prefix = U64.pack(chain_id)  # (tx_key, inline)
        seen_pending = len(self._hash_cursor.getmulti([prefix + h[:TX_KEY_HASH_BYTES] for h in hashes]))
        txn.put(CHAIN_SEQ.pack(chain_id, seq), bytes((KIND_BLOCK,)), db=eventlog.chain_db)
        txn.put(block_key(chain_id, block.number, block.hash), U64.pack(seq), db=eventlog.blocks_db)
        self.unput_blocks[seq] = block
        self.high_water[chain_id] = seq
        if again:
            return seen_pending
        self._add(agg_chain_key(chain_id, AGG_BLOCKS), 1)
        self._add(agg_chain_key(chain_id, AGG_BLOCK_TXS), len(hashes))
        self._add(agg_chain_key(chain_id, AGG_PRIVATE), len(hashes) - seen_pending)
        first_key = agg_chain_key(chain_id, AGG_FIRST_BLOCK)
        if not self.counters.values.get(first_key) and first_key not in self.sets:
            self.sets[first_key] = seq
        return seen_pending

    def put_block(self, seq: int, block: block_pb2.BlockEnvelope, received_ns: int, seen_pending: int,
                  latency_p50_ms: int = 0, included_tracked: int = 0, append: bool = True) -> bytes:
        """The value of a block indexed at ``seq`` (:meth:`index_block`), put; returned. ``append``: ``seq`` is the
        log's end; else it is inserted below it (the lifecycle puts a block's value once the tracker's figures are
        in, after the events that follow the block in the same commit: ``processd.storage.lifewrite``)."""
        value = block_value(block, received_ns, seen_pending, latency_p50_ms, included_tracked)
        self.txn.put(U64.pack(seq), value, db=self.log.events_db, append=append)
        self.unput_blocks.pop(seq, None)
        return value

    # ---- pool states ------------------------------------------------------------------------------------

    def add_pool_state(self, seq: int, state: pool_pb2.PoolState, received_ns: int) -> bytes:
        """Stores ``state`` as a POOL_STATE event at ``seq`` unless its (chain, pair, block number, block hash) is in
        ``pools`` already; returns its value, or ``b""`` for a repeat (a resend, another ingestd's copy; the layout
        doc says why the reserves are not part of the key)."""
        txn, eventlog = self.txn, self.log
        chain_id = state.chain_id
        key = pool_key(chain_id, state.pair, state.block_number, state.block_hash)
        if txn.get(key, db=eventlog.pools_db) is not None:
            return b""
        value = pool_state_value(state, received_ns)
        txn.put(U64.pack(seq), value, db=eventlog.events_db, append=True)
        txn.put(CHAIN_SEQ.pack(chain_id, seq), bytes((KIND_POOL_STATE,)), db=eventlog.chain_db)
        txn.put(key, U64.pack(seq), db=eventlog.pools_db)
        k = agg_chain_key(chain_id, AGG_POOL_STATES)
        self.deltas[k] = self.deltas.get(k, 0) + 1
        self.high_water[chain_id] = seq
        return value

    def put_life_events(self, first_seq: int, values: list[bytes], kinds: list[int], chains: list[int],
                        tx_seqs: list[int], figures: list[int]) -> None:
        """Stores lifecycle events encoded by the engine (``processd.storage.lifeengine.LifeGroup``: values, kinds,
        chain ids, the TX_SEEN seq each names (-1 for a REORG), figures) at ``first_seq``, ``first_seq + 1``...:
        each its ``events`` value, its ``chain_seq`` entry, its ``tx_life_seq`` entry when it is about a
        transaction, its ``agg`` count; on whole lists (one ``putmulti`` per database, the counts once per (chain,
        kind)).

        The writer stores one chain's events per call (a batch's run of one chain, a block, a TxGone report): that
        case builds its keys with C-level maps only."""
        n = len(values)
        seq_keys = list(map(U64.pack, range(first_seq, first_seq + n)))
        kind_bytes = list(map(_KIND_BYTES.__getitem__, kinds))
        chain_id = chains[0]
        self._events_cursor.putmulti(zip(seq_keys, values, strict=True), append=True)
        if KIND_REORG in kinds or chains.count(chain_id) != n:
            self._index_life_events(first_seq, seq_keys, kinds, kind_bytes, chains, tx_seqs, figures)
        else:
            prefix = U64.pack(chain_id)  # (CHAIN_SEQ, inline: chain id, then seq)
            self._chain_cursor.putmulti(zip(map(prefix.__add__, seq_keys), kind_bytes, strict=True))
            self._life().putmulti(zip(map(LIFE_SEQ.pack, tx_seqs, range(first_seq, first_seq + n)), kind_bytes,
                                      strict=True))
            deltas = self.deltas
            for kind in set(kinds):
                key = agg_chain_key(chain_id, _LIFE_AGG[kind])
                deltas[key] = deltas.get(key, 0) + kinds.count(kind)
            self.high_water[chain_id] = first_seq + n - 1

    def _life(self) -> Any:
        """The write cursor of ``tx_life_seq`` (opened on first use)."""
        cursor = self._life_cursor
        if cursor is None:
            cursor = self._life_cursor = self.txn.cursor(db=self.log.life_seq_db)
        return cursor

    def _index_life_events(self, first_seq: int, seq_keys: list[bytes], kinds: list[int], kind_bytes: list[bytes],
                           chains: list[int], tx_seqs: list[int], figures: list[int]) -> None:
        """The index entries and counts of lifecycle events of several chains, or with a REORG among them (not about
        a transaction: no ``tx_life_seq`` entry; a too-deep one, odd figure, counted apart)."""
        seqs = range(first_seq, first_seq + len(seq_keys))
        self._chain_cursor.putmulti(zip(map(CHAIN_SEQ.pack, chains, seqs), kind_bytes, strict=True))
        life_keys = [(LIFE_SEQ.pack(tx, seq), kind)
                     for tx, seq, kind in zip(tx_seqs, seqs, kind_bytes, strict=True) if tx >= 0]
        if life_keys:
            self._life().putmulti(life_keys)
        deltas = self.deltas
        for (chain_id, kind), count in Counter(zip(chains, kinds, strict=True)).items():
            key = agg_chain_key(chain_id, _LIFE_AGG[kind])
            deltas[key] = deltas.get(key, 0) + count
        for chain_id, kind, figure in zip(chains, kinds, figures, strict=True):
            if kind == KIND_REORG and figure & 1:
                self._add(agg_chain_key(chain_id, AGG_REORGS_DEEP), 1)
        self.high_water.update(zip(chains, seqs, strict=True))  # (the last seq of each chain wins)

    def set_counter(self, key: bytes, value: int) -> None:
        """Sets an ``agg`` value (written by :meth:`put_counters`)."""
        self.sets[key] = value

    def _add(self, key: bytes, delta: int) -> None:
        if delta:
            self.deltas[key] = self.deltas.get(key, 0) + delta

    # ---- end of the transaction --------------------------------------------------------------------------

    def put_last_seq(self, seq: int) -> None:
        """``meta.last_seq``: written in the transaction that stores the events up to it."""
        self.txn.put(META_LAST_SEQ, U64.pack(seq), db=self.log.meta_db)

    def prune(self, last_seq: int, now_ns: int, added: int, max_events: int, max_age_ns: int) -> int:
        """Retention: deletes the oldest transactions (all their events) with their index entries; returns the
        events deleted.

        Bounded work per commit: it stops at the first transaction past the budget or within retention. A
        transaction goes whole, so the ``chain_seq`` entry (keyed by its TX_SEEN seq) never outlives events.
        """
        if not max_events and not max_age_ns:
            return 0
        txn, eventlog, deltas = self.txn, self.log, self.deltas
        budget = max(1024, 2 * added)
        cutoff_ns = now_ns - max_age_ns if max_age_ns else 0
        cur = txn.cursor(db=eventlog.events_db)
        positioned = cur.first()
        pruned = 0
        while positioned:
            value = cur.value()
            if value[0] == KIND_BLOCK or value[0] == KIND_POOL_STATE:
                # a block or a pool state is a unit of its own, pruned by the same rules, or stop here
                seq = U64.unpack(cur.key())[0]
                event = decode_event(value, seq)
                over_count = max_events and last_seq - seq + 1 > max_events
                if pruned >= budget or not (over_count or (cutoff_ns and event.received_unix_ns < cutoff_ns)):
                    break
                self._unindex_unit(event)
            elif value[0] == KIND_SEEN:  # a transaction starts: prune it whole, or stop here
                seq = U64.unpack(cur.key())[0]
                over_count = max_events and last_seq - seq + 1 > max_events
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
            elif value[0] in LIFE_KINDS:  # a lifecycle event: its own entries
                event = decode_event(value, U64.unpack(cur.key())[0])
                txn.delete(CHAIN_SEQ.pack(event.chain_id, event.seq_id), db=eventlog.chain_db)
                if event.tx_hash:  # (its entry is in tx_life_seq, or in tx_life for a log written before it)
                    if not txn.delete(LIFE_SEQ.pack(life_tx_seq(event), event.seq_id), db=eventlog.life_seq_db):
                        txn.delete(tx_key(event.chain_id, event.tx_hash) + U64.pack(event.seq_id), db=eventlog.life_db)
            # Any other event belongs to the transaction just pruned (a transaction's events are contiguous; a
            # sighting always follows its own transaction, so one met here is as old as the pruned ones).
            positioned = cur.delete() and bool(cur.key())
            pruned += 1
        return pruned

    def _unindex_unit(self, event: events_pb2.Event) -> None:
        """Deletes the index entries of a pruned BLOCK or POOL_STATE event (its ``chain_seq`` entry and its
        ``blocks`` or ``pools`` key)."""
        self.txn.delete(CHAIN_SEQ.pack(event.chain_id, event.seq_id), db=self.log.chain_db)
        if event.kind == KIND_BLOCK:
            block = event.block.block
            key = block_key(event.chain_id, block.number, block.hash)
            held = self.txn.get(key, db=self.log.blocks_db)
            if held is not None and U64.unpack(held)[0] == event.seq_id:  # (not when the entry moved to a later
                self.txn.delete(key, db=self.log.blocks_db)  # copy: a block the chain went back to, blockbranch)
        else:
            state = event.pool_state.state
            self.txn.delete(pool_key(event.chain_id, state.pair, state.block_number, state.block_hash),
                            db=self.log.pools_db)

    def put_counters(self, committed_ns: int) -> dict[bytes, int]:
        """Writes the counters this transaction changed (deltas, per-chain high water and commit time); returns
        their new values (:meth:`LogCounters.values` takes them once the commit succeeded)."""
        agg_db = self.log.agg_db
        old = self.counters.values
        new_values: dict[bytes, int] = {}
        for key, delta in self.deltas.items():
            new_values[key] = max(0, old.get(key, 0) + delta)
        new_values.update(self.sets)
        for chain_id, hw in self.high_water.items():
            new_values[agg_chain_key(chain_id, AGG_HIGH_WATER)] = hw
            new_values[agg_chain_key(chain_id, AGG_COMMITTED_NS)] = committed_ns
        for key, value in new_values.items():
            self.txn.put(key, U64.pack(value), db=agg_db)
        return new_values
