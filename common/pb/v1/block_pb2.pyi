from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TxStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TX_STATUS_UNSPECIFIED: _ClassVar[TxStatus]
    TX_STATUS_OK: _ClassVar[TxStatus]
    TX_STATUS_REVERTED: _ClassVar[TxStatus]
TX_STATUS_UNSPECIFIED: TxStatus
TX_STATUS_OK: TxStatus
TX_STATUS_REVERTED: TxStatus

class IncludedTx(_message.Message):
    __slots__ = ("hash", "index", "sender", "nonce", "status", "gas_used", "effective_gas_price")
    HASH_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    GAS_USED_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_GAS_PRICE_FIELD_NUMBER: _ClassVar[int]
    hash: bytes
    index: int
    sender: bytes
    nonce: int
    status: TxStatus
    gas_used: int
    effective_gas_price: bytes
    def __init__(self, hash: _Optional[bytes] = ..., index: _Optional[int] = ..., sender: _Optional[bytes] = ..., nonce: _Optional[int] = ..., status: _Optional[_Union[TxStatus, str]] = ..., gas_used: _Optional[int] = ..., effective_gas_price: _Optional[bytes] = ...) -> None: ...

class BlockEnvelope(_message.Message):
    __slots__ = ("chain_id", "number", "hash", "parent_hash", "timestamp", "base_fee", "source_id", "seen_unix_ns", "txs", "truncated", "tx_count")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    PARENT_HASH_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    BASE_FEE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    SEEN_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    TXS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    TX_COUNT_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    number: int
    hash: bytes
    parent_hash: bytes
    timestamp: int
    base_fee: bytes
    source_id: str
    seen_unix_ns: int
    txs: _containers.RepeatedCompositeFieldContainer[IncludedTx]
    truncated: bool
    tx_count: int
    def __init__(self, chain_id: _Optional[int] = ..., number: _Optional[int] = ..., hash: _Optional[bytes] = ..., parent_hash: _Optional[bytes] = ..., timestamp: _Optional[int] = ..., base_fee: _Optional[bytes] = ..., source_id: _Optional[str] = ..., seen_unix_ns: _Optional[int] = ..., txs: _Optional[_Iterable[_Union[IncludedTx, _Mapping]]] = ..., truncated: _Optional[bool] = ..., tx_count: _Optional[int] = ...) -> None: ...
