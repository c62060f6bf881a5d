from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PoolStateSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POOL_STATE_SOURCE_UNSPECIFIED: _ClassVar[PoolStateSource]
    POOL_STATE_SOURCE_GET_RESERVES: _ClassVar[PoolStateSource]
    POOL_STATE_SOURCE_SYNC_LOG: _ClassVar[PoolStateSource]
POOL_STATE_SOURCE_UNSPECIFIED: PoolStateSource
POOL_STATE_SOURCE_GET_RESERVES: PoolStateSource
POOL_STATE_SOURCE_SYNC_LOG: PoolStateSource

class PoolState(_message.Message):
    __slots__ = ("chain_id", "pair", "factory", "token0", "token1", "reserve0", "reserve1", "block_number", "block_hash", "source")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    PAIR_FIELD_NUMBER: _ClassVar[int]
    FACTORY_FIELD_NUMBER: _ClassVar[int]
    TOKEN0_FIELD_NUMBER: _ClassVar[int]
    TOKEN1_FIELD_NUMBER: _ClassVar[int]
    RESERVE0_FIELD_NUMBER: _ClassVar[int]
    RESERVE1_FIELD_NUMBER: _ClassVar[int]
    BLOCK_NUMBER_FIELD_NUMBER: _ClassVar[int]
    BLOCK_HASH_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    pair: bytes
    factory: bytes
    token0: bytes
    token1: bytes
    reserve0: bytes
    reserve1: bytes
    block_number: int
    block_hash: bytes
    source: PoolStateSource
    def __init__(self, chain_id: _Optional[int] = ..., pair: _Optional[bytes] = ..., factory: _Optional[bytes] = ..., token0: _Optional[bytes] = ..., token1: _Optional[bytes] = ..., reserve0: _Optional[bytes] = ..., reserve1: _Optional[bytes] = ..., block_number: _Optional[int] = ..., block_hash: _Optional[bytes] = ..., source: _Optional[_Union[PoolStateSource, str]] = ...) -> None: ...
