from common.pb.v1 import block_pb2 as _block_pb2
from common.pb.v1 import pool_pb2 as _pool_pb2
from common.pb.v1 import tx_pb2 as _tx_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_KIND_UNSPECIFIED: _ClassVar[EventKind]
    EVENT_KIND_TX_SEEN: _ClassVar[EventKind]
    EVENT_KIND_TX_DECODED: _ClassVar[EventKind]
    EVENT_KIND_OPP_DETECTED: _ClassVar[EventKind]
    EVENT_KIND_TX_SOURCE_SEEN: _ClassVar[EventKind]
    EVENT_KIND_TX_INCLUDED: _ClassVar[EventKind]
    EVENT_KIND_TX_REPLACED: _ClassVar[EventKind]
    EVENT_KIND_TX_DROPPED: _ClassVar[EventKind]
    EVENT_KIND_BLOCK: _ClassVar[EventKind]
    EVENT_KIND_REORG: _ClassVar[EventKind]
    EVENT_KIND_POOL_STATE: _ClassVar[EventKind]

class TxCategory(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TX_CATEGORY_UNSPECIFIED: _ClassVar[TxCategory]
    TX_CATEGORY_SWAP: _ClassVar[TxCategory]
    TX_CATEGORY_TRANSFER: _ClassVar[TxCategory]
    TX_CATEGORY_APPROVAL: _ClassVar[TxCategory]
    TX_CATEGORY_OTHER: _ClassVar[TxCategory]

class OpportunityKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPPORTUNITY_KIND_UNSPECIFIED: _ClassVar[OpportunityKind]
    OPPORTUNITY_KIND_SANDWICH_CANDIDATE: _ClassVar[OpportunityKind]
    OPPORTUNITY_KIND_BACKRUN_CANDIDATE: _ClassVar[OpportunityKind]
    OPPORTUNITY_KIND_ARB_CANDIDATE: _ClassVar[OpportunityKind]

class DropReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DROP_REASON_UNSPECIFIED: _ClassVar[DropReason]
    DROP_REASON_EXPIRED: _ClassVar[DropReason]
    DROP_REASON_EVICTED: _ClassVar[DropReason]
    DROP_REASON_NONCE_PASSED: _ClassVar[DropReason]
EVENT_KIND_UNSPECIFIED: EventKind
EVENT_KIND_TX_SEEN: EventKind
EVENT_KIND_TX_DECODED: EventKind
EVENT_KIND_OPP_DETECTED: EventKind
EVENT_KIND_TX_SOURCE_SEEN: EventKind
EVENT_KIND_TX_INCLUDED: EventKind
EVENT_KIND_TX_REPLACED: EventKind
EVENT_KIND_TX_DROPPED: EventKind
EVENT_KIND_BLOCK: EventKind
EVENT_KIND_REORG: EventKind
EVENT_KIND_POOL_STATE: EventKind
TX_CATEGORY_UNSPECIFIED: TxCategory
TX_CATEGORY_SWAP: TxCategory
TX_CATEGORY_TRANSFER: TxCategory
TX_CATEGORY_APPROVAL: TxCategory
TX_CATEGORY_OTHER: TxCategory
OPPORTUNITY_KIND_UNSPECIFIED: OpportunityKind
OPPORTUNITY_KIND_SANDWICH_CANDIDATE: OpportunityKind
OPPORTUNITY_KIND_BACKRUN_CANDIDATE: OpportunityKind
OPPORTUNITY_KIND_ARB_CANDIDATE: OpportunityKind
DROP_REASON_UNSPECIFIED: DropReason
DROP_REASON_EXPIRED: DropReason
DROP_REASON_EVICTED: DropReason
DROP_REASON_NONCE_PASSED: DropReason

class TxFeatures(_message.Message):
    __slots__ = ("protocol", "category", "method", "selector", "token_in", "token_out", "amount_in", "amount_out_min", "amount_in_max", "amount_out", "path", "fee_tiers", "recipient", "deadline", "value", "gas_price", "priority_fee", "calldata_len", "decoded", "decode_error", "args", "args_truncated")
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_OUT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_IN_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_OUT_MIN_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_IN_MAX_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_OUT_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    FEE_TIERS_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    GAS_PRICE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FEE_FIELD_NUMBER: _ClassVar[int]
    CALLDATA_LEN_FIELD_NUMBER: _ClassVar[int]
    DECODED_FIELD_NUMBER: _ClassVar[int]
    DECODE_ERROR_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    ARGS_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    protocol: str
    category: TxCategory
    method: str
    selector: bytes
    token_in: bytes
    token_out: bytes
    amount_in: bytes
    amount_out_min: bytes
    amount_in_max: bytes
    amount_out: bytes
    path: _containers.RepeatedScalarFieldContainer[bytes]
    fee_tiers: _containers.RepeatedScalarFieldContainer[int]
    recipient: bytes
    deadline: int
    value: bytes
    gas_price: bytes
    priority_fee: bytes
    calldata_len: int
    decoded: bool
    decode_error: str
    args: _containers.RepeatedCompositeFieldContainer[DecodedArg]
    args_truncated: bool
    def __init__(self, protocol: _Optional[str] = ..., category: _Optional[_Union[TxCategory, str]] = ..., method: _Optional[str] = ..., selector: _Optional[bytes] = ..., token_in: _Optional[bytes] = ..., token_out: _Optional[bytes] = ..., amount_in: _Optional[bytes] = ..., amount_out_min: _Optional[bytes] = ..., amount_in_max: _Optional[bytes] = ..., amount_out: _Optional[bytes] = ..., path: _Optional[_Iterable[bytes]] = ..., fee_tiers: _Optional[_Iterable[int]] = ..., recipient: _Optional[bytes] = ..., deadline: _Optional[int] = ..., value: _Optional[bytes] = ..., gas_price: _Optional[bytes] = ..., priority_fee: _Optional[bytes] = ..., calldata_len: _Optional[int] = ..., decoded: _Optional[bool] = ..., decode_error: _Optional[str] = ..., args: _Optional[_Iterable[_Union[DecodedArg, _Mapping]]] = ..., args_truncated: _Optional[bool] = ...) -> None: ...

class SelectorCoverage(_message.Message):
    __slots__ = ("selector", "method", "decoded", "failed", "unknown")
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    DECODED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    selector: bytes
    method: str
    decoded: int
    failed: int
    unknown: int
    def __init__(self, selector: _Optional[bytes] = ..., method: _Optional[str] = ..., decoded: _Optional[int] = ..., failed: _Optional[int] = ..., unknown: _Optional[int] = ...) -> None: ...

class DecodedArg(_message.Message):
    __slots__ = ("name", "type", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    value: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class Opportunity(_message.Message):
    __slots__ = ("chain_id", "tx_hash", "kind", "score", "reasons", "protocol", "token_in", "token_out", "notional_wei", "slippage_bps", "seq_id", "valued", "valuation_note", "net_profit_wei", "sandwich_profit_wei", "frontrun_amount_in", "backrun_profit_wei", "gas_cost_wei", "price_impact_bps", "profit_token", "state_block_number", "backrun_amount_in")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_OUT_FIELD_NUMBER: _ClassVar[int]
    NOTIONAL_WEI_FIELD_NUMBER: _ClassVar[int]
    SLIPPAGE_BPS_FIELD_NUMBER: _ClassVar[int]
    SEQ_ID_FIELD_NUMBER: _ClassVar[int]
    VALUED_FIELD_NUMBER: _ClassVar[int]
    VALUATION_NOTE_FIELD_NUMBER: _ClassVar[int]
    NET_PROFIT_WEI_FIELD_NUMBER: _ClassVar[int]
    SANDWICH_PROFIT_WEI_FIELD_NUMBER: _ClassVar[int]
    FRONTRUN_AMOUNT_IN_FIELD_NUMBER: _ClassVar[int]
    BACKRUN_PROFIT_WEI_FIELD_NUMBER: _ClassVar[int]
    GAS_COST_WEI_FIELD_NUMBER: _ClassVar[int]
    PRICE_IMPACT_BPS_FIELD_NUMBER: _ClassVar[int]
    PROFIT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_BLOCK_NUMBER_FIELD_NUMBER: _ClassVar[int]
    BACKRUN_AMOUNT_IN_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    tx_hash: bytes
    kind: OpportunityKind
    score: int
    reasons: _containers.RepeatedScalarFieldContainer[str]
    protocol: str
    token_in: bytes
    token_out: bytes
    notional_wei: bytes
    slippage_bps: int
    seq_id: int
    valued: bool
    valuation_note: str
    net_profit_wei: bytes
    sandwich_profit_wei: bytes
    frontrun_amount_in: bytes
    backrun_profit_wei: bytes
    gas_cost_wei: bytes
    price_impact_bps: int
    profit_token: bytes
    state_block_number: int
    backrun_amount_in: bytes
    def __init__(self, chain_id: _Optional[int] = ..., tx_hash: _Optional[bytes] = ..., kind: _Optional[_Union[OpportunityKind, str]] = ..., score: _Optional[int] = ..., reasons: _Optional[_Iterable[str]] = ..., protocol: _Optional[str] = ..., token_in: _Optional[bytes] = ..., token_out: _Optional[bytes] = ..., notional_wei: _Optional[bytes] = ..., slippage_bps: _Optional[int] = ..., seq_id: _Optional[int] = ..., valued: _Optional[bool] = ..., valuation_note: _Optional[str] = ..., net_profit_wei: _Optional[bytes] = ..., sandwich_profit_wei: _Optional[bytes] = ..., frontrun_amount_in: _Optional[bytes] = ..., backrun_profit_wei: _Optional[bytes] = ..., gas_cost_wei: _Optional[bytes] = ..., price_impact_bps: _Optional[int] = ..., profit_token: _Optional[bytes] = ..., state_block_number: _Optional[int] = ..., backrun_amount_in: _Optional[bytes] = ...) -> None: ...

class TxSeen(_message.Message):
    __slots__ = ("tx",)
    TX_FIELD_NUMBER: _ClassVar[int]
    tx: _tx_pb2.TxEnvelope
    def __init__(self, tx: _Optional[_Union[_tx_pb2.TxEnvelope, _Mapping]] = ...) -> None: ...

class TxDecoded(_message.Message):
    __slots__ = ("features",)
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    features: TxFeatures
    def __init__(self, features: _Optional[_Union[TxFeatures, _Mapping]] = ...) -> None: ...

class OppDetected(_message.Message):
    __slots__ = ("opportunity",)
    OPPORTUNITY_FIELD_NUMBER: _ClassVar[int]
    opportunity: Opportunity
    def __init__(self, opportunity: _Optional[_Union[Opportunity, _Mapping]] = ...) -> None: ...

class TxSourceSeen(_message.Message):
    __slots__ = ("sighting", "tx_seq_id")
    SIGHTING_FIELD_NUMBER: _ClassVar[int]
    TX_SEQ_ID_FIELD_NUMBER: _ClassVar[int]
    sighting: _tx_pb2.TxSighting
    tx_seq_id: int
    def __init__(self, sighting: _Optional[_Union[_tx_pb2.TxSighting, _Mapping]] = ..., tx_seq_id: _Optional[int] = ...) -> None: ...

class BlockSeen(_message.Message):
    __slots__ = ("block", "seen_pending", "inclusion_latency_p50_ms", "included_tracked")
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    SEEN_PENDING_FIELD_NUMBER: _ClassVar[int]
    INCLUSION_LATENCY_P50_MS_FIELD_NUMBER: _ClassVar[int]
    INCLUDED_TRACKED_FIELD_NUMBER: _ClassVar[int]
    block: _block_pb2.BlockEnvelope
    seen_pending: int
    inclusion_latency_p50_ms: int
    included_tracked: int
    def __init__(self, block: _Optional[_Union[_block_pb2.BlockEnvelope, _Mapping]] = ..., seen_pending: _Optional[int] = ..., inclusion_latency_p50_ms: _Optional[int] = ..., included_tracked: _Optional[int] = ...) -> None: ...

class TxIncluded(_message.Message):
    __slots__ = ("block_number", "block_hash", "index", "status", "inclusion_latency_ms", "tx_seq_id", "block_seq_id", "reincluded")
    BLOCK_NUMBER_FIELD_NUMBER: _ClassVar[int]
    BLOCK_HASH_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    INCLUSION_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    TX_SEQ_ID_FIELD_NUMBER: _ClassVar[int]
    BLOCK_SEQ_ID_FIELD_NUMBER: _ClassVar[int]
    REINCLUDED_FIELD_NUMBER: _ClassVar[int]
    block_number: int
    block_hash: bytes
    index: int
    status: _block_pb2.TxStatus
    inclusion_latency_ms: int
    tx_seq_id: int
    block_seq_id: int
    reincluded: bool
    def __init__(self, block_number: _Optional[int] = ..., block_hash: _Optional[bytes] = ..., index: _Optional[int] = ..., status: _Optional[_Union[_block_pb2.TxStatus, str]] = ..., inclusion_latency_ms: _Optional[int] = ..., tx_seq_id: _Optional[int] = ..., block_seq_id: _Optional[int] = ..., reincluded: _Optional[bool] = ...) -> None: ...

class TxReplaced(_message.Message):
    __slots__ = ("by_hash", "fee_bump_bps", "cancel", "tx_seq_id", "by_block")
    BY_HASH_FIELD_NUMBER: _ClassVar[int]
    FEE_BUMP_BPS_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    TX_SEQ_ID_FIELD_NUMBER: _ClassVar[int]
    BY_BLOCK_FIELD_NUMBER: _ClassVar[int]
    by_hash: bytes
    fee_bump_bps: int
    cancel: bool
    tx_seq_id: int
    by_block: bool
    def __init__(self, by_hash: _Optional[bytes] = ..., fee_bump_bps: _Optional[int] = ..., cancel: _Optional[bool] = ..., tx_seq_id: _Optional[int] = ..., by_block: _Optional[bool] = ...) -> None: ...

class TxDropped(_message.Message):
    __slots__ = ("reason", "tx_seq_id", "source_id")
    REASON_FIELD_NUMBER: _ClassVar[int]
    TX_SEQ_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    reason: DropReason
    tx_seq_id: int
    source_id: str
    def __init__(self, reason: _Optional[_Union[DropReason, str]] = ..., tx_seq_id: _Optional[int] = ..., source_id: _Optional[str] = ...) -> None: ...

class Reorg(_message.Message):
    __slots__ = ("depth", "new_hash", "number", "orphaned_hashes", "unincluded", "too_deep")
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    NEW_HASH_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    ORPHANED_HASHES_FIELD_NUMBER: _ClassVar[int]
    UNINCLUDED_FIELD_NUMBER: _ClassVar[int]
    TOO_DEEP_FIELD_NUMBER: _ClassVar[int]
    depth: int
    new_hash: bytes
    number: int
    orphaned_hashes: _containers.RepeatedScalarFieldContainer[bytes]
    unincluded: int
    too_deep: bool
    def __init__(self, depth: _Optional[int] = ..., new_hash: _Optional[bytes] = ..., number: _Optional[int] = ..., orphaned_hashes: _Optional[_Iterable[bytes]] = ..., unincluded: _Optional[int] = ..., too_deep: _Optional[bool] = ...) -> None: ...

class PoolStateSeen(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: _pool_pb2.PoolState
    def __init__(self, state: _Optional[_Union[_pool_pb2.PoolState, _Mapping]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("seq_id", "chain_id", "kind", "tx_hash", "first_seen_unix_ns", "received_unix_ns", "source_id", "tx_seen", "tx_decoded", "opp_detected", "tx_source_seen", "tx_included", "tx_replaced", "tx_dropped", "block", "reorg", "pool_state")
    SEQ_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TX_HASH_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    TX_SEEN_FIELD_NUMBER: _ClassVar[int]
    TX_DECODED_FIELD_NUMBER: _ClassVar[int]
    OPP_DETECTED_FIELD_NUMBER: _ClassVar[int]
    TX_SOURCE_SEEN_FIELD_NUMBER: _ClassVar[int]
    TX_INCLUDED_FIELD_NUMBER: _ClassVar[int]
    TX_REPLACED_FIELD_NUMBER: _ClassVar[int]
    TX_DROPPED_FIELD_NUMBER: _ClassVar[int]
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    REORG_FIELD_NUMBER: _ClassVar[int]
    POOL_STATE_FIELD_NUMBER: _ClassVar[int]
    seq_id: int
    chain_id: int
    kind: EventKind
    tx_hash: bytes
    first_seen_unix_ns: int
    received_unix_ns: int
    source_id: str
    tx_seen: TxSeen
    tx_decoded: TxDecoded
    opp_detected: OppDetected
    tx_source_seen: TxSourceSeen
    tx_included: TxIncluded
    tx_replaced: TxReplaced
    tx_dropped: TxDropped
    block: BlockSeen
    reorg: Reorg
    pool_state: PoolStateSeen
    def __init__(self, seq_id: _Optional[int] = ..., chain_id: _Optional[int] = ..., kind: _Optional[_Union[EventKind, str]] = ..., tx_hash: _Optional[bytes] = ..., first_seen_unix_ns: _Optional[int] = ..., received_unix_ns: _Optional[int] = ..., source_id: _Optional[str] = ..., tx_seen: _Optional[_Union[TxSeen, _Mapping]] = ..., tx_decoded: _Optional[_Union[TxDecoded, _Mapping]] = ..., opp_detected: _Optional[_Union[OppDetected, _Mapping]] = ..., tx_source_seen: _Optional[_Union[TxSourceSeen, _Mapping]] = ..., tx_included: _Optional[_Union[TxIncluded, _Mapping]] = ..., tx_replaced: _Optional[_Union[TxReplaced, _Mapping]] = ..., tx_dropped: _Optional[_Union[TxDropped, _Mapping]] = ..., block: _Optional[_Union[BlockSeen, _Mapping]] = ..., reorg: _Optional[_Union[Reorg, _Mapping]] = ..., pool_state: _Optional[_Union[PoolStateSeen, _Mapping]] = ...) -> None: ...
