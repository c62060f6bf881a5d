"""The OpenAPI schemas of a gateway in front of several processd shards (:func:`shard_schemas`).

All-chain answers are merged (gatewayd/sharded.py): they add ``next_cursor`` and the ``partial`` flags, and their
per-log seq fields (``next_before_seq_id``, ``next_from_seq_id``, ``last_seq_id``, the snapshot's ``replay``) are
null, since a seq id names a position in one shard's log. Chain-filtered answers are exactly a shard's, so the
new fields are optional and the seq fields nullable rather than gone.
"""

from __future__ import annotations

import copy
from typing import Any

_INT = {"type": "integer", "minimum": 0}
#: Last-Event-ID of a sharded gateway: a shard's seq id (with chain_id) or a composite id (gatewayd.sse_shards).
SHARDED_LAST_EVENT_ID = {"type": "string", "maxLength": 1500, "pattern": r"^(?:[0-9]{1,20}|m1\.sse\.[0-9a-fx.]+)$"}
_PARTIAL = {
    "partial": {"type": "boolean", "description": "all-chain answers with several processd shards: true when "
                "a shard did not answer and its chains are missing from this answer"},
    "missing_shards": {"type": "array", "items": {"type": "string"}, "description": "the shards left out"},
    "missing_chains": {"type": "array", "items": _INT, "description": "their chains"},
}
_CURSOR = {"next_cursor": {"type": ["string", "null"], "description": "all-chain answers with several processd "
                           "shards: the cursor of the next page (a position per shard; give it as cursor=); null "
                           "when no shard has anything older"}}
#: schema -> (fields that become nullable, fields added)
_PATCHES: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "TransactionList": (("next_before_seq_id", "last_seq_id"), {**_CURSOR, **_PARTIAL}),
    "TransactionPage": (("next_from_seq_id", "last_seq_id"), {**_CURSOR, **_PARTIAL}),
    "EventPage": (("next_from_seq_id", "last_seq_id"), {**_CURSOR, **_PARTIAL}),
    "BlockList": (("next_before_seq_id",), {**_CURSOR, **_PARTIAL}),
    "FeatureList": ((), _PARTIAL),
    "OpportunityList": ((), _PARTIAL),
    "Snapshot": (("last_seq_id", "replay"), {
        **_PARTIAL,
        "shards": {"type": "array", "description": "per shard: its log's head and replay point",
                   "items": {"type": "object", "properties": {
                       "shard": {"type": "string"}, "last_seq_id": {"type": ["integer", "null"]},
                       "replay": {"type": ["object", "null"]}}}}}),
    "Health": ((), {"shards": {"type": "array", "description": "per processd shard", "items": {
        "type": "object", "required": ["shard", "chains", "status", "up"], "properties": {
            "shard": {"type": "string", "description": "its address"},
            "chains": {"type": "array", "items": _INT, "description": "chains configured for it"},
            "status": {"type": "string", "description": "its grpc.health status (serving, unavailable, ...)"},
            "up": {"type": "boolean"},
            "last_error": {"type": ["string", "null"]},
            "since_unix_ms": _INT,
            "chains_held": {"type": "array", "items": _INT, "description": "chains it holds transactions of"},
            "unexpected_chains": {"type": "array", "items": _INT,
                                  "description": "held but not configured for it (misrouted ingest)"}}}}}),
    "Error": ((), {}),
}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return {"oneOf": [schema, {"type": "null"}]}
    out = dict(schema)
    out["type"] = [schema["type"], "null"] if isinstance(schema.get("type"), str) else schema.get("type")
    return out


def shard_schemas(schemas: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schemas`` describing the answers of a gateway with several processd shards."""
    out = copy.deepcopy(schemas)
    for name, (nullable, added) in _PATCHES.items():
        props = out[name]["properties"]
        for field in nullable:
            props[field] = _nullable(props[field])
        props.update(added)
    error = out["Error"]["properties"]["error"]["properties"]
    error["shard"] = {"type": "string", "description": "shard_unavailable: the processd shard that is down"}
    error["chains"] = {"type": "array", "items": _INT, "description": "shard_unavailable: its chains"}
    return out
