"""The client's read calls against a real processd: what they return equals what the Query service says, in
plain values; bad arguments and an unreachable server raise the client's errors."""

from __future__ import annotations

import grpc
import pytest

from common.client import (
    Client,
    ClientClosedError,
    ClientError,
    EventKind,
    Filter,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from common.client.client import service_config
from common.pb.v1 import events_pb2, query_pb2, query_pb2_grpc
from common.testing.netutil import free_port
from processd.api.server import ProcessdServer
from tests.client._helpers import raw_log
from tests.client.conftest import SEED_TXS


async def test_scan_maps_every_event_to_plain_values(seeded: ProcessdServer) -> None:
    raw = await raw_log(seeded.address)
    async with Client(seeded.address) as c:
        events = [ev async for ev in c.scan(page_limit=37)]  # several pages
    assert [e.seq_id for e in events] == [e.seq_id for e in raw] == list(range(1, len(raw) + 1))
    assert sum(e.kind is EventKind.TX_SEEN for e in events) == SEED_TXS
    for ev, pb in zip(events, raw, strict=True):
        assert ev.tx_hash == "0x" + pb.tx_hash.hex() and ev.chain_id == pb.chain_id
        if pb.kind == events_pb2.EVENT_KIND_TX_SEEN:
            tx = pb.tx_seen.tx
            assert ev.tx is not None and ev.features is None and ev.opportunity is None
            assert ev.tx.sender == "0x" + tx.sender.hex() and ev.tx.hash == ev.tx_hash
            assert ev.tx.to == ("0x" + tx.to.hex() if tx.to else None)
            assert ev.tx.value == int.from_bytes(tx.value, "big") and isinstance(ev.tx.value, int)
            assert ev.tx.input == "0x" + tx.input.hex()
            assert ev.tx.max_fee_per_gas == int.from_bytes(tx.max_fee_per_gas, "big")
            assert ev.tx.gas_price is None  # not set in the envelope: unknown, not 0
        elif pb.kind == events_pb2.EVENT_KIND_TX_DECODED:
            f = pb.tx_decoded.features
            assert ev.features is not None and ev.tx is None
            assert ev.features.method == f.method and ev.features.decoded == f.decoded
            assert ev.features.category == events_pb2.TxCategory.Name(f.category).removeprefix("TX_CATEGORY_").lower()
            assert ev.features.amount_in == (int.from_bytes(f.amount_in, "big") if f.HasField("amount_in") else None)
        elif pb.kind == events_pb2.EVENT_KIND_OPP_DETECTED:
            o = pb.opp_detected.opportunity
            assert ev.opportunity is not None and ev.opportunity.score == o.score
            assert ev.opportunity.seq_id == ev.seq_id
            assert ev.opportunity.notional_wei == (
                int.from_bytes(o.notional_wei, "big") if o.HasField("notional_wei") else None)
    assert any(e.kind is EventKind.OPP_DETECTED for e in events), "the seed has no opportunity: the test is blind"


async def test_snapshot_transactions_features_opportunities(seeded: ProcessdServer) -> None:
    async with Client(seeded.address) as c:
        snap = await c.snapshot(tx_limit=5, opp_limit=50)
        assert snap.last_seq_id == seeded.models.last_seq
        assert sorted(t.chain_id for t in snap.chains) == [1, 56, 137]
        assert sum(t.tx_count for t in snap.chains) == SEED_TXS
        assert len(snap.recent_transactions) == 5
        assert snap.recent_transactions[0].seq_id > snap.recent_transactions[-1].seq_id

        page = await c.transactions(chain_id=137, limit=7)
        assert len(page.transactions) == 7 and {t.chain_id for t in page.transactions} == {137}
        older = await c.transactions(chain_id=137, limit=100, cursor=page.next_cursor)
        assert len(page.transactions) + len(older.transactions) == SEED_TXS // 3
        assert max(t.seq_id for t in older.transactions) < min(t.seq_id for t in page.transactions)

        opps = await c.opportunities(limit=100)
        assert opps and [o.score for o in opps] == sorted((o.score for o in opps), reverse=True)
        top = opps[0].score
        assert all(o.score >= top for o in await c.opportunities(min_score=top))
        assert {o.tx_hash for o in snap.top_opportunities} <= {o.tx_hash for o in opps}

        feats = await c.features(chain_id=1, limit=3)
        assert len(feats) == 3 and all(f.chain_id == 1 for f in feats)

        # One transaction by hash, on any chain (chain_id 0) and on its own; its opportunities come with it.
        opp = opps[0]
        detail = await c.transaction(opp.tx_hash)
        assert detail.transaction.hash == opp.tx_hash and detail.transaction.chain_id == opp.chain_id
        assert detail.features is not None and detail.features.tx_hash == opp.tx_hash
        assert opp.seq_id in {o.seq_id for o in detail.opportunities}
        assert detail.transaction.sources[0].source_id == "synth"
        assert (await c.transaction(opp.tx_hash.upper().replace("0X", "0x"), opp.chain_id)) == detail

        scanned = await c.events(from_seq=1, limit=10, chain_id=56, kinds=["tx_seen"])
        assert len(scanned.events) == 10 and all(e.chain_id == 56 and e.kind == "tx_seen" for e in scanned.events)


async def test_unknown_transaction_is_not_found(seeded: ProcessdServer) -> None:
    async with Client(seeded.address) as c:
        with pytest.raises(NotFoundError) as info:
            await c.transaction("0x" + "ab" * 32)
    assert not info.value.retriable and info.value.code == "NOT_FOUND" and isinstance(info.value, LookupError)


@pytest.mark.parametrize("call", [
    lambda c: c.transaction("0x1234"),
    lambda c: c.transaction("ab" * 32),
    lambda c: c.transaction("0x" + "zz" * 32),
    lambda c: c.snapshot(chain_id=-1),
    lambda c: c.snapshot(min_score=101),
    lambda c: c.transactions(limit=5001),
    lambda c: c.opportunities(chain_id=2**63),
    lambda c: c.events(kinds=["tx_mined"]),
    lambda c: c.events(kinds="tx_seen"),
], ids=["short-hash", "no-0x", "not-hex", "negative-chain", "score", "limit", "chain-too-big", "kind", "kind-str"])
async def test_bad_arguments_raise_before_any_call(call) -> None:
    # No server at all: the argument check comes first, so an unreachable target cannot mask it.
    async with Client(f"127.0.0.1:{free_port()}") as c:
        with pytest.raises(InvalidArgumentError) as info:
            await call(c)
    assert isinstance(info.value, ValueError) and not info.value.retriable


@pytest.mark.parametrize("kwargs", [
    {"senders": ["0x12"]}, {"to": "0x" + "11" * 20}, {"addresses": [42]}, {"methods": ["0x1234"]},
    {"methods": ["swap exact"]}, {"kinds": {"tx_mined"}}, {"kinds": "tx_seen"}, {"chain_ids": {0}},
    {"chain_ids": 1}, {"min_value_wei": -1},
])
def test_bad_filters_are_refused(kwargs) -> None:
    with pytest.raises(InvalidArgumentError):
        Filter(**kwargs)


def test_filter_normalizes_its_values() -> None:
    f = Filter(chain_ids=[1, 1], kinds=["tx_seen", EventKind.TX_SEEN], senders=["0x" + "AB" * 20],
               methods=["0xABCDEF01", "swapExactETHForTokens"])
    assert f.chain_ids == {1} and f.kinds == {EventKind.TX_SEEN}
    assert f.senders == {"0x" + "ab" * 20} and f.methods == {"0xabcdef01", "swapExactETHForTokens"}
    assert f.server_chain_id == 1 and Filter(chain_ids={1, 137}).server_chain_id == 0
    # A client-side field needs the transaction's facts: its TX_SEEN (and TX_DECODED for a method name).
    assert f.server_kinds == {EventKind.TX_SEEN, EventKind.TX_DECODED}
    assert Filter(kinds={"opp_detected"}, to=["0x" + "11" * 20]).server_kinds == {"opp_detected", "tx_seen"}


async def test_unreachable_server_raises_retriable_unavailable_after_retries() -> None:
    async with Client(f"127.0.0.1:{free_port()}", timeout_s=10.0) as c:
        with pytest.raises(UnavailableError) as info:
            await c.snapshot()
    err = info.value
    assert err.retriable and err.code == "UNAVAILABLE" and err.method == "GetSnapshot"
    assert isinstance(err, ClientError) and isinstance(err, ConnectionError)


async def test_calls_on_a_stopped_client_raise() -> None:
    c = Client("127.0.0.1:1")
    with pytest.raises(ClientClosedError):
        await c.snapshot()
    await c.start()
    await c.stop()
    await c.stop()  # idempotent
    with pytest.raises(ClientClosedError):
        c.subscribe()


async def test_service_config_retries_unavailable_on_the_unary_methods(seeded: ProcessdServer) -> None:
    """The channel's service config is accepted by gRPC (a malformed one fails every call) and names every unary
    Query method, retrying UNAVAILABLE only."""
    import json

    config = json.loads(service_config())
    (method_config,) = config["methodConfig"]
    names = {n["method"] for n in method_config["name"]}
    unary = {m.name for m in query_pb2.DESCRIPTOR.services_by_name["Query"].methods if not m.server_streaming}
    assert names == unary
    assert method_config["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    with pytest.raises(InvalidArgumentError):
        service_config(max_attempts=6)
    async with Client(seeded.address) as c:
        assert (await c.snapshot()).last_seq_id == seeded.models.last_seq
    # Built by hand with the same config: gRPC parses it (an invalid config makes the channel fail calls).
    async with grpc.aio.insecure_channel(seeded.address, options=[("grpc.service_config", service_config())]) as ch:
        await query_pb2_grpc.QueryStub(ch).GetSnapshot(query_pb2.GetSnapshotRequest(), timeout=5)
