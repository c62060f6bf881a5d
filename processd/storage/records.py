"""What a commit stored, as the read side consumes it: the records of stored events and :class:`CommitResult`.

The read models (``processd.views.readmodels``, ``processd.views.windows``) and the live fan-out
(``processd.views.subscriptions``) consume these; the single writer (``processd.storage.writer``) fills one
:class:`CommitResult` per commit. Records are tuples, not objects: a commit may store tens of thousands of
transactions, and the windows build an entry only when a query reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from processd.wire.columns import BatchColumns

#: (seq, chain_id, TX_SEEN events value) of a stored transaction.
TxEntry = tuple[int, int, bytes]
#: (seq, chain_id, TX_DECODED events value) of a transaction's features.
FeatureEntry = tuple[int, int, bytes]
#: (seq, chain_id, score, OPP_DETECTED events value) of an opportunity.
OppEntry = tuple[int, int, int, bytes]
#: (seq, chain_id, kind, events value) of any event.
EventEntry = tuple[int, int, int, bytes]
#: (seq, chain_id, BLOCK events value) of a stored block.
BlockEntry = tuple[int, int, bytes]
#: (seq, chain_id, POOL_STATE events value) of a stored pool state.
PoolStateEntry = tuple[int, int, bytes]


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
    #: The TX_SOURCE_SEEN events stored, always (few: filtered subscribers match them on their transaction).
    source_events: list[EventEntry] = field(default_factory=list)
    #: Sightings handled, by outcome (``processd.storage.logwrite.SIGHTING_OUTCOMES``).
    sightings: dict[str, int] = field(default_factory=dict)
    #: Blocks stored by this commit, in seq order; and blocks not stored because already stored, per chain.
    blocks: list[BlockEntry] = field(default_factory=list)
    block_duplicates: dict[int, int] = field(default_factory=dict)
    #: Of ``blocks``, per chain, those stored again because the chain went back to them
    #: (``processd.storage.blockbranch``).
    blocks_returned: dict[int, int] = field(default_factory=dict)
    #: Pool states stored by this commit, in seq order; and those not stored because already stored.
    pool_states: list[PoolStateEntry] = field(default_factory=list)
    pool_duplicates: int = 0
    #: The lifecycle events stored by this commit (TX_INCLUDED, TX_REPLACED, TX_DROPPED, REORG), grouped as their
    #: consumers (metrics, the latency windows) take them, so the event loop need not walk or parse them (the
    #: events themselves are in ``source_events`` and ``events`` with the others): how many of each kind; per
    #: chain, the inclusion latencies (ms) of its TX_INCLUDED, in seq order; and (chain_id, kind, detail) of every
    #: other one, in seq order: detail is the DropReason (TX_DROPPED), depth * 2 + too_deep (REORG), else 0.
    life_kinds: dict[int, int] = field(default_factory=dict)
    life_latencies: dict[int, list[int]] = field(default_factory=dict)
    life_other: list[tuple[int, int, int]] = field(default_factory=list)
    #: TxGone reports applied (a tracked transaction dropped as evicted) and ignored.
    gone_applied: int = 0
    gone_ignored: int = 0
    #: Tracked pending transactions after the commit, per chain (chains the commit changed).
    life_pending: dict[int, int] = field(default_factory=dict)
    duration_s: float = 0.0

    @property
    def life_events(self) -> int:
        """Lifecycle events stored by this commit."""
        return sum(self.life_kinds.values())

    def add_stored(self, first: int, columns: BatchColumns) -> None:
        """Records a deduplicated batch stored at seqs ``first``... Only C-level loops (``map``, ``zip``) per
        transaction and event: this runs in the writer's thread, the part of processd that cannot run in parallel."""
        values = columns.values
        chains = columns.chain
        if self.events is not None:
            seqs = range(first, first + len(values))
            event_chains = [c for c, kinds in zip(chains, columns.tx_kinds, strict=True) for _ in kinds]
            self.events.extend(zip(seqs, event_chains, b"".join(columns.tx_kinds), values, strict=True))
        self.stored.append((first, columns))
        self.stored_txs += len(chains)
        if columns.opps:
            self.opportunities.extend([(first + offset, chain, score, values[offset])
                                       for offset, chain, score in columns.opps])
        self.chains.update(columns.last_event)

    def add_event(self, seq: int, chain_id: int, kind: int, value: bytes) -> None:
        """Records one event stored on its own (a TX_SOURCE_SEEN, a lifecycle event)."""
        self.chains.add(chain_id)
        self.source_events.append((seq, chain_id, kind, value))
        if self.events is not None:
            self.events.append((seq, chain_id, kind, value))
