"""Incremental, bounded read models: updated on every commit, rebuilt from the log at start.

Counters (per-chain totals, feature summary) mirror the ``agg`` database, which the writer updates in the
same transaction as the events, so they never need a recount. Windows (recent transactions, recent features,
opportunities) are rebuilt by walking the newest events backwards until every window is full. A snapshot reads
only these structures: its cost depends on the requested limits, never on the size of the log.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from common.pb.v1 import events_pb2, ingest_pb2, query_pb2
from processd.storage.eventlog import (
    AGG_CHAIN,
    AGG_COMMITTED_NS,
    AGG_DECODED,
    AGG_FEATURE,
    AGG_HIGH_WATER,
    AGG_OPPS,
    AGG_RETAINED_TX,
    AGG_SOURCE,
    AGG_SOURCE_LATER,
    AGG_SOURCE_WINS,
    AGG_TX,
    EVENT_OVERHEAD_BYTES,
    KIND_DECODED,
    KIND_OPP,
    KIND_SEEN,
    U64,
    EventLog,
    decode_event,
)
from processd.storage.records import CommitResult, FeatureEntry, OppEntry, TxEntry
from processd.views.blocks import BlockWindow
from processd.views.coverage import selector_coverage
from processd.views.ingest_stats import IngestStatsStore, StatsLimits
from processd.views.lifecycle import LatencyWindow, lifecycle_totals
from processd.views.pools import PoolView
from processd.views.windows import OpportunityWindow, TxWindow, chain_offsets
from processd.wire.columns import BatchColumns

__all__ = ["ChainView", "OpportunityWindow", "ReadModels", "TxWindow"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ChainView:
    """The bounded per-chain windows and the in-memory reject counters of one chain."""

    txs: TxWindow
    features: TxWindow
    opportunities: OpportunityWindow
    rejected: dict[int, int] = field(default_factory=dict)


_Entry = TypeVar("_Entry", TxEntry, OppEntry)


def _by_chain(entries: list[_Entry]) -> dict[int, list[_Entry]]:
    """Entries grouped by their chain (the entry's second field), each group in the entries' order."""
    groups: dict[int, list[_Entry]] = {}
    for entry in entries:
        group = groups.get(entry[1])
        if group is None:  # (not setdefault: that builds a list per entry; this runs per opportunity on commit)
            group = groups[entry[1]] = []
        group.append(entry)
    return groups


class ReadModels:
    """All read models of processd. Mutated only on the event loop thread (commit results, ingest stats)."""

    def __init__(self, recent_tx: int = 2000, recent_features: int = 2000, opportunity_window: int = 5000,
                 stats_limits: StatsLimits | None = None, recent_blocks: int = 256,
                 pool_max_pairs: int = 100_000) -> None:
        self.recent_tx = recent_tx
        self.recent_features = recent_features
        self.opportunity_window = opportunity_window
        self.chains: dict[int, ChainView] = {}
        self.all_txs = TxWindow(recent_tx, 0)
        self.all_features = TxWindow(recent_features, 1)
        self.all_opportunities = OpportunityWindow(opportunity_window)
        self.counters: dict[bytes, int] = {}
        self.last_seq = 0
        self.last_committed_ns = 0
        #: Latest ChainIngestStats per (session_id, chain_id), for sessions with an open stream (bounded in bytes;
        #: the ingest service sets ``on_reject`` for its metrics and logs).
        self.ingest_stats = IngestStatsStore(stats_limits)
        #: The newest stored blocks per chain and over all chains (processd.views.blocks).
        self.blocks = BlockWindow(recent_blocks)
        #: The latest reserves per (chain, pair) (processd.views.pools): what the valuation reads.
        self.pools = PoolView(max_pairs=pool_max_pairs)
        #: Inclusion latencies of the newest TX_INCLUDED events per chain (processd.views.lifecycle).
        self.latencies = LatencyWindow()
        #: Tracked pending transactions of a chain now (the server binds the lifecycle tracker's count).
        self.pending_of: Callable[[int], int] = lambda chain_id: 0

    # ---- updates -----------------------------------------------------------------------------------------

    def chain(self, chain_id: int) -> ChainView:
        view = self.chains.get(chain_id)
        if view is None:
            view = ChainView(TxWindow(self.recent_tx, 0), TxWindow(self.recent_features, 1),
                             OpportunityWindow(self.opportunity_window))
            self.chains[chain_id] = view
        return view

    def apply(self, result: CommitResult) -> None:
        """Folds one committed transaction into the models (O(window sizes), whatever the size of the commit)."""
        self._add_committed(result.stored)
        self._add_opportunities(result.opportunities)
        if result.blocks:
            self.blocks.add(result.blocks)
        if result.pool_states:
            self.pools.add(result.pool_states)
        if result.life_latencies:
            self.latencies.add(result.life_latencies)
        self.counters.update(result.aggregates)
        for key in result.aggregates:
            if key[:1] == AGG_CHAIN:
                self.chain(U64.unpack(key[1:9])[0])
        if result.last_seq > self.last_seq:
            self.last_seq = result.last_seq
            self.last_committed_ns = result.committed_ns

    def _add_committed(self, stored: list[tuple[int, BatchColumns]]) -> None:
        # The windows take references to the stored batches' columns (processd.views.windows): no work per transaction.
        # ingestd sends one chain per batch; a batch of several chains is split by chain here.
        all_txs, all_features = self.all_txs, self.all_features
        for first, columns in stored:
            values, seen_at, chains = columns.values, columns.seen_at, columns.chain
            all_txs.add_batch(first, values, seen_at, chains)
            all_features.add_batch(first, values, seen_at, chains)
            single_chain = len(columns.last_event) == 1
            for chain_id in columns.last_event:
                view = self.chain(chain_id)
                offsets = seen_at if single_chain else chain_offsets(seen_at, chains, chain_id)
                view.txs.add_batch(first, values, offsets, chain_id)
                view.features.add_batch(first, values, offsets, chain_id)

    def _add_entries(self, txs: list[TxEntry], features: list[FeatureEntry], opportunities: list[OppEntry]) -> None:
        # The rebuild's entries, ascending (windows filled per chain, so txs and features need not line up).
        for chain_id, chain_txs in _by_chain(txs).items():
            self.chain(chain_id).txs.add_entries(chain_txs)
        for chain_id, chain_features in _by_chain(features).items():
            self.chain(chain_id).features.add_entries(chain_features)
        self.all_txs.add_entries(txs)
        self.all_features.add_entries(features)
        self._add_opportunities(opportunities)

    def _add_opportunities(self, opps: list[OppEntry]) -> None:
        if not opps:
            return
        self.all_opportunities.extend(opps)
        for chain_id, chain_opps in _by_chain(opps).items():
            self.chain(chain_id).opportunities.extend(chain_opps)

    def count_reject(self, chain_id: int, reason: int, count: int = 1) -> None:
        """Counts envelopes rejected for ``chain_id`` (only chains already known or valid ids get a view)."""
        rejected = self.chain(chain_id).rejected
        rejected[reason] = rejected.get(reason, 0) + count

    def update_ingest_stats(self, session_id: str, stats: Iterable[ingest_pb2.ChainIngestStats]) -> None:
        """Keeps the latest counters per (session, chain), bounded (see :mod:`processd.views.ingest_stats`)."""
        self.ingest_stats.update(session_id, stats)

    def end_session(self, session_id: str) -> None:
        """Forgets a session's counters when its last stream closes (only live sessions are summed)."""
        self.ingest_stats.end_session(session_id)

    # ---- rebuild -----------------------------------------------------------------------------------------

    def rebuild(self, eventlog: EventLog, max_examined: int = 5_000_000) -> int:
        """Loads counters and refills the windows from the newest events; returns the events examined.

        The backward walk stops when every window is full, at the log start, or after ``max_examined`` events
        (a chain whose windows are never filled, e.g. one without opportunities, would otherwise walk the
        whole log; past that bound its windows start shorter than before the restart, which is logged).
        """
        self.counters = eventlog.load_aggregates()
        self.blocks.rebuild(eventlog)
        self.pools.rebuild(eventlog)
        for key in self.counters:
            if key[:1] == AGG_CHAIN:
                self.chain(U64.unpack(key[1:9])[0])
        self.latencies.rebuild(eventlog, self.chain_ids())
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
        parts = self.ingest_stats.for_chain(chain_id)
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

    def chain_totals(self, chain_id: int, coverage_top: int = 0) -> query_pb2.ChainTotals:
        """The chain's counters; with ``coverage_top``, the decode coverage of its busiest selectors too."""
        view = self.chains.get(chain_id)
        totals = query_pb2.ChainTotals(
            chain_id=chain_id,
            tx_count=self.counter(chain_id, AGG_TX),
            decoded_count=self.counter(chain_id, AGG_DECODED),
            opportunity_count=self.counter(chain_id, AGG_OPPS),
            replay=self.replay_point(chain_id),
            sources=self.source_standings(chain_id),
            lifecycle=lifecycle_totals(chain_id, self.counter, self.latencies, self.pending_of(chain_id)),
        )
        if coverage_top:
            totals.selector_coverage.extend(self.selector_coverage(chain_id, coverage_top))
        if view is not None:
            totals.rejected.extend(
                ingest_pb2.RejectCount(reason=r, count=c)  # type: ignore[arg-type]
                for r, c in sorted(view.rejected.items()))
        ingest = self.ingest_for_chain(chain_id)
        if ingest is not None:
            totals.ingest.CopyFrom(ingest)
            # (blocks ingestd did not deliver are its block_* reasons: not transactions, not in this ratio)
            dropped = sum(d.count for d in ingest.dropped if not d.reason.startswith("block_"))
            totals.drop_ratio = dropped / ingest.seen if ingest.seen else 0.0
        return totals

    def source_standings(self, chain_id: int) -> list[query_pb2.SourceStanding]:
        """Per source of the chain: first-seen wins and announcements (from the ``agg`` counters), by source id."""
        prefix = AGG_SOURCE + U64.pack(chain_id)
        wins: dict[str, int] = {}
        later: dict[str, int] = {}
        for key, value in self.counters.items():
            if key[:9] != prefix:
                continue
            source = key[10:].decode("utf-8", "replace")
            if key[9:10] == AGG_SOURCE_WINS:
                wins[source] = value
            elif key[9:10] == AGG_SOURCE_LATER:
                later[source] = value
        return [query_pb2.SourceStanding(source_id=s, first_seen_wins=wins.get(s, 0),
                                         seen=wins.get(s, 0) + later.get(s, 0))
                for s in sorted(wins.keys() | later.keys())]

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

    def recent_txs(self, chain_id: int, limit: int, max_bytes: int = 0) -> tuple[list[query_pb2.StoredTx], bool]:
        """The newest ``limit`` transactions, newest first, and whether ``max_bytes`` (0 = none) cut the list.

        The first one is always taken; a later one that would take the list's encoded size past ``max_bytes``
        ends it (the caller goes on from the last seq_id returned).
        """
        source = self.all_txs if not chain_id else (self.chains[chain_id].txs if chain_id in self.chains else ())
        out: list[query_pb2.StoredTx] = []
        total = 0
        for seq, _, value in reversed(source):
            if len(out) >= limit:
                break
            size = len(value) + EVENT_OVERHEAD_BYTES
            if max_bytes and out and total + size > max_bytes:
                return out, True
            total += size
            event = decode_event(value, seq)
            out.append(query_pb2.StoredTx(seq_id=seq, tx=event.tx_seen.tx, received_unix_ns=event.received_unix_ns))
        return out, False

    def recent_feature_records(self, chain_id: int, limit: int,
                               keep: Callable[[int, int], bool] | None = None) -> list[query_pb2.FeatureRecord]:
        """Newest first; ``keep`` (seq, chain) -> bool leaves out transactions an ``EventFilter`` refuses."""
        source = (self.all_features if not chain_id
                  else (self.chains[chain_id].features if chain_id in self.chains else ()))
        out: list[query_pb2.FeatureRecord] = []
        for seq, c, value in reversed(source):
            if len(out) >= limit:
                break
            if keep is not None and not keep(seq, c):
                continue
            event = decode_event(value, seq)
            out.append(query_pb2.FeatureRecord(seq_id=seq, chain_id=c, tx_hash=event.tx_hash,
                                              features=event.tx_decoded.features))
        return out

    def selector_coverage(self, chain_id: int, top_n: int) -> list[events_pb2.SelectorCoverage]:
        """Decode coverage by selector over the chain's recent-features window (all chains: 0); see
        :mod:`processd.views.coverage`."""
        source = (self.all_features if not chain_id
                  else (self.chains[chain_id].features if chain_id in self.chains else ()))
        return selector_coverage((decode_event(value, seq).tx_decoded.features for seq, _, value in source), top_n)

    def top_opportunities(self, chain_id: int, limit: int, min_score: int,
                          keep: Callable[[int, int], bool] | None = None,
                          min_profit_wei: int = 0) -> list[events_pb2.Opportunity]:
        """The window's best opportunities (``OpportunityWindow.top``) of one chain (0: all)."""
        if not chain_id:
            return self.all_opportunities.top(limit, min_score, keep, min_profit_wei)
        view = self.chains.get(chain_id)
        return view.opportunities.top(limit, min_score, keep, min_profit_wei) if view else []

    def sizes(self) -> dict[str, int]:
        """Entry counts of every bounded structure, for metrics."""
        return {
            "recent_tx": len(self.all_txs) + sum(len(v.txs) for v in self.chains.values()),
            "recent_features": len(self.all_features) + sum(len(v.features) for v in self.chains.values()),
            "opportunities": len(self.all_opportunities) + sum(len(v.opportunities) for v in self.chains.values()),
            "window_held_values": sum(w.held_values for w in self._tx_windows()),
            "counters": len(self.counters),
            "ingest_stats": len(self.ingest_stats),
            "chains": len(self.chains),
            "pools": len(self.pools),
            "inclusion_latencies": len(self.latencies),
        }

    def _tx_windows(self) -> list[TxWindow]:
        windows = [self.all_txs, self.all_features]
        for view in self.chains.values():
            windows += (view.txs, view.features)
        return windows

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
            h.update(b"o" + b"".join(U64.pack(s) for s in view.opportunities.seqs_by_age()))
        h.update(b"T" + b"".join(U64.pack(e[0]) for e in self.all_txs))
        h.update(b"F" + b"".join(U64.pack(e[0]) for e in self.all_features))
        h.update(b"O" + b"".join(U64.pack(s) for s in self.all_opportunities.seqs_by_age()))
        self.pools.digest_into(h)
        return h.hexdigest()
