"""The records the client returns: frozen dataclasses of plain Python values.

Hashes, addresses, selectors and calldata are lowercase ``0x`` hex strings; quantities (wei, token amounts,
uint256 signature values) are ``int``; times are unix nanoseconds (``int``), as in the protobuf contract. A value
the contract marks as possibly unknown (an ``optional`` field: a legacy transaction's ``max_fee_per_gas``, a
swap's ``amount_in``) is ``None`` when unknown and ``0`` when known to be zero. Enums are lowercase names without
their prefix, the same spelling as gatewayd's REST API (``"swap"``, ``"sandwich_candidate"``). Field names follow
``docs/fields.md`` except ``from``, a Python keyword, which is ``sender`` (as in the protobuf contract).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class EventKind(StrEnum):
    """The kind of an event of processd's log (the values are gatewayd's SSE ``event:`` names)."""

    TX_SEEN = "tx_seen"
    TX_DECODED = "tx_decoded"
    OPP_DETECTED = "opp_detected"
    TX_SOURCE_SEEN = "tx_source_seen"
    TX_INCLUDED = "tx_included"
    TX_REPLACED = "tx_replaced"
    TX_DROPPED = "tx_dropped"
    REORG = "reorg"
    POOL_STATE = "pool_state"


@dataclass(frozen=True, slots=True)
class SourceSeen:
    """One source's announcement of a transaction."""

    source_id: str
    first_seen_unix_ns: int


@dataclass(frozen=True, slots=True)
class AccessListEntry:
    """An EIP-2930 access list entry."""

    address: str
    storage_keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Authorization:
    """An EIP-7702 authorization (``chain_id`` 0 = any chain)."""

    chain_id: int
    address: str
    nonce: int
    y_parity: int
    r: int
    s: int


@dataclass(frozen=True, slots=True)
class Transaction:
    """A pending transaction as processd stored it.

    ``seq_id`` is the seq of its ``tx_seen`` event and ``received_unix_ns`` when processd received it; both are 0
    in the ``tx`` of an event (they are the event's own fields there). ``to`` is None for a contract creation;
    ``raw_tx`` is None when processd holds no signed bytes.
    """

    chain_id: int
    hash: str
    sender: str
    to: str | None
    nonce: int
    value: int
    gas: int
    gas_price: int | None
    max_fee_per_gas: int | None
    max_priority_fee_per_gas: int | None
    tx_type: int
    input: str
    source_id: str
    first_seen_unix_ns: int
    seq_id: int = 0
    received_unix_ns: int = 0
    sources: tuple[SourceSeen, ...] = ()
    v: int | None = None
    y_parity: int | None = None
    r: int | None = None
    s: int | None = None
    access_list: tuple[AccessListEntry, ...] = ()
    max_fee_per_blob_gas: int | None = None
    blob_versioned_hashes: tuple[str, ...] = ()
    authorization_list: tuple[Authorization, ...] = ()
    raw_tx: str | None = None

    @property
    def selector(self) -> str | None:
        """The first 4 bytes of calldata as ``0x`` hex, or None when the calldata is shorter."""
        return self.input[:10] if len(self.input) >= 10 else None


@dataclass(frozen=True, slots=True)
class Features:
    """What processd decoded from a transaction's calldata (``docs/decoding.md``).

    Token addresses, ``recipient`` and ``selector`` are None when not applicable; the amounts are None when the
    call does not carry them.
    """

    protocol: str
    category: str
    method: str
    selector: str | None
    token_in: str | None
    token_out: str | None
    amount_in: int | None
    amount_out_min: int | None
    amount_in_max: int | None
    amount_out: int | None
    path: tuple[str, ...]
    fee_tiers: tuple[int, ...]
    recipient: str | None
    deadline: int | None
    value: int
    gas_price: int
    priority_fee: int
    calldata_len: int
    decoded: bool
    decode_error: str
    #: A call decoded with a user ABI (processd --abi-dir): its arguments, values as text; () otherwise.
    args: tuple[DecodedArg, ...] = ()
    #: An args value was cut to processd's bounds.
    args_truncated: bool = False


@dataclass(frozen=True, slots=True)
class DecodedArg:
    """One argument of a call decoded with a user ABI: name, canonical ABI type, value as text
    (``docs/decoding.md``, User ABIs)."""

    name: str
    type: str
    value: str


@dataclass(frozen=True, slots=True)
class FeatureRecord:
    """The features of one transaction, with the seq of their ``tx_decoded`` event."""

    seq_id: int
    chain_id: int
    tx_hash: str
    features: Features


@dataclass(frozen=True, slots=True)
class Opportunity:
    """A ranked MEV opportunity: ``score`` 0-100, ``notional_wei`` None when unknown.

    The valuation on pool state (docs/valuation.md): ``valued`` says whether the figures were computed on known
    reserves (else ``valuation_note`` says why and they are None); amounts are ints (wei, or base units of
    ``profit_token``).
    """

    seq_id: int
    chain_id: int
    tx_hash: str
    kind: str
    score: int
    reasons: tuple[str, ...]
    protocol: str
    token_in: str | None
    token_out: str | None
    notional_wei: int | None
    slippage_bps: int
    valued: bool = False
    valuation_note: str = ""
    net_profit_wei: int | None = None
    sandwich_profit_wei: int | None = None
    frontrun_amount_in: int | None = None
    backrun_profit_wei: int | None = None
    backrun_amount_in: int | None = None
    gas_cost_wei: int | None = None
    price_impact_bps: int | None = None
    profit_token: str | None = None
    state_block_number: int | None = None


@dataclass(frozen=True, slots=True)
class Sighting:
    """A later source's announcement of a stored transaction (body of a ``tx_source_seen`` event)."""

    source_id: str
    seen_unix_ns: int
    tx_seq_id: int


@dataclass(frozen=True, slots=True)
class Included:
    """A tracked pending transaction was included in a block (body of a ``tx_included`` event). ``status`` is the
    receipt's (``ok``, ``reverted``), None without a receipt."""

    block_number: int
    block_hash: str
    index: int
    status: str | None
    inclusion_latency_ms: int
    tx_seq_id: int
    block_seq_id: int
    reincluded: bool


@dataclass(frozen=True, slots=True)
class Replaced:
    """Another transaction of the same sender and nonce replaced it (body of a ``tx_replaced`` event)."""

    by_hash: str
    fee_bump_bps: int
    cancel: bool
    by_block: bool
    tx_seq_id: int


@dataclass(frozen=True, slots=True)
class Dropped:
    """A tracked pending transaction settled without inclusion (body of a ``tx_dropped`` event); ``reason`` is
    ``expired``, ``evicted`` or ``nonce_passed``."""

    reason: str
    tx_seq_id: int
    source_id: str


@dataclass(frozen=True, slots=True)
class Reorg:
    """A block replaced a stored block at a height already seen (body of a ``reorg`` event)."""

    depth: int
    number: int
    new_hash: str
    orphaned_hashes: tuple[str, ...]
    unincluded: int
    too_deep: bool


@dataclass(frozen=True, slots=True)
class PoolState:
    """A Uniswap V2-style pair's reserves after a block (body of a ``pool_state`` event; issue 17). ``source`` is
    ``"get_reserves"`` or ``"sync_log"``: how ingestd read them."""

    chain_id: int
    pair: str
    factory: str
    token0: str
    token1: str
    reserve0: int
    reserve1: int
    block_number: int
    block_hash: str
    source: str


@dataclass(frozen=True, slots=True)
class Event:
    """One event of processd's log. Exactly one of ``tx``, ``features``, ``opportunity``, ``sighting``,
    ``included``, ``replaced``, ``dropped``, ``reorg`` and ``pool_state`` is set, according to ``kind``.
    ``source_id`` is the transaction's first source (for ``tx_source_seen``: the later one; for a lifecycle event:
    the block's or the evicting node's source; empty for ``pool_state``, whose ``tx_hash`` is ``"0x"``).
    """

    seq_id: int
    chain_id: int
    kind: EventKind
    tx_hash: str
    first_seen_unix_ns: int
    received_unix_ns: int
    source_id: str
    tx: Transaction | None = None
    features: Features | None = None
    opportunity: Opportunity | None = None
    sighting: Sighting | None = None
    included: Included | None = None
    replaced: Replaced | None = None
    dropped: Dropped | None = None
    reorg: Reorg | None = None
    pool_state: PoolState | None = None


@dataclass(frozen=True, slots=True)
class TransactionDetail:
    """One transaction with what processd derived from it (``Client.transaction``)."""

    transaction: Transaction
    features: FeatureRecord | None
    opportunities: tuple[Opportunity, ...]
    #: Lifecycle status (``pending``, ``included``, ``replaced``, ``dropped``), None when not tracked; and the
    #: lifecycle events (``tx_included``, ``tx_replaced``, ``tx_dropped``), oldest first.
    status: str | None = None
    history: tuple[Event, ...] = ()


@dataclass(frozen=True, slots=True)
class TransactionPage:
    """A page of ``Client.transactions``; pass ``next_cursor`` back as ``cursor`` (0 = no further page now)."""

    transactions: tuple[Transaction, ...]
    next_cursor: int
    last_seq_id: int
    truncated: bool


@dataclass(frozen=True, slots=True)
class EventPage:
    """A page of ``Client.events``; ``next_seq_id`` is where the next page starts."""

    events: tuple[Event, ...]
    next_seq_id: int
    last_seq_id: int
    truncated: bool


@dataclass(frozen=True, slots=True)
class ReplayPoint:
    """Where the log stands: highest committed seq, its commit time, transactions still pending."""

    seq_high_water: int
    committed_unix_ns: int
    pending_count: int


@dataclass(frozen=True, slots=True)
class SourceStanding:
    """Per chain and source: transactions it announced first, and at all."""

    source_id: str
    first_seen_wins: int
    seen: int


@dataclass(frozen=True, slots=True)
class ChainTotals:
    """Per-chain counters of a snapshot; ``rejected`` maps a reject reason (lowercase) to its count."""

    chain_id: int
    tx_count: int
    decoded_count: int
    opportunity_count: int
    rejected: dict[str, int]
    replay: ReplayPoint
    drop_ratio: float
    sources: tuple[SourceStanding, ...]
    lifecycle: LifecycleTotals | None = None


@dataclass(frozen=True, slots=True)
class LifecycleTotals:
    """A chain's transaction lifecycle figures (snapshot): tracked pending now, outcomes, reorgs, inclusion
    latency percentiles (ms), rates and the private-flow share."""

    pending: int
    included: int
    replaced: int
    dropped: int
    included_private: int
    reorgs: int
    reorgs_too_deep: int
    inclusion_latency_p50_ms: int
    inclusion_latency_p99_ms: int
    replaced_rate: float
    dropped_rate: float
    private_share: float


@dataclass(frozen=True, slots=True)
class FeatureSummary:
    """Decoded transactions counted by (chain, protocol, category)."""

    chain_id: int
    protocol: str
    category: str
    count: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The dashboard view (``Client.snapshot``), served from processd's read models."""

    chains: tuple[ChainTotals, ...]
    replay: ReplayPoint
    feature_summary: tuple[FeatureSummary, ...]
    recent_features: tuple[FeatureRecord, ...]
    top_opportunities: tuple[Opportunity, ...]
    recent_transactions: tuple[Transaction, ...]
    last_seq_id: int
    recent_transactions_truncated: bool = field(default=False)
