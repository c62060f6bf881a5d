"""Client.subscribe_many against a real in-process processd (its SubscribeMany and ScanEvents run for real): each
event delivered once, in seq order, with the ids of exactly the filters that take it; replay from a seq, live
events, filters added and removed while the stream runs.

Expected events and ids are computed from a ScanEvents walk of the log over raw gRPC, independently of the client.
"""

from __future__ import annotations

import pytest

from common.client import Client, EventKind, Filter, InvalidArgumentError
from common.testing.ingest_push import push_envelopes
from common.testing.synth import synthetic_envelopes
from processd.api.server import ProcessdServer
from tests.client._helpers import FILTERS, RULES, pairs, raw_log, tagged, take


async def test_replay_then_live_events_carry_their_filter_ids(seeded: ProcessdServer) -> None:
    async with Client(seeded.address) as c, c.subscribe_many(FILTERS, from_seq=1) as sub:
        before = tagged(await raw_log(seeded.address), RULES)
        first = await take(sub, len(before))
        await push_envelopes(seeded.address, synthetic_envelopes(45, seed=8), batch_size=15, session_id="live")
        want = tagged(await raw_log(seeded.address), RULES)
        got = await take(sub, len(want), first)
    assert pairs(got) == want
    assert {ids for _, ids in want} == {frozenset({7}), frozenset({9}), frozenset({7, 9})}  # the test means it
    assert all(te.event.kind is EventKind.TX_DECODED for te in got if 9 in te.filter_ids)
    assert sub.reconnects == 0 and sub.last_seq == want[-1][0]


async def test_live_from_admission_with_filters_added_and_removed(seeded: ProcessdServer) -> None:
    async with Client(seeded.address) as c, c.subscribe_many({7: FILTERS[7]}) as sub:
        head = await sub.wait_admitted()
        await push_envelopes(seeded.address, synthetic_envelopes(30, seed=8), batch_size=15, session_id="a")
        mid = (await c.snapshot()).last_seq_id
        got = await take(sub, len(tagged(await raw_log(seeded.address), {7: RULES[7]}, head + 1)))
        await sub.add(9, FILTERS[9])
        await sub.remove(7)
        assert sub.since(9) is None and sub.since(7) is None
        assert await sub.wait_added(9) == mid + 1  # it takes every event committed from now on
        await push_envelopes(seeded.address, synthetic_envelopes(30, seed=9), batch_size=15, session_id="b")
        log = await raw_log(seeded.address)
        after = tagged(log, {9: RULES[9]}, mid + 1)
        got = await take(sub, len(got) + len(after), got)
    want = tagged(log, {7: RULES[7]}, head + 1)
    want = [p for p in want if p[0] <= mid] + after
    assert pairs(got) == want
    assert sub.filters == {9: FILTERS[9]}


async def test_bad_filters_are_refused_before_the_stream(seeded: ProcessdServer) -> None:
    async with Client(seeded.address) as c:
        with pytest.raises(InvalidArgumentError):
            c.subscribe_many({-1: Filter()})
        with pytest.raises(InvalidArgumentError):
            c.subscribe_many({1: "chain 1"})  # type: ignore[dict-item]
        async with c.subscribe_many({1: Filter()}) as sub:
            with pytest.raises(InvalidArgumentError):
                await sub.add(2**32, Filter())
            with pytest.raises(InvalidArgumentError):
                await sub.wait_added(3)


async def test_a_filter_replaced_under_its_id(seeded: ProcessdServer) -> None:
    async with Client(seeded.address) as c, c.subscribe_many({7: FILTERS[7]}) as sub:
        head = await sub.wait_admitted()
        await sub.add(7, Filter(chain_ids={1}))  # one request: remove 7, add 7
        since = await sub.wait_added(7)
        await push_envelopes(seeded.address, synthetic_envelopes(30, seed=10), batch_size=15, session_id="r")
        want = tagged(await raw_log(seeded.address), {7: lambda e: e.chain_id == 1}, since)
        got = await take(sub, len(want))
    assert since == head + 1 and want
    assert pairs(got) == want
