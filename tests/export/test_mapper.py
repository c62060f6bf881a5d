"""The mapper: the columnar fast path equals the row-by-row reference, for every kind, optional fields set and
unset; amounts are exact decimal strings whatever their width."""

from __future__ import annotations

import pytest

from common.pb.v1 import block_pb2, events_pb2, pool_pb2, tx_pb2
from common.testing.synth import synthetic_envelopes
from processd.export.mapper import columns_of, rows_of, u256, unknown_kinds
from processd.export.schema import DATA_TABLES, EVENTS, enum8

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
            features.fee_tiers.extend([500, i])
            features.recipient = env.sender
            features.deadline = i
        elif i % 2 == 0:
            features.deadline = 0  # set, 0: not NULL
        else:
            features.decode_error = "short calldata"
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
    for n in range(4):  # blocks with and without a base fee, truncated or not; pool states up to uint256's max
        seq += 1
        block = block_pb2.BlockEnvelope(chain_id=1, number=n, hash=bytes([n]) * 32, parent_hash=b"\x01" * 32,
                                        timestamp=1_700_000_000 + n, base_fee=b"" if n % 2 else b"\x03\xe8",
                                        truncated=n == 3, tx_count=n,
                                        txs=[block_pb2.IncludedTx(hash=bytes([n, i]) * 16) for i in range(n)])
        out.append(events_pb2.Event(seq_id=seq, chain_id=1, kind=events_pb2.EVENT_KIND_BLOCK, first_seen_unix_ns=n,
                                    source_id="node", block=events_pb2.BlockSeen(block=block, seen_pending=n // 2)))
        seq += 1
        state = pool_pb2.PoolState(chain_id=1, pair=bytes([n]) * 20, token0=b"\x02" * 20, token1=b"\x03" * 20,
                                   reserve0=MAX_U256.to_bytes(32, "big") if n == 0 else bytes([n]), reserve1=b"",
                                   block_number=n, block_hash=bytes([n]) * 32, source=n % 3)
        out.append(events_pb2.Event(seq_id=seq, chain_id=1, kind=events_pb2.EVENT_KIND_POOL_STATE,
                                    received_unix_ns=10**18 + n, pool_state=events_pb2.PoolStateSeen(state=state)))
    for n in range(3):  # the transaction lifecycle: each kind with its flags set and unset
        head = {"chain_id": 137, "tx_hash": bytes([n + 1]) * 32, "first_seen_unix_ns": 10**18 + n,
                "received_unix_ns": 10**18 + 10**9 * n, "source_id": f"node{n}"}
        seq += 1
        out.append(events_pb2.Event(seq_id=seq, kind=events_pb2.EVENT_KIND_TX_INCLUDED, **head,
                                    tx_included=events_pb2.TxIncluded(
                                        block_number=n, block_hash=bytes([n]) * 32, index=n, status=n,
                                        inclusion_latency_ms=1000 * n, tx_seq_id=n + 1, block_seq_id=n + 2,
                                        reincluded=n == 2)))
        seq += 1
        out.append(events_pb2.Event(seq_id=seq, kind=events_pb2.EVENT_KIND_TX_REPLACED, **head,
                                    tx_replaced=events_pb2.TxReplaced(by_hash=bytes([9, n]) * 16,
                                                                      fee_bump_bps=-50 + 1000 * n, cancel=n == 1,
                                                                      tx_seq_id=n + 1, by_block=n == 2)))
        seq += 1
        out.append(events_pb2.Event(seq_id=seq, kind=events_pb2.EVENT_KIND_TX_DROPPED, **head,
                                    tx_dropped=events_pb2.TxDropped(reason=n + 1, tx_seq_id=n + 1,
                                                                    source_id="node" if n == 1 else "")))
        seq += 1
        out.append(events_pb2.Event(seq_id=seq, chain_id=137, kind=events_pb2.EVENT_KIND_REORG,
                                    received_unix_ns=10**18 + n, source_id="node",
                                    reorg=events_pb2.Reorg(depth=n, new_hash=bytes([7, n]) * 16, number=50 + n,
                                                           orphaned_hashes=[bytes([8, i]) * 16 for i in range(n)],
                                                           unincluded=n, too_deep=n == 2)))
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
    assert unknown_kinds(columns_of(events)) == [events[-1].seq_id]
    assert unknown_kinds(columns_of(events[:-1])) == []
    blocks, pools = rows_of(events)["blocks"], rows_of(events)["pool_states"]
    assert [r[10] for r in blocks] == ["1000", None, "1000", None]  # base_fee: NULL without EIP-1559
    assert [len(r[14]) for r in blocks] == [0, 1, 2, 3] and [r[13] for r in blocks] == [0, 0, 0, 1]
    assert pools[0][8] == str(MAX_U256) and {r[9] for r in pools} == {"0"}
    assert [r[12] for r in pools] == ["UNSPECIFIED", "GET_RESERVES", "SYNC_LOG", "UNSPECIFIED"]
    assert [r[8] for r in rows_of(events)["transactions"]].count(None) == 1
    assert u256(b"") == "0" and u256(MAX_U256.to_bytes(32, "big")) == str(MAX_U256)
    rows = rows_of(events)
    assert [(r[10], r[14]) for r in rows["inclusions"]] == [("UNSPECIFIED", 0), ("OK", 0), ("REVERTED", 1)]
    assert [(r[7], r[8], r[9], r[11]) for r in rows["replacements"]] == [
        (bytes([9, 0]) * 16, -50, 0, 0), (bytes([9, 1]) * 16, 950, 1, 0), (bytes([9, 2]) * 16, 1950, 0, 1)]
    assert [(r[6], r[8]) for r in rows["drops"]] == [("EXPIRED", ""), ("EVICTED", "node"), ("NONCE_PASSED", "")]
    assert [(r[2], r[7], len(r[8]), r[10]) for r in rows["reorgs"]] == [(10**9, 0, 0, 0), (10**9, 1, 1, 0),
                                                                        (10**9, 2, 2, 1)]


def test_events_kind_has_every_kind_of_the_proto_and_enum8_refuses_what_does_not_fit() -> None:
    kind = dict(EVENTS.columns)["kind"]
    for name, value in events_pb2.EventKind.items():
        assert f"'{name.removeprefix('EVENT_KIND_')}' = {value}" in kind
    assert enum8("X_", [("X_A", 0), ("X_B", 127)]) == "Enum8('A' = 0, 'B' = 127)"
    with pytest.raises(ValueError, match="Enum16"):
        enum8("X_", [("X_A", 0), ("X_B", 128)])
