"""The protobuf -> record mappers on the cases a seeded log may not hold: presence (a known 0 vs unknown), creations,
enum values and event kinds this client does not know, every typed-transaction field."""

from __future__ import annotations

from common.client import EventKind, PoolState, _convert
from common.pb.v1 import events_pb2, query_pb2, tx_pb2


def test_optional_quantities_keep_known_zero_apart_from_unknown() -> None:
    env = tx_pb2.TxEnvelope(hash=b"\x01" * 32, sender=b"\x02" * 20, value=b"", gas_price=b"", tx_type=0)
    tx = _convert.transaction(env)
    assert tx.gas_price == 0 and tx.max_fee_per_gas is None and tx.max_priority_fee_per_gas is None
    assert tx.to is None and tx.raw_tx is None and tx.input == "0x" and tx.selector is None
    assert tx.value == 0 and tx.y_parity is None and tx.v is None

    f = _convert.features(events_pb2.TxFeatures(amount_out_min=b"", value=(10**30).to_bytes(13, "big")))
    assert f.amount_out_min == 0 and f.amount_in is None and f.deadline is None and f.value == 10**30
    assert f.selector is None and f.token_in is None and f.category == "unspecified"

    opp = events_pb2.Opportunity(tx_hash=b"\x03" * 32, kind=events_pb2.OPPORTUNITY_KIND_ARB_CANDIDATE)
    assert _convert.opportunity(opp).notional_wei is None and _convert.opportunity(opp).kind == "arb_candidate"
    opp.notional_wei = b""
    assert _convert.opportunity(opp).notional_wei == 0


def test_typed_transaction_fields() -> None:
    env = tx_pb2.TxEnvelope(
        hash=b"\xaa" * 32, sender=b"\xbb" * 20, to=b"\xcc" * 20, input=bytes.fromhex("7ff36ab5") + b"\x00" * 4,
        y_parity=1, r=(2**255).to_bytes(32, "big"), s=b"\x07", max_fee_per_blob_gas=b"\x01\x00",
        blob_versioned_hashes=[b"\x01" * 32], raw_tx=b"\x02\xf8",
        access_list=[tx_pb2.AccessListEntry(address=b"\xdd" * 20, storage_keys=[b"\x00" * 31 + b"\x01"])],
        authorization_list=[tx_pb2.Authorization(chain_id=b"", address=b"\xee" * 20, nonce=3, y_parity=1,
                                                 r=b"\x05", s=b"\x06")],
    )
    stored = query_pb2.StoredTx(seq_id=9, tx=env, received_unix_ns=5,
                                sources=[query_pb2.SourceSeen(source_id="a", first_seen_unix_ns=4)])
    tx = _convert.stored_tx(stored)
    assert tx.seq_id == 9 and tx.received_unix_ns == 5 and tx.sources[0].source_id == "a"
    assert tx.to == "0x" + "cc" * 20 and tx.selector == "0x7ff36ab5"
    assert tx.y_parity == 1 and tx.r == 2**255 and tx.s == 7 and tx.max_fee_per_blob_gas == 256
    assert tx.blob_versioned_hashes == ("0x" + "01" * 32,) and tx.raw_tx == "0x02f8"
    entry = tx.access_list[0]
    assert entry.address == "0x" + "dd" * 20 and entry.storage_keys == ("0x" + "00" * 31 + "01",)
    auth = tx.authorization_list[0]
    assert (auth.chain_id, auth.address, auth.nonce, auth.y_parity, auth.r, auth.s) == (0, "0x" + "ee" * 20, 3, 1, 5, 6)


def test_unknown_enum_values_and_kinds_from_a_newer_processd() -> None:
    assert _convert.features(events_pb2.TxFeatures(category=99)).category == "unknown_99"
    assert _convert.event(events_pb2.Event(seq_id=1, kind=99)) is None
    body = events_pb2.TxSourceSeen(sighting=tx_pb2.TxSighting(source_id="b", seen_unix_ns=7), tx_seq_id=1)
    known = events_pb2.Event(seq_id=2, kind=events_pb2.EVENT_KIND_TX_SOURCE_SEEN, tx_source_seen=body)
    assert [e.seq_id for e in _convert.events([events_pb2.Event(seq_id=1, kind=99), known])] == [2]
    ev = _convert.event(known)
    assert ev is not None and ev.kind is EventKind.TX_SOURCE_SEEN and ev.sighting is not None
    assert (ev.sighting.source_id, ev.sighting.seen_unix_ns, ev.sighting.tx_seq_id) == ("b", 7, 1)
    assert ev.tx is None and ev.features is None and ev.opportunity is None


def test_a_pool_state_event_is_typed_with_exact_reserves() -> None:
    from common.pb.v1 import pool_pb2

    state = pool_pb2.PoolState(chain_id=137, pair=b"\x01" * 20, factory=b"\x02" * 20, token0=b"\x03" * 20,
                               token1=b"\x04" * 20, reserve0=(2**111 + 3).to_bytes(14, "big"), reserve1=b"",
                               block_number=9, block_hash=b"\x05" * 32, source=pool_pb2.POOL_STATE_SOURCE_GET_RESERVES)
    ev = _convert.event(events_pb2.Event(seq_id=4, chain_id=137, kind=events_pb2.EVENT_KIND_POOL_STATE,
                                         pool_state=events_pb2.PoolStateSeen(state=state)))
    assert ev is not None and ev.kind is EventKind.POOL_STATE and ev.tx is None and ev.sighting is None
    assert ev.pool_state == PoolState(137, "0x" + "01" * 20, "0x" + "02" * 20, "0x" + "03" * 20,
                                      "0x" + "04" * 20, 2**111 + 3, 0, 9, "0x" + "05" * 32, "get_reserves")
    assert _convert.KIND_TO_PB[EventKind("pool_state")] == events_pb2.EVENT_KIND_POOL_STATE


def test_lifecycle_events_map_to_their_records() -> None:
    inc = events_pb2.Event(seq_id=5, kind=events_pb2.EVENT_KIND_TX_INCLUDED, tx_hash=b"\x01" * 32,
                           tx_included=events_pb2.TxIncluded(block_number=7, block_hash=b"\x02" * 32, index=3,
                                                             status=2, inclusion_latency_ms=1500, tx_seq_id=1,
                                                             block_seq_id=4, reincluded=True))
    rep = events_pb2.Event(seq_id=6, kind=events_pb2.EVENT_KIND_TX_REPLACED,
                           tx_replaced=events_pb2.TxReplaced(by_hash=b"\x03" * 32, fee_bump_bps=-50, cancel=True))
    drop = events_pb2.Event(seq_id=7, kind=events_pb2.EVENT_KIND_TX_DROPPED,
                            tx_dropped=events_pb2.TxDropped(reason=events_pb2.DROP_REASON_NONCE_PASSED, tx_seq_id=2))
    reorg = events_pb2.Event(seq_id=8, kind=events_pb2.EVENT_KIND_REORG,
                             reorg=events_pb2.Reorg(depth=2, number=9, new_hash=b"\x04" * 32,
                                                    orphaned_hashes=[b"\x05" * 32], unincluded=1))
    a, b, c, d = _convert.events([inc, rep, drop, reorg])
    assert a.kind is EventKind.TX_INCLUDED and a.included is not None and a.replaced is None
    assert (a.included.block_number, a.included.status, a.included.inclusion_latency_ms, a.included.reincluded) == (
        7, "reverted", 1500, True)
    assert b.replaced is not None and (b.replaced.by_hash, b.replaced.fee_bump_bps, b.replaced.cancel) == (
        "0x" + "03" * 32, -50, True)
    assert c.dropped is not None and c.dropped.reason == "nonce_passed" and c.dropped.tx_seq_id == 2
    assert d.reorg is not None and d.reorg.orphaned_hashes == ("0x" + "05" * 32,) and d.reorg.unincluded == 1
    assert d.tx_hash == "0x"
