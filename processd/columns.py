"""A prepared batch in columns: the shape the single writer consumes with C-level loops.

``processd.prepare`` yields one tuple per transaction. The writer is the one part of processd that cannot run
in parallel, and a Python loop over transactions and events costs it more than its LMDB work, so the analysis
workers turn each prepared batch into columns (per-transaction and per-event lists) that the writer zips,
slices and hands to ``putmulti`` (see ``CommitWriter._commit``). Event offsets are positions among the batch's
events, in order: transaction ``i``'s events are ``seen_at[i]`` (TX_SEEN), ``seen_at[i] + 1`` (TX_DECODED) and
one OPP_DETECTED per opportunity after that.
"""

from __future__ import annotations

from typing import NamedTuple

from processd import encoding
from processd.prepare import PreparedBatch, PreparedTx

KIND_SEEN = encoding.KIND_SEEN
KIND_DECODED = encoding.KIND_DECODED
KIND_OPP = encoding.KIND_OPP

FeatureKey = tuple[int, int, str, bool]  # (chain, category, protocol, decoded)


class BatchColumns(NamedTuple):
    """One prepared batch as columns (cheap to pickle: a handful of flat lists)."""

    #: One byte per envelope of the batch: its REJECT_REASON_* (0 = valid).
    reasons: bytes
    #: Transactions whose analysis raised (stored undecoded).
    analysis_errors: int
    # ---- per valid transaction
    position: list[int]  # of the envelope in the batch
    chain: list[int]
    tx_key: list[bytes]  # tx_hash index key: chain (u64) + hash
    features: list[bytes]  # serialized TxFeatures
    seen_at: list[int]  # offset of its TX_SEEN event
    # ---- per event
    kinds: bytes  # event kind
    event_chain: list[int]
    #: ``encoding.event_rest`` of TX_SEEN / TX_DECODED events; empty for OPP_DETECTED (see ``opps``).
    rests: list[bytes]
    # ---- per batch
    #: (event offset, event header, serialized Opportunity without its seq_id) of every OPP_DETECTED event.
    opps: list[tuple[int, bytes, bytes]]
    #: The distinct feature-count keys, each transaction's position in it, and transactions per key.
    fkeys: list[FeatureKey]
    fkey_of: list[int]
    tally: dict[FeatureKey, int]
    #: Per chain: offset of its last event, and its number of opportunities.
    last_event: dict[int, int]
    opp_count: dict[int, int]


def to_columns(prepared: PreparedBatch) -> BatchColumns:
    """The columns of a :data:`~processd.prepare.PreparedBatch`."""
    reasons, txs, errors = prepared
    return _build(reasons, errors, txs)


def _build(reasons: bytes, errors: int, txs: list[PreparedTx]) -> BatchColumns:
    position: list[int] = []
    chain: list[int] = []
    tx_key: list[bytes] = []
    features: list[bytes] = []
    seen_at: list[int] = []
    kinds = bytearray()
    event_chain: list[int] = []
    rests: list[bytes] = []
    opps: list[tuple[int, bytes, bytes]] = []
    fkeys: list[FeatureKey] = []
    fkey_ids: dict[FeatureKey, int] = {}
    fkey_of: list[int] = []
    tally: dict[FeatureKey, int] = {}
    last_event: dict[int, int] = {}
    opp_count: dict[int, int] = {}
    seen_decoded = bytes((KIND_SEEN, KIND_DECODED))
    offset = 0
    for i, chain_id, key, seen_rest, decoded_rest, feature_bytes, fkey, tx_opps in txs:
        position.append(i)
        chain.append(chain_id)
        tx_key.append(key)
        features.append(feature_bytes)
        seen_at.append(offset)
        kinds += seen_decoded
        event_chain.append(chain_id)
        event_chain.append(chain_id)
        rests.append(seen_rest)
        rests.append(decoded_rest)
        fid = fkey_ids.get(fkey)
        if fid is None:
            fid = fkey_ids[fkey] = len(fkeys)
            fkeys.append(fkey)
        fkey_of.append(fid)
        tally[fkey] = tally.get(fkey, 0) + 1
        offset += 2
        if tx_opps is not None:
            header, bodies = tx_opps
            for body in bodies:
                opps.append((offset, header, body))
                kinds.append(KIND_OPP)
                event_chain.append(chain_id)
                rests.append(b"")
                offset += 1
            opp_count[chain_id] = opp_count.get(chain_id, 0) + len(bodies)
        last_event[chain_id] = offset - 1
    return BatchColumns(reasons, errors, position, chain, tx_key, features, seen_at, bytes(kinds), event_chain, rests,
                        opps, fkeys, fkey_of, tally, last_event, opp_count)


def keep_only(columns: BatchColumns, keep: list[bool]) -> BatchColumns:
    """The columns of the transactions whose ``keep`` flag is set (chain refused, duplicates: the rare path)."""
    return _build(columns.reasons, columns.analysis_errors,
                  [tx for tx, kept in zip(_rows(columns), keep, strict=True) if kept])


def _rows(c: BatchColumns) -> list[PreparedTx]:
    """Back to one tuple per transaction (the inverse of :func:`to_columns` for the valid transactions)."""
    opps_by_offset = {offset: (header, body) for offset, header, body in c.opps}
    rows: list[PreparedTx] = []
    n = len(c.position)
    for t in range(n):
        start = c.seen_at[t]
        end = c.seen_at[t + 1] if t + 1 < n else len(c.kinds)
        bodies = tuple(opps_by_offset[o][1] for o in range(start + 2, end))
        tx_opps = (opps_by_offset[start + 2][0], bodies) if bodies else None
        rows.append((c.position[t], c.chain[t], c.tx_key[t], c.rests[start], c.rests[start + 1], c.features[t],
                     c.fkeys[c.fkey_of[t]], tx_opps))
    return rows
