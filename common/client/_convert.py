"""Pure mappers from protobuf messages of the Query contract to the client's records (one function per message).

Nothing here does I/O or keeps state. Bytes become lowercase ``0x`` hex (addresses, hashes) or ``int``
(big-endian uint256 quantities); an ``optional`` field that is not set becomes None; enums become their
lowercase names without prefix (an enum value this client does not know, from a newer processd, becomes
``"unknown_<n>"``).
"""

from __future__ import annotations

from typing import Any

from common.client.records import (
    AccessListEntry,
    Authorization,
    ChainTotals,
    DecodedArg,
    Dropped,
    Event,
    EventKind,
    EventPage,
    FeatureRecord,
    Features,
    FeatureSummary,
    Included,
    LifecycleTotals,
    Opportunity,
    PoolState,
    Reorg,
    Replaced,
    ReplayPoint,
    Sighting,
    Snapshot,
    SourceSeen,
    SourceStanding,
    Transaction,
    TransactionDetail,
    TransactionPage,
)
from common.pb.v1 import block_pb2, events_pb2, ingest_pb2, pool_pb2, query_pb2, tx_pb2

#: protobuf EventKind value -> the client's EventKind, and back.
KIND_FROM_PB: dict[events_pb2.EventKind, EventKind] = {
    events_pb2.EVENT_KIND_TX_SEEN: EventKind.TX_SEEN,
    events_pb2.EVENT_KIND_TX_DECODED: EventKind.TX_DECODED,
    events_pb2.EVENT_KIND_OPP_DETECTED: EventKind.OPP_DETECTED,
    events_pb2.EVENT_KIND_TX_SOURCE_SEEN: EventKind.TX_SOURCE_SEEN,
    events_pb2.EVENT_KIND_TX_INCLUDED: EventKind.TX_INCLUDED,
    events_pb2.EVENT_KIND_TX_REPLACED: EventKind.TX_REPLACED,
    events_pb2.EVENT_KIND_TX_DROPPED: EventKind.TX_DROPPED,
    events_pb2.EVENT_KIND_REORG: EventKind.REORG,
    events_pb2.EVENT_KIND_POOL_STATE: EventKind.POOL_STATE,
}
KIND_TO_PB: dict[EventKind, events_pb2.EventKind] = {kind: value for value, kind in KIND_FROM_PB.items()}


def _hex(raw: bytes) -> str:
    return "0x" + raw.hex()


def _hex_or_none(raw: bytes) -> str | None:
    # An empty address / selector means "not applicable" in the contract.
    return "0x" + raw.hex() if raw else None


def _int(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def _opt_int(msg: Any, name: str) -> int | None:
    # `optional` fields: not set = unknown (None), set and empty = a known 0.
    return int.from_bytes(getattr(msg, name), "big") if msg.HasField(name) else None


def _enum_name(enum: Any, value: int, prefix: str) -> str:
    try:
        name: str = enum.Name(value)
    except ValueError:
        return f"unknown_{value}"
    return name.removeprefix(prefix).lower()


def transaction(env: tx_pb2.TxEnvelope, stored: query_pb2.StoredTx | None = None) -> Transaction:
    """A :class:`Transaction` from an envelope, with the stored record's seq, receive time and sources."""
    return Transaction(
        chain_id=env.chain_id,
        hash=_hex(env.hash),
        sender=_hex(env.sender),
        to=_hex_or_none(env.to),
        nonce=env.nonce,
        value=_int(env.value),
        gas=env.gas,
        gas_price=_opt_int(env, "gas_price"),
        max_fee_per_gas=_opt_int(env, "max_fee_per_gas"),
        max_priority_fee_per_gas=_opt_int(env, "max_priority_fee_per_gas"),
        tx_type=env.tx_type,
        input=_hex(env.input),
        source_id=env.source_id,
        first_seen_unix_ns=env.first_seen_unix_ns,
        seq_id=stored.seq_id if stored is not None else 0,
        received_unix_ns=stored.received_unix_ns if stored is not None else 0,
        sources=tuple(SourceSeen(s.source_id, s.first_seen_unix_ns) for s in stored.sources)
        if stored is not None else (),
        v=_opt_int(env, "v"),
        y_parity=env.y_parity if env.HasField("y_parity") else None,
        r=_opt_int(env, "r"),
        s=_opt_int(env, "s"),
        access_list=tuple(
            AccessListEntry(_hex(e.address), tuple(_hex(k) for k in e.storage_keys)) for e in env.access_list
        ),
        max_fee_per_blob_gas=_opt_int(env, "max_fee_per_blob_gas"),
        blob_versioned_hashes=tuple(_hex(h) for h in env.blob_versioned_hashes),
        authorization_list=tuple(
            Authorization(_int(a.chain_id), _hex(a.address), a.nonce, a.y_parity, _int(a.r), _int(a.s))
            for a in env.authorization_list
        ),
        raw_tx=_hex_or_none(env.raw_tx),
    )


def stored_tx(msg: query_pb2.StoredTx) -> Transaction:
    """A :class:`Transaction` from a ``StoredTx``."""
    return transaction(msg.tx, msg)


def features(msg: events_pb2.TxFeatures) -> Features:
    """:class:`Features` from ``TxFeatures``."""
    return Features(
        protocol=msg.protocol,
        category=_enum_name(events_pb2.TxCategory, msg.category, "TX_CATEGORY_"),
        method=msg.method,
        selector=_hex_or_none(msg.selector),
        token_in=_hex_or_none(msg.token_in),
        token_out=_hex_or_none(msg.token_out),
        amount_in=_opt_int(msg, "amount_in"),
        amount_out_min=_opt_int(msg, "amount_out_min"),
        amount_in_max=_opt_int(msg, "amount_in_max"),
        amount_out=_opt_int(msg, "amount_out"),
        path=tuple(_hex(p) for p in msg.path),
        fee_tiers=tuple(msg.fee_tiers),
        recipient=_hex_or_none(msg.recipient),
        deadline=msg.deadline if msg.HasField("deadline") else None,
        value=_int(msg.value),
        gas_price=_int(msg.gas_price),
        priority_fee=_int(msg.priority_fee),
        calldata_len=msg.calldata_len,
        decoded=msg.decoded,
        decode_error=msg.decode_error,
        args=tuple(DecodedArg(a.name, a.type, a.value) for a in msg.args),
        args_truncated=msg.args_truncated,
    )


def feature_record(msg: query_pb2.FeatureRecord) -> FeatureRecord:
    """A :class:`FeatureRecord` from its message."""
    return FeatureRecord(msg.seq_id, msg.chain_id, _hex(msg.tx_hash), features(msg.features))


def opportunity(msg: events_pb2.Opportunity, seq_id: int = 0) -> Opportunity:
    """An :class:`Opportunity` from its message (``seq_id``: its event's, when the message carries none)."""
    return Opportunity(
        seq_id=msg.seq_id or seq_id,
        chain_id=msg.chain_id,
        tx_hash=_hex(msg.tx_hash),
        kind=_enum_name(events_pb2.OpportunityKind, msg.kind, "OPPORTUNITY_KIND_"),
        score=msg.score,
        reasons=tuple(msg.reasons),
        protocol=msg.protocol,
        token_in=_hex_or_none(msg.token_in),
        token_out=_hex_or_none(msg.token_out),
        notional_wei=_opt_int(msg, "notional_wei"),
        slippage_bps=msg.slippage_bps,
        valued=msg.valued,
        valuation_note=msg.valuation_note,
        net_profit_wei=_opt_int(msg, "net_profit_wei"),
        sandwich_profit_wei=_opt_int(msg, "sandwich_profit_wei"),
        frontrun_amount_in=_opt_int(msg, "frontrun_amount_in"),
        backrun_profit_wei=_opt_int(msg, "backrun_profit_wei"),
        backrun_amount_in=_opt_int(msg, "backrun_amount_in"),
        gas_cost_wei=_opt_int(msg, "gas_cost_wei"),
        price_impact_bps=msg.price_impact_bps if msg.valued else None,
        profit_token=_hex_or_none(msg.profit_token),
        state_block_number=msg.state_block_number if msg.valued else None,
    )


def event(msg: events_pb2.Event) -> Event | None:
    """An :class:`Event` from its message, or None for a kind this client does not know (a newer processd)."""
    kind = KIND_FROM_PB.get(msg.kind)
    if kind is None:
        return None
    body = msg.WhichOneof("body")
    return Event(
        seq_id=msg.seq_id,
        chain_id=msg.chain_id,
        kind=kind,
        tx_hash=_hex(msg.tx_hash),
        first_seen_unix_ns=msg.first_seen_unix_ns,
        received_unix_ns=msg.received_unix_ns,
        source_id=msg.source_id,
        tx=transaction(msg.tx_seen.tx) if body == "tx_seen" else None,
        features=features(msg.tx_decoded.features) if body == "tx_decoded" else None,
        opportunity=opportunity(msg.opp_detected.opportunity, msg.seq_id) if body == "opp_detected" else None,
        sighting=Sighting(
            msg.tx_source_seen.sighting.source_id,
            msg.tx_source_seen.sighting.seen_unix_ns,
            msg.tx_source_seen.tx_seq_id,
        )
        if body == "tx_source_seen"
        else None,
        included=_included(msg.tx_included) if body == "tx_included" else None,
        replaced=Replaced(_hex(msg.tx_replaced.by_hash), msg.tx_replaced.fee_bump_bps, msg.tx_replaced.cancel,
                          msg.tx_replaced.by_block, msg.tx_replaced.tx_seq_id) if body == "tx_replaced" else None,
        dropped=Dropped(_enum_name(events_pb2.DropReason, msg.tx_dropped.reason, "DROP_REASON_"),
                        msg.tx_dropped.tx_seq_id, msg.tx_dropped.source_id) if body == "tx_dropped" else None,
        reorg=Reorg(msg.reorg.depth, msg.reorg.number, _hex(msg.reorg.new_hash),
                    tuple(_hex(h) for h in msg.reorg.orphaned_hashes), msg.reorg.unincluded, msg.reorg.too_deep)
        if body == "reorg"
        else None,
        pool_state=pool_state(msg.pool_state.state) if body == "pool_state" else None,
    )


def pool_state(msg: pool_pb2.PoolState) -> PoolState:
    """A :class:`PoolState` from a ``PoolState`` message."""
    return PoolState(
        chain_id=msg.chain_id, pair=_hex(msg.pair), factory=_hex(msg.factory), token0=_hex(msg.token0),
        token1=_hex(msg.token1), reserve0=_int(msg.reserve0), reserve1=_int(msg.reserve1),
        block_number=msg.block_number, block_hash=_hex(msg.block_hash),
        source=_enum_name(pool_pb2.PoolStateSource, msg.source, "POOL_STATE_SOURCE_"),
    )


def _included(msg: events_pb2.TxIncluded) -> Included:
    status = _enum_name(block_pb2.TxStatus, msg.status, "TX_STATUS_") if msg.status else None
    return Included(msg.block_number, _hex(msg.block_hash), msg.index, status, msg.inclusion_latency_ms,
                    msg.tx_seq_id, msg.block_seq_id, msg.reincluded)


def events(msgs: Any) -> tuple[Event, ...]:
    """The known-kind :class:`Event` s of a repeated ``Event`` field, in order."""
    out = (event(m) for m in msgs)
    return tuple(e for e in out if e is not None)


def transaction_detail(msg: query_pb2.GetTransactionResponse) -> TransactionDetail:
    """A :class:`TransactionDetail` from a ``GetTransactionResponse``."""
    return TransactionDetail(
        transaction=stored_tx(msg.transaction),
        features=feature_record(msg.features) if msg.HasField("features") else None,
        opportunities=tuple(opportunity(o) for o in msg.opportunities),
        status=_enum_name(query_pb2.TxLifecycleStatus, msg.status, "TX_LIFECYCLE_STATUS_") if msg.status else None,
        history=events(msg.history),
    )


def transaction_page(msg: query_pb2.ListTransactionsResponse) -> TransactionPage:
    """A :class:`TransactionPage` from a ``ListTransactionsResponse``."""
    return TransactionPage(tuple(stored_tx(t) for t in msg.transactions), msg.next_cursor, msg.last_seq_id,
                           msg.truncated)


def event_page(msg: query_pb2.ScanEventsResponse) -> EventPage:
    """An :class:`EventPage` from a ``ScanEventsResponse``."""
    return EventPage(events(msg.events), msg.next_seq_id, msg.last_seq_id, msg.truncated)


def replay_point(msg: query_pb2.ReplayPoint) -> ReplayPoint:
    """A :class:`ReplayPoint` from its message."""
    return ReplayPoint(msg.seq_high_water, msg.committed_unix_ns, msg.pending_count)


def chain_totals(msg: query_pb2.ChainTotals) -> ChainTotals:
    """:class:`ChainTotals` from its message (the forwarded ingest counters are left out)."""
    return ChainTotals(
        chain_id=msg.chain_id,
        tx_count=msg.tx_count,
        decoded_count=msg.decoded_count,
        opportunity_count=msg.opportunity_count,
        rejected={_enum_name(ingest_pb2.RejectReason, r.reason, "REJECT_REASON_"): r.count for r in msg.rejected},
        replay=replay_point(msg.replay),
        drop_ratio=msg.drop_ratio,
        sources=tuple(SourceStanding(s.source_id, s.first_seen_wins, s.seen) for s in msg.sources),
        lifecycle=lifecycle_totals(msg.lifecycle),
    )


def lifecycle_totals(msg: query_pb2.LifecycleTotals) -> LifecycleTotals:
    """:class:`LifecycleTotals` from its message."""
    return LifecycleTotals(msg.pending, msg.included, msg.replaced, msg.dropped, msg.included_private, msg.reorgs,
                           msg.reorgs_too_deep, msg.inclusion_latency_p50_ms, msg.inclusion_latency_p99_ms,
                           msg.replaced_rate, msg.dropped_rate, msg.private_share)


def snapshot(msg: query_pb2.GetSnapshotResponse) -> Snapshot:
    """A :class:`Snapshot` from a ``GetSnapshotResponse``."""
    return Snapshot(
        chains=tuple(chain_totals(c) for c in msg.chains),
        replay=replay_point(msg.replay),
        feature_summary=tuple(
            FeatureSummary(f.chain_id, f.protocol, _enum_name(events_pb2.TxCategory, f.category, "TX_CATEGORY_"),
                           f.count)
            for f in msg.feature_summary
        ),
        recent_features=tuple(feature_record(f) for f in msg.recent_features),
        top_opportunities=tuple(opportunity(o) for o in msg.top_opportunities),
        recent_transactions=tuple(stored_tx(t) for t in msg.recent_transactions),
        last_seq_id=msg.last_seq_id,
        recent_transactions_truncated=msg.recent_transactions_truncated,
    )
