from common.pb.v1 import events_pb2 as _events_pb2
from common.pb.v1 import ingest_pb2 as _ingest_pb2
from common.pb.v1 import tx_pb2 as _tx_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TxLifecycleStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TX_LIFECYCLE_STATUS_UNSPECIFIED: _ClassVar[TxLifecycleStatus]
    TX_LIFECYCLE_STATUS_PENDING: _ClassVar[TxLifecycleStatus]
    TX_LIFECYCLE_STATUS_INCLUDED: _ClassVar[TxLifecycleStatus]
    TX_LIFECYCLE_STATUS_REPLACED: _ClassVar[TxLifecycleStatus]
    TX_LIFECYCLE_STATUS_DROPPED: _ClassVar[TxLifecycleStatus]
TX_LIFECYCLE_STATUS_UNSPECIFIED: TxLifecycleStatus
TX_LIFECYCLE_STATUS_PENDING: TxLifecycleStatus
TX_LIFECYCLE_STATUS_INCLUDED: TxLifecycleStatus
TX_LIFECYCLE_STATUS_REPLACED: TxLifecycleStatus
TX_LIFECYCLE_STATUS_DROPPED: TxLifecycleStatus

class StoredTx(_message.Message):
    __slots__ = ("seq_id", "tx", "received_unix_ns", "sources")
    SEQ_ID_FIELD_NUMBER: _ClassVar[int]
    TX_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    seq_id: int
    tx: _tx_pb2.TxEnvelope
    received_unix_ns: int
    sources: _containers.RepeatedCompositeFieldContainer[SourceSeen]
    def __init__(self, seq_id: _Optional[int] = ..., tx: _Optional[_Union[_tx_pb2.TxEnvelope, _Mapping]] = ..., received_unix_ns: _Optional[int] = ..., sources: _Optional[_Iterable[_Union[SourceSeen, _Mapping]]] = ...) -> None: ...

class SourceSeen(_message.Message):
    __slots__ = ("source_id", "first_seen_unix_ns")
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    source_id: str
    first_seen_unix_ns: int
    def __init__(self, source_id: _Optional[str] = ..., first_seen_unix_ns: _Optional[int] = ...) -> None: ...

class SourceStanding(_message.Message):
    __slots__ = ("source_id", "first_seen_wins", "seen")
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_WINS_FIELD_NUMBER: _ClassVar[int]
    SEEN_FIELD_NUMBER: _ClassVar[int]
    source_id: str
    first_seen_wins: int
    seen: int
    def __init__(self, source_id: _Optional[str] = ..., first_seen_wins: _Optional[int] = ..., seen: _Optional[int] = ...) -> None: ...

class FeatureRecord(_message.Message):
    __slots__ = ("seq_id", "chain_id", "tx_hash", "features")
    SEQ_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    seq_id: int
    chain_id: int
    tx_hash: bytes
    features: _events_pb2.TxFeatures
    def __init__(self, seq_id: _Optional[int] = ..., chain_id: _Optional[int] = ..., tx_hash: _Optional[bytes] = ..., features: _Optional[_Union[_events_pb2.TxFeatures, _Mapping]] = ...) -> None: ...

class FeatureSummary(_message.Message):
    __slots__ = ("chain_id", "protocol", "category", "count")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    protocol: str
    category: _events_pb2.TxCategory
    count: int
    def __init__(self, chain_id: _Optional[int] = ..., protocol: _Optional[str] = ..., category: _Optional[_Union[_events_pb2.TxCategory, str]] = ..., count: _Optional[int] = ...) -> None: ...

class ReplayPoint(_message.Message):
    __slots__ = ("seq_high_water", "committed_unix_ns", "pending_count")
    SEQ_HIGH_WATER_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    PENDING_COUNT_FIELD_NUMBER: _ClassVar[int]
    seq_high_water: int
    committed_unix_ns: int
    pending_count: int
    def __init__(self, seq_high_water: _Optional[int] = ..., committed_unix_ns: _Optional[int] = ..., pending_count: _Optional[int] = ...) -> None: ...

class ChainTotals(_message.Message):
    __slots__ = ("chain_id", "tx_count", "decoded_count", "opportunity_count", "rejected", "replay", "ingest", "drop_ratio", "sources", "selector_coverage", "lifecycle")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    TX_COUNT_FIELD_NUMBER: _ClassVar[int]
    DECODED_COUNT_FIELD_NUMBER: _ClassVar[int]
    OPPORTUNITY_COUNT_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    REPLAY_FIELD_NUMBER: _ClassVar[int]
    INGEST_FIELD_NUMBER: _ClassVar[int]
    DROP_RATIO_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_COVERAGE_FIELD_NUMBER: _ClassVar[int]
    LIFECYCLE_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    tx_count: int
    decoded_count: int
    opportunity_count: int
    rejected: _containers.RepeatedCompositeFieldContainer[_ingest_pb2.RejectCount]
    replay: ReplayPoint
    ingest: _ingest_pb2.ChainIngestStats
    drop_ratio: float
    sources: _containers.RepeatedCompositeFieldContainer[SourceStanding]
    selector_coverage: _containers.RepeatedCompositeFieldContainer[_events_pb2.SelectorCoverage]
    lifecycle: LifecycleTotals
    def __init__(self, chain_id: _Optional[int] = ..., tx_count: _Optional[int] = ..., decoded_count: _Optional[int] = ..., opportunity_count: _Optional[int] = ..., rejected: _Optional[_Iterable[_Union[_ingest_pb2.RejectCount, _Mapping]]] = ..., replay: _Optional[_Union[ReplayPoint, _Mapping]] = ..., ingest: _Optional[_Union[_ingest_pb2.ChainIngestStats, _Mapping]] = ..., drop_ratio: _Optional[float] = ..., sources: _Optional[_Iterable[_Union[SourceStanding, _Mapping]]] = ..., selector_coverage: _Optional[_Iterable[_Union[_events_pb2.SelectorCoverage, _Mapping]]] = ..., lifecycle: _Optional[_Union[LifecycleTotals, _Mapping]] = ...) -> None: ...

class LifecycleTotals(_message.Message):
    __slots__ = ("pending", "included", "replaced", "dropped", "included_private", "reorgs", "reorgs_too_deep", "inclusion_latency_p50_ms", "inclusion_latency_p99_ms", "replaced_rate", "dropped_rate", "private_share")
    PENDING_FIELD_NUMBER: _ClassVar[int]
    INCLUDED_FIELD_NUMBER: _ClassVar[int]
    REPLACED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    INCLUDED_PRIVATE_FIELD_NUMBER: _ClassVar[int]
    REORGS_FIELD_NUMBER: _ClassVar[int]
    REORGS_TOO_DEEP_FIELD_NUMBER: _ClassVar[int]
    INCLUSION_LATENCY_P50_MS_FIELD_NUMBER: _ClassVar[int]
    INCLUSION_LATENCY_P99_MS_FIELD_NUMBER: _ClassVar[int]
    REPLACED_RATE_FIELD_NUMBER: _ClassVar[int]
    DROPPED_RATE_FIELD_NUMBER: _ClassVar[int]
    PRIVATE_SHARE_FIELD_NUMBER: _ClassVar[int]
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
    def __init__(self, pending: _Optional[int] = ..., included: _Optional[int] = ..., replaced: _Optional[int] = ..., dropped: _Optional[int] = ..., included_private: _Optional[int] = ..., reorgs: _Optional[int] = ..., reorgs_too_deep: _Optional[int] = ..., inclusion_latency_p50_ms: _Optional[int] = ..., inclusion_latency_p99_ms: _Optional[int] = ..., replaced_rate: _Optional[float] = ..., dropped_rate: _Optional[float] = ..., private_share: _Optional[float] = ...) -> None: ...

class EventFilter(_message.Message):
    __slots__ = ("chain_ids", "kinds", "senders", "to", "selectors", "methods", "protocols", "tokens_in", "tokens_out", "min_value", "min_score", "addresses", "min_profit_wei")
    CHAIN_IDS_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    SENDERS_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    SELECTORS_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    PROTOCOLS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_IN_FIELD_NUMBER: _ClassVar[int]
    TOKENS_OUT_FIELD_NUMBER: _ClassVar[int]
    MIN_VALUE_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    MIN_PROFIT_WEI_FIELD_NUMBER: _ClassVar[int]
    chain_ids: _containers.RepeatedScalarFieldContainer[int]
    kinds: _containers.RepeatedScalarFieldContainer[_events_pb2.EventKind]
    senders: _containers.RepeatedScalarFieldContainer[bytes]
    to: _containers.RepeatedScalarFieldContainer[bytes]
    selectors: _containers.RepeatedScalarFieldContainer[bytes]
    methods: _containers.RepeatedScalarFieldContainer[str]
    protocols: _containers.RepeatedScalarFieldContainer[str]
    tokens_in: _containers.RepeatedScalarFieldContainer[bytes]
    tokens_out: _containers.RepeatedScalarFieldContainer[bytes]
    min_value: bytes
    min_score: int
    addresses: _containers.RepeatedScalarFieldContainer[bytes]
    min_profit_wei: bytes
    def __init__(self, chain_ids: _Optional[_Iterable[int]] = ..., kinds: _Optional[_Iterable[_Union[_events_pb2.EventKind, str]]] = ..., senders: _Optional[_Iterable[bytes]] = ..., to: _Optional[_Iterable[bytes]] = ..., selectors: _Optional[_Iterable[bytes]] = ..., methods: _Optional[_Iterable[str]] = ..., protocols: _Optional[_Iterable[str]] = ..., tokens_in: _Optional[_Iterable[bytes]] = ..., tokens_out: _Optional[_Iterable[bytes]] = ..., min_value: _Optional[bytes] = ..., min_score: _Optional[int] = ..., addresses: _Optional[_Iterable[bytes]] = ..., min_profit_wei: _Optional[bytes] = ...) -> None: ...

class GetSnapshotRequest(_message.Message):
    __slots__ = ("chain_id", "tx_limit", "opp_limit", "min_score", "feature_limit", "coverage_top")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    TX_LIMIT_FIELD_NUMBER: _ClassVar[int]
    OPP_LIMIT_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    FEATURE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_TOP_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    tx_limit: int
    opp_limit: int
    min_score: int
    feature_limit: int
    coverage_top: int
    def __init__(self, chain_id: _Optional[int] = ..., tx_limit: _Optional[int] = ..., opp_limit: _Optional[int] = ..., min_score: _Optional[int] = ..., feature_limit: _Optional[int] = ..., coverage_top: _Optional[int] = ...) -> None: ...

class GetSnapshotResponse(_message.Message):
    __slots__ = ("chains", "replay", "feature_summary", "recent_features", "top_opportunities", "recent_transactions", "last_seq_id", "recent_transactions_truncated")
    CHAINS_FIELD_NUMBER: _ClassVar[int]
    REPLAY_FIELD_NUMBER: _ClassVar[int]
    FEATURE_SUMMARY_FIELD_NUMBER: _ClassVar[int]
    RECENT_FEATURES_FIELD_NUMBER: _ClassVar[int]
    TOP_OPPORTUNITIES_FIELD_NUMBER: _ClassVar[int]
    RECENT_TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_ID_FIELD_NUMBER: _ClassVar[int]
    RECENT_TRANSACTIONS_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    chains: _containers.RepeatedCompositeFieldContainer[ChainTotals]
    replay: ReplayPoint
    feature_summary: _containers.RepeatedCompositeFieldContainer[FeatureSummary]
    recent_features: _containers.RepeatedCompositeFieldContainer[FeatureRecord]
    top_opportunities: _containers.RepeatedCompositeFieldContainer[_events_pb2.Opportunity]
    recent_transactions: _containers.RepeatedCompositeFieldContainer[StoredTx]
    last_seq_id: int
    recent_transactions_truncated: bool
    def __init__(self, chains: _Optional[_Iterable[_Union[ChainTotals, _Mapping]]] = ..., replay: _Optional[_Union[ReplayPoint, _Mapping]] = ..., feature_summary: _Optional[_Iterable[_Union[FeatureSummary, _Mapping]]] = ..., recent_features: _Optional[_Iterable[_Union[FeatureRecord, _Mapping]]] = ..., top_opportunities: _Optional[_Iterable[_Union[_events_pb2.Opportunity, _Mapping]]] = ..., recent_transactions: _Optional[_Iterable[_Union[StoredTx, _Mapping]]] = ..., last_seq_id: _Optional[int] = ..., recent_transactions_truncated: _Optional[bool] = ...) -> None: ...

class ListTransactionsRequest(_message.Message):
    __slots__ = ("chain_id", "limit", "cursor", "ascending", "status", "filter")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    ASCENDING_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    limit: int
    cursor: int
    ascending: bool
    status: TxLifecycleStatus
    filter: EventFilter
    def __init__(self, chain_id: _Optional[int] = ..., limit: _Optional[int] = ..., cursor: _Optional[int] = ..., ascending: _Optional[bool] = ..., status: _Optional[_Union[TxLifecycleStatus, str]] = ..., filter: _Optional[_Union[EventFilter, _Mapping]] = ...) -> None: ...

class ListTransactionsResponse(_message.Message):
    __slots__ = ("transactions", "next_cursor", "last_seq_id", "truncated")
    TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_ID_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    transactions: _containers.RepeatedCompositeFieldContainer[StoredTx]
    next_cursor: int
    last_seq_id: int
    truncated: bool
    def __init__(self, transactions: _Optional[_Iterable[_Union[StoredTx, _Mapping]]] = ..., next_cursor: _Optional[int] = ..., last_seq_id: _Optional[int] = ..., truncated: _Optional[bool] = ...) -> None: ...

class GetTransactionRequest(_message.Message):
    __slots__ = ("chain_id", "hash")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    hash: bytes
    def __init__(self, chain_id: _Optional[int] = ..., hash: _Optional[bytes] = ...) -> None: ...

class GetTransactionResponse(_message.Message):
    __slots__ = ("transaction", "features", "opportunities", "status", "history")
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    OPPORTUNITIES_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    transaction: StoredTx
    features: FeatureRecord
    opportunities: _containers.RepeatedCompositeFieldContainer[_events_pb2.Opportunity]
    status: TxLifecycleStatus
    history: _containers.RepeatedCompositeFieldContainer[_events_pb2.Event]
    def __init__(self, transaction: _Optional[_Union[StoredTx, _Mapping]] = ..., features: _Optional[_Union[FeatureRecord, _Mapping]] = ..., opportunities: _Optional[_Iterable[_Union[_events_pb2.Opportunity, _Mapping]]] = ..., status: _Optional[_Union[TxLifecycleStatus, str]] = ..., history: _Optional[_Iterable[_Union[_events_pb2.Event, _Mapping]]] = ...) -> None: ...

class ListFeaturesRequest(_message.Message):
    __slots__ = ("chain_id", "limit", "filter")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    limit: int
    filter: EventFilter
    def __init__(self, chain_id: _Optional[int] = ..., limit: _Optional[int] = ..., filter: _Optional[_Union[EventFilter, _Mapping]] = ...) -> None: ...

class ListFeaturesResponse(_message.Message):
    __slots__ = ("features",)
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    features: _containers.RepeatedCompositeFieldContainer[FeatureRecord]
    def __init__(self, features: _Optional[_Iterable[_Union[FeatureRecord, _Mapping]]] = ...) -> None: ...

class ListOpportunitiesRequest(_message.Message):
    __slots__ = ("chain_id", "limit", "min_score", "filter")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    limit: int
    min_score: int
    filter: EventFilter
    def __init__(self, chain_id: _Optional[int] = ..., limit: _Optional[int] = ..., min_score: _Optional[int] = ..., filter: _Optional[_Union[EventFilter, _Mapping]] = ...) -> None: ...

class ListOpportunitiesResponse(_message.Message):
    __slots__ = ("opportunities",)
    OPPORTUNITIES_FIELD_NUMBER: _ClassVar[int]
    opportunities: _containers.RepeatedCompositeFieldContainer[_events_pb2.Opportunity]
    def __init__(self, opportunities: _Optional[_Iterable[_Union[_events_pb2.Opportunity, _Mapping]]] = ...) -> None: ...

class ScanEventsRequest(_message.Message):
    __slots__ = ("from_seq_id", "limit", "chain_id", "kinds", "filter")
    FROM_SEQ_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    from_seq_id: int
    limit: int
    chain_id: int
    kinds: _containers.RepeatedScalarFieldContainer[_events_pb2.EventKind]
    filter: EventFilter
    def __init__(self, from_seq_id: _Optional[int] = ..., limit: _Optional[int] = ..., chain_id: _Optional[int] = ..., kinds: _Optional[_Iterable[_Union[_events_pb2.EventKind, str]]] = ..., filter: _Optional[_Union[EventFilter, _Mapping]] = ...) -> None: ...

class ScanEventsResponse(_message.Message):
    __slots__ = ("events", "next_seq_id", "last_seq_id", "truncated")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_SEQ_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_ID_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_events_pb2.Event]
    next_seq_id: int
    last_seq_id: int
    truncated: bool
    def __init__(self, events: _Optional[_Iterable[_Union[_events_pb2.Event, _Mapping]]] = ..., next_seq_id: _Optional[int] = ..., last_seq_id: _Optional[int] = ..., truncated: _Optional[bool] = ...) -> None: ...

class SubscribeEventsRequest(_message.Message):
    __slots__ = ("from_seq_id", "chain_id", "kinds", "from_head", "filter")
    FROM_SEQ_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    FROM_HEAD_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    from_seq_id: int
    chain_id: int
    kinds: _containers.RepeatedScalarFieldContainer[_events_pb2.EventKind]
    from_head: bool
    filter: EventFilter
    def __init__(self, from_seq_id: _Optional[int] = ..., chain_id: _Optional[int] = ..., kinds: _Optional[_Iterable[_Union[_events_pb2.EventKind, str]]] = ..., from_head: _Optional[bool] = ..., filter: _Optional[_Union[EventFilter, _Mapping]] = ...) -> None: ...

class SubscribeEventsResponse(_message.Message):
    __slots__ = ("events", "last_seq_id")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_ID_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_events_pb2.Event]
    last_seq_id: int
    def __init__(self, events: _Optional[_Iterable[_Union[_events_pb2.Event, _Mapping]]] = ..., last_seq_id: _Optional[int] = ...) -> None: ...

class ListBlocksRequest(_message.Message):
    __slots__ = ("chain_id", "limit", "cursor")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    limit: int
    cursor: int
    def __init__(self, chain_id: _Optional[int] = ..., limit: _Optional[int] = ..., cursor: _Optional[int] = ...) -> None: ...

class ListBlocksBlock(_message.Message):
    __slots__ = ("seq_id", "chain_id", "number", "hash", "parent_hash", "timestamp", "base_fee", "tx_count", "seen_pending", "source_id", "seen_unix_ns", "received_unix_ns", "reverted", "inclusion_latency_p50_ms")
    SEQ_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    PARENT_HASH_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    BASE_FEE_FIELD_NUMBER: _ClassVar[int]
    TX_COUNT_FIELD_NUMBER: _ClassVar[int]
    SEEN_PENDING_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    SEEN_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    REVERTED_FIELD_NUMBER: _ClassVar[int]
    INCLUSION_LATENCY_P50_MS_FIELD_NUMBER: _ClassVar[int]
    seq_id: int
    chain_id: int
    number: int
    hash: bytes
    parent_hash: bytes
    timestamp: int
    base_fee: bytes
    tx_count: int
    seen_pending: int
    source_id: str
    seen_unix_ns: int
    received_unix_ns: int
    reverted: int
    inclusion_latency_p50_ms: int
    def __init__(self, seq_id: _Optional[int] = ..., chain_id: _Optional[int] = ..., number: _Optional[int] = ..., hash: _Optional[bytes] = ..., parent_hash: _Optional[bytes] = ..., timestamp: _Optional[int] = ..., base_fee: _Optional[bytes] = ..., tx_count: _Optional[int] = ..., seen_pending: _Optional[int] = ..., source_id: _Optional[str] = ..., seen_unix_ns: _Optional[int] = ..., received_unix_ns: _Optional[int] = ..., reverted: _Optional[int] = ..., inclusion_latency_p50_ms: _Optional[int] = ...) -> None: ...

class ListBlocksResponse(_message.Message):
    __slots__ = ("blocks", "next_cursor")
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    blocks: _containers.RepeatedCompositeFieldContainer[ListBlocksBlock]
    next_cursor: int
    def __init__(self, blocks: _Optional[_Iterable[_Union[ListBlocksBlock, _Mapping]]] = ..., next_cursor: _Optional[int] = ...) -> None: ...

class ManyFilter(_message.Message):
    __slots__ = ("id", "filter")
    ID_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    id: int
    filter: EventFilter
    def __init__(self, id: _Optional[int] = ..., filter: _Optional[_Union[EventFilter, _Mapping]] = ...) -> None: ...

class SubscribeManyRequest(_message.Message):
    __slots__ = ("add", "remove")
    ADD_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    add: _containers.RepeatedCompositeFieldContainer[ManyFilter]
    remove: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, add: _Optional[_Iterable[_Union[ManyFilter, _Mapping]]] = ..., remove: _Optional[_Iterable[int]] = ...) -> None: ...

class ManyEvent(_message.Message):
    __slots__ = ("event", "filter_ids")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    FILTER_IDS_FIELD_NUMBER: _ClassVar[int]
    event: _events_pb2.Event
    filter_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, event: _Optional[_Union[_events_pb2.Event, _Mapping]] = ..., filter_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class ManyFilterAdded(_message.Message):
    __slots__ = ("id", "from_seq_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQ_ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    from_seq_id: int
    def __init__(self, id: _Optional[int] = ..., from_seq_id: _Optional[int] = ...) -> None: ...

class SubscribeManyResponse(_message.Message):
    __slots__ = ("events", "last_seq_id", "added", "removed")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_ID_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[ManyEvent]
    last_seq_id: int
    added: _containers.RepeatedCompositeFieldContainer[ManyFilterAdded]
    removed: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, events: _Optional[_Iterable[_Union[ManyEvent, _Mapping]]] = ..., last_seq_id: _Optional[int] = ..., added: _Optional[_Iterable[_Union[ManyFilterAdded, _Mapping]]] = ..., removed: _Optional[_Iterable[int]] = ...) -> None: ...
