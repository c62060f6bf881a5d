"""EventFilter on SubscribeEvents, served by a real processd: each field against ScanEvents + the reference.

The reference (``tests/processd/_filter_reference.py``) applies the documented semantics to parsed events; the
server matches on commit columns (live) and on raw log values (catch-up). Both halves of every subscription are
checked: the log before the call (catch-up) and commits after it (live).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import grpc
import pytest

from common.pb.v1 import events_pb2, ingest_pb2, query_pb2, tx_pb2
from common.testing.ingest_push import channel, push_batches, push_envelopes
from common.testing.synth import synthetic_envelopes
from processd.api.server import ProcessdServer
from tests.processd._filter_reference import (
    DECODED,
    OPP,
    SEEN,
    SOURCE,
    group_transactions,
    reference_filter,
    tx_matches,
)
from tests.processd._helpers import query_stub

EventFilter = query_pb2.EventFilter


async def _scan_all(stub) -> list[events_pb2.Event]:
    events: list[events_pb2.Event] = []
    cursor = 1
    while True:
        page = await stub.ScanEvents(query_pb2.ScanEventsRequest(from_seq_id=cursor, limit=5000))
        events.extend(page.events)
        if page.next_seq_id > page.last_seq_id:
            return events
        cursor = page.next_seq_id


async def _collect(call, expected: int, head: int) -> list[int]:
    """Seq ids received until ``expected`` arrived, or until a heartbeat (a message without events) says the
    head was passed: live events are always sent before a heartbeat, so nothing more is coming."""
    got: list[int] = []
    while len(got) < expected or not expected:
        msg = await asyncio.wait_for(call.read(), 30)
        assert msg is not grpc.aio.EOF
        got.extend(e.seq_id for e in msg.events)
        if not msg.events and msg.last_seq_id >= head:
            break
    return got


def _common(events: list[events_pb2.Event]) -> dict[str, object]:
    """Values that occur in the data, to build filters that match some and not all transactions."""
    seen = [e.tx_seen.tx for e in events if e.kind == SEEN]
    feats = [e.tx_decoded.features for e in events if e.kind == DECODED]
    to = [a for a, _ in Counter(t.to for t in seen if t.to).most_common(3)]
    senders = [a for a, _ in Counter(t.sender for t in seen).most_common(2)]
    methods = [m for m, _ in Counter(f.method for f in feats if f.method).most_common(3)][1:]
    tokens = [a for a, _ in Counter(f.token_in for f in feats if f.token_in).most_common(2)]
    tokens_out = [a for a, _ in Counter(f.token_out for f in feats if f.token_out).most_common(2)]
    selectors = [a for a, _ in Counter(t.input[:4] for t in seen if len(t.input) >= 4).most_common(2)]
    return {"to": to, "senders": senders, "methods": methods, "tokens_in": tokens, "tokens_out": tokens_out,
            "selectors": selectors}


def _filters(v: dict) -> list[tuple[str, EventFilter, int, list[int]]]:
    """(name, filter, request chain_id, request kinds): one per field, and combinations."""
    return [
        ("to", EventFilter(to=v["to"][:2]), 0, []),
        ("senders", EventFilter(senders=v["senders"]), 0, []),
        ("addresses", EventFilter(addresses=[v["senders"][0], v["to"][2]]), 0, []),
        ("selectors", EventFilter(selectors=v["selectors"][:1]), 0, []),
        ("methods", EventFilter(methods=v["methods"]), 0, []),
        ("methods OR selectors", EventFilter(methods=v["methods"][:1], selectors=v["selectors"][1:2]), 0, []),
        ("protocols", EventFilter(protocols=["uniswap_v2", "sushiswap"]), 0, []),
        ("tokens_in", EventFilter(tokens_in=v["tokens_in"]), 0, []),
        ("tokens_out", EventFilter(tokens_out=v["tokens_out"][:1]), 0, []),
        ("min_value", EventFilter(min_value=(10**17).to_bytes(8, "big")), 0, []),
        ("min_score", EventFilter(min_score=30), 0, []),
        ("chain_ids+kinds", EventFilter(chain_ids=[137, 56], kinds=[SEEN, OPP]), 0, []),
        ("to AND protocol", EventFilter(to=v["to"], protocols=["uniswap_v2"], kinds=[DECODED]), 0, []),
        ("old chain_id AND filter", EventFilter(methods=["transfer"]), 137, [SEEN]),
        ("disjoint chains", EventFilter(chain_ids=[56], min_score=1), 137, []),
    ]


async def test_each_filter_field_matches_the_reference_in_catch_up_and_live(server: ProcessdServer) -> None:
    await push_envelopes(server.address, synthetic_envelopes(1500, seed=71), batch_size=300)
    async with channel(server.address) as ch:
        stub = query_stub(ch)
        values = _common(await _scan_all(stub))
        calls = []
        for name, f, chain_id, kinds in _filters(values):
            call = stub.SubscribeEvents(query_pb2.SubscribeEventsRequest(
                from_seq_id=1, filter=f, chain_id=chain_id, kinds=kinds))
            await call.initial_metadata()
            calls.append((name, f, chain_id, kinds, call))
        # Live: commits after every call was admitted (some may still be in catch-up: both halves are covered).
        await push_envelopes(server.address, synthetic_envelopes(1500, seed=72), batch_size=250, session_id="b")
        head = server.models.last_seq
        events = await _scan_all(stub)
        for name, f, chain_id, kinds, call in calls:
            expected = reference_filter(f, events, chain_id, kinds)
            got = await _collect(call, len(expected), head)
            call.cancel()
            assert got == expected, name
    sizes = {name: len(reference_filter(f, events, c, k)) for name, f, c, k in _filters(values)}
    # Honest filters: each takes some events and leaves others (the disjoint one: nothing).
    assert all(0 < n < len(events) for name, n in sizes.items() if name != "disjoint chains"), sizes
    assert sizes["disjoint chains"] == 0


async def test_filtered_events_equal_scan_events_field_by_field(server: ProcessdServer) -> None:
    """A filtered subscription's events are the very Events ScanEvents returns, in catch-up and live, also the
    opportunity's own seq_id, which the stored value leaves to the key (it came out as 0 before)."""
    await push_envelopes(server.address, synthetic_envelopes(600, seed=73), batch_size=200)
    async with channel(server.address) as ch:
        stub = query_stub(ch)
        call = stub.SubscribeEvents(query_pb2.SubscribeEventsRequest(from_seq_id=1, filter=EventFilter(min_score=1)))
        await call.initial_metadata()
        await push_envelopes(server.address, synthetic_envelopes(600, seed=74), batch_size=600, session_id="b")
        head = server.models.last_seq
        by_seq = {e.seq_id: e for e in await _scan_all(stub)}
        expected = reference_filter(EventFilter(min_score=1), list(by_seq.values()), 0, [])
        got: list[events_pb2.Event] = []
        while len(got) < len(expected):
            msg = await asyncio.wait_for(call.read(), 30)
            assert msg is not grpc.aio.EOF and (msg.events or msg.last_seq_id < head)
            got.extend(msg.events)
        call.cancel()
    opps = [e for e in got if e.kind == OPP]
    assert opps and all(e.opp_detected.opportunity.seq_id == e.seq_id for e in opps)
    assert [e.seq_id for e in got] == expected
    assert all(e == by_seq[e.seq_id] for e in got)


async def test_envelope_only_filters_take_the_column_path(server: ProcessdServer) -> None:
    """Live subscribers whose filters are all anchored on envelope fields (senders, to, selectors, with or
    without other fields): a commit is matched on its batches' sender / to / selector columns, with no view of
    every transaction (FilterIndex.columns, no per_tx pass); they get exactly what the reference picks."""
    await push_envelopes(server.address, synthetic_envelopes(400, seed=78), batch_size=200)
    async with channel(server.address) as ch:
        stub = query_stub(ch)
        v = _common(await _scan_all(stub))
        filters = [EventFilter(to=v["to"][:2]), EventFilter(senders=v["senders"][:1], kinds=[DECODED]),
                   EventFilter(selectors=v["selectors"][:2], kinds=[SEEN, OPP]),
                   EventFilter(senders=v["senders"], chain_ids=[1, 56, 137])]
        assert server.hub.index().columns == []  # nobody yet
        calls = [stub.SubscribeEvents(query_pb2.SubscribeEventsRequest(from_head=True, filter=f)) for f in filters]
        for call in calls:
            await call.initial_metadata()
        start = server.models.last_seq + 1
        await push_envelopes(server.address, synthetic_envelopes(600, seed=79), batch_size=300, session_id="b")
        index = server.hub.index()
        assert [column.name for column in index.columns] == ["to", "sender", "selector"] and not index.per_tx
        head = server.models.last_seq
        events = await _scan_all(stub)
        for f, call in zip(filters, calls, strict=True):
            expected = [s for s in reference_filter(f, events) if s >= start]
            assert expected and await _collect(call, len(expected), head) == expected, f
            call.cancel()


async def test_sightings_match_on_their_transaction(server: ProcessdServer) -> None:
    """A TX_SOURCE_SEEN event matches a chain/kind filter by its own chain, and a filter of transaction fields
    by its transaction (read from the log), live and in catch-up, also when the same commit (and catch-up chunk)
    holds transactions the filter takes."""
    envs = synthetic_envelopes(30, seed=73)
    more = synthetic_envelopes(30, seed=76)
    await push_envelopes(server.address, envs, batch_size=30)
    target = Counter(e.to for e in envs + more if e.to).most_common(1)[0][0]
    filters = [EventFilter(chain_ids=[envs[0].chain_id], kinds=[SOURCE]), EventFilter(to=[target]),
               EventFilter(to=[target], kinds=[SOURCE]), EventFilter(min_score=1)]
    async with channel(server.address) as ch:
        stub = query_stub(ch)
        live = [stub.SubscribeEvents(query_pb2.SubscribeEventsRequest(from_head=True, filter=f)) for f in filters]
        for call in live:
            await call.initial_metadata()
        start = server.models.last_seq + 1
        sightings = [tx_pb2.TxSighting(chain_id=e.chain_id, hash=e.hash, source_id="late",
                                       seen_unix_ns=e.first_seen_unix_ns + 5) for e in envs]
        # One batch, one commit: new transactions, then the sightings of the older ones.
        await push_batches(server.address, [ingest_pb2.TxBatch(session_id="s", batch_seq=1, envelopes=more,
                                                               sightings=sightings)])
        head = server.models.last_seq
        events = await _scan_all(stub)
        for f, call in zip(filters, live, strict=True):
            expected = [s for s in reference_filter(f, events) if s >= start]
            assert await _collect(call, len(expected), head) == expected, f
            call.cancel()
            # Catch-up from the log gives the same, and from the start everything.
            again = stub.SubscribeEvents(query_pb2.SubscribeEventsRequest(from_seq_id=1, filter=f))
            everything = reference_filter(f, events)
            assert await _collect(again, len(everything), head) == everything, f
            again.cancel()
    sightings_taken = [[e.seq_id for e in events if e.kind == SOURCE and e.seq_id in set(reference_filter(f, events))]
                       for f in filters]
    assert all(sightings_taken) and len(sightings_taken[0]) < len(envs), sightings_taken
    assert any(e.kind == SEEN and e.seq_id >= start for e in events if e.seq_id in set(reference_filter(filters[1],
                                                                                                         events)))


@pytest.mark.parametrize(("f", "needle"), [
    (EventFilter(to=[b"\x01" * 19]), "filter.to"),
    (EventFilter(senders=[b"\x01" * 20] * 1001), "filter.senders"),
    (EventFilter(senders=[b"\x01" * 20] * 600, to=[b"\x02" * 20] * 600), "filter.senders, filter.to"),
    (EventFilter(addresses=[b"\x01" * 21]), "filter.addresses"),
    (EventFilter(selectors=[b"\x01\x02\x03"]), "filter.selectors"),
    (EventFilter(methods=["x" * 129]), "filter.methods"),
    (EventFilter(protocols=[""]), "filter.protocols"),
    (EventFilter(tokens_in=[b"\x01" * 20] * 200, tokens_out=[b"\x02" * 20] * 100), "filter.tokens_in"),
    (EventFilter(min_value=b"\x01" * 33), "filter.min_value"),
    (EventFilter(min_score=101), "filter.min_score"),
    (EventFilter(chain_ids=[0]), "filter.chain_ids"),
    (EventFilter(kinds=[99]), "filter.kinds"),
])
async def test_bad_filters_are_invalid_argument_naming_the_field(server: ProcessdServer, f: EventFilter,
                                                                  needle: str) -> None:
    async with channel(server.address) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in query_stub(ch).SubscribeEvents(query_pb2.SubscribeEventsRequest(filter=f)):
                pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in (info.value.details() or "")


async def test_resume_in_the_middle_of_a_transaction_takes_the_rest_of_it(server: ProcessdServer) -> None:
    await push_envelopes(server.address, synthetic_envelopes(200, seed=74), batch_size=200)
    async with channel(server.address) as ch:
        stub = query_stub(ch)
        events = await _scan_all(stub)
        f = EventFilter(min_score=1)
        tx = next(t for t in group_transactions(events) if len(t) >= 3 and t[0].kind == SEEN
                  and any(e.opp_detected.opportunity.score >= 1 for e in t[2:]))
        call = stub.SubscribeEvents(query_pb2.SubscribeEventsRequest(from_seq_id=tx[1].seq_id, filter=f))
        expected = [s for s in reference_filter(f, events) if s >= tx[1].seq_id]
        got = await _collect(call, len(expected), server.models.last_seq)
        call.cancel()
    assert got == expected and got[0] == tx[1].seq_id


async def test_list_endpoints_apply_the_filter_to_their_records(server_factory) -> None:
    """ListTransactions (both directions, a chain), ListFeatures and ListOpportunities with a filter return the
    records of matching transactions, in their usual order, as the reference picks them from the log."""
    srv: ProcessdServer = await server_factory(recent_features=5000, opportunity_window=5000)
    await push_envelopes(srv.address, synthetic_envelopes(1200, seed=75), batch_size=300)
    async with channel(srv.address) as ch:
        stub = query_stub(ch)
        events = await _scan_all(stub)
        values = _common(events)
        txs = [t for t in group_transactions(events) if t[0].kind == SEEN]
        for name, f, chain_id, _ in _filters(values):
            matching = [t for t in txs if tx_matches(f, t) and (not chain_id or t[0].chain_id == chain_id)]
            seen = [t[0].seq_id for t in matching]
            down = await stub.ListTransactions(query_pb2.ListTransactionsRequest(
                chain_id=chain_id, limit=50, filter=f))
            assert [t.seq_id for t in down.transactions] == seen[::-1][:50], name
            up = await stub.ListTransactions(query_pb2.ListTransactionsRequest(
                chain_id=chain_id, limit=5000, ascending=True, cursor=1, filter=f))
            assert [t.seq_id for t in up.transactions] == seen, name
            feats = await stub.ListFeatures(query_pb2.ListFeaturesRequest(chain_id=chain_id, limit=40, filter=f))
            assert [r.seq_id for r in feats.features] == [t[1].seq_id for t in matching][::-1][:40], name
            opps = await stub.ListOpportunities(query_pb2.ListOpportunitiesRequest(
                chain_id=chain_id, limit=5000, min_score=20, filter=f))
            expected = sorted(((e.opp_detected.opportunity.score, e.seq_id) for t in matching for e in t
                               if e.kind == OPP and e.opp_detected.opportunity.score >= max(20, f.min_score)),
                              reverse=True)
            assert [o.seq_id for o in opps.opportunities] == [seq for _, seq in expected], name
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ListFeatures(query_pb2.ListFeaturesRequest(filter=EventFilter(to=[b"\x01"])))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "filter.to" in info.value.details()


async def _scan_filtered(stub, f: EventFilter, chain_id: int, kinds: list[int], limit: int) -> tuple[list[int], int]:
    """Every seq a filtered ScanEvents walk returns (pages of ``limit``), and how many pages it took."""
    got: list[int] = []
    cursor, pages = 1, 0
    while True:
        page = await stub.ScanEvents(query_pb2.ScanEventsRequest(from_seq_id=cursor, limit=limit, filter=f,
                                                                 chain_id=chain_id, kinds=kinds))
        pages += 1
        seqs = [e.seq_id for e in page.events]
        # Whole transactions: a page passes its limit only by the rest of its first transaction (<= 5 events).
        assert len(seqs) <= max(limit, 5) and seqs == sorted(seqs) and all(s >= cursor for s in seqs)
        assert page.next_seq_id > cursor or page.next_seq_id > page.last_seq_id
        got.extend(seqs)
        if page.next_seq_id > page.last_seq_id:
            return got, pages
        cursor = page.next_seq_id


async def test_scan_events_applies_the_filter(server_factory) -> None:
    """ScanEvents with a filter returns, page after page, exactly what a subscription with the same filter gets
    (the reference), whole transactions per page; past the scan bound a page comes back short with a cursor; a
    bad filter is INVALID_ARGUMENT naming the field."""
    srv: ProcessdServer = await server_factory(scan_max_examined=1000)
    await push_envelopes(srv.address, synthetic_envelopes(1200, seed=77), batch_size=300)
    async with channel(srv.address) as ch:
        stub = query_stub(ch)
        events = await _scan_all(stub)
        values = _common(events)
        for name, f, chain_id, kinds in _filters(values):
            expected = reference_filter(f, events, chain_id, kinds)
            for limit in (7, 5000):
                got, pages = await _scan_filtered(stub, f, chain_id, kinds, limit)
                assert got == expected, (name, limit)
                # The scan bound (1,000 events examined) cuts a walk of the whole log into several pages.
                assert pages >= len(events) // 1000, (name, limit, pages)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ScanEvents(query_pb2.ScanEventsRequest(filter=EventFilter(selectors=[b"\x01"])))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "filter.selectors" in info.value.details()


def test_framing_a_whole_batch_gives_each_transactions_own_frames() -> None:
    """frame_taken frames a batch in one pass when most of it is taken, one transaction at a time otherwise: both
    give every taken transaction the bytes TxView.frame_all makes (seqs past 2**14 and 2**28 included)."""
    from processd.views.tx_view import TxView, frame_taken

    values = [bytes([1 + i % 3]) + events_pb2.Event(chain_id=1 + i, tx_hash=bytes(range(i % 200)) * (1 + i % 90),
                                                    kind=1 + i % 3).SerializeToString() for i in range(40)]
    bounds = [(0, 3), (3, 5), (5, 10), (10, 12), (12, 20), (20, 21), (21, 40)]
    for first in (1, 16380, (1 << 28) - 7):
        for taken_idx in ([0, 2, 3, 4, 6], [1]):  # most of the batch: one pass; a few: each apart
            expected = []
            for i in taken_idx:
                ref = TxView(1, values, *bounds[i], first + bounds[i][0])
                ref.frame_all()
                expected.append((ref.all_bytes, ref.all_count))
            taken = [TxView(1, values, *bounds[i], first + bounds[i][0]) for i in taken_idx]
            frame_taken(taken, values, first, len(bounds))
            assert [(tx.all_bytes, tx.all_count) for tx in taken] == expected
            parsed = query_pb2.SubscribeEventsResponse.FromString(b"".join(b for b, _ in expected))
            assert [(e.seq_id, e.chain_id) for e in parsed.events] == [
                (first + o, 1 + o) for i in taken_idx for o in range(*bounds[i])]
