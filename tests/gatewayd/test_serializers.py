"""Pure tests of the protobuf -> JSON mappers (gatewayd.serializers)."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from common.hexutil import int_to_uint256
from common.pb.v1 import events_pb2, ingest_pb2, query_pb2, tx_pb2
from gatewayd import serializers as ser

H = bytes(range(32))
A = bytes(range(100, 120))
B = bytes(range(200, 220))


def envelope(**kw: object) -> tx_pb2.TxEnvelope:
    base: dict[str, object] = dict(
        chain_id=137,
        hash=H,
        sender=A,
        to=B,
        nonce=7,
        value=int_to_uint256(10**18),
        gas=21000,
        max_fee_per_gas=int_to_uint256(30 * 10**9),
        max_priority_fee_per_gas=int_to_uint256(10**9),
        tx_type=2,
        input=b"\xa9\x05\x9c\xbb",
        source_id="ws://node",
        first_seen_unix_ns=1_700_000_000_123_456_789,
    )
    base.update(kw)
    return tx_pb2.TxEnvelope(**base)  # type: ignore[arg-type]


def test_stored_tx_conventions() -> None:
    out = ser.stored_tx_json(query_pb2.StoredTx(seq_id=9, tx=envelope(), received_unix_ns=1_700_000_000_999_000_000))
    assert out["hash"] == "0x" + H.hex() and out["hash"] == out["hash"].lower()
    assert out["from"] == "0x" + A.hex() and out["to"] == "0x" + B.hex()
    assert out["value"] == str(10**18) and isinstance(out["value"], str)
    assert out["gas"] == "21000" and out["nonce"] == "7" and out["type"] == 2  # uint64: exact decimal strings
    assert out["gas_price"] is None and out["max_fee_per_gas"] == str(30 * 10**9)  # not set: null
    assert out["input"] == "0xa9059cbb"
    assert out["first_seen_unix_ms"] == 1_700_000_000_123 and out["received_unix_ms"] == 1_700_000_000_999
    assert out["seq_id"] == 9 and out["chain_id"] == 137


def test_contract_creation_and_empty_value() -> None:
    out = ser.envelope_json(envelope(to=b"", value=b"", input=b""))
    assert out["to"] is None and out["value"] == "0" and out["input"] == "0x"


def test_uint256_max_is_exact() -> None:
    big = 2**256 - 1
    out = ser.envelope_json(envelope(value=int_to_uint256(big)))
    assert out["value"] == str(big)
    assert orjson.loads(orjson.dumps(out))["value"] == str(big)


def test_features_and_opportunity() -> None:
    f = events_pb2.TxFeatures(
        protocol="uniswap_v2",
        category=events_pb2.TX_CATEGORY_SWAP,
        method="swapExactETHForTokens",
        selector=b"\x7f\xf3\x6a\xb5",
        token_in=A,
        token_out=B,
        amount_out_min=int_to_uint256(5),
        path=[A, B],
        fee_tiers=[3000],
        deadline=1_700_000_000,
        value=int_to_uint256(1),
        calldata_len=4,
        decoded=True,
    )
    out = ser.feature_record_json(query_pb2.FeatureRecord(seq_id=3, chain_id=1, tx_hash=H, features=f))
    assert out["category"] == "swap" and out["method"] == "swapExactETHForTokens"
    assert out["selector"] == "0x7ff36ab5" and out["path"] == ["0x" + A.hex(), "0x" + B.hex()]
    assert out["amount_in"] is None and out["amount_out_min"] == "5"
    assert out["deadline_unix_ms"] == 1_700_000_000_000 and out["fee_tiers"] == [3000]
    assert out["recipient"] is None and out["decode_error"] is None and out["gas_price"] == "0"
    o = events_pb2.Opportunity(
        chain_id=1,
        tx_hash=H,
        kind=events_pb2.OPPORTUNITY_KIND_SANDWICH_CANDIDATE,
        score=87,
        reasons=["big"],
        protocol="uniswap_v2",
        token_in=A,
        notional_wei=int_to_uint256(10**20),
        slippage_bps=50,
        seq_id=4,
    )
    oj = ser.opportunity_json(o)
    assert oj["kind"] == "sandwich_candidate" and oj["score"] == 87 and oj["notional_wei"] == str(10**20)
    assert oj["token_out"] is None and oj["reasons"] == ["big"]


def test_unknown_enum_values_do_not_fail() -> None:
    o = events_pb2.Opportunity(kind=99)  # type: ignore[arg-type]
    assert ser.opportunity_json(o)["kind"] == "unknown_99"


def test_events_by_kind() -> None:
    seen = events_pb2.Event(
        seq_id=1,
        chain_id=1,
        kind=events_pb2.EVENT_KIND_TX_SEEN,
        tx_hash=H,
        first_seen_unix_ns=5_000_000,
        received_unix_ns=6_000_000,
        tx_seen=events_pb2.TxSeen(tx=envelope()),
    )
    out = ser.event_json(seen)
    assert out["kind"] == "tx_seen" and out["tx"]["hash"] == "0x" + H.hex() and "features" not in out
    assert out["first_seen_unix_ms"] == 5 and out["received_unix_ms"] == 6
    dec = events_pb2.Event(seq_id=2, kind=events_pb2.EVENT_KIND_TX_DECODED, tx_decoded=events_pb2.TxDecoded())
    assert ser.event_json(dec)["features"]["category"] == "unspecified"
    opp = events_pb2.Event(seq_id=3, kind=events_pb2.EVENT_KIND_OPP_DETECTED, opp_detected=events_pb2.OppDetected())
    assert "opportunity" in ser.event_json(opp)


def test_snapshot_with_ingest_stats() -> None:
    snap = query_pb2.GetSnapshotResponse(
        chains=[
            query_pb2.ChainTotals(
                chain_id=137,
                tx_count=10,
                rejected=[ingest_pb2.RejectCount(reason=ingest_pb2.REJECT_REASON_BAD_HASH, count=2)],
                ingest=ingest_pb2.ChainIngestStats(
                    chain_id=137,
                    seen=12,
                    delivered=10,
                    dropped=[ingest_pb2.DropCount(reason="dedup", count=2)],
                    sources=[ingest_pb2.SourceHealth(source_id="ws", connected=True, notifications=12)],
                    visibility=ingest_pb2.MEMPOOL_VISIBILITY_VISIBLE,
                ),
                drop_ratio=0.25,
            ),
            query_pb2.ChainTotals(chain_id=1),
        ],
        last_seq_id=30,
    )
    out = ser.snapshot_json(snap)
    polygon, eth = out["chains"]
    assert polygon["chain"] == "polygon" and polygon["rejected"] == {"bad_hash": 2}
    assert polygon["ingest"]["dropped"] == {"dedup": 2} and polygon["ingest"]["visibility"] == "visible"
    assert polygon["ingest"]["sources"][0]["last_notification_unix_ms"] is None
    assert eth["ingest"] is None and eth["chain"] == "ethereum"
    assert out["last_seq_id"] == 30 and orjson.loads(orjson.dumps(out)) == out


def test_detail_without_features() -> None:
    out = ser.transaction_detail_json(query_pb2.GetTransactionResponse(transaction=query_pb2.StoredTx(tx=envelope())))
    assert out["features"] is None and out["opportunities"] == []


@given(
    value=st.integers(0, 2**256 - 1),
    gas=st.integers(0, 2**64 - 1),
    to=st.sampled_from([b"", B]),
    data=st.binary(max_size=64),
    ns=st.integers(0, 2**64 - 1),
)
def test_fuzz_envelope_roundtrip(value: int, gas: int, to: bytes, data: bytes, ns: int) -> None:
    out = orjson.loads(
        orjson.dumps(
            ser.envelope_json(envelope(value=int_to_uint256(value), gas=gas, to=to, input=data, first_seen_unix_ns=ns))
        )
    )
    assert int(out["value"]) == value and out["gas"] == str(gas)
    assert bytes.fromhex(out["input"][2:]) == data and out["first_seen_unix_ms"] == ns // 1_000_000
    assert (out["to"] is None) == (to == b"")


EDGES = (0, 1, 2**53 - 1, 2**53, 2**53 + 1, 2**64 - 1, 2**64, 2**64 + 1, 2**255, 2**256 - 1)


def test_every_amount_field_renders_every_edge_exactly_and_zero_is_not_absent() -> None:
    for v in EDGES:
        raw = int_to_uint256(v)
        f = events_pb2.TxFeatures(amount_in=raw, amount_out_min=raw, amount_in_max=raw, amount_out=raw, value=raw,
                                  gas_price=raw, priority_fee=raw, deadline=min(v, 2**64 - 1))
        out = orjson.loads(orjson.dumps(ser.features_json(f)))
        for name in ("amount_in", "amount_out_min", "amount_in_max", "amount_out", "value", "gas_price",
                     "priority_fee"):
            assert out[name] == str(v), (name, v)
        assert out["deadline"] == str(min(v, 2**64 - 1))
        e = orjson.loads(orjson.dumps(ser.envelope_json(envelope(
            value=raw, gas_price=raw, max_fee_per_gas=raw, max_priority_fee_per_gas=raw, nonce=min(v, 2**64 - 1),
            gas=min(v, 2**64 - 1)))))
        assert e["value"] == e["gas_price"] == e["max_fee_per_gas"] == e["max_priority_fee_per_gas"] == str(v)
        assert e["nonce"] == e["gas"] == str(min(v, 2**64 - 1))
        o = ser.opportunity_json(events_pb2.Opportunity(notional_wei=raw))
        assert o["notional_wei"] == str(v)
    absent = ser.features_json(events_pb2.TxFeatures())
    assert all(absent[n] is None for n in ("amount_in", "amount_out_min", "amount_in_max", "amount_out",
                                             "deadline", "deadline_unix_ms"))
    assert ser.opportunity_json(events_pb2.Opportunity())["notional_wei"] is None
    assert ser.opportunity_json(events_pb2.Opportunity())["slippage_bps"] is None  # 0 = unknown


def test_deadline_unix_ms_never_overflows() -> None:
    last_exact = ser.JS_SAFE_MAX // 1000
    for deadline, ms in ((0, 0), (1_700_000_000, 1_700_000_000_000), (last_exact, last_exact * 1000),
                         (last_exact + 1, None), (2**64 - 1, None)):
        out = orjson.loads(orjson.dumps(ser.features_json(events_pb2.TxFeatures(deadline=deadline))))
        assert out["deadline"] == str(deadline) and out["deadline_unix_ms"] == ms


def test_typed_fields_and_raw_bytes_only_when_asked() -> None:
    top = 2**256 - 1
    env = envelope(
        tx_type=4, v=b"", y_parity=0, r=int_to_uint256(top), s=b"\x01",
        access_list=[tx_pb2.AccessListEntry(address=A, storage_keys=[H]), tx_pb2.AccessListEntry(address=B)],
        authorization_list=[tx_pb2.Authorization(chain_id=b"", address=B, nonce=2**64 - 1, y_parity=1, r=b"\x05",
                                                 s=int_to_uint256(top))],
        raw_tx=b"\x04\xc0", raw_tx_origin=tx_pb2.RAW_TX_ORIGIN_NODE)
    out = ser.envelope_json(env)
    assert "raw_tx" not in out and "raw_tx_origin" not in out
    assert out["v"] == "0" and out["y_parity"] == 0 and out["r"] == str(top) and out["s"] == "1"
    assert out["access_list"] == [{"address": "0x" + A.hex(), "storage_keys": ["0x" + H.hex()]},
                                  {"address": "0x" + B.hex(), "storage_keys": []}]
    assert out["authorization_list"] == [{"chain_id": "0", "address": "0x" + B.hex(), "nonce": str(2**64 - 1),
                                          "y_parity": 1, "r": "5", "s": str(top)}]
    assert out["max_fee_per_blob_gas"] is None and out["blob_versioned_hashes"] == []
    raw = ser.envelope_json(env, include_raw=True)
    assert raw["raw_tx"] == "0x04c0" and raw["raw_tx_origin"] == "node"
    assert {k: v for k, v in raw.items() if not k.startswith("raw_tx")} == out
    # not reported: null, never "0"; no raw bytes: null origin too; a future origin renders as unknown_<n>
    legacy = ser.envelope_json(envelope(tx_type=0), include_raw=True)
    assert (legacy["v"], legacy["y_parity"], legacy["r"], legacy["s"]) == (None, None, None, None)
    assert legacy["raw_tx"] is None and legacy["raw_tx_origin"] is None
    future = ser.envelope_json(envelope(raw_tx=b"\x01", raw_tx_origin=7), include_raw=True)
    assert future["raw_tx_origin"] == "unknown_7"
    blob = ser.envelope_json(envelope(tx_type=3, max_fee_per_blob_gas=b"", blob_versioned_hashes=[H]))
    assert blob["max_fee_per_blob_gas"] == "0" and blob["blob_versioned_hashes"] == ["0x" + H.hex()]
    event = events_pb2.Event(seq_id=3, chain_id=137, kind=events_pb2.EVENT_KIND_TX_SEEN, tx_hash=H,
                             tx_seen=events_pb2.TxSeen(tx=env))
    assert "raw_tx" not in ser.event_json(event)["tx"] and ser.event_json(event, True)["tx"]["raw_tx"] == "0x04c0"


def test_sources_first_one_first_and_sightings_by_kind() -> None:
    t0 = 1_700_000_000_123_456_789
    stored = query_pb2.StoredTx(seq_id=9, tx=envelope(), sources=[
        query_pb2.SourceSeen(source_id="ws://node", first_seen_unix_ns=t0),
        query_pb2.SourceSeen(source_id="ws://slow", first_seen_unix_ns=t0 + 250_000_000)])
    out = ser.stored_tx_json(stored)
    assert out["sources"] == [{"source_id": "ws://node", "first_seen_unix_ms": 1_700_000_000_123},
                              {"source_id": "ws://slow", "first_seen_unix_ms": 1_700_000_000_373}]
    assert out["sources"][0] == {"source_id": out["source_id"], "first_seen_unix_ms": out["first_seen_unix_ms"]}
    # A processd without StoredTx.sources: the envelope's first source stands alone.
    assert ser.stored_tx_json(query_pb2.StoredTx(seq_id=9, tx=envelope()))["sources"] == out["sources"][:1]
    sighting = tx_pb2.TxSighting(chain_id=137, hash=H, source_id="ws://slow", seen_unix_ns=t0 + 250_000_000)
    e = ser.event_json(events_pb2.Event(
        seq_id=12, chain_id=137, kind=events_pb2.EVENT_KIND_TX_SOURCE_SEEN, tx_hash=H, first_seen_unix_ns=t0,
        source_id="ws://slow", tx_source_seen=events_pb2.TxSourceSeen(sighting=sighting, tx_seq_id=9)))
    assert e["kind"] == "tx_source_seen" and e["source_id"] == "ws://slow"
    assert e["sighting"] == {"source_id": "ws://slow", "first_seen_unix_ms": 1_700_000_000_373, "tx_seq_id": 9}
    chain = ser.chain_totals_json(query_pb2.ChainTotals(chain_id=137, sources=[
        query_pb2.SourceStanding(source_id="ws://node", first_seen_wins=5, seen=5),
        query_pb2.SourceStanding(source_id="ws://slow", first_seen_wins=1, seen=6)]))
    assert chain["source_wins"] == [{"source_id": "ws://node", "first_seen_wins": 5, "seen": 5},
                                    {"source_id": "ws://slow", "first_seen_wins": 1, "seen": 6}]
