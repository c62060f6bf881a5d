from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RawTxOrigin(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RAW_TX_ORIGIN_UNSPECIFIED: _ClassVar[RawTxOrigin]
    RAW_TX_ORIGIN_REENCODED: _ClassVar[RawTxOrigin]
    RAW_TX_ORIGIN_NODE: _ClassVar[RawTxOrigin]
RAW_TX_ORIGIN_UNSPECIFIED: RawTxOrigin
RAW_TX_ORIGIN_REENCODED: RawTxOrigin
RAW_TX_ORIGIN_NODE: RawTxOrigin

class TxEnvelope(_message.Message):
    __slots__ = ("chain_id", "hash", "sender", "to", "nonce", "value", "gas_price", "max_fee_per_gas", "max_priority_fee_per_gas", "gas", "tx_type", "input", "source_id", "first_seen_unix_ns", "v", "y_parity", "r", "s", "access_list", "max_fee_per_blob_gas", "blob_versioned_hashes", "authorization_list", "raw_tx", "raw_tx_origin")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    GAS_PRICE_FIELD_NUMBER: _ClassVar[int]
    MAX_FEE_PER_GAS_FIELD_NUMBER: _ClassVar[int]
    MAX_PRIORITY_FEE_PER_GAS_FIELD_NUMBER: _ClassVar[int]
    GAS_FIELD_NUMBER: _ClassVar[int]
    TX_TYPE_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    V_FIELD_NUMBER: _ClassVar[int]
    Y_PARITY_FIELD_NUMBER: _ClassVar[int]
    R_FIELD_NUMBER: _ClassVar[int]
    S_FIELD_NUMBER: _ClassVar[int]
    ACCESS_LIST_FIELD_NUMBER: _ClassVar[int]
    MAX_FEE_PER_BLOB_GAS_FIELD_NUMBER: _ClassVar[int]
    BLOB_VERSIONED_HASHES_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZATION_LIST_FIELD_NUMBER: _ClassVar[int]
    RAW_TX_FIELD_NUMBER: _ClassVar[int]
    RAW_TX_ORIGIN_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    hash: bytes
    sender: bytes
    to: bytes
    nonce: int
    value: bytes
    gas_price: bytes
    max_fee_per_gas: bytes
    max_priority_fee_per_gas: bytes
    gas: int
    tx_type: int
    input: bytes
    source_id: str
    first_seen_unix_ns: int
    v: bytes
    y_parity: int
    r: bytes
    s: bytes
    access_list: _containers.RepeatedCompositeFieldContainer[AccessListEntry]
    max_fee_per_blob_gas: bytes
    blob_versioned_hashes: _containers.RepeatedScalarFieldContainer[bytes]
    authorization_list: _containers.RepeatedCompositeFieldContainer[Authorization]
    raw_tx: bytes
    raw_tx_origin: RawTxOrigin
    def __init__(self, chain_id: _Optional[int] = ..., hash: _Optional[bytes] = ..., sender: _Optional[bytes] = ..., to: _Optional[bytes] = ..., nonce: _Optional[int] = ..., value: _Optional[bytes] = ..., gas_price: _Optional[bytes] = ..., max_fee_per_gas: _Optional[bytes] = ..., max_priority_fee_per_gas: _Optional[bytes] = ..., gas: _Optional[int] = ..., tx_type: _Optional[int] = ..., input: _Optional[bytes] = ..., source_id: _Optional[str] = ..., first_seen_unix_ns: _Optional[int] = ..., v: _Optional[bytes] = ..., y_parity: _Optional[int] = ..., r: _Optional[bytes] = ..., s: _Optional[bytes] = ..., access_list: _Optional[_Iterable[_Union[AccessListEntry, _Mapping]]] = ..., max_fee_per_blob_gas: _Optional[bytes] = ..., blob_versioned_hashes: _Optional[_Iterable[bytes]] = ..., authorization_list: _Optional[_Iterable[_Union[Authorization, _Mapping]]] = ..., raw_tx: _Optional[bytes] = ..., raw_tx_origin: _Optional[_Union[RawTxOrigin, str]] = ...) -> None: ...

class AccessListEntry(_message.Message):
    __slots__ = ("address", "storage_keys")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STORAGE_KEYS_FIELD_NUMBER: _ClassVar[int]
    address: bytes
    storage_keys: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, address: _Optional[bytes] = ..., storage_keys: _Optional[_Iterable[bytes]] = ...) -> None: ...

class Authorization(_message.Message):
    __slots__ = ("chain_id", "address", "nonce", "y_parity", "r", "s")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    Y_PARITY_FIELD_NUMBER: _ClassVar[int]
    R_FIELD_NUMBER: _ClassVar[int]
    S_FIELD_NUMBER: _ClassVar[int]
    chain_id: bytes
    address: bytes
    nonce: int
    y_parity: int
    r: bytes
    s: bytes
    def __init__(self, chain_id: _Optional[bytes] = ..., address: _Optional[bytes] = ..., nonce: _Optional[int] = ..., y_parity: _Optional[int] = ..., r: _Optional[bytes] = ..., s: _Optional[bytes] = ...) -> None: ...

class TxSighting(_message.Message):
    __slots__ = ("chain_id", "hash", "source_id", "seen_unix_ns")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    SEEN_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    hash: bytes
    source_id: str
    seen_unix_ns: int
    def __init__(self, chain_id: _Optional[int] = ..., hash: _Optional[bytes] = ..., source_id: _Optional[str] = ..., seen_unix_ns: _Optional[int] = ...) -> None: ...
