"""SubscribeEvents: catch-up from LMDB, live tail, filters, slow-subscriber cutoff that never slows ingest."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from common.pb.v1 import events_pb2, query_pb2
from common.testing.ingest_push import channel, push_envelopes
from common.testing.synth import synthetic_envelopes
from processd.api.server import ProcessdServer
from tests.processd._helpers import query_stub

SEEN = events_pb2.EVENT_KIND_TX_SEEN


async def _collect(call, until_seq: int) -> list[events_pb2.Event]:
    got: list[events_pb2.Event] = []
    async for msg in call:
        got.extend(msg.events)
        if got and got[-1].seq_id >= until_seq:
            break
    return got


async def test_catch_up_then_live_without_gaps_or_repeats(server: ProcessdServer) -> None:
    await push_envelopes(server.address, synthetic_envelopes(400, seed=41), batch_size=100)
    backlog = server.models.last_seq
    async with channel(server.address) as ch:
        call = query_stub(ch).SubscribeEvents(query_pb2.SubscribeEventsRequest(from_seq_id=10))
        first = await _collect(call, backlog)
        assert [e.seq_id for e in first] == list(range(10, backlog + 1))
        # Live: commits after the catch-up arrive in order, nothing missed at the hand-over.
        pusher = asyncio.create_task(push_envelopes(server.address, synthetic_envelopes(300, seed=42),
                                                    batch_size=30, session_id="live"))
        await pusher
        live = await asyncio.wait_for(_collect(call, server.models.last_seq), 30)
        call.cancel()
    assert [e.seq_id for e in live] == list(range(backlog + 1, server.models.last_seq + 1))


async def test_from_head_reports_the_head_and_sends_only_newer_events(server: ProcessdServer) -> None:
    """from_head: the admission headers name the head (the highest committed seq_id), and the stream starts
    right after it, so a client starting "from now" needs no ScanEvents probe."""
    await push_envelopes(server.address, synthetic_envelopes(40, seed=45), batch_size=20)
    backlog = server.models.last_seq
    async with channel(server.address) as ch:
        call = query_stub(ch).SubscribeEvents(query_pb2.SubscribeEventsRequest(from_head=True, from_seq_id=3))
        headers = dict(await call.initial_metadata())
        assert headers["mempulse-subscription"] == "admitted" and headers["mempulse-head-seq-id"] == str(backlog)
        await push_envelopes(server.address, synthetic_envelopes(10, seed=46), batch_size=10, session_id="new")
        live = await asyncio.wait_for(_collect(call, server.models.last_seq), 30)
        call.cancel()
    assert [e.seq_id for e in live] == list(range(backlog + 1, server.models.last_seq + 1))


async def test_filters_apply_to_catch_up_and_live(server: ProcessdServer) -> None:
    await push_envelopes(server.address, synthetic_envelopes(90, seed=43), batch_size=30)
    async with channel(server.address) as ch:
        call = query_stub(ch).SubscribeEvents(query_pb2.SubscribeEventsRequest(chain_id=137, kinds=[SEEN]))
        await push_envelopes(server.address, synthetic_envelopes(90, seed=44), batch_size=30, session_id="b")
        got = await asyncio.wait_for(_collect(call, server.models.last_seq - 5), 30)
        call.cancel()
    assert len(got) == 60
    assert all(e.chain_id == 137 and e.kind == SEEN for e in got)
    assert [e.seq_id for e in got] == sorted(e.seq_id for e in got)


async def test_slow_subscriber_is_cut_off_and_ingest_is_not_slowed(server_factory) -> None:
    srv: ProcessdServer = await server_factory(subscriber_queue_events=200)
    async with channel(srv.address) as ch:
        q = query_stub(ch)
        call = q.SubscribeEvents(query_pb2.SubscribeEventsRequest(from_seq_id=1))
        # Wait until it is registered live (empty log: catch-up finishes at once).
        for _ in range(100):
            if srv.hub.subscribers:
                break
            await asyncio.sleep(0.02)
        assert srv.hub.subscribers
        # The subscriber reads nothing while 2,000 transactions (>= 4,000 events) are committed.
        acks = await asyncio.wait_for(
            push_envelopes(srv.address, synthetic_envelopes(2000, seed=45), batch_size=500), 60)
        assert sum(a.accepted for a in acks) == 2000
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _msg in call:
                pass
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "slow" in (info.value.details() or "")
    cuts = srv.metrics.registry.get_sample_value("mempulse_processd_subscriber_cuts_total",
                                                 {"reason": "slow_subscriber"})
    assert cuts == 1
    assert not srv.hub.subscribers


async def test_too_many_subscribers(server_factory) -> None:
    srv: ProcessdServer = await server_factory(max_subscribers=1)
    async with channel(srv.address) as ch:
        q = query_stub(ch)
        first = q.SubscribeEvents(query_pb2.SubscribeEventsRequest())
        for _ in range(100):
            if srv.hub.subscribers:
                break
            await asyncio.sleep(0.02)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _msg in q.SubscribeEvents(query_pb2.SubscribeEventsRequest()):
                pass
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        first.cancel()


async def _first_outcome(call) -> str | grpc.StatusCode:
    """"admitted" once the call delivers its first message, else the status it ended with."""
    try:
        msg = await call.read()
    except grpc.aio.AioRpcError as err:
        return err.code()
    return "admitted" if msg is not grpc.aio.EOF else "eof"


async def test_concurrent_subscribers_never_exceed_the_cap(server_factory) -> None:
    """Issue 14: the cap counted only subscribers registered live, after their catch-up (an await per page), so
    calls arriving together all passed the check (67 of 64 open at once). 200 concurrent calls against a cap of
    8 with a backlog to catch up on: exactly 8 admitted, every other one RESOURCE_EXHAUSTED before any message,
    and every slot back once they end."""
    srv: ProcessdServer = await server_factory(max_subscribers=8)
    await push_envelopes(srv.address, synthetic_envelopes(600, seed=46), batch_size=200)
    async with channel(srv.address) as ch:
        q = query_stub(ch)
        calls = [q.SubscribeEvents(query_pb2.SubscribeEventsRequest(from_seq_id=1)) for _ in range(200)]
        outcomes = await asyncio.wait_for(asyncio.gather(*(_first_outcome(c) for c in calls)), 60)
        admitted = outcomes.count("admitted")
        refused = [o for o in outcomes if o != "admitted"]
        assert admitted == 8, f"{admitted} subscriptions admitted against a cap of 8"
        assert srv.hub.reserved == 8
        assert set(refused) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        exhausted = srv.metrics.registry.get_sample_value(
            "mempulse_processd_resource_exhausted_total", {"cause": "too_many_subscribers"})
        assert exhausted == 192
        for call in calls:
            call.cancel()
        for _ in range(200):
            if srv.hub.reserved == 0 and not srv.hub.subscribers:
                break
            await asyncio.sleep(0.02)
        assert srv.hub.reserved == 0 and not srv.hub.subscribers, "slots not released when the calls ended"
        # A slot freed is a slot usable again.
        again = q.SubscribeEvents(query_pb2.SubscribeEventsRequest(from_seq_id=1))
        assert await _first_outcome(again) == "admitted"
        again.cancel()


async def test_refused_and_invalid_calls_give_their_slot_back(server_factory) -> None:
    """A call ended by INVALID_ARGUMENT after admission, and one cancelled during catch-up, release the slot."""
    srv: ProcessdServer = await server_factory(max_subscribers=1)
    await push_envelopes(srv.address, synthetic_envelopes(300, seed=47), batch_size=100)
    async with channel(srv.address) as ch:
        q = query_stub(ch)
        for _ in range(3):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _msg in q.SubscribeEvents(query_pb2.SubscribeEventsRequest(kinds=[99])):
                    pass
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        for _ in range(3):
            call = q.SubscribeEvents(query_pb2.SubscribeEventsRequest(from_seq_id=1))
            assert await _first_outcome(call) == "admitted"  # the only slot: each earlier one was given back
            call.cancel()
            for _ in range(100):
                if srv.hub.reserved == 0:
                    break
                await asyncio.sleep(0.02)
        assert srv.hub.reserved == 0 and not srv.hub.subscribers
