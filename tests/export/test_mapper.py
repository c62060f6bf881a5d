"""The mapper: the columnar fast path equals the row-by-row reference, for every kind, optional fields set and
unset; amounts are exact decimal strings whatever their width."""

from __future__ import annotations

from common.pb.v1 import events_pb2, tx_pb2
from common.testing.synth import synthetic_envelopes
from processd.export.mapper import columns_of, rows_of, u256
from processd.export.schema import DATA_TABLES

MAX_U256 = (1 << 256) - 1


def _events() -> list[events_pb2.Event]:
    out = []
    seq = 0
    for i, env in enumerate(synthetic_envelopes(40, seed=2)):
        seq += 1
        if i == 5:
            env.to = b""  # a contract creation: to_address NULL
        out.append(events_pb2.Event(seq_id=seq, chain_id=env.chain_id, kind=events_pb2.EVENT_KIND_TX_SEEN,
                                    tx_hash=env.hash, first_seen_unix_ns=env.first_seen_unix_ns,
                                    received_unix_ns=env.first_seen_unix_ns + 7, source_id=env.source_id,
                                    tx_seen=events_pb2.TxSeen(tx=env)))
        seq += 1
        features = events_pb2.TxFeatures(protocol="uniswap_v2", category=i % 5, method="m", selector=env.input[:4],
                                         value=env.value, gas_price=b"\x01", calldata_len=len(env.input),
                                         decoded=bool(i % 2))
        if i % 3:
            features.amount_in = MAX_U256.to_bytes(32, "big")
            features.token_in = env.sender
            features.path.extend([env.sender, env.to])
            features.deadline = i
        elif i % 2 == 0:
            features.deadline = 0  # set, 0: not NULL (the mapper asks HasField only of the zeros)
        if i % 4 == 0:
            features.amount_out_min = b""  # set, 0
        out.append(events_pb2.Event(seq_id=seq, chain_id=env.chain_id, kind=events_pb2.EVENT_KIND_TX_DECODED,
                                    tx_hash=env.hash, first_seen_unix_ns=env.first_seen_unix_ns,
                                    tx_decoded=events_pb2.TxDecoded(features=features)))
        if i % 3 == 0:
            seq += 1
            opp = events_pb2.Opportunity(chain_id=env.chain_id, tx_hash=env.hash, kind=i % 4, score=i % 101,
                                         reasons=["a", "b"], protocol="p", seq_id=seq)
            if i % 2:
                opp.notional_wei = (10**20).to_bytes(9, "big")
            out.append(events_pb2.Event(seq_id=seq, chain_id=env.chain_id, kind=events_pb2.EVENT_KIND_OPP_DETECTED,
                                        tx_hash=env.hash, opp_detected=events_pb2.OppDetected(opportunity=opp)))
        seq += 1
        out.append(events_pb2.Event(seq_id=seq, chain_id=env.chain_id, kind=events_pb2.EVENT_KIND_TX_SOURCE_SEEN,
                                    tx_hash=env.hash, tx_source_seen=events_pb2.TxSourceSeen(
                                        sighting=tx_pb2.TxSighting(source_id="b", seen_unix_ns=5), tx_seq_id=seq - 2)))
    out.append(events_pb2.Event(seq_id=seq + 1, chain_id=1, kind=99))  # a newer kind: an events row only
    return out


def test_columns_equal_the_reference_rows() -> None:
    events = _events()
    rows = rows_of(events)
    columns = columns_of(events)
    for table in DATA_TABLES:
        assert rows[table.name], table.name  # every table is exercised
        assert all(len(r) == len(table.columns) for r in rows[table.name])
        assert [list(c) for c in zip(*rows[table.name], strict=True)] == columns[table.name], table.name


def test_values_keep_unknown_apart_from_zero_and_stay_exact() -> None:
    events = _events()
    features = rows_of(events)["features"]
    amount_in = [r[14] for r in features]
    assert str(MAX_U256) in amount_in and None in amount_in
    assert {r[15] for r in features} == {None, "0"}  # amount_out_min: unset, or set to 0
    deadlines = [r[21] for r in features]
    assert None in deadlines and 0 in deadlines and 1 in deadlines  # unset, set to 0, set
    assert rows_of(events)["events"][-1][6] == "UNSPECIFIED"
    assert [r[8] for r in rows_of(events)["transactions"]].count(None) == 1
    assert u256(b"") == "0" and u256(MAX_U256.to_bytes(32, "big")) == str(MAX_U256)
