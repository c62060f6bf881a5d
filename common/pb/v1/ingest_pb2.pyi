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

class GoneReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GONE_REASON_UNSPECIFIED: _ClassVar[GoneReason]
    GONE_REASON_EVICTED: _ClassVar[GoneReason]

class RejectReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REJECT_REASON_UNSPECIFIED: _ClassVar[RejectReason]
    REJECT_REASON_BAD_HASH: _ClassVar[RejectReason]
    REJECT_REASON_BAD_ADDRESS: _ClassVar[RejectReason]
    REJECT_REASON_UNKNOWN_CHAIN: _ClassVar[RejectReason]
    REJECT_REASON_TOO_LARGE: _ClassVar[RejectReason]
    REJECT_REASON_BAD_QUANTITY: _ClassVar[RejectReason]
    REJECT_REASON_STORAGE_FULL: _ClassVar[RejectReason]

class MempoolVisibility(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEMPOOL_VISIBILITY_UNSPECIFIED: _ClassVar[MempoolVisibility]
    MEMPOOL_VISIBILITY_VISIBLE: _ClassVar[MempoolVisibility]
    MEMPOOL_VISIBILITY_NOT_VISIBLE: _ClassVar[MempoolVisibility]
GONE_REASON_UNSPECIFIED: GoneReason
GONE_REASON_EVICTED: GoneReason
REJECT_REASON_UNSPECIFIED: RejectReason
REJECT_REASON_BAD_HASH: RejectReason
REJECT_REASON_BAD_ADDRESS: RejectReason
REJECT_REASON_UNKNOWN_CHAIN: RejectReason
REJECT_REASON_TOO_LARGE: RejectReason
REJECT_REASON_BAD_QUANTITY: RejectReason
REJECT_REASON_STORAGE_FULL: RejectReason
MEMPOOL_VISIBILITY_UNSPECIFIED: MempoolVisibility
MEMPOOL_VISIBILITY_VISIBLE: MempoolVisibility
MEMPOOL_VISIBILITY_NOT_VISIBLE: MempoolVisibility

class TxBatch(_message.Message):
    __slots__ = ("session_id", "batch_seq", "envelopes", "chain_stats", "sightings", "blocks", "gone", "pools")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    BATCH_SEQ_FIELD_NUMBER: _ClassVar[int]
    ENVELOPES_FIELD_NUMBER: _ClassVar[int]
    CHAIN_STATS_FIELD_NUMBER: _ClassVar[int]
    SIGHTINGS_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    GONE_FIELD_NUMBER: _ClassVar[int]
    POOLS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    batch_seq: int
    envelopes: _containers.RepeatedCompositeFieldContainer[_tx_pb2.TxEnvelope]
    chain_stats: _containers.RepeatedCompositeFieldContainer[ChainIngestStats]
    sightings: _containers.RepeatedCompositeFieldContainer[_tx_pb2.TxSighting]
    blocks: _containers.RepeatedCompositeFieldContainer[_block_pb2.BlockEnvelope]
    gone: _containers.RepeatedCompositeFieldContainer[TxGone]
    pools: _containers.RepeatedCompositeFieldContainer[_pool_pb2.PoolState]
    def __init__(self, session_id: _Optional[str] = ..., batch_seq: _Optional[int] = ..., envelopes: _Optional[_Iterable[_Union[_tx_pb2.TxEnvelope, _Mapping]]] = ..., chain_stats: _Optional[_Iterable[_Union[ChainIngestStats, _Mapping]]] = ..., sightings: _Optional[_Iterable[_Union[_tx_pb2.TxSighting, _Mapping]]] = ..., blocks: _Optional[_Iterable[_Union[_block_pb2.BlockEnvelope, _Mapping]]] = ..., gone: _Optional[_Iterable[_Union[TxGone, _Mapping]]] = ..., pools: _Optional[_Iterable[_Union[_pool_pb2.PoolState, _Mapping]]] = ...) -> None: ...

class TxGone(_message.Message):
    __slots__ = ("chain_id", "hash", "reason", "source_id", "seen_unix_ns")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    SEEN_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    hash: bytes
    reason: GoneReason
    source_id: str
    seen_unix_ns: int
    def __init__(self, chain_id: _Optional[int] = ..., hash: _Optional[bytes] = ..., reason: _Optional[_Union[GoneReason, str]] = ..., source_id: _Optional[str] = ..., seen_unix_ns: _Optional[int] = ...) -> None: ...

class RejectCount(_message.Message):
    __slots__ = ("reason", "count")
    REASON_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    reason: RejectReason
    count: int
    def __init__(self, reason: _Optional[_Union[RejectReason, str]] = ..., count: _Optional[int] = ...) -> None: ...

class IngestAck(_message.Message):
    __slots__ = ("batch_seq", "first_seq_id", "last_seq_id", "accepted", "duplicates", "rejected", "sightings_stored", "sightings_ignored", "blocks_stored", "blocks_ignored", "gone_stored", "gone_ignored", "pools_stored", "pools_ignored")
    BATCH_SEQ_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQ_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    SIGHTINGS_STORED_FIELD_NUMBER: _ClassVar[int]
    SIGHTINGS_IGNORED_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_STORED_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_IGNORED_FIELD_NUMBER: _ClassVar[int]
    GONE_STORED_FIELD_NUMBER: _ClassVar[int]
    GONE_IGNORED_FIELD_NUMBER: _ClassVar[int]
    POOLS_STORED_FIELD_NUMBER: _ClassVar[int]
    POOLS_IGNORED_FIELD_NUMBER: _ClassVar[int]
    batch_seq: int
    first_seq_id: int
    last_seq_id: int
    accepted: int
    duplicates: int
    rejected: _containers.RepeatedCompositeFieldContainer[RejectCount]
    sightings_stored: int
    sightings_ignored: int
    blocks_stored: int
    blocks_ignored: int
    gone_stored: int
    gone_ignored: int
    pools_stored: int
    pools_ignored: int
    def __init__(self, batch_seq: _Optional[int] = ..., first_seq_id: _Optional[int] = ..., last_seq_id: _Optional[int] = ..., accepted: _Optional[int] = ..., duplicates: _Optional[int] = ..., rejected: _Optional[_Iterable[_Union[RejectCount, _Mapping]]] = ..., sightings_stored: _Optional[int] = ..., sightings_ignored: _Optional[int] = ..., blocks_stored: _Optional[int] = ..., blocks_ignored: _Optional[int] = ..., gone_stored: _Optional[int] = ..., gone_ignored: _Optional[int] = ..., pools_stored: _Optional[int] = ..., pools_ignored: _Optional[int] = ...) -> None: ...

class SourceHealth(_message.Message):
    __slots__ = ("source_id", "connected", "silent", "notifications", "reconnects", "last_notification_unix_ms")
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    SILENT_FIELD_NUMBER: _ClassVar[int]
    NOTIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    RECONNECTS_FIELD_NUMBER: _ClassVar[int]
    LAST_NOTIFICATION_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    source_id: str
    connected: bool
    silent: bool
    notifications: int
    reconnects: int
    last_notification_unix_ms: int
    def __init__(self, source_id: _Optional[str] = ..., connected: _Optional[bool] = ..., silent: _Optional[bool] = ..., notifications: _Optional[int] = ..., reconnects: _Optional[int] = ..., last_notification_unix_ms: _Optional[int] = ...) -> None: ...

class DropCount(_message.Message):
    __slots__ = ("reason", "count")
    REASON_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    reason: str
    count: int
    def __init__(self, reason: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class ChainIngestStats(_message.Message):
    __slots__ = ("chain_id", "seen", "delivered", "dropped", "sources", "visibility", "as_of_unix_ms")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    SEEN_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    VISIBILITY_FIELD_NUMBER: _ClassVar[int]
    AS_OF_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    seen: int
    delivered: int
    dropped: _containers.RepeatedCompositeFieldContainer[DropCount]
    sources: _containers.RepeatedCompositeFieldContainer[SourceHealth]
    visibility: MempoolVisibility
    as_of_unix_ms: int
    def __init__(self, chain_id: _Optional[int] = ..., seen: _Optional[int] = ..., delivered: _Optional[int] = ..., dropped: _Optional[_Iterable[_Union[DropCount, _Mapping]]] = ..., sources: _Optional[_Iterable[_Union[SourceHealth, _Mapping]]] = ..., visibility: _Optional[_Union[MempoolVisibility, str]] = ..., as_of_unix_ms: _Optional[int] = ...) -> None: ...
