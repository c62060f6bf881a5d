"""SubscribeMany on a real processd over real gRPC: many filters on one stream, each event once with its ids.

The events each filter id gets are those the parsed-event reference (``_filter_reference``) picks from the
commits after the filter's acknowledged ``from_seq_id``; the events themselves are the ones ScanEvents returns;
adds and removes apply between commits; bad requests, the filter bound and the subscriber bound are answered
with their status codes and counted.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict

import grpc
import pytest

from common.pb.v1 import events_pb2, ingest_pb2, query_pb2, tx_pb2
from common.testing.ingest_push import channel, push_batches, push_envelopes
from common.testing.synth import synthetic_envelopes
from processd.api.server import ProcessdServer
from tests.processd._filter_reference import reference_filter
from tests.processd._helpers import query_stub
from tests.processd.test_filters import _common, _filters, _scan_all

EventFilter = query_pb2.EventFilter
Request = query_pb2.SubscribeManyRequest


def _add(*pairs: tuple[int, EventFilter]) -> query_pb2.SubscribeManyRequest:
    return Request(add=[query_pb2.ManyFilter(id=fid, filter=f) for fid, f in pairs])


async def _read(call, until: callable) -> list[query_pb2.SubscribeManyResponse]:  # type: ignore[valid-type]
    """Messages until ``until(messages)`` holds (30 s at most per message)."""
    out: list[query_pb2.SubscribeManyResponse] = []
    while not until(out):
        msg = await asyncio.wait_for(call.read(), 30)
        assert msg is not grpc.aio.EOF
        out.append(msg)
    return out


async def _released(server: ProcessdServer) -> bool:
    """Whether the server let go of every stream and its filters (it does when the call's handler ends, which
    may be a moment after the client saw the call end); waits for it up to 10 s."""
    hub = server.hub
    for _ in range(200):
        if not hub.streams and not hub.stream_filters and not hub.reserved and not hub.groups:
            return True
        await asyncio.sleep(0.05)
    return False


def _by_id(messages: list[query_pb2.SubscribeManyResponse]) -> dict[int, list[int]]:
    got: dict[int, list[int]] = defaultdict(list)
    for m in messages:
        for e in m.events:
            assert len(set(e.filter_ids)) == len(e.filter_ids) > 0  # each id once
            for fid in e.filter_ids:
                got[fid].append(e.event.seq_id)
    return dict(got)


def _seqs(messages: list[query_pb2.SubscribeManyResponse]) -> list[int]:
    return [e.event.seq_id for m in messages for e in m.events]


async def test_each_filter_id_gets_what_the_reference_takes_after_its_start(server: ProcessdServer) -> None:
    await push_envelopes(server.address, synthetic_envelopes(1200, seed=81), batch_size=300)
    async with channel(server.address) as ch:
        stub = query_stub(ch)
        values = _common(await _scan_all(stub))
        filters = {100 + i: f for i, (_, f, chain_id, kinds) in enumerate(_filters(values))
                   if not chain_id and not kinds}
        filters[7] = filters[100]  # the same filter under two ids: one group, both ids on its events
        filters[0] = EventFilter(kinds=[events_pb2.EVENT_KIND_TX_DECODED])  # id 0, an unanchored filter
        call = stub.SubscribeMany()
        metadata = dict(await call.initial_metadata())
        assert metadata["mempulse-subscription"] == "admitted"
        await call.write(_add(*filters.items()))
        acks = await _read(call, lambda ms: ms and ms[-1].added)
        start = {a.id: a.from_seq_id for a in acks[-1].added}
        assert set(start) == set(filters) and set(start.values()) == {server.models.last_seq + 1}
        await push_envelopes(server.address, synthetic_envelopes(1500, seed=82), batch_size=250, session_id="b")
        events = [e for e in await _scan_all(stub) if e.seq_id >= start[0]]
        expected = {fid: reference_filter(f, events) for fid, f in filters.items()}
        wanted = {s for seqs in expected.values() for s in seqs}
        messages = await _read(call, lambda ms: set(_seqs(ms)) >= wanted)
        call.cancel()
    assert _by_id(messages) == {fid: seqs for fid, seqs in expected.items() if seqs}
    # Every event once, in seq order, as ScanEvents has it.
    assert _seqs(messages) == sorted(wanted)
    by_seq = {e.seq_id: e for e in events}
    assert all(e.event == by_seq[e.event.seq_id] for m in messages for e in m.events)
    # Honest filters: most take some events and leave others; the shared one is on every event of its twin.
    assert sum(0 < len(seqs) < len(events) for seqs in expected.values()) >= len(filters) - 2
    assert expected[7] == expected[100] != []


async def _until_expected(call, stub, filters: dict[int, EventFilter], after: int,
                          ) -> tuple[list[query_pb2.SubscribeManyResponse], dict[int, list[int]]]:
    """Messages until every event the reference gives ``filters`` from the log past seq ``after`` arrived."""
    # The reference reads the whole log: a sighting matches by its transaction, which may be older than ``after``.
    events = await _scan_all(stub)
    expected = {fid: [seq for seq in reference_filter(f, events) if seq > after] for fid, f in filters.items()}
    wanted = {s for seqs in expected.values() for s in seqs}
    assert wanted  # honest: the filters take something
    return await _read(call, lambda ms: set(_seqs(ms)) >= wanted), expected


async def test_sightings_carry_the_ids_of_the_filters_that_take_them(server: ProcessdServer) -> None:
    """TX_SOURCE_SEEN events in the same commit as new transactions: each filter (chain and kind, or transaction
    fields read from the log, with and without kinds) tags what the reference takes, sightings included."""
    envs, more = synthetic_envelopes(30, seed=73), synthetic_envelopes(30, seed=76)
    await push_envelopes(server.address, envs, batch_size=30)
    target = Counter(e.to for e in envs + more if e.to).most_common(1)[0][0]
    source = events_pb2.EVENT_KIND_TX_SOURCE_SEEN
    filters = {1: EventFilter(chain_ids=[envs[0].chain_id], kinds=[source]), 2: EventFilter(to=[target]),
               3: EventFilter(to=[target], kinds=[source]), 4: EventFilter(min_score=1)}
    async with channel(server.address) as ch:
        stub = query_stub(ch)
        call = stub.SubscribeMany()
        await call.write(_add(*filters.items()))
        await _read(call, lambda ms: ms and ms[-1].added)
        start = server.models.last_seq
        sightings = [tx_pb2.TxSighting(chain_id=e.chain_id, hash=e.hash, source_id="late",
                                       seen_unix_ns=e.first_seen_unix_ns + 5) for e in envs]
        await push_batches(server.address, [ingest_pb2.TxBatch(session_id="s", batch_seq=1, envelopes=more,
                                                               sightings=sightings)])
        messages, expected = await _until_expected(call, stub, filters, start)
        call.cancel()
    assert _by_id(messages) == {fid: seqs for fid, seqs in expected.items() if seqs}
    events = {e.event.seq_id: e.event.kind for m in messages for e in m.events}
    # Every filter took sightings (the first one only those of its chain), the second transactions too.
    assert all(any(events[s] == source for s in expected[fid]) for fid in filters), expected
    assert any(events[s] == events_pb2.EVENT_KIND_TX_SEEN for s in expected[2])


async def test_remove_stops_an_id_and_a_new_add_starts_at_the_next_commit(server: ProcessdServer) -> None:
    chains = (1, 56, 137)
    first_filters = {1: EventFilter(chain_ids=[1]), 2: EventFilter(chain_ids=[137])}
    async with channel(server.address) as ch:
        stub = query_stub(ch)
        call = stub.SubscribeMany()
        await call.write(_add(*first_filters.items()))
        await _read(call, lambda ms: ms and ms[-1].added)
        await push_envelopes(server.address, synthetic_envelopes(300, seed=83, chain_ids=chains), batch_size=100)
        head1 = server.models.last_seq
        first, expected1 = await _until_expected(call, stub, first_filters, 0)
        await call.write(Request(remove=[1, 42]))
        removed = await _read(call, lambda ms: ms and ms[-1].removed)
        assert list(removed[-1].removed) == [1, 42]
        await call.write(_add((1, EventFilter(chain_ids=[56]))))
        readded = await _read(call, lambda ms: ms and ms[-1].added)
        assert readded[-1].added[0].from_seq_id == head1 + 1
        await push_envelopes(server.address, synthetic_envelopes(300, seed=84, chain_ids=chains), batch_size=100,
                             session_id="c")
        later, expected2 = await _until_expected(call, stub, {1: EventFilter(chain_ids=[56]), 2: first_filters[2]},
                                                 head1)
        call.cancel()
    assert _by_id(first + removed) == expected1
    assert _by_id(readded + later) == expected2
    assert await _released(server)


@pytest.mark.parametrize(("request_", "message"), [
    (_add((3, EventFilter(senders=[b"\x01" * 19]))), "filter id 3: filter.senders: each value must be 20 bytes"),
    (_add((4, EventFilter()), (4, EventFilter(chain_ids=[1]))), "filter id 4 is already in use"),
    (_add((5, EventFilter(kinds=[99]))), "filter id 5: filter.kinds: unknown event kinds [99]"),
])
async def test_bad_requests_end_the_stream_with_invalid_argument(server: ProcessdServer, request_: Request,
                                                                 message: str) -> None:
    async with channel(server.address) as ch:
        call = query_stub(ch).SubscribeMany()
        await call.write(request_)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            while True:
                await asyncio.wait_for(call.read(), 30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in info.value.details()
    assert server.metrics.bad_requests.labels("SubscribeMany")._value.get() == 1
    assert await _released(server)


async def test_the_filter_and_stream_bounds_are_resource_exhausted(server_factory) -> None:
    server = await server_factory(max_filters_per_stream=3, max_subscribers=1)
    async with channel(server.address) as ch:
        stub = query_stub(ch)
        call = stub.SubscribeMany()
        await call.initial_metadata()
        # The one subscriber slot is held: another stream is refused at once.
        other = stub.SubscribeMany()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await asyncio.wait_for(other.read(), 30)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await call.write(_add(*[(i, EventFilter(chain_ids=[i + 1])) for i in range(3)]))
        acks = await _read(call, lambda ms: ms and ms[-1].added)
        assert [a.id for a in acks[-1].added] == [0, 1, 2]
        assert server.hub.stream_filters == 3
        assert server.metrics.registry.get_sample_value("mempulse_processd_many_filters") == 3
        assert server.metrics.registry.get_sample_value("mempulse_processd_many_streams") == 1
        await call.write(_add((3, EventFilter())))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            while True:
                await asyncio.wait_for(call.read(), 30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limit of 3 filters per stream" in info.value.details()
    assert server.metrics.resource_exhausted.labels("too_many_filters")._value.get() == 1
    assert await _released(server)
