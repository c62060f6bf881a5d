from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class TxEnvelope(_message.Message):
    __slots__ = ("chain_id", "hash", "sender", "to", "nonce", "value", "gas_price", "max_fee_per_gas", "max_priority_fee_per_gas", "gas", "tx_type", "input", "source_id", "first_seen_unix_ns")
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
    def __init__(self, chain_id: _Optional[int] = ..., hash: _Optional[bytes] = ..., sender: _Optional[bytes] = ..., to: _Optional[bytes] = ..., nonce: _Optional[int] = ..., value: _Optional[bytes] = ..., gas_price: _Optional[bytes] = ..., max_fee_per_gas: _Optional[bytes] = ..., max_priority_fee_per_gas: _Optional[bytes] = ..., gas: _Optional[int] = ..., tx_type: _Optional[int] = ..., input: _Optional[bytes] = ..., source_id: _Optional[str] = ..., first_seen_unix_ns: _Optional[int] = ...) -> None: ...

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
