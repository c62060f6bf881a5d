"""Valuation through a real processd (LMDB, gRPC, analysis workers): the pipeline reads the batch's reserves from
its ReserveSource, the workers value the swaps on them, and EventFilter.min_profit_wei picks transactions on
SubscribeEvents and opportunities on ListOpportunities; /opps/recent?min_profit_wei= through the real gatewayd."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import eth_abi
import httpx
import pytest

from common.pb.v1 import events_pb2, query_pb2, tx_pb2
from common.testing.ingest_push import channel, push_envelopes
from processd.analysis.valuation.amm import swap_out
from processd.api.server import ProcessdServer
from tests.gatewayd.conftest import Gateway
from tests.processd._filter_reference import reference_filter
from tests.processd._helpers import make_config, query_stub
from tests.processd._valuation import DAI, SUSHI, UNI, UNI_ROUTER, USDC, WETH, DictSource, pool

R_WETH, R_USDC = 1000 * 10**18, 2_000_000 * 10**6


def swap(i: int, amount: int, slack_pct: int) -> tx_pb2.TxEnvelope:
    out_min = swap_out(amount, R_WETH, R_USDC) * (100 - slack_pct) // 100
    data = bytes.fromhex("38ed1739") + eth_abi.encode(
        ["uint256", "uint256", "address[]", "address", "uint256"], [amount, out_min, [WETH, USDC], b"\x09" * 20, 2**40])
    tx_hash = hashlib.sha256(i.to_bytes(8, "big")).digest()  # distinct first 16 bytes: the log's tx_hash key
    return tx_pb2.TxEnvelope(chain_id=1, hash=tx_hash, sender=b"\x09" * 20, to=UNI_ROUTER, input=data,
                             nonce=i, gas=300_000, gas_price=(20 * 10**9).to_bytes(8, "big"), source_id="t",
                             first_seen_unix_ns=10**18 + i)


def swaps() -> list[tx_pb2.TxEnvelope]:
    """Swaps from 0.01 to 50 WETH with 0-5% slack: some valued profitable, some not."""
    return [swap(i + 1, (10**16) * (1 + (i * 37) % 5000), i % 6) for i in range(60)]


def net(o: events_pb2.Opportunity) -> int:
    return int.from_bytes(o.net_profit_wei, "big")


@pytest.mark.parametrize("workers", [0, 2])
async def test_processd_values_swaps_on_its_reserve_source(tmp_path: Path, workers: int) -> None:
    source = DictSource([pool(UNI, WETH, R_WETH, USDC, R_USDC, block=77), pool(SUSHI, WETH, R_WETH, USDC, R_USDC)])
    server = await ProcessdServer(make_config(tmp_path / "lmdb", analysis_workers=workers),
                                  reserve_source=source).start()
    try:
        await push_envelopes(server.address, swaps(), batch_size=20)
        assert source.lookups > 0
        async with channel(server.address) as ch:
            stub = query_stub(ch)
            page = await stub.ScanEvents(query_pb2.ScanEventsRequest(from_seq_id=1, limit=5000))
            opps = [e.opp_detected.opportunity for e in page.events if e.kind == events_pb2.EVENT_KIND_OPP_DETECTED]
            valued = [o for o in opps if o.valued]
            assert valued and all(o.state_block_number in (77, 1) and net(o) > 0 for o in valued)
            assert {o.kind for o in valued} == {events_pb2.OPPORTUNITY_KIND_SANDWICH_CANDIDATE,
                                                events_pb2.OPPORTUNITY_KIND_BACKRUN_CANDIDATE}
            bound = sorted(net(o) for o in valued)[len(valued) // 2]
            f = query_pb2.EventFilter(min_profit_wei=bound.to_bytes(32, "big").lstrip(b"\0"))
            # ListOpportunities: only opportunities valued at the bound or more
            listed = (await stub.ListOpportunities(query_pb2.ListOpportunitiesRequest(limit=200, filter=f)))
            assert listed.opportunities and all(net(o) >= bound for o in listed.opportunities)
            assert len(listed.opportunities) == sum(1 for o in valued if net(o) >= bound)
            # SubscribeEvents: whole transactions with such an opportunity, as the reference picks them
            expected = reference_filter(f, list(page.events))
            assert 0 < len(expected) < len(page.events)
            call = stub.SubscribeEvents(query_pb2.SubscribeEventsRequest(from_seq_id=1, filter=f))
            got: list[int] = []
            while len(got) < len(expected):
                msg = await asyncio.wait_for(call.read(), 30)
                got.extend(e.seq_id for e in msg.events)
            call.cancel()
            assert got == expected
            bad = query_pb2.EventFilter(min_profit_wei=b"\x01" * 33)
            with pytest.raises(Exception, match="min_profit_wei"):
                await stub.ListOpportunities(query_pb2.ListOpportunitiesRequest(limit=5, filter=bad))
            if workers:
                # the REST surface, through the real gatewayd
                gw = Gateway(server.address, tmp_path / "gw.log")
                await asyncio.to_thread(gw.start)
                try:
                    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as http:
                        body = (await http.get("/opps/recent", params={"min_profit_wei": str(bound),
                                                                       "limit": 200})).json()
                        rest = body["opportunities"]
                        assert rest and len(rest) == len(listed.opportunities)
                        assert all(o["valued"] and int(o["net_profit_wei"]) >= bound for o in rest)
                        assert {o["profit_token"] for o in rest} == {"0x" + WETH.hex()}
                        for value in ("-1", "1e18", str(2**256)):
                            resp = await http.get("/opps/recent", params={"min_profit_wei": value})
                            assert resp.status_code == 400 and "min_profit_wei" in resp.text
                finally:
                    await asyncio.to_thread(gw.stop)
    finally:
        await server.stop(grace_s=0.5)


@pytest.mark.parametrize("valuation", [False, True])
async def test_without_pool_states_scores_are_heuristic(tmp_path: Path, valuation: bool) -> None:
    """valuation off: nothing is read; on (the default) with no pool state logged yet: the pair is unknown."""
    server = await ProcessdServer(make_config(tmp_path / "lmdb", analysis_workers=0, valuation=valuation)).start()
    try:
        await push_envelopes(server.address, swaps()[:10], batch_size=10)
        async with channel(server.address) as ch:
            page = await query_stub(ch).ScanEvents(query_pb2.ScanEventsRequest(from_seq_id=1, limit=500))
        opps = [e.opp_detected.opportunity for e in page.events if e.kind == events_pb2.EVENT_KIND_OPP_DETECTED]
        assert opps and not any(o.valued for o in opps)
        assert (server.pipeline.valuation_view is not None) == valuation
        if valuation:
            assert all(o.valuation_note.startswith("not valued: pool state unknown") for o in opps)
        else:
            assert all(o.valuation_note == "not valued: no pool state source configured" for o in opps)
    finally:
        await server.stop(grace_s=0.5)


def _rank(o: events_pb2.Opportunity) -> tuple[int, int]:
    return (1, net(o)) if o.valued and o.HasField("net_profit_wei") else (0, o.score)


async def test_opportunities_rank_by_net_profit_then_heuristic_score(tmp_path: Path) -> None:
    """ListOpportunities and /opps/recent (real processd, real gatewayd): the opportunities valued on pool state
    come first, highest net profit first, then the heuristic ones (a pair with no known state) by score, and
    their reasons say so; min_score still leaves out low scores in both parts."""
    source = DictSource([pool(UNI, WETH, R_WETH, USDC, R_USDC, block=77), pool(SUSHI, WETH, R_WETH, USDC, R_USDC)])
    unknown = []  # the same swaps on WETH/DAI, whose pools have no state: heuristic scores only
    for e in swaps()[:20]:
        u = tx_pb2.TxEnvelope()
        u.CopyFrom(e)
        u.hash = hashlib.sha256(b"dai" + e.hash).digest()
        u.input = e.input.replace(USDC.rjust(32, b"\0"), DAI.rjust(32, b"\0"))
        unknown.append(u)
    server = await ProcessdServer(make_config(tmp_path / "lmdb", analysis_workers=0), reserve_source=source).start()
    try:
        await push_envelopes(server.address, unknown[:10] + swaps() + unknown[10:], batch_size=20)
        async with channel(server.address) as ch:
            stub = query_stub(ch)
            listed = list((await stub.ListOpportunities(query_pb2.ListOpportunitiesRequest(limit=500))).opportunities)
            page = await stub.ScanEvents(query_pb2.ScanEventsRequest(from_seq_id=1, limit=5000))
            stored = [e.opp_detected.opportunity for e in page.events if e.kind == events_pb2.EVENT_KIND_OPP_DETECTED]
            assert len(listed) == len(stored)
            keys = [_rank(o) for o in listed]
            assert keys == sorted(keys, reverse=True)
            valued = [o for o in listed if o.valued]
            heuristic = [o for o in listed if not o.valued]
            assert len(valued) >= 5 and len(heuristic) >= 5
            assert listed[:len(valued)] == valued  # every valued one (all with a net profit here) first
            assert [net(o) for o in valued] == sorted((net(o) for o in valued), reverse=True)
            assert [o.score for o in heuristic] == sorted((o.score for o in heuristic), reverse=True)
            # a heuristic score above every valued one does not put it first
            assert max(o.score for o in heuristic) >= min(o.score for o in valued)
            assert all("ranked after the opportunities valued on pool state" in o.reasons[-1] for o in heuristic)
            assert all("ranked by net profit" in o.reasons[0] for o in valued)
            floor = sorted(o.score for o in listed)[len(listed) // 2]
            high = list((await stub.ListOpportunities(query_pb2.ListOpportunitiesRequest(
                limit=500, min_score=floor))).opportunities)
            assert high == [o for o in listed if o.score >= floor]
        gw = Gateway(server.address, tmp_path / "gw.log")
        await asyncio.to_thread(gw.start)
        try:
            async with httpx.AsyncClient(base_url=gw.url, timeout=10) as http:
                rest = (await http.get("/opps/recent", params={"limit": 200})).json()["opportunities"]
        finally:
            await asyncio.to_thread(gw.stop)
        assert [(o["valued"], o["net_profit_wei"], o["score"]) for o in rest] == [
            (o.valued, str(net(o)) if o.HasField("net_profit_wei") else None, o.score) for o in listed[:200]]
    finally:
        await server.stop(grace_s=0.5)
