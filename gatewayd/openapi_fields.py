"""The building blocks of the REST API's OpenAPI schemas: the builders (:func:`ref`, :func:`obj`, :func:`arr`,
:func:`record`), the scalar field types (hashes, addresses, exact decimal strings, times) and the field groups
several schemas share (a transaction's envelope, its raw encoding, a call's features).

Apart from :mod:`gatewayd.openapi_schemas` (the response schemas built from them) and :mod:`gatewayd.openapi`
(the document) so that the number and hex conventions of :mod:`gatewayd.serializers` are stated once, in one
short place.
"""

from __future__ import annotations

from typing import Any


def ref(name: str) -> dict[str, str]:
    """A reference to the component schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def obj(props: dict[str, Any], required: list[str] | None = None, description: str = "") -> dict[str, Any]:
    """An object schema of ``props``, every one required unless ``required`` lists those that are."""
    schema: dict[str, Any] = {"type": "object", "properties": props, "required": required or list(props)}
    if description:
        schema["description"] = description
    return schema


def arr(items: dict[str, Any]) -> dict[str, Any]:
    """An array schema of ``items``."""
    return {"type": "array", "items": items}


def record(name: str) -> dict[str, Any]:
    """A stored record, or the marker sent in its place when it cannot be rendered."""
    return {"oneOf": [ref(name), ref("UnrenderableRecord")]}


INT = {"type": "integer", "minimum": 0}
STR = {"type": "string"}
BOOL = {"type": "boolean"}
HASH = {"type": "string", "pattern": "^0x[0-9a-f]{64}$", "description": "32-byte hash, lowercase 0x hex"}
ADDR = {"type": "string", "pattern": "^0x[0-9a-f]{40}$", "description": "20-byte address, lowercase 0x hex"}
ADDR_OR_NULL = {"type": ["string", "null"], "pattern": "^0x[0-9a-f]{40}$"}
HEX = {"type": "string", "pattern": "^0x[0-9a-f]*$"}
HEX_OR_NULL = {"type": ["string", "null"], "pattern": "^0x[0-9a-f]*$"}
# Numbers (see gatewayd.serializers): a quantity that can exceed 2**53, JavaScript's exact-integer limit, is a
# decimal string, exact over its whole range; zero ("0") and absent (null) are distinct.
_DECIMAL = "^(0|[1-9][0-9]*)$"
AMOUNT = {"type": "string", "format": "uint256", "pattern": _DECIMAL, "maxLength": 78,
          "description": "uint256 as an exact decimal string, 0 to 2**256-1"}
AMOUNT_OR_NULL = {"type": ["string", "null"], "format": "uint256", "pattern": _DECIMAL, "maxLength": 78,
                  "description": 'uint256 as an exact decimal string; "0" is a known zero, null means absent'}
U64 = {"type": "string", "format": "uint64", "pattern": _DECIMAL, "maxLength": 20,
       "description": "uint64 as an exact decimal string, 0 to 2**64-1"}
U64_OR_NULL = {"type": ["string", "null"], "format": "uint64", "pattern": _DECIMAL, "maxLength": 20,
               "description": 'uint64 as an exact decimal string; "0" is a known zero, null means absent'}
MS = {"type": "integer", "minimum": 0, "description": "unix milliseconds"}
MS_OR_NULL = {"type": ["integer", "null"], "minimum": 0, "description": "unix milliseconds, null if none"}

ENVELOPE_FIELDS = {
    "chain_id": INT,
    "hash": HASH,
    "from": ADDR,
    "to": {**ADDR_OR_NULL, "description": "null for a contract creation"},
    "nonce": U64,
    "value": AMOUNT,
    "gas": {**U64, "description": "gas limit, uint64 as an exact decimal string"},
    "gas_price": AMOUNT_OR_NULL,
    "max_fee_per_gas": AMOUNT_OR_NULL,
    "max_priority_fee_per_gas": AMOUNT_OR_NULL,
    "type": {**INT, "description": "EIP-2718 type (0 legacy, 2 dynamic fee, ...)"},
    "input": {**HEX, "description": "calldata"},
    "source_id": {**STR, "description": "the source (WebSocket endpoint) that announced it first"},
    "first_seen_unix_ms": {**MS, "description": "when ingestd received the first source's announcement"},
    "sources": arr(obj({"source_id": STR, "first_seen_unix_ms": MS})) | {
        "minItems": 1,
        "description": "every source that announced it, each with its own first-seen time: the first one first "
                       "(= source_id, first_seen_unix_ms), then later ones by time (bounded by ingestd's "
                       "MEMPULSE_INGESTD_MAX_SOURCES_PER_TX). In an event's tx: the first one only"},
    "v": {**AMOUNT_OR_NULL, "description": "signature v (legacy: 27/28 or chain_id*2+35/36; typed: as the node "
          "reports it, y_parity), decimal string; null when the node did not report it"},
    "y_parity": {"type": ["integer", "null"], "minimum": 0, "maximum": 1,
                 "description": "signature y parity of a typed transaction (types 1-4); null for legacy ones"},
    "r": {**AMOUNT_OR_NULL, "description": "signature r, decimal string; \"0\" with s \"0\" for a transaction "
          "without a real signature (anvil's impersonated senders), null when not reported"},
    "s": {**AMOUNT_OR_NULL, "description": "signature s, decimal string (as r)"},
    "access_list": arr(obj({"address": ADDR, "storage_keys": arr(HASH)})) | {
        "description": "EIP-2930 access list (types 1-4); empty for legacy transactions"},
    "max_fee_per_blob_gas": {**AMOUNT_OR_NULL, "description": "EIP-4844 max fee per blob gas (type 3); null "
                             "otherwise"},
    "blob_versioned_hashes": arr(HASH) | {"description": "EIP-4844 blob versioned hashes (type 3)"},
    "authorization_list": arr(obj({"chain_id": AMOUNT, "address": ADDR, "nonce": U64,
                                     "y_parity": {"type": "integer", "minimum": 0, "maximum": 1},
                                     "r": AMOUNT, "s": AMOUNT})) | {
        "description": "EIP-7702 authorization list (type 4), signatures as signed (not checked)"},
}

#: Only with ?include=raw.
RAW_FIELDS = {
    "raw_tx": {**HEX_OR_NULL, "description": "only with include=raw: the signed EIP-2718 encoding (the bytes "
               "eth_sendRawTransaction takes; a blob transaction without its sidecar), lowercase 0x hex; "
               "keccak256 of it is always hash. null when ingestd had no such bytes (an unsigned or impersonated "
               "transaction, a node that did not give them, ingestd --raw-tx off)"},
    "raw_tx_origin": {"type": ["string", "null"], "enum": ["reencoded", "node", None],
                      "description": "only with include=raw: reencoded = ingestd re-encoded it from the fields and "
                      "signature, node = the node's eth_getRawTransactionByHash bytes; null with raw_tx null"},
}

FEATURE_FIELDS = {
    "protocol": STR,
    "category": {"type": "string", "examples": ["swap", "transfer", "approval", "other"]},
    "method": {"type": ["string", "null"]},
    "selector": HEX_OR_NULL,
    "token_in": ADDR_OR_NULL,
    "token_out": ADDR_OR_NULL,
    "amount_in": AMOUNT_OR_NULL,
    "amount_out_min": AMOUNT_OR_NULL,
    "amount_in_max": AMOUNT_OR_NULL,
    "amount_out": AMOUNT_OR_NULL,
    "path": arr(ADDR),
    "fee_tiers": arr(INT),
    "recipient": ADDR_OR_NULL,
    "deadline": {**U64_OR_NULL, "description": "swap deadline, unix seconds, as an exact decimal string; "
                 "a deadline beyond 2**64-1 (bots send 2**256-1) is 18446744073709551615; null when the call "
                 "has no deadline argument"},
    "deadline_unix_ms": {
        "type": ["integer", "null"], "minimum": 0, "maximum": 2**53 - 1,
        "description": "the deadline in unix milliseconds; null when there is none or when it is beyond 2**53-1 "
                       "(not a real time: deadline has the exact value)"},
    "value": AMOUNT,
    "gas_price": AMOUNT,
    "priority_fee": AMOUNT,
    "calldata_len": INT,
    "decoded": BOOL,
    "decode_error": {"type": ["string", "null"]},
    "args": {**arr(obj({"name": STR, "type": STR, "value": STR})),
             "description": "the call's arguments when processd decoded it with a user ABI (--abi-dir), in ABI "
                            "order: name (arg<i> when unnamed), canonical ABI type, and the value as text: decimal "
                            "integers, 0x hex addresses and bytes, true/false, strings as they are, tuples and "
                            "arrays as JSON arrays of strings and booleans; empty for the built-in decoders"},
    "args_truncated": {**BOOL, "description": "true when an args value was cut to processd's bounds (a cut value "
                       "ends in ...; past the per-call budget the value is empty)"},
}
