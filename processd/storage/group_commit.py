"""The per-batch steps of a group commit, inside the writer's LMDB write transaction.

``claim_hashes`` deduplicates a prepared batch against the ``tx_hash`` index; ``append_events`` assigns its seqs,
puts its events and index entries and hands the stored batch to the :class:`CommitResult`. Both work on whole columns
(``processd.wire.columns``) with ``map``, ``zip`` and ``putmulti``: this is the part of processd that cannot run in
parallel, so it has no Python loop per transaction or event (event values come complete from preparation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lmdb

from processd.storage.eventlog import CHAIN_SEQ, U64
from processd.wire.columns import BatchColumns, keep_only

#: (seq, chain_id, TX_SEEN events value) of a stored transaction.
TxEntry = tuple[int, int, bytes]
#: (seq, chain_id, TX_DECODED events value) of a transaction's features.
FeatureEntry = tuple[int, int, bytes]
#: (seq, chain_id, score, OPP_DETECTED events value) of an opportunity.
OppEntry = tuple[int, int, int, bytes]
#: (seq, chain_id, kind, events value) of any event.
EventEntry = tuple[int, int, int, bytes]


@dataclass(slots=True)
class CommitResult:
    """What one committed write transaction changed, for the read models and subscribers."""

    last_seq: int
    committed_ns: int
    batches: int
    envelopes: int
    #: (first seq, columns) of every batch stored, in seq order. The read models' windows keep references to these
    #: columns and build entries (:data:`TxEntry`, :data:`FeatureEntry`) only when a query reads them
    #: (``processd.views.windows``): a commit may hold tens of thousands of transactions, a window a few thousand.
    stored: list[tuple[int, BatchColumns]] = field(default_factory=list)
    #: Transactions stored by this commit, and their opportunities.
    stored_txs: int = 0
    opportunities: list[OppEntry] = field(default_factory=list)
    #: Every event; None when nobody was subscribed at the start of the commit (the events are then only in LMDB).
    events: list[EventEntry] | None = field(default_factory=list)
    #: Chains with events in this commit.
    chains: set[int] = field(default_factory=set)
    first_seq: int = 0
    #: New values of the persisted counters this commit touched.
    aggregates: dict[bytes, int] = field(default_factory=dict)
    pruned_events: int = 0
    #: Transactions whose analysis raised (stored with category OTHER and decode_error set).
    analysis_errors: int = 0
    #: Sightings handled, by outcome (``processd.storage.writer.SIGHTING_OUTCOMES``).
    sightings: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0


def claim_hashes(txn: lmdb.Transaction, tx_db: lmdb._Database, cursor: lmdb.Cursor, columns: BatchColumns,
                 first: int) -> tuple[BatchColumns, list[bytes]]:
    """Dedup: puts every transaction's (chain, hash) -> TX_SEEN seq; returns the new ones and the TX_SEEN event
    values of the duplicates (whose source the writer records as a later sighting when it is another one).

    The usual batch has no duplicate: one ``putmulti`` with no-overwrite adds every key. When it added fewer,
    the keys it did add (their value is the seq assigned here) are taken back and the batch is redone without the
    duplicates (already stored, or twice in this batch), so seqs stay contiguous.
    """
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


def append_events(columns: BatchColumns, first: int, result: CommitResult,
                  events_cursor: lmdb.Cursor, chain_cursor: lmdb.Cursor, events: list[EventEntry] | None) -> None:
    """Puts the events and ``chain_seq`` entries of one deduplicated batch whose first seq is ``first`` and adds
    it to ``result``. Only C-level loops (``map``, ``zip``, ``putmulti``) per transaction and event.
    """
    values = columns.values
    seqs = range(first, first + len(values))
    chains = columns.chain
    seen_at = columns.seen_at
    # Seqs only grow, so the events db is appended to.
    events_cursor.putmulti(zip(map(U64.pack, seqs), values, strict=True), append=True)
    seen = list(map(first.__add__, seen_at))
    chain_cursor.putmulti(zip(map(CHAIN_SEQ.pack, chains, seen), columns.tx_kinds, strict=True))
    if events is not None:
        event_chains = [c for c, kinds in zip(chains, columns.tx_kinds, strict=True) for _ in kinds]
        events.extend(zip(seqs, event_chains, b"".join(columns.tx_kinds), values, strict=True))
    result.stored.append((first, columns))
    result.stored_txs += len(chains)
    if columns.opps:
        result.opportunities.extend([(first + offset, chain, score, values[offset])
                                     for offset, chain, score in columns.opps])
    result.chains.update(columns.last_event)
