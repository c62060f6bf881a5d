"""The per-batch steps of a group commit, inside the writer's LMDB write transaction.

``claim_hashes`` deduplicates a prepared batch against the ``tx_hash`` index; ``append_events`` assigns its seqs,
puts its events and index entries and adds its entries to the :class:`CommitResult`. Both work on whole columns
(``processd.columns``) with comprehensions, zips and ``putmulti``: this is the part of processd that cannot run
in parallel, so it avoids a Python loop per transaction or event.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lmdb

from common.pb.v1 import events_pb2
from processd import encoding
from processd.columns import BatchColumns, keep_only
from processd.eventlog import CHAIN_SEQ, KIND_OPP, U64


@dataclass(slots=True)
class CommitResult:
    """What one committed write transaction changed, for the read models and subscribers."""

    last_seq: int
    committed_ns: int
    batches: int
    envelopes: int
    #: (seq, chain_id, TX_SEEN events value) of newly stored transactions.
    txs: list[tuple[int, int, bytes]] = field(default_factory=list)
    #: (seq, chain_id, tx_hash, serialized TxFeatures) of their TX_DECODED events.
    features: list[tuple[int, int, bytes, bytes]] = field(default_factory=list)
    opportunities: list[events_pb2.Opportunity] = field(default_factory=list)
    #: (seq, chain_id, kind, value) of every event, value = kind byte + Event bytes; None when nobody was
    #: subscribed at the start of the commit (the events are then only in LMDB).
    events: list[tuple[int, int, int, bytes]] | None = field(default_factory=list)
    first_seq: int = 0
    #: New values of the persisted counters this commit touched.
    aggregates: dict[bytes, int] = field(default_factory=dict)
    pruned_events: int = 0
    #: Transactions whose analysis raised (stored with category OTHER and decode_error set).
    analysis_errors: int = 0
    duration_s: float = 0.0


def claim_hashes(txn: lmdb.Transaction, tx_db: lmdb._Database, cursor: lmdb.Cursor, columns: BatchColumns,
                 first: int) -> tuple[BatchColumns, int]:
    """Dedup: puts every transaction's (chain, hash) -> TX_SEEN seq; returns the new ones and the duplicate count.

    The usual batch has no duplicate: one ``putmulti`` with no-overwrite adds every key. When it added fewer,
    the keys it did add (their value is the seq assigned here) are taken back and the batch is redone without the
    duplicates (already stored, or twice in this batch), so seqs stay contiguous.
    """
    u64 = U64.pack
    items = [(key, u64(first + offset)) for key, offset in zip(columns.tx_key, columns.seen_at, strict=True)]
    _, added = cursor.putmulti(items, dupdata=False, overwrite=False)
    if added == len(items):
        return columns, 0
    keep = [txn.get(key, db=tx_db) == value for key, value in items]  # False: stored before (or twice here)
    for (key, _), mine in zip(items, keep, strict=True):
        if mine:
            txn.delete(key, db=tx_db)
    columns = keep_only(columns, keep)
    items = [(key, u64(first + offset)) for key, offset in zip(columns.tx_key, columns.seen_at, strict=True)]
    _, added = cursor.putmulti(items, dupdata=False, overwrite=False)
    assert added == len(items), "a transaction hash seen twice after removing duplicates"
    return columns, len(keep) - len(items)


_FLAGS = [bytes((kind,)) for kind in range(256)]


def append_events(columns: BatchColumns, first: int, result: CommitResult,
                  events_cursor: lmdb.Cursor, chain_cursor: lmdb.Cursor,
                  events: list[tuple[int, int, int, bytes]] | None) -> None:
    """Event values, index entries and read-model entries of one deduplicated batch whose first seq is ``first``.

    Comprehensions and zips instead of a loop per event: this is the part of processd that runs on one core.
    """
    kinds = columns.kinds
    seqs = range(first, first + len(kinds))
    prefix = encoding.SEQ_PREFIX
    if first >= 16384 and seqs[-1] < 268435456:  # encoding.with_seq inlined: two table lookups per seq
        table = encoding.VARINT_TABLE
        cont14 = encoding.CONT14_TABLE
        values = [b"".join((prefix[k], cont14[s & 0x3FFF], table[s >> 14], r))
                  for k, s, r in zip(kinds, seqs, columns.rests, strict=True)]
    else:
        with_seq = encoding.with_seq
        values = [with_seq(s, k, r) for k, s, r in zip(kinds, seqs, columns.rests, strict=True)]
    if columns.opps:
        varint = encoding.varint
        parse_opportunity = events_pb2.Opportunity.FromString
        for offset, header, body in columns.opps:
            s = first + offset
            inner = body + encoding.OPP_SEQ_TAG + varint(s)  # seq_id is Opportunity's last field
            values[offset] = encoding.event_value(s, KIND_OPP, header, inner)
            result.opportunities.append(parse_opportunity(inner))
    u64 = U64.pack
    chain_seq = CHAIN_SEQ.pack
    # Straight into LMDB, batch by batch (seqs only grow, so the events db is appended to): no list of
    # (key, value) tuples for the whole group is built and kept.
    events_cursor.putmulti(zip([u64(s) for s in seqs], values, strict=True), append=True)
    ch_keys = [chain_seq(c, s) for c, s in zip(columns.event_chain, seqs, strict=True)]
    chain_cursor.putmulti(zip(ch_keys, [_FLAGS[k] for k in kinds], strict=True))
    if events is not None:
        events.extend(zip(seqs, columns.event_chain, kinds, values, strict=True))
    seen = [first + offset for offset in columns.seen_at]
    result.txs.extend(zip(seen, columns.chain, [values[offset] for offset in columns.seen_at], strict=True))
    result.features.extend(zip([s + 1 for s in seen], columns.chain, [key[8:] for key in columns.tx_key],
                               columns.features, strict=True))
