"""Pure mappers from processd's protobuf messages to the REST JSON representation.

Conventions (stable, documented in docs/gatewayd.md, "Numbers", and the OpenAPI document):
- hashes and addresses: lowercase ``0x`` hex; a missing address (contract creation ``to``, unknown token) is null;
- every quantity that comes from a transaction and can exceed 2**53 (JavaScript's exact-integer limit) is a
  decimal string: uint256 amounts (wei, token units), the value, gas prices and fees, the gas limit, the
  nonce, the deadline. Numbers a JSON client would round are never sent as JSON numbers;
- zero and absent are distinct: a field with presence in the proto (``optional``) renders as null when it is
  not set and as ``"0"`` when it is a known 0 (``amount_out_min`` of an unprotected swap);
- derived values never overflow: ``deadline_unix_ms`` is null when the deadline times 1000 is beyond 2**53-1
  (a "never" deadline such as 2**256-1; ``deadline`` still has the exact value);
- counts, seq ids, chain ids, scores, basis points, lengths: integers; times: integer unix milliseconds
  (``*_unix_ms``);
- enums: lowercase names without their prefix (``swap``, ``sandwich_candidate``, ``tx_seen``);
- a transaction's signed raw bytes (``raw_tx``, ``0x`` hex, often as big as the calldata) are rendered only when
  the client asks for them (``?include=raw``): ``include_raw`` below.

A record that breaks the protobuf contract (a quantity longer than 32 bytes, say) raises :class:`RenderError`;
the callers in :mod:`gatewayd.render` render such a record on its own guard, so it never takes a page down.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from common.chains import chain_name
from common.pb.v1 import block_pb2, events_pb2, ingest_pb2, pool_pb2, query_pb2, tx_pb2
from gatewayd.errors import GatewaydError

_NS_PER_MS = 1_000_000
#: Largest integer a JSON number carries exactly in JavaScript (Number.MAX_SAFE_INTEGER).
JS_SAFE_MAX = 2**53 - 1
#: A uint256 is at most 32 bytes on the wire (mempulse.v1 conventions, tx.proto).
_MAX_U256_BYTES = 32


class RenderError(GatewaydError, ValueError):
    """A record processd sent cannot be rendered as the REST contract says (it breaks the protobuf contract)."""


def _enum_names(enum: Any, prefix: str) -> dict[int, str]:
    return {v.number: v.name.removeprefix(prefix).lower() for v in enum.DESCRIPTOR.values}


CATEGORY_NAMES = _enum_names(events_pb2.TxCategory, "TX_CATEGORY_")
OPPORTUNITY_KIND_NAMES = _enum_names(events_pb2.OpportunityKind, "OPPORTUNITY_KIND_")
EVENT_KIND_NAMES = _enum_names(events_pb2.EventKind, "EVENT_KIND_")
REJECT_REASON_NAMES = _enum_names(ingest_pb2.RejectReason, "REJECT_REASON_")
VISIBILITY_NAMES = _enum_names(ingest_pb2.MempoolVisibility, "MEMPOOL_VISIBILITY_")
RAW_TX_ORIGIN_NAMES = _enum_names(tx_pb2.RawTxOrigin, "RAW_TX_ORIGIN_")
POOL_STATE_SOURCE_NAMES = _enum_names(pool_pb2.PoolStateSource, "POOL_STATE_SOURCE_")


def enum_name(names: dict[int, str], number: int) -> str:
    """The REST name of an enum value (``unknown_<n>`` for one this gateway does not know)."""
    # A newer processd may send enum values this gateway does not know yet: show the number, never fail.
    return names.get(number) or f"unknown_{number}"


def hex_or_null(raw: bytes) -> str | None:
    """``0x`` hex of an address/hash/selector, or None when empty."""
    return "0x" + raw.hex() if raw else None


def amount(raw: bytes) -> str:
    """Decimal string of a big-endian uint256 (empty = "0"); :class:`RenderError` beyond 32 bytes."""
    if len(raw) > _MAX_U256_BYTES:
        raise RenderError(f"a uint256 of {len(raw)} bytes (at most {_MAX_U256_BYTES})")
    return str(int.from_bytes(raw, "big"))


def optional_amount(msg: Any, field: str) -> str | None:
    """Decimal string of an ``optional`` uint256 field of ``msg``: None when not set, "0" for a set empty value."""
    return amount(getattr(msg, field)) if msg.HasField(field) else None


def deadline_unix_ms(deadline: int) -> int | None:
    """A deadline (unix seconds) in unix milliseconds, or None where that is beyond 2**53-1 (not a real time:
    bots send 2**256-1, stored saturated at 2**64-1, for "no deadline")."""
    ms = deadline * 1000
    return ms if ms <= JS_SAFE_MAX else None


def access_list_json(entries: Any) -> list[dict[str, Any]]:
    """An EIP-2930 access list: ``[{"address", "storage_keys": [...]}]``."""
    return [{"address": "0x" + e.address.hex(), "storage_keys": ["0x" + k.hex() for k in e.storage_keys]}
            for e in entries]


def authorization_list_json(auths: Any) -> list[dict[str, Any]]:
    """An EIP-7702 authorization list, each with its chain id (uint256) and nonce as decimal strings."""
    return [{"chain_id": amount(a.chain_id), "address": "0x" + a.address.hex(), "nonce": str(a.nonce),
             "y_parity": a.y_parity, "r": amount(a.r), "s": amount(a.s)} for a in auths]


def envelope_json(tx: tx_pb2.TxEnvelope, include_raw: bool = False) -> dict[str, Any]:
    """A pending transaction as ingestd saw it (with ``raw_tx`` and ``raw_tx_origin`` when ``include_raw``)."""
    out = {
        "chain_id": tx.chain_id,
        "hash": "0x" + tx.hash.hex(),
        "from": "0x" + tx.sender.hex(),
        "to": "0x" + tx.to.hex() if tx.to else None,
        "nonce": str(tx.nonce),
        "value": amount(tx.value),
        "gas": str(tx.gas),
        "gas_price": optional_amount(tx, "gas_price"),
        "max_fee_per_gas": optional_amount(tx, "max_fee_per_gas"),
        "max_priority_fee_per_gas": optional_amount(tx, "max_priority_fee_per_gas"),
        "type": tx.tx_type,
        "input": "0x" + tx.input.hex(),
        "source_id": tx.source_id,
        "first_seen_unix_ms": tx.first_seen_unix_ns // _NS_PER_MS,
        "v": optional_amount(tx, "v"),
        "y_parity": tx.y_parity if tx.HasField("y_parity") else None,
        "r": optional_amount(tx, "r"),
        "s": optional_amount(tx, "s"),
        "access_list": access_list_json(tx.access_list),
        "max_fee_per_blob_gas": optional_amount(tx, "max_fee_per_blob_gas"),
        "blob_versioned_hashes": ["0x" + h.hex() for h in tx.blob_versioned_hashes],
        "authorization_list": authorization_list_json(tx.authorization_list),
        # Every source that announced it; an envelope knows only the first (a stored transaction lists them all).
        "sources": [{"source_id": tx.source_id, "first_seen_unix_ms": tx.first_seen_unix_ns // _NS_PER_MS}],
    }
    if include_raw:
        raw = tx.raw_tx
        out["raw_tx"] = "0x" + raw.hex() if raw else None
        out["raw_tx_origin"] = enum_name(RAW_TX_ORIGIN_NAMES, tx.raw_tx_origin) if raw else None
    return out


def stored_tx_json(stored: query_pb2.StoredTx, include_raw: bool = False) -> dict[str, Any]:
    """A stored transaction: its envelope plus seq_id, when processd received it, and every source that announced
    it (first one first: the same as ``source_id`` / ``first_seen_unix_ms``)."""
    out = envelope_json(stored.tx, include_raw)
    out["seq_id"] = stored.seq_id
    out["received_unix_ms"] = stored.received_unix_ns // _NS_PER_MS
    if stored.sources:  # (a processd before StoredTx.sources sends none: the envelope's first source stands)
        out["sources"] = [{"source_id": s.source_id, "first_seen_unix_ms": s.first_seen_unix_ns // _NS_PER_MS}
                          for s in stored.sources]
    return out


def features_json(f: events_pb2.TxFeatures) -> dict[str, Any]:
    """Decoded facts about a transaction's call."""
    has_deadline = f.HasField("deadline")
    return {
        "protocol": f.protocol,
        "category": enum_name(CATEGORY_NAMES, f.category),
        "method": f.method or None,
        "selector": hex_or_null(f.selector),
        "token_in": hex_or_null(f.token_in),
        "token_out": hex_or_null(f.token_out),
        "amount_in": optional_amount(f, "amount_in"),
        "amount_out_min": optional_amount(f, "amount_out_min"),
        "amount_in_max": optional_amount(f, "amount_in_max"),
        "amount_out": optional_amount(f, "amount_out"),
        "path": ["0x" + a.hex() for a in f.path],
        "fee_tiers": list(f.fee_tiers),
        "recipient": hex_or_null(f.recipient),
        "deadline": str(f.deadline) if has_deadline else None,
        "deadline_unix_ms": deadline_unix_ms(f.deadline) if has_deadline else None,
        "value": amount(f.value),
        "gas_price": amount(f.gas_price),
        "priority_fee": amount(f.priority_fee),
        "calldata_len": f.calldata_len,
        "decoded": f.decoded,
        "decode_error": f.decode_error or None,
        # calls decoded with a user ABI (processd --abi-dir): named arguments, values as text; [] otherwise
        "args": [{"name": a.name, "type": a.type, "value": a.value} for a in f.args],
        "args_truncated": f.args_truncated,
    }


def feature_record_json(rec: query_pb2.FeatureRecord) -> dict[str, Any]:
    """Features of one transaction with its seq_id, chain and hash."""
    out = features_json(rec.features)
    out["seq_id"] = rec.seq_id
    out["chain_id"] = rec.chain_id
    out["tx_hash"] = "0x" + rec.tx_hash.hex()
    return out


def opportunity_json(o: events_pb2.Opportunity) -> dict[str, Any]:
    """One ranked opportunity."""
    return {
        "seq_id": o.seq_id,
        "chain_id": o.chain_id,
        "tx_hash": "0x" + o.tx_hash.hex(),
        "kind": enum_name(OPPORTUNITY_KIND_NAMES, o.kind),
        "score": o.score,
        "reasons": list(o.reasons),
        "protocol": o.protocol,
        "token_in": hex_or_null(o.token_in),
        "token_out": hex_or_null(o.token_out),
        "notional_wei": optional_amount(o, "notional_wei"),
        "slippage_bps": o.slippage_bps or None,  # 0 = unknown: a known tolerance is at least 1 bps
        # Valuation on pool state (docs/valuation.md): figures of a valued opportunity, null otherwise.
        "valued": o.valued,
        "valuation_note": o.valuation_note,
        "net_profit_wei": optional_amount(o, "net_profit_wei"),
        "sandwich_profit_wei": optional_amount(o, "sandwich_profit_wei"),
        "frontrun_amount_in": optional_amount(o, "frontrun_amount_in"),
        "backrun_profit_wei": optional_amount(o, "backrun_profit_wei"),
        "backrun_amount_in": optional_amount(o, "backrun_amount_in"),
        "gas_cost_wei": optional_amount(o, "gas_cost_wei"),
        "price_impact_bps": o.price_impact_bps if o.valued else None,
        "profit_token": hex_or_null(o.profit_token),
        "state_block_number": o.state_block_number if o.valued else None,
    }


def event_json(e: events_pb2.Event, include_raw: bool = False) -> dict[str, Any]:
    """One event-log record; exactly one of ``tx``, ``features``, ``opportunity``, ``sighting``, ``block``,
    ``pool_state`` is set, by ``kind``."""
    out: dict[str, Any] = {
        "seq_id": e.seq_id,
        "chain_id": e.chain_id,
        "kind": enum_name(EVENT_KIND_NAMES, e.kind),
        "tx_hash": "0x" + e.tx_hash.hex(),
        "first_seen_unix_ms": e.first_seen_unix_ns // _NS_PER_MS,
        "received_unix_ms": e.received_unix_ns // _NS_PER_MS,
        "source_id": e.source_id,
    }
    body = e.WhichOneof("body")
    if body == "tx_seen":
        out["tx"] = envelope_json(e.tx_seen.tx, include_raw)
    elif body == "tx_decoded":
        out["features"] = features_json(e.tx_decoded.features)
    elif body == "opp_detected":
        out["opportunity"] = opportunity_json(e.opp_detected.opportunity)
    elif body == "tx_source_seen":
        seen = e.tx_source_seen
        out["sighting"] = {"source_id": seen.sighting.source_id,
                           "first_seen_unix_ms": seen.sighting.seen_unix_ns // _NS_PER_MS,
                           "tx_seq_id": seen.tx_seq_id}
    elif body == "block":
        out["block"] = block_event_json(e.block)
    elif body in _LIFE_BODIES:
        out[body] = lifecycle_body_json(e)
    elif body == "pool_state":
        out["pool_state"] = pool_state_json(e.pool_state.state)
    return out


def pool_state_json(state: pool_pb2.PoolState) -> dict[str, Any]:
    """The body of a ``pool_state`` event: a pair's reserves after a block (reserves as decimal strings)."""
    return {"chain_id": state.chain_id, "pair": "0x" + state.pair.hex(), "factory": "0x" + state.factory.hex(),
            "token0": "0x" + state.token0.hex(), "token1": "0x" + state.token1.hex(),
            "reserve0": amount(state.reserve0), "reserve1": amount(state.reserve1),
            "block_number": state.block_number, "block_hash": "0x" + state.block_hash.hex(),
            "source": enum_name(POOL_STATE_SOURCE_NAMES, state.source)}


TX_STATUS_NAMES = _enum_names(block_pb2.TxStatus, "TX_STATUS_")
DROP_REASON_NAMES = _enum_names(events_pb2.DropReason, "DROP_REASON_")
LIFECYCLE_STATUS_NAMES = _enum_names(query_pb2.TxLifecycleStatus, "TX_LIFECYCLE_STATUS_")
_LIFE_BODIES = frozenset(("tx_included", "tx_replaced", "tx_dropped", "reorg"))


def lifecycle_body_json(e: events_pb2.Event) -> dict[str, Any]:
    """The body of a lifecycle event (``tx_included``, ``tx_replaced``, ``tx_dropped`` or ``reorg``)."""
    body = e.WhichOneof("body")
    if body == "tx_included":
        i = e.tx_included
        return {"block_number": i.block_number, "block_hash": "0x" + i.block_hash.hex(), "index": i.index,
                "status": TX_STATUS_NAMES.get(i.status) if i.status else None,
                "inclusion_latency_ms": i.inclusion_latency_ms, "tx_seq_id": i.tx_seq_id,
                "block_seq_id": i.block_seq_id, "reincluded": i.reincluded}
    if body == "tx_replaced":
        r = e.tx_replaced
        return {"by_hash": "0x" + r.by_hash.hex(), "fee_bump_bps": r.fee_bump_bps, "cancel": r.cancel,
                "by_block": r.by_block, "tx_seq_id": r.tx_seq_id}
    if body == "tx_dropped":
        d = e.tx_dropped
        return {"reason": enum_name(DROP_REASON_NAMES, d.reason), "tx_seq_id": d.tx_seq_id,
                "source_id": d.source_id or None}
    g = e.reorg
    return {"depth": g.depth, "number": g.number, "new_hash": "0x" + g.new_hash.hex(),
            "orphaned_hashes": ["0x" + h.hex() for h in g.orphaned_hashes], "unincluded": g.unincluded,
            "too_deep": g.too_deep}


def _block_head(b: Any) -> dict[str, Any]:
    """The fields a stored block and a block event share (``ListBlocksBlock`` or ``BlockEnvelope``)."""
    return {"chain_id": b.chain_id, "number": b.number, "hash": "0x" + b.hash.hex(),
            "parent_hash": "0x" + b.parent_hash.hex(), "timestamp": b.timestamp,
            "base_fee": amount(b.base_fee) if b.base_fee else None, "tx_count": b.tx_count, "source_id": b.source_id,
            "seen_unix_ms": b.seen_unix_ns // _NS_PER_MS}


def block_event_json(seen: events_pb2.BlockSeen) -> dict[str, Any]:
    """The body of a ``block`` event: the block and its included transactions (status null without a receipt)."""
    block = seen.block
    out = _block_head(block)
    out["seen_pending"] = seen.seen_pending
    out["included_tracked"] = seen.included_tracked
    out["inclusion_latency_p50_ms"] = seen.inclusion_latency_p50_ms or None
    out["truncated"] = block.truncated
    out["txs"] = [{"hash": "0x" + t.hash.hex(), "index": t.index, "from": "0x" + t.sender.hex(),
                   "nonce": str(t.nonce), "status": TX_STATUS_NAMES.get(t.status) if t.status else None,
                   "gas_used": str(t.gas_used) if t.status else None,
                   "effective_gas_price": amount(t.effective_gas_price) if t.status else None} for t in block.txs]
    return out


def block_json(b: query_pb2.ListBlocksBlock) -> dict[str, Any]:
    """One block of ``/blocks/recent``."""
    out = _block_head(b)
    out.update({"seq_id": b.seq_id, "seen_pending": b.seen_pending, "reverted": b.reverted,
                "received_unix_ms": b.received_unix_ns // _NS_PER_MS,
                "inclusion_latency_p50_ms": b.inclusion_latency_p50_ms or None})
    return out


def rejected_json(counts: Any) -> dict[str, int]:
    """Repeated RejectCount -> {reason: count}."""
    return {enum_name(REJECT_REASON_NAMES, c.reason): c.count for c in counts}


def replay_json(r: query_pb2.ReplayPoint) -> dict[str, Any]:
    """Where the log stands."""
    return {
        "seq_high_water": r.seq_high_water,
        "committed_unix_ms": r.committed_unix_ns // _NS_PER_MS,
        "pending_count": r.pending_count,
    }


def ingest_stats_json(s: ingest_pb2.ChainIngestStats) -> dict[str, Any]:
    """ingestd's cumulative counters for one chain, as forwarded to processd."""
    return {
        "seen": s.seen,
        "delivered": s.delivered,
        "dropped": {d.reason: d.count for d in s.dropped},
        "sources": [
            {
                "source_id": src.source_id,
                "connected": src.connected,
                "silent": src.silent,
                "notifications": src.notifications,
                "reconnects": src.reconnects,
                "last_notification_unix_ms": src.last_notification_unix_ms or None,
            }
            for src in s.sources
        ],
        "visibility": enum_name(VISIBILITY_NAMES, s.visibility),
        "as_of_unix_ms": s.as_of_unix_ms,
    }


def chain_totals_json(c: query_pb2.ChainTotals) -> dict[str, Any]:
    """Per-chain counters of the snapshot."""
    return {
        "chain_id": c.chain_id,
        "chain": chain_name(c.chain_id),
        "tx_count": c.tx_count,
        "decoded_count": c.decoded_count,
        "opportunity_count": c.opportunity_count,
        "rejected": rejected_json(c.rejected),
        "replay": replay_json(c.replay),
        "ingest": ingest_stats_json(c.ingest) if c.HasField("ingest") else None,
        "drop_ratio": c.drop_ratio,
        "source_wins": [{"source_id": s.source_id, "first_seen_wins": s.first_seen_wins, "seen": s.seen}
                        for s in c.sources],
        "selector_coverage": [{"selector": "0x" + s.selector.hex(), "method": s.method, "decoded": s.decoded,
                               "failed": s.failed, "unknown": s.unknown} for s in c.selector_coverage],
        "lifecycle": lifecycle_totals_json(c.lifecycle),
    }


def lifecycle_totals_json(t: query_pb2.LifecycleTotals) -> dict[str, Any]:
    """A chain's lifecycle figures (snapshot)."""
    return {"pending": t.pending, "included": t.included, "replaced": t.replaced, "dropped": t.dropped,
            "included_private": t.included_private, "reorgs": t.reorgs, "reorgs_too_deep": t.reorgs_too_deep,
            "inclusion_latency_p50_ms": t.inclusion_latency_p50_ms,
            "inclusion_latency_p99_ms": t.inclusion_latency_p99_ms,
            "replaced_rate": t.replaced_rate, "dropped_rate": t.dropped_rate, "private_share": t.private_share}


def snapshot_json(
    s: query_pb2.GetSnapshotResponse,
    render_tx: Callable[[query_pb2.StoredTx], Any] = stored_tx_json,
    render_feature: Callable[[query_pb2.FeatureRecord], Any] = feature_record_json,
    render_opportunity: Callable[[events_pb2.Opportunity], Any] = opportunity_json,
) -> dict[str, Any]:
    """The dashboard view (``render_*`` may return pre-rendered ``orjson.Fragment`` records: gatewayd passes
    :class:`gatewayd.render.RenderCache`'s, which render each record on its own guard)."""
    return {
        "chains": [chain_totals_json(c) for c in s.chains],
        "replay": replay_json(s.replay),
        "feature_summary": [
            {
                "chain_id": f.chain_id,
                "protocol": f.protocol,
                "category": enum_name(CATEGORY_NAMES, f.category),
                "count": f.count,
            }
            for f in s.feature_summary
        ],
        "recent_features": [render_feature(f) for f in s.recent_features],
        "top_opportunities": [render_opportunity(o) for o in s.top_opportunities],
        "recent_transactions": [render_tx(t) for t in s.recent_transactions],
        "recent_transactions_truncated": s.recent_transactions_truncated,
        "last_seq_id": s.last_seq_id,
    }


def transaction_detail_json(
    r: query_pb2.GetTransactionResponse,
    render_tx: Callable[[query_pb2.StoredTx], Any] = stored_tx_json,
    render_feature: Callable[[query_pb2.FeatureRecord], Any] = feature_record_json,
    render_opportunity: Callable[[events_pb2.Opportunity], Any] = opportunity_json,
) -> dict[str, Any]:
    """One transaction with its features (null when not decoded yet) and opportunities (``render_*`` as in
    :func:`snapshot_json`)."""
    return {
        "transaction": render_tx(r.transaction),
        "features": render_feature(r.features) if r.HasField("features") else None,
        "opportunities": [render_opportunity(o) for o in r.opportunities],
        "status": enum_name(LIFECYCLE_STATUS_NAMES, r.status) if r.status else None,
        "history": [event_json(e) for e in r.history],
    }
