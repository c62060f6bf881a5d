"""Incremental, bounded read models: updated on every commit, rebuilt from the log at start.

Counters (per-chain totals, feature summary) mirror the ``agg`` database, which the writer updates in the
same transaction as the events, so they never need a recount. Windows (recent transactions, recent features,
opportunities) are rebuilt by walking the newest events backwards until every window is full. A snapshot reads
only these structures: its cost depends on the requested limits, never on the size of the log.
"""

from __future__ import annotations

import hashlib
import logging
import operator
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import chain, compress, repeat

from common.pb.v1 import events_pb2, ingest_pb2, query_pb2
from processd.columns import BatchColumns
from processd.eventlog import (
    AGG_CHAIN,
    AGG_COMMITTED_NS,
    AGG_DECODED,
    AGG_FEATURE,
    AGG_HIGH_WATER,
    AGG_OPPS,
    AGG_RETAINED_TX,
    AGG_TX,
    KIND_DECODED,
    KIND_OPP,
    KIND_SEEN,
    U64,
    EventLog,
    decode_event,
)
from processd.group_commit import CommitResult, FeatureEntry, OppEntry, TxEntry

log = logging.getLogger(__name__)

# The windows keep events values (exact size) and parse them when queried: a message parsed out of an ingest
# batch would keep that whole batch alive, and most entries leave their window without ever being read.


class OpportunityWindow:
    """The newest ``maxlen`` opportunities (:data:`OppEntry`), read best first: score desc, then seq desc.

    Commits only append to a bounded deque (C-level, no Python work per opportunity); the ranking is sorted when
    a query asks for it, at most once per change and over at most ``maxlen`` entries (a few ms for 5,000), so
    ingest never pays for rankings nobody reads. An opportunity is parsed only when a query returns it.
    """

    def __init__(self, maxlen: int) -> None:
        self.maxlen = maxlen
        self._by_age: deque[OppEntry] = deque(maxlen=maxlen)
        self._ranked: list[OppEntry] | None = []

    def __len__(self) -> int:
        return len(self._by_age)

    def add(self, opp: OppEntry) -> None:
        self._by_age.append(opp)
        self._ranked = None

    def extend(self, opps: list[OppEntry]) -> None:
        """Adds opportunities in seq order (the oldest leave the window)."""
        if opps:
            self._by_age.extend(opps)
            self._ranked = None

    def _ranking(self) -> list[OppEntry]:
        ranked = self._ranked
        if ranked is None:
            ranked = self._ranked = sorted(self._by_age, key=_SCORE_THEN_SEQ, reverse=True)
        return ranked

    def top(self, limit: int, min_score: int = 0) -> list[events_pb2.Opportunity]:
        """Best first, newer first among equal scores; stops at the first score below ``min_score``."""
        out: list[events_pb2.Opportunity] = []
        for seq, _, score, value in self._ranking():
            if score < min_score or len(out) >= limit:
                break
            out.append(decode_event(value, seq).opp_detected.opportunity)
        return out

    def seqs(self) -> list[int]:
        """The seqs of the window, best first."""
        return [entry[0] for entry in self._ranking()]


_SCORE_THEN_SEQ = operator.itemgetter(2, 0)
_SEQ = operator.itemgetter(0)


def _newest_entries(chunks: list[tuple[int, list[bytes], list[int]]], chain_id: int, limit: int,
                    event: int) -> list[tuple[int, int, bytes]]:
    """(seq, chain, value) of the newest ``limit`` transactions' TX_SEEN (``event`` 0) or TX_DECODED (1) events,
    ascending; ``chunks`` are (batch first seq, batch values, TX_SEEN offsets ascending), newest batch first."""
    parts: list[list[tuple[int, int, bytes]]] = []
    for first, values, offsets in chunks:
        if limit <= 0:
            break
        if len(offsets) > limit:
            offsets = offsets[-limit:]
        limit -= len(offsets)
        if event:
            offsets = list(map(event.__add__, offsets))
        parts.append(list(zip(map(first.__add__, offsets), repeat(chain_id), map(values.__getitem__, offsets))))
    if len(parts) == 1:
        return parts[0]
    return list(chain.from_iterable(reversed(parts)))


@dataclass(slots=True)
class ChainView:
    """The bounded per-chain windows and the in-memory reject counters of one chain."""

    txs: deque[TxEntry]
    features: deque[FeatureEntry]
    opportunities: OpportunityWindow
    rejected: dict[int, int] = field(default_factory=dict)


class ReadModels:
    """All read models of processd. Mutated only on the event loop thread (commit results, ingest stats)."""

    def __init__(self, recent_tx: int = 2000, recent_features: int = 2000, opportunity_window: int = 5000,
                 max_ingest_stats: int = 1024) -> None:
        self.recent_tx = recent_tx
        self.recent_features = recent_features
        self.opportunity_window = opportunity_window
        self.max_ingest_stats = max_ingest_stats
        self.chains: dict[int, ChainView] = {}
        self.all_txs: deque[TxEntry] = deque(maxlen=recent_tx)
        self.all_features: deque[FeatureEntry] = deque(maxlen=recent_features)
        self.all_opportunities = OpportunityWindow(opportunity_window)
        self.counters: dict[bytes, int] = {}
        self.last_seq = 0
        self.last_committed_ns = 0
        #: Latest ChainIngestStats per (session_id, chain_id), for sessions with an open stream.
        self.ingest_stats: dict[tuple[str, int], ingest_pb2.ChainIngestStats] = {}
        self.ingest_stats_evicted = 0

    # ---- updates -----------------------------------------------------------------------------------------

    def chain(self, chain_id: int) -> ChainView:
        view = self.chains.get(chain_id)
        if view is None:
            view = ChainView(deque(maxlen=self.recent_tx), deque(maxlen=self.recent_features),
                             OpportunityWindow(self.opportunity_window))
            self.chains[chain_id] = view
        return view

    def apply(self, result: CommitResult) -> None:
        """Folds one committed transaction into the models (O(window sizes), whatever the size of the commit)."""
        self._add_committed(result.stored)
        self._add_opportunities(result.opportunities)
        self.counters.update(result.aggregates)
        for key in result.aggregates:
            if key[:1] == AGG_CHAIN:
                self.chain(U64.unpack(key[1:9])[0])
        if result.last_seq > self.last_seq:
            self.last_seq = result.last_seq
            self.last_committed_ns = result.committed_ns

    def _add_committed(self, stored: list[tuple[int, BatchColumns]]) -> None:
        # Only the newest transactions of a commit can stay in a window (a commit may hold tens of thousands), so
        # entries are built only for those: per chain, walking the commit's batches newest first (ingestd sends a
        # chain per batch: then a batch's newest transactions are a slice), with C-level loops per transaction.
        recent_tx = self.recent_tx
        recent_features = self.recent_features
        keep = max(recent_tx, recent_features)
        picked: dict[int, list[tuple[int, list[bytes], list[int]]]] = {}  # chain -> (first, values, offsets)
        counts: dict[int, int] = {}
        for first, columns in reversed(stored):
            for chain_id in columns.last_event:
                have = counts.get(chain_id, 0)
                if have >= keep:
                    continue
                if len(columns.last_event) == 1:
                    offsets = columns.seen_at[have - keep:]
                else:
                    offsets = list(compress(columns.seen_at, map(chain_id.__eq__, columns.chain)))[have - keep:]
                counts[chain_id] = have + len(offsets)
                picked.setdefault(chain_id, []).append((first, columns.values, offsets))
        all_txs: list[list[TxEntry]] = []
        all_features: list[list[FeatureEntry]] = []
        for chain_id, chunks in picked.items():
            view = self.chain(chain_id)
            txs = _newest_entries(chunks, chain_id, recent_tx, 0)
            features = _newest_entries(chunks, chain_id, recent_features, 1)
            view.txs.extend(txs)
            view.features.extend(features)
            all_txs.append(txs)
            all_features.append(features)
        if len(all_txs) == 1:
            self.all_txs.extend(all_txs[0])
            self.all_features.extend(all_features[0])
        elif all_txs:
            # The newest of all chains: each chain's list is ascending, so the sort is a merge of runs.
            self.all_txs.extend(sorted(chain.from_iterable(all_txs), key=_SEQ)[-recent_tx:])
            self.all_features.extend(sorted(chain.from_iterable(all_features), key=_SEQ)[-recent_features:])

    def _add_entries(self, txs: list[TxEntry], features: list[FeatureEntry], opportunities: list[OppEntry]) -> None:
        # The rebuild's entries (windows filled per chain, so txs and features need not line up).
        get = self.chains.get
        for entry in txs:
            (get(entry[1]) or self.chain(entry[1])).txs.append(entry)
        self.all_txs.extend(txs)
        for fentry in features:
            (get(fentry[1]) or self.chain(fentry[1])).features.append(fentry)
        self.all_features.extend(features)
        self._add_opportunities(opportunities)

    def _add_opportunities(self, opps: list[OppEntry]) -> None:
        if not opps:
            return
        self.all_opportunities.extend(opps)
        by_chain: dict[int, list[OppEntry]] = {}
        for opp in opps:
            chain_opps = by_chain.get(opp[1])
            if chain_opps is None:
                chain_opps = by_chain[opp[1]] = []
            chain_opps.append(opp)
        for chain_id, chain_opps in by_chain.items():
            self.chain(chain_id).opportunities.extend(chain_opps)

    def count_reject(self, chain_id: int, reason: int, count: int = 1) -> None:
        """Counts envelopes rejected for ``chain_id`` (only chains already known or valid ids get a view)."""
        rejected = self.chain(chain_id).rejected
        rejected[reason] = rejected.get(reason, 0) + count

    def update_ingest_stats(self, session_id: str, stats: Iterable[ingest_pb2.ChainIngestStats]) -> None:
        """Keeps the latest counters per (session, chain); bounded, oldest entry evicted first."""
        for s in stats:
            key = (session_id, s.chain_id)
            self.ingest_stats.pop(key, None)
            self.ingest_stats[key] = s
            while len(self.ingest_stats) > self.max_ingest_stats:
                self.ingest_stats.pop(next(iter(self.ingest_stats)))
                self.ingest_stats_evicted += 1

    def end_session(self, session_id: str) -> None:
        """Forgets a session's counters when its last stream closes (only live sessions are summed)."""
        for key in [k for k in self.ingest_stats if k[0] == session_id]:
            del self.ingest_stats[key]

    # ---- rebuild -----------------------------------------------------------------------------------------

    def rebuild(self, eventlog: EventLog, max_examined: int = 5_000_000) -> int:
        """Loads counters and refills the windows from the newest events; returns the events examined.

        The backward walk stops when every window is full, at the log start, or after ``max_examined`` events
        (a chain whose windows are never filled, e.g. one without opportunities, would otherwise walk the
        whole log; past that bound its windows start shorter than before the restart, which is logged).
        """
        self.counters = eventlog.load_aggregates()
        for key in self.counters:
            if key[:1] == AGG_CHAIN:
                self.chain(U64.unpack(key[1:9])[0])
        self.last_seq = eventlog.last_seq()
        txs: list[TxEntry] = []
        features: list[FeatureEntry] = []
        opps: list[OppEntry] = []
        examined = 0
        with eventlog.begin() as txn:
            cur = txn.cursor(db=eventlog.events_db)
            positioned = cur.last()
            if positioned:
                self.last_committed_ns = max(
                    (v for k, v in self.counters.items() if k[:1] == AGG_CHAIN and k[9:] == AGG_COMMITTED_NS),
                    default=0)
            need_tx = dict.fromkeys(self.chains, self.recent_tx)
            need_feat = dict.fromkeys(self.chains, self.recent_features)
            need_opp = dict.fromkeys(self.chains, self.opportunity_window)
            while positioned and (any(need_tx.values()) or any(need_feat.values()) or any(need_opp.values())):
                if examined >= max_examined:
                    log.warning("read-model rebuild stopped after %d events; some windows start shorter",
                                examined)
                    break
                examined += 1
                value = cur.value()
                kind = value[0]
                seq = U64.unpack(cur.key())[0]
                event = decode_event(value, seq)
                c = event.chain_id
                if kind == KIND_SEEN and need_tx.get(c):
                    need_tx[c] -= 1
                    txs.append((seq, c, bytes(value)))
                elif kind == KIND_DECODED and need_feat.get(c):
                    need_feat[c] -= 1
                    features.append((seq, c, bytes(value)))
                elif kind == KIND_OPP and need_opp.get(c):
                    need_opp[c] -= 1
                    opps.append((seq, c, event.opp_detected.opportunity.score, bytes(value)))
                positioned = cur.prev()
        self._add_entries(txs[::-1], features[::-1], opps[::-1])
        log.info("read models rebuilt: %d chains, %d events examined, last seq %d",
                 len(self.chains), examined, self.last_seq)
        return examined

    # ---- reads -------------------------------------------------------------------------------------------

    def counter(self, chain_id: int, field_key: bytes) -> int:
        return self.counters.get(AGG_CHAIN + U64.pack(chain_id) + field_key, 0)

    def chain_ids(self) -> list[int]:
        return sorted(self.chains)

    def replay_point(self, chain_id: int = 0) -> query_pb2.ReplayPoint:
        if chain_id:
            return query_pb2.ReplayPoint(
                seq_high_water=self.counter(chain_id, AGG_HIGH_WATER),
                committed_unix_ns=self.counter(chain_id, AGG_COMMITTED_NS),
                pending_count=self.counter(chain_id, AGG_RETAINED_TX),
            )
        return query_pb2.ReplayPoint(
            seq_high_water=self.last_seq,
            committed_unix_ns=self.last_committed_ns,
            pending_count=sum(self.counter(c, AGG_RETAINED_TX) for c in self.chains),
        )

    def ingest_for_chain(self, chain_id: int) -> ingest_pb2.ChainIngestStats | None:
        """ingestd's counters for a chain summed over live sessions (None when none were forwarded)."""
        parts = [s for (_sid, c), s in self.ingest_stats.items() if c == chain_id]
        if not parts:
            return None
        total = ingest_pb2.ChainIngestStats(chain_id=chain_id)
        drops: dict[str, int] = {}
        visibility = ingest_pb2.MEMPOOL_VISIBILITY_UNSPECIFIED
        for s in parts:
            total.seen += s.seen
            total.delivered += s.delivered
            total.as_of_unix_ms = max(total.as_of_unix_ms, s.as_of_unix_ms)
            for d in s.dropped:
                drops[d.reason] = drops.get(d.reason, 0) + d.count
            total.sources.extend(s.sources)
            if s.visibility == ingest_pb2.MEMPOOL_VISIBILITY_VISIBLE or not visibility:
                visibility = s.visibility
        total.visibility = visibility
        total.dropped.extend(ingest_pb2.DropCount(reason=r, count=c) for r, c in sorted(drops.items()))
        return total

    def chain_totals(self, chain_id: int) -> query_pb2.ChainTotals:
        view = self.chains.get(chain_id)
        totals = query_pb2.ChainTotals(
            chain_id=chain_id,
            tx_count=self.counter(chain_id, AGG_TX),
            decoded_count=self.counter(chain_id, AGG_DECODED),
            opportunity_count=self.counter(chain_id, AGG_OPPS),
            replay=self.replay_point(chain_id),
        )
        if view is not None:
            totals.rejected.extend(
                ingest_pb2.RejectCount(reason=r, count=c)  # type: ignore[arg-type]
                for r, c in sorted(view.rejected.items()))
        ingest = self.ingest_for_chain(chain_id)
        if ingest is not None:
            totals.ingest.CopyFrom(ingest)
            dropped = sum(d.count for d in ingest.dropped)
            totals.drop_ratio = dropped / ingest.seen if ingest.seen else 0.0
        return totals

    def feature_summary(self, chain_id: int = 0) -> list[query_pb2.FeatureSummary]:
        out = []
        for key, count in sorted(self.counters.items()):
            if key[:1] != AGG_FEATURE:
                continue
            c = U64.unpack(key[1:9])[0]
            if chain_id and c != chain_id:
                continue
            out.append(query_pb2.FeatureSummary(chain_id=c, protocol=key[10:].decode(), category=key[9],  # type: ignore[arg-type]
                                                count=count))
        return out

    def recent_txs(self, chain_id: int, limit: int) -> list[query_pb2.StoredTx]:
        source = self.all_txs if not chain_id else (self.chains[chain_id].txs if chain_id in self.chains else ())
        out: list[query_pb2.StoredTx] = []
        for seq, _, value in reversed(source):
            if len(out) >= limit:
                break
            event = decode_event(value, seq)
            out.append(query_pb2.StoredTx(seq_id=seq, tx=event.tx_seen.tx, received_unix_ns=event.received_unix_ns))
        return out

    def recent_feature_records(self, chain_id: int, limit: int) -> list[query_pb2.FeatureRecord]:
        source = (self.all_features if not chain_id
                  else (self.chains[chain_id].features if chain_id in self.chains else ()))
        out: list[query_pb2.FeatureRecord] = []
        for seq, c, value in reversed(source):
            if len(out) >= limit:
                break
            event = decode_event(value, seq)
            out.append(query_pb2.FeatureRecord(seq_id=seq, chain_id=c, tx_hash=event.tx_hash,
                                              features=event.tx_decoded.features))
        return out

    def top_opportunities(self, chain_id: int, limit: int, min_score: int) -> list[events_pb2.Opportunity]:
        if not chain_id:
            return self.all_opportunities.top(limit, min_score)
        view = self.chains.get(chain_id)
        return view.opportunities.top(limit, min_score) if view else []

    def sizes(self) -> dict[str, int]:
        """Entry counts of every bounded structure, for metrics."""
        return {
            "recent_tx": len(self.all_txs) + sum(len(v.txs) for v in self.chains.values()),
            "recent_features": len(self.all_features) + sum(len(v.features) for v in self.chains.values()),
            "opportunities": len(self.all_opportunities) + sum(len(v.opportunities) for v in self.chains.values()),
            "counters": len(self.counters),
            "ingest_stats": len(self.ingest_stats),
            "chains": len(self.chains),
        }

    def digest(self) -> str:
        """SHA-256 over the durable read-model state (counters and windows, not live ingest stats or rejects).

        Equal before a shutdown (or kill -9 after the last commit) and after the restart's rebuild.
        """
        h = hashlib.sha256()
        h.update(U64.pack(self.last_seq))
        for key, value in sorted(self.counters.items()):
            if key[9:] == AGG_COMMITTED_NS and key[:1] == AGG_CHAIN:
                continue  # commit wall time is informative, not state
            h.update(key)
            h.update(U64.pack(value))
        for chain_id in sorted(self.chains):
            view = self.chains[chain_id]
            h.update(b"c" + U64.pack(chain_id))
            h.update(b"t" + b"".join(U64.pack(e[0]) for e in view.txs))
            h.update(b"f" + b"".join(U64.pack(e[0]) for e in view.features))
            h.update(b"o" + b"".join(U64.pack(s) for s in view.opportunities.seqs()))
        h.update(b"T" + b"".join(U64.pack(e[0]) for e in self.all_txs))
        h.update(b"F" + b"".join(U64.pack(e[0]) for e in self.all_features))
        h.update(b"O" + b"".join(U64.pack(s) for s in self.all_opportunities.seqs()))
        return h.hexdigest()
