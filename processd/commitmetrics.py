"""processd's metrics of each commit: envelopes and events by kind, sightings, blocks and pool states by outcome,
the lifecycle's outcomes, inclusion latencies, reorgs and tracked gauges, map growth. Counted from the commit's
:class:`~processd.storage.records.CommitResult` (grouped figures: no event is parsed here but the few lifecycle
events that are not inclusions), on the event loop, after each commit and before its acks
(``processd.pipeline.IngestPipeline.committed``).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from common.pb.v1 import events_pb2
from common.promutil import observe_many
from processd.metrics import ProcessdMetrics
from processd.storage.records import CommitResult

if TYPE_CHECKING:  # (the pipeline drives the writer; this module only reads two of its figures)
    from processd.storage.writer import CommitWriter

_KIND_NAMES: dict[int, str] = {events_pb2.EVENT_KIND_TX_SEEN: "tx_seen", events_pb2.EVENT_KIND_TX_DECODED: "tx_decoded",
                               events_pb2.EVENT_KIND_OPP_DETECTED: "opp_detected",
                               events_pb2.EVENT_KIND_TX_SOURCE_SEEN: "tx_source_seen",
                               events_pb2.EVENT_KIND_BLOCK: "block",
                               events_pb2.EVENT_KIND_TX_INCLUDED: "tx_included",
                               events_pb2.EVENT_KIND_TX_REPLACED: "tx_replaced",
                               events_pb2.EVENT_KIND_TX_DROPPED: "tx_dropped", events_pb2.EVENT_KIND_REORG: "reorg",
                               events_pb2.EVENT_KIND_POOL_STATE: "pool_state"}


class CommitMetrics:
    """Counts each commit into processd's metrics (module doc); keeps what the writer reports as running totals
    (map growths, lifecycle overflow) to count their increments."""

    def __init__(self, metrics: ProcessdMetrics) -> None:
        self._metrics = metrics
        self._grows_seen = 0
        self._overflow_seen = 0

    def record(self, result: CommitResult, writer: CommitWriter) -> None:
        """Counts one commit."""
        m = self._metrics
        if result.envelopes:
            m.commit_envelopes.observe(result.envelopes)
            m.commit_events.observe(result.last_seq - result.first_seq + 1)
            m.commit_seconds.observe(result.duration_s)
        accepted = result.stored_txs
        if accepted:
            m.envelopes.labels("accepted").inc(accepted)
        if result.envelopes - accepted:
            m.envelopes.labels("duplicate_or_rejected").inc(result.envelopes - accepted)
        # Every stored transaction has one TX_SEEN and one TX_DECODED event.
        for kind, n in ((events_pb2.EVENT_KIND_TX_SEEN, accepted), (events_pb2.EVENT_KIND_TX_DECODED, accepted),
                        (events_pb2.EVENT_KIND_OPP_DETECTED, len(result.opportunities))):
            if n:
                m.events.labels(_KIND_NAMES[kind]).inc(n)
        for outcome, n in result.sightings.items():
            m.sightings.labels(outcome).inc(n)
        if result.blocks:
            m.events.labels(_KIND_NAMES[events_pb2.EVENT_KIND_BLOCK]).inc(len(result.blocks))
            stored = dict(result.blocks_returned)  # (the returned ones are not counted as stored)
            for _, chain_id, _ in result.blocks:
                if stored.get(chain_id):
                    stored[chain_id] -= 1
                else:
                    m.blocks.labels(str(chain_id), "stored").inc()
            for chain_id, n in result.blocks_returned.items():
                m.blocks.labels(str(chain_id), "returned").inc(n)
        for chain_id, n in result.block_duplicates.items():
            m.blocks.labels(str(chain_id), "duplicate").inc(n)
        if result.pool_states or result.pool_duplicates:
            m.events.labels(_KIND_NAMES[events_pb2.EVENT_KIND_POOL_STATE]).inc(len(result.pool_states))
            m.pool_states.labels("stored").inc(len(result.pool_states))
            m.pool_states.labels("duplicate").inc(result.pool_duplicates)
        if result.life_kinds or result.gone_applied or result.gone_ignored or result.life_pending:
            self._life(result, writer)
        if result.sightings.get("stored"):
            m.events.labels(_KIND_NAMES[events_pb2.EVENT_KIND_TX_SOURCE_SEEN]).inc(result.sightings["stored"])
        if result.analysis_errors:
            m.analysis_errors.inc(result.analysis_errors)
        if result.pruned_events:
            m.pruned.inc(result.pruned_events)
        if writer.map_grows:
            m.map_grows.inc(writer.map_grows - self._grows_seen)
            self._grows_seen = writer.map_grows

    def _life(self, result: CommitResult, writer: CommitWriter) -> None:
        """The lifecycle's metrics of one commit: events by kind, outcomes, latencies, reorgs, tracked gauge (from
        ``CommitResult.life_kinds``, ``life_latencies``, ``life_other``: no event is parsed or walked here but the
        few that are not inclusions)."""
        m = self._metrics
        for kind, n in result.life_kinds.items():
            m.events.labels(_KIND_NAMES[kind]).inc(n)
        for chain_id, latencies in result.life_latencies.items():
            m.lifecycle.labels(str(chain_id), "included").inc(len(latencies))
            observe_many(m.inclusion_latency.labels(str(chain_id)), list(map(_MS_TO_S, latencies)))
        # the other kinds, few distinct (chain, kind, detail): counted once each
        for (chain_id, kind, detail), n in Counter(result.life_other).items():
            if kind == events_pb2.EVENT_KIND_TX_REPLACED:
                m.lifecycle.labels(str(chain_id), "replaced").inc(n)
            elif kind == events_pb2.EVENT_KIND_TX_DROPPED:
                m.lifecycle.labels(str(chain_id), "dropped_" + _DROP_NAMES.get(detail, "unknown")).inc(n)
            else:
                m.reorgs.labels(str(chain_id), reorg_bucket(detail // 2, bool(detail & 1))).inc(n)
        m.lifecycle_gone.labels("applied").inc(result.gone_applied)
        m.lifecycle_gone.labels("ignored").inc(result.gone_ignored)
        life = writer.life
        if life is not None:
            tracked, held, index_entries, overflow = life.stats
            m.lifecycle_tracked.set(tracked)
            m.lifecycle_replaced_held.set(held)
            m.lifecycle_index_entries.set(index_entries)
            if overflow > self._overflow_seen:
                m.lifecycle_overflow.inc(overflow - self._overflow_seen)
            self._overflow_seen = overflow


#: Milliseconds to seconds, C-level (``ms / 1000``, as the histogram was fed before).
_MS_TO_S = (1000).__rtruediv__
_DROP_NAMES: dict[int, str] = {events_pb2.DROP_REASON_EXPIRED: "expired", events_pb2.DROP_REASON_EVICTED: "evicted",
               events_pb2.DROP_REASON_NONCE_PASSED: "nonce_passed"}


def reorg_bucket(depth: int, too_deep: bool) -> str:
    """The ``depth`` label of ``mempulse_processd_reorgs_total``: 1, 2, 3-5, 6-15, 16+ or too_deep."""
    if too_deep:
        return "too_deep"
    for top, label in ((1, "1"), (2, "2"), (5, "3-5"), (15, "6-15")):
        if depth <= top:
            return label
    return "16+"
