"""The response schemas of the REST API's OpenAPI document (:data:`SCHEMAS`, its ``components.schemas``), one per
JSON shape of :mod:`gatewayd.serializers`.

Apart from :mod:`gatewayd.openapi` (the operations, parameters, status codes and the document around them)
because this table is most of the document's size and changes with the serializers, not with the routes; the
field types it is built from are :mod:`gatewayd.openapi_fields`'.
"""

from __future__ import annotations

from typing import Any

from gatewayd.openapi_fields import (
    ADDR,
    ADDR_OR_NULL,
    AMOUNT,
    AMOUNT_OR_NULL,
    BOOL,
    ENVELOPE_FIELDS,
    FEATURE_FIELDS,
    HASH,
    INT,
    MS,
    MS_OR_NULL,
    RAW_FIELDS,
    STR,
    U64,
    U64_OR_NULL,
    arr,
    obj,
    record,
    ref,
)
from gatewayd.params import EVENT_KINDS

#: Pages are cut by bytes as well as by count (calldata may be 128 KiB per transaction).
_TRUNCATED = (
    "true when the page holds fewer records than limit because it reached processd's page byte budget "
    "(max_page_bytes, 8 MiB by default); go on from the cursor of this page"
)
_BLOCK_HEAD = {"chain_id": INT, "number": INT, "hash": HASH, "parent_hash": HASH,
               "timestamp": {**INT, "description": "block timestamp, unix seconds"},
               "base_fee": AMOUNT_OR_NULL, "tx_count": INT, "source_id": STR,
               "seen_unix_ms": {**MS, "description": "when ingestd learnt of the block"}}
_SEEN_PENDING = {**INT, "description": "of its transactions, those processd had stored as pending before the block"}

SCHEMAS: dict[str, Any] = {
    "Error": obj(
        {
            "error": obj(
                {
                    "code": {"type": "string", "description": "stable machine-readable code"},
                    "message": STR,
                    "parameter": {"type": "string", "description": "the offending parameter, for 400s"},
                },
                ["code", "message"],
            )
        }
    ),
    "UnrenderableRecord": obj(
        {
            "seq_id": INT,
            "chain_id": INT,
            "hash": HASH,
            "tx_hash": HASH,
            "kind": STR,
            "render_error": obj({"code": {"type": "string", "enum": ["unrenderable_record"]}, "message": STR}),
        },
        ["seq_id", "chain_id", "render_error"],
        "Sent in place of a record the gateway cannot render (one that breaks the protobuf contract): its ids "
        "(hash for a transaction, tx_hash otherwise; kind for an event or opportunity) and the error. Counted in "
        "mempulse_gatewayd_render_errors_total.",
    ),
    "Envelope": obj({**ENVELOPE_FIELDS, **RAW_FIELDS}, list(ENVELOPE_FIELDS),
                    description="A pending transaction as ingestd saw it."),
    "Transaction": obj({**ENVELOPE_FIELDS, "seq_id": INT, "received_unix_ms": MS, **RAW_FIELDS},
                       [*ENVELOPE_FIELDS, "seq_id", "received_unix_ms"], description="A stored transaction."),
    "Features": obj(FEATURE_FIELDS, description="Decoded facts about a transaction's call."),
    "FeatureRecord": obj({**FEATURE_FIELDS, "seq_id": INT, "chain_id": INT, "tx_hash": HASH}),
    "Opportunity": obj(
        {
            "seq_id": INT,
            "chain_id": INT,
            "tx_hash": HASH,
            "kind": {"type": "string", "examples": ["sandwich_candidate", "backrun_candidate", "arb_candidate"]},
            "score": {"type": "integer", "minimum": 0, "maximum": 100},
            "reasons": arr(STR),
            "protocol": STR,
            "token_in": ADDR_OR_NULL,
            "token_out": ADDR_OR_NULL,
            "notional_wei": {**AMOUNT_OR_NULL, "description": "notional of the swap in native wei at reference "
                             "prices, exact decimal string; null when unknown"},
            "slippage_bps": {"type": ["integer", "null"], "minimum": 1, "maximum": 10_000,
                             "description": "slippage tolerance in basis points; null when it cannot be inferred"},
            "valued": {**BOOL, "description": "true when the figures below were computed on known pool reserves "
                       "(exact Uniswap V2 math, docs/valuation.md); false: the score is the heuristic one"},
            "valuation_note": {**STR, "description": "why it was not valued, or a note on its valuation"},
            "net_profit_wei": {**AMOUNT_OR_NULL, "description": "net profit in native wei after gas; null when not "
                               "valued or when the profit token has no known WETH pair"},
            "sandwich_profit_wei": {**AMOUNT_OR_NULL, "description": "sandwich candidates: gross profit in "
                                    "profit_token base units"},
            "frontrun_amount_in": {**AMOUNT_OR_NULL, "description": "sandwich candidates: optimal front-run input, "
                                   "profit_token base units"},
            "backrun_profit_wei": {**AMOUNT_OR_NULL, "description": "backrun candidates: gross profit of the "
                                   "arbitrage through another pool of the pair, profit_token base units"},
            "backrun_amount_in": {**AMOUNT_OR_NULL, "description": "backrun candidates: optimal back-run input"},
            "gas_cost_wei": {**AMOUNT_OR_NULL, "description": "gas of the attacker's transactions at the victim's "
                             "gas price, wei"},
            "price_impact_bps": {"type": ["integer", "null"], "minimum": 0, "maximum": 10_000,
                                 "description": "the victim's price impact on its first pair, basis points, fee "
                                 "excluded; null when not valued"},
            "profit_token": {**ADDR_OR_NULL, "description": "the token the gross profit is counted in"},
            "state_block_number": {"type": ["integer", "null"], "minimum": 0,
                                   "description": "block of the reserves the valuation used; null when not valued"},
        }
    ),
    "Event": obj(
        {
            "seq_id": INT,
            "chain_id": INT,
            "kind": {"type": "string", "enum": list(EVENT_KINDS)},
            "tx_hash": {"type": "string", "pattern": "^0x([0-9a-f]{64})?$",
                        "description": "32-byte hash of the transaction, lowercase 0x hex; 0x in a block, reorg "
                                       "or pool_state event"},
            "first_seen_unix_ms": MS,
            "received_unix_ms": MS,
            "source_id": STR,
            "tx": ref("Envelope"),
            "features": ref("Features"),
            "opportunity": ref("Opportunity"),
            "sighting": obj(
                {"source_id": STR, "first_seen_unix_ms": {**MS, "description": "this source's own first-seen time"},
                 "tx_seq_id": {**INT, "description": "seq_id of the transaction's tx_seen event"}},
                description="a later source's announcement of a stored transaction (tx_source_seen)"),
            "block": ref("BlockEvent"),
            "tx_included": obj({
                "block_number": INT, "block_hash": HASH, "index": {**INT, "description": "position in the block"},
                "status": {"type": ["string", "null"], "enum": ["ok", "reverted", None],
                           "description": "receipt status; null when ingestd had no receipt"},
                "inclusion_latency_ms": {**INT, "description": "block timestamp minus first seen (0 when negative)"},
                "tx_seq_id": INT, "block_seq_id": {**INT, "description": "seq_id of the block event"},
                "reincluded": {**BOOL, "description": "included again after a reorg orphaned its block"},
            }, description="a tracked pending transaction was included (tx_included)"),
            "tx_replaced": obj({
                "by_hash": HASH,
                "fee_bump_bps": {"type": "integer", "description": "the replacement's bid over this one's, basis "
                                 "points (0 when unknown: a replacement seen only in a block)"},
                "cancel": {**BOOL, "description": "the replacement sends 0 to the sender itself without calldata"},
                "by_block": {**BOOL, "description": "the replacement was seen included, not pending"},
                "tx_seq_id": INT,
            }, description="another transaction of the same sender and nonce replaced it (tx_replaced)"),
            "tx_dropped": obj({
                "reason": {"type": "string", "enum": ["expired", "evicted", "nonce_passed"]},
                "tx_seq_id": INT,
                "source_id": {"type": ["string", "null"], "description": "evicted: the source whose node "
                              "no longer knew it"},
            }, description="a tracked pending transaction settled without inclusion (tx_dropped)"),
            "reorg": obj({
                "depth": {**INT, "description": "stored blocks orphaned (its height up to the highest seen)"},
                "number": INT, "new_hash": HASH, "orphaned_hashes": arr(HASH),
                "unincluded": {**INT, "description": "transactions pending again"},
                "too_deep": {**BOOL, "description": "deeper than processd's lifecycle_max_reorg_depth"},
            }, description="a block replaced a stored block at a height already seen (reorg)"),
            "pool_state": ref("PoolStateEvent"),
        },
        ["seq_id", "chain_id", "kind", "tx_hash", "first_seen_unix_ms", "received_unix_ms", "source_id"],
        "One event-log record; tx (tx_seen), features (tx_decoded), opportunity (opp_detected), sighting "
        "(tx_source_seen), block (block), tx_included, tx_replaced, tx_dropped, reorg or pool_state by kind. In a "
        "tx_source_seen event, source_id is the later source and first_seen_unix_ms the transaction's (its first "
        "source's); in a block event, tx_hash is empty (0x), first_seen_unix_ms is when ingestd learnt of the "
        "block and source_id the source that announced it; in a lifecycle event first_seen_unix_ms is the "
        "transaction's, source_id the block's or the evicting node's; a reorg event has an empty tx_hash; in a "
        "pool_state event, tx_hash is 0x, first_seen_unix_ms 0 and source_id empty.",
    ),
    "ReplayPoint": obj({"seq_high_water": INT, "committed_unix_ms": MS, "pending_count": INT}),
    "IngestStats": obj(
        {
            "seen": INT,
            "delivered": INT,
            "dropped": {"type": "object", "additionalProperties": INT, "description": "count by drop reason"},
            "sources": arr(
                obj(
                    {
                        "source_id": STR,
                        "connected": BOOL,
                        "silent": BOOL,
                        "notifications": INT,
                        "reconnects": INT,
                        "last_notification_unix_ms": MS_OR_NULL,
                    }
                )
            ),
            "visibility": {"type": "string", "examples": ["visible", "not_visible", "unspecified"]},
            "as_of_unix_ms": MS,
        }
    ),
    "ChainTotals": obj(
        {
            "chain_id": INT,
            "chain": {"type": "string", "description": "known name, or the id"},
            "tx_count": INT,
            "decoded_count": INT,
            "opportunity_count": INT,
            "rejected": {"type": "object", "additionalProperties": INT, "description": "count by reject reason"},
            "replay": ref("ReplayPoint"),
            "ingest": {"oneOf": [ref("IngestStats"), {"type": "null"}]},
            "drop_ratio": {"type": "number", "minimum": 0},
            "source_wins": {
                **arr(obj({
                    "source_id": {**STR, "description": 'a source id ("~other": sources past processd\'s '
                                  'MEMPULSE_PROCESSD_MAX_SOURCES_PER_CHAIN)'},
                    "first_seen_wins": {**INT, "description": "stored transactions this source announced first"},
                    "seen": {**INT, "description": "stored transactions this source announced at all (first or "
                             "later, as recorded)"},
                })),
                "description": "per source: first-seen wins and announcements, from the event log (durable, "
                               "cumulative), by source_id",
            },
            "selector_coverage": {
                **arr(obj({
                    "selector": {**STR, "description": "first 4 bytes of calldata, 0x hex"},
                    "method": {**STR, "description": "method name of the decoded calls (empty when none decoded)"},
                    "decoded": {**INT, "description": "calls that decoded (built-in tables or a user ABI)"},
                    "failed": {**INT, "description": "calls of a known selector whose arguments did not decode"},
                    "unknown": {**INT, "description": "calls no decoder knows"},
                })),
                "description": "decode coverage of the chain's recent transactions by selector, busiest first "
                               "(only with coverage_top > 0)",
            },
            "lifecycle": obj({
                "pending": {**INT, "description": "pending transactions tracked now"},
                "included": INT, "replaced": INT, "dropped": INT,
                "included_private": {**INT, "description": "block transactions never seen pending"},
                "reorgs": INT, "reorgs_too_deep": INT,
                "inclusion_latency_p50_ms": INT, "inclusion_latency_p99_ms": INT,
                "replaced_rate": {"type": "number", "minimum": 0, "description": "replaced / settled"},
                "dropped_rate": {"type": "number", "minimum": 0, "description": "dropped / settled"},
                "private_share": {"type": "number", "minimum": 0,
                                  "description": "included_private / transactions of stored blocks"},
            }, description="the chain's transaction lifecycle (tracked from its first stored block)"),
        }
    ),
    "Snapshot": obj(
        {
            "chains": arr(ref("ChainTotals")),
            "replay": ref("ReplayPoint"),
            "feature_summary": arr(obj({"chain_id": INT, "protocol": STR, "category": STR, "count": INT})),
            "recent_features": arr(record("FeatureRecord")),
            "top_opportunities": arr(record("Opportunity")),
            "recent_transactions": arr(record("Transaction")),
            "recent_transactions_truncated": {
                **BOOL,
                "description": "true when recent_transactions holds fewer than tx_limit because the answer reached "
                "processd's page byte budget; the older ones: /transactions?before_seq_id=<seq_id of the last one>",
            },
            "last_seq_id": INT,
        }
    ),
    "TransactionList": obj(
        {
            "transactions": arr(record("Transaction")),
            "next_before_seq_id": {**INT, "description": "before_seq_id of the next (older) page; 0 = none older"},
            "truncated": {**BOOL, "description": _TRUNCATED},
            "last_seq_id": INT,
        }
    ),
    "TransactionPage": obj(
        {
            "transactions": arr(record("Transaction")),
            "next_from_seq_id": {**INT, "description": "from_seq_id of the next page (also to poll for new ones)"},
            "has_more": {"type": "boolean", "description": "false when this page reached the end of the log"},
            "truncated": {**BOOL, "description": _TRUNCATED},
            "last_seq_id": INT,
        }
    ),
    "TransactionDetail": obj(
        {
            "transaction": record("Transaction"),
            "features": {"oneOf": [ref("FeatureRecord"), ref("UnrenderableRecord"), {"type": "null"}]},
            "opportunities": arr(record("Opportunity")),
            "status": {"type": ["string", "null"], "enum": ["pending", "included", "replaced", "dropped", None],
                       "description": "lifecycle status; null when not tracked (stored before processd followed "
                       "the chain's blocks, or past its tracking bound)"},
            "history": {**arr(record("Event")), "description": "its lifecycle events, oldest first"},
        }
    ),
    "FeatureList": obj({"features": arr(record("FeatureRecord"))}),
    "BlockEvent": obj(
        {**_BLOCK_HEAD, "seen_pending": _SEEN_PENDING, "truncated": BOOL,
         "included_tracked": {**INT, "description": "transactions processd tracked as pending that it included"},
         "inclusion_latency_p50_ms": {"type": ["integer", "null"], "minimum": 0,
                                      "description": "median inclusion latency of those; null when none"},
         "txs": arr(obj({"hash": HASH, "index": INT, "from": ADDR, "nonce": U64,
                           "status": {"type": ["string", "null"], "enum": ["ok", "reverted", None],
                                      "description": "receipt status; null when no receipt was fetched"},
                           "gas_used": U64_OR_NULL, "effective_gas_price": AMOUNT_OR_NULL}))},
        description="A block as ingestd fetched it, with its included transactions (at most ingestd's "
                    "max_block_txs: truncated says when there were more; tx_count is the full count)."),
    "PoolStateEvent": obj(
        {"chain_id": INT, "pair": ADDR, "factory": ADDR,
         "token0": {**ADDR, "description": "the pair's token0 (token0 < token1)"}, "token1": ADDR,
         "reserve0": {**AMOUNT, "description": "getReserves() reserve0 (of token0) after the block, exact decimal"},
         "reserve1": {**AMOUNT, "description": "getReserves() reserve1 (of token1) after the block, exact decimal"},
         "block_number": INT, "block_hash": HASH,
         "source": {"type": "string", "description": "how ingestd learnt it: get_reserves (eth_call at the block) "
                    "or sync_log (the pair's last Sync log in the block); unknown_<n> for a newer value"}},
        description="A Uniswap V2-style pair's reserves as of the end of a block, as ingestd read them (issue 17)."),
    "Block": obj({**_BLOCK_HEAD, "seq_id": {**INT, "description": "seq_id of its block event"},
                   "seen_pending": _SEEN_PENDING, "reverted": {**INT, "description": "reverted transactions"},
                   "received_unix_ms": MS,
                   "inclusion_latency_p50_ms": {"type": ["integer", "null"], "minimum": 0, "description": "median "
                                                "inclusion latency of its transactions processd tracked as pending "
                                                "(null when none)"}}),
    "BlockList": obj({"blocks": arr(ref("Block")),
                       "next_before_seq_id": {**INT, "description": "before_seq_id of the next page; 0 = none"}}),
    "OpportunityList": obj({"opportunities": arr(record("Opportunity"))}),
    "EventPage": obj(
        {
            "events": arr(record("Event")),
            "next_from_seq_id": INT,
            "truncated": {**BOOL, "description": _TRUNCATED},
            "last_seq_id": INT,
        }
    ),
    "Health": obj(
        {
            "status": {"type": "string", "enum": ["ok", "degraded"]},
            "gateway": obj({"status": STR, "uptime_s": INT}),
            "processd": obj({"target": STR, "status": STR}),
        }
    ),
}
