"""Query service over a real LMDB log: cursors, filters, scan cost, snapshots from read models, errors."""

from __future__ import annotations

import gc

import grpc
import pytest

from common.pb.v1 import events_pb2, query_pb2, tx_pb2
from common.testing.ingest_push import channel, push_envelopes
from common.testing.synth import synthetic_envelopes
from processd.api.server import ProcessdServer
from processd.storage.eventlog import ScanStats
from tests.processd._helpers import query_stub

SEEN, DECODED, OPP = (events_pb2.EVENT_KIND_TX_SEEN, events_pb2.EVENT_KIND_TX_DECODED,
                      events_pb2.EVENT_KIND_OPP_DETECTED)
CHAINS = (1, 137, 56)


async def _scan_all(q, **kw) -> list[events_pb2.Event]:
    out: list[events_pb2.Event] = []
    cursor = 1
    while True:
        r = await q.ScanEvents(query_pb2.ScanEventsRequest(from_seq_id=cursor, limit=137, **kw))
        out.extend(r.events)
        if r.next_seq_id > r.last_seq_id:
            return out
        assert r.next_seq_id > cursor
        cursor = r.next_seq_id


@pytest.fixture
async def loaded(server: ProcessdServer) -> ProcessdServer:
    await push_envelopes(server.address, synthetic_envelopes(1500, seed=21, chain_ids=CHAINS), batch_size=250)
    return server


async def test_chain_scan_from_any_seq_equals_the_filtered_log(loaded: ProcessdServer) -> None:
    """The chain index has one entry per transaction: a cursor inside a transaction (at its TX_DECODED or an
    opportunity) still starts at that exact event, ascending and descending."""
    log = loaded.eventlog
    last = loaded.models.last_seq
    with log.begin() as txn:
        everything, _, _ = log.scan(txn, 1, last + 1, max_examined=last + 1)
        assert [e.seq_id for e in everything] == list(range(1, last + 1))
        opp_seqs = [e.seq_id for e in everything if e.kind == OPP]
        assert opp_seqs, "the synthetic stream has swaps with opportunities"
        cursors = sorted({1, 2, 3, last - 1, last, last + 1, *opp_seqs[:20], *(s + 1 for s in opp_seqs[:20]),
                          *range(last // 2, last // 2 + 12)})
        for chain in CHAINS:
            mine = [e.seq_id for e in everything if e.chain_id == chain]
            for cursor in cursors:
                up, _, _ = log.scan(txn, cursor, 40, chain_id=chain)
                assert [e.seq_id for e in up] == [s for s in mine if s >= cursor][:40], (chain, cursor)
                down, _, _ = log.scan(txn, cursor, 40, chain_id=chain, descending=True)
                assert [e.seq_id for e in down] == [s for s in reversed(mine) if s < cursor][:40], (chain, cursor)
                assert all(e.chain_id == chain for e in up + down)
            newest, _, _ = log.scan(txn, 0, 40, chain_id=chain, descending=True)
            assert [e.seq_id for e in newest] == mine[::-1][:40]


async def test_scan_pages_equal_the_whole_log_with_filters(loaded: ProcessdServer) -> None:
    async with channel(loaded.address) as ch:
        q = query_stub(ch)
        everything = await _scan_all(q)
        assert [e.seq_id for e in everything] == list(range(1, len(everything) + 1))
        for chain in CHAINS:
            only = await _scan_all(q, chain_id=chain)
            assert only == [e for e in everything if e.chain_id == chain]
        opps = await _scan_all(q, kinds=[OPP])
        assert opps == [e for e in everything if e.kind == OPP]
        assert opps, "the fixture swaps should yield opportunities"
        mixed = await _scan_all(q, chain_id=137, kinds=[SEEN, OPP])
        assert mixed == [e for e in everything if e.chain_id == 137 and e.kind in (SEEN, OPP)]
        # Starting in the middle returns exactly the tail.
        r = await q.ScanEvents(query_pb2.ScanEventsRequest(from_seq_id=1000, limit=5))
        assert [e.seq_id for e in r.events] == [1000, 1001, 1002, 1003, 1004] and r.next_seq_id == 1005
        # Beyond the end: nothing, cursor unchanged.
        r = await q.ScanEvents(query_pb2.ScanEventsRequest(from_seq_id=len(everything) + 10))
        assert not r.events and r.next_seq_id == len(everything) + 10


async def test_list_transactions_pages_both_directions(loaded: ProcessdServer) -> None:
    async with channel(loaded.address) as ch:
        q = query_stub(ch)
        seen = [e for e in await _scan_all(q, kinds=[SEEN]) if e.chain_id == 137]
        newest_first: list[int] = []
        cursor = 0
        while True:
            r = await q.ListTransactions(query_pb2.ListTransactionsRequest(chain_id=137, limit=70, cursor=cursor))
            newest_first.extend(t.seq_id for t in r.transactions)
            assert all(t.tx.chain_id == 137 for t in r.transactions)
            if not r.next_cursor:
                break
            cursor = r.next_cursor
        assert newest_first == [e.seq_id for e in reversed(seen)]
        oldest_first: list[int] = []
        cursor = 0
        while True:
            r = await q.ListTransactions(query_pb2.ListTransactionsRequest(limit=333, cursor=cursor, ascending=True))
            oldest_first.extend(t.seq_id for t in r.transactions)
            if not r.next_cursor:
                break
            cursor = r.next_cursor
        assert len(oldest_first) == 1500 and oldest_first == sorted(oldest_first)


async def test_get_transaction_returns_tx_features_and_opportunities(loaded: ProcessdServer) -> None:
    async with channel(loaded.address) as ch:
        q = query_stub(ch)
        opps = await _scan_all(q, kinds=[OPP])
        target = opps[0]
        r = await q.GetTransaction(query_pb2.GetTransactionRequest(chain_id=target.chain_id, hash=target.tx_hash))
        assert r.transaction.tx.hash == target.tx_hash
        assert r.features.seq_id == r.transaction.seq_id + 1
        assert r.features.features.calldata_len == len(r.transaction.tx.input)
        assert target.opp_detected.opportunity in list(r.opportunities)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await q.GetTransaction(query_pb2.GetTransactionRequest(chain_id=1, hash=b"\x00" * 32))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        for bad in (query_pb2.GetTransactionRequest(chain_id=1, hash=b"\x00" * 31),
                    query_pb2.GetTransactionRequest(chain_id=0, hash=b"\x00" * 31)):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await q.GetTransaction(bad)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # chain_id 0 = any chain: the same answer as with the chain's id, NOT_FOUND when no chain holds it.
        assert await q.GetTransaction(query_pb2.GetTransactionRequest(hash=target.tx_hash)) == r
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await q.GetTransaction(query_pb2.GetTransactionRequest(chain_id=0, hash=b"\x00" * 32))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_get_transaction_on_any_chain_returns_the_first_stored(server: ProcessdServer) -> None:
    """The same hash stored on two chains: without chain_id, the one stored first (smallest seq_id) answers,
    whichever chain id is smaller (what gatewayd answered when it asked every chain itself)."""
    first = synthetic_envelopes(1, seed=5, chain_ids=(137,))[0]
    second = tx_pb2.TxEnvelope()
    second.CopyFrom(first)
    second.chain_id = 1
    await push_envelopes(server.address, [first], batch_size=1)
    await push_envelopes(server.address, [second], batch_size=1)
    async with channel(server.address) as ch:
        q = query_stub(ch)
        on = {c: await q.GetTransaction(query_pb2.GetTransactionRequest(chain_id=c, hash=first.hash)) for c in (1, 137)}
        assert on[137].transaction.seq_id < on[1].transaction.seq_id
        anywhere = await q.GetTransaction(query_pb2.GetTransactionRequest(hash=first.hash))
        assert anywhere == on[137] and anywhere.transaction.tx.chain_id == 137


async def test_bad_requests_are_invalid_argument(loaded: ProcessdServer) -> None:
    async with channel(loaded.address) as ch:
        q = query_stub(ch)
        calls = [
            q.ScanEvents(query_pb2.ScanEventsRequest(kinds=[0])),
            q.ScanEvents(query_pb2.ScanEventsRequest(kinds=[99])),
            q.ScanEvents(query_pb2.ScanEventsRequest(chain_id=2**64 - 1)),
            q.ListOpportunities(query_pb2.ListOpportunitiesRequest(min_score=101)),
            q.GetSnapshot(query_pb2.GetSnapshotRequest(min_score=500)),
            q.ListTransactions(query_pb2.ListTransactionsRequest(chain_id=2**63)),
        ]
        for call in calls:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()


async def test_opportunities_best_first_and_min_score(loaded: ProcessdServer) -> None:
    async with channel(loaded.address) as ch:
        q = query_stub(ch)
        everything = [e.opp_detected.opportunity for e in await _scan_all(q, kinds=[OPP])]
        r = await q.ListOpportunities(query_pb2.ListOpportunitiesRequest(limit=5000))
        expected = sorted(everything, key=lambda o: (-o.score, -o.seq_id))
        assert list(r.opportunities) == expected
        threshold = expected[len(expected) // 2].score
        r = await q.ListOpportunities(query_pb2.ListOpportunitiesRequest(chain_id=56, min_score=threshold))
        assert list(r.opportunities) == [o for o in expected if o.chain_id == 56 and o.score >= threshold]
        f = await q.ListFeatures(query_pb2.ListFeaturesRequest(chain_id=1, limit=3))
        decoded = [e for e in await _scan_all(q, chain_id=1, kinds=[DECODED])]
        assert [x.seq_id for x in f.features] == [e.seq_id for e in reversed(decoded[-3:])]
        assert f.features[0].features == decoded[-1].tx_decoded.features


async def test_snapshot_matches_the_log_and_never_reads_it(loaded: ProcessdServer, monkeypatch) -> None:
    async with channel(loaded.address) as ch:
        q = query_stub(ch)
        everything = await _scan_all(q)
        before = await q.GetSnapshot(query_pb2.GetSnapshotRequest(tx_limit=7, opp_limit=9, feature_limit=4))

        def no_log_reads(*_a, **_k):
            raise AssertionError("GetSnapshot touched the event log")

        # Repeated snapshots are served from the read models only: any LMDB access would fail the RPC.
        for name in ("begin", "scan", "last_seq", "first_seq", "load_aggregates", "tx_events"):
            monkeypatch.setattr(loaded.eventlog, name, no_log_reads)
        again = await q.GetSnapshot(query_pb2.GetSnapshotRequest(tx_limit=7, opp_limit=9, feature_limit=4))
        assert again == before
    assert before.last_seq_id == len(everything)
    for totals in before.chains:
        mine = [e for e in everything if e.chain_id == totals.chain_id]
        assert totals.tx_count == sum(e.kind == SEEN for e in mine) == 500
        assert totals.opportunity_count == sum(e.kind == OPP for e in mine)
        assert totals.decoded_count == sum(e.kind == DECODED and e.tx_decoded.features.decoded for e in mine)
        assert totals.replay.seq_high_water == mine[-1].seq_id
        assert totals.replay.pending_count == 500
    assert [t.seq_id for t in before.recent_transactions] == [e.seq_id for e in everything if e.kind == SEEN][-7:][::-1]
    summary = {(s.chain_id, s.protocol, s.category): s.count for s in before.feature_summary}
    counted: dict[tuple[int, str, int], int] = {}
    for e in everything:
        if e.kind == DECODED:
            key = (e.chain_id, e.tx_decoded.features.protocol, e.tx_decoded.features.category)
            counted[key] = counted.get(key, 0) + 1
    assert summary == counted
    assert len(before.top_opportunities) == 9 and len(before.recent_features) == 4


async def test_scan_cost_is_flat_as_the_log_grows_tenfold(server_factory, tmp_path) -> None:
    """Cursor steps and point reads of a page do not depend on log size (1k vs 10k transactions)."""
    costs = []
    for n, name in ((1000, "small"), (10000, "large")):
        srv = await server_factory(data_dir=tmp_path / name)
        await push_envelopes(srv.address, synthetic_envelopes(n, seed=31, chain_ids=CHAINS), batch_size=1000)
        last = srv.models.last_seq
        page_costs = []
        with srv.eventlog.begin() as txn:
            for chain, from_seq in ((0, last // 2), (0, last - 500), (137, last // 2), (137, last - 1000)):
                stats = ScanStats()
                events, _next, _more = srv.eventlog.scan(txn, from_seq, 100, chain_id=chain, stats=stats)
                assert len(events) == 100
                page_costs.append((stats.cursor_steps, stats.point_reads))
            for chain in (0, 137):  # newest transactions, descending (ListTransactions' first page)
                stats = ScanStats()
                events, _next, _more = srv.eventlog.scan(txn, 0, 50, chain_id=chain, kinds=frozenset({SEEN}),
                                                         stats=stats, descending=True)
                assert len(events) == 50
                page_costs.append((stats.cursor_steps, stats.point_reads))
        costs.append(page_costs)
        await srv.stop()
    # Unfiltered pages cost exactly the page: one positioning step + one step per entry, whatever the log size.
    assert costs[0][:2] == costs[1][:2] == [(100, 0), (100, 0)], costs
    # Chain-filtered pages walk the chain index, one entry per transaction (2+ events each), with one point read
    # per event: at most 50 entries for 100 events, plus positioning (and the transaction holding from_seq).
    for small, large in zip(costs[0][2:4], costs[1][2:4], strict=True):
        assert small[1] == large[1] == 100 and small[0] <= 100 // 2 + 3 and large[0] <= 100 // 2 + 3, costs
    # Kind-filtered pages examine the events of the last 50 transactions only (at most 5 events each).
    for small, large in zip(costs[0][4:], costs[1][4:], strict=True):
        assert small[0] <= 5 * 50 + 1 and large[0] <= 5 * 50 + 1, costs
        assert small[1] == large[1] in (0, 50)


def _reader_slots(server: ProcessdServer) -> int:
    """LMDB reader-table slots held (active or reset transactions), read from the environment itself."""
    env = server.eventlog.env
    assert env is not None
    return sum(1 for line in env.readers().splitlines()[1:] if line.strip())


async def test_reads_free_their_lmdb_reader_slots(loaded: ProcessdServer) -> None:
    """A read transaction is freed when the read ends, not when the GC gets to it (issue 14, found by the long
    schemathesis run): a NOT_FOUND lookup raised from the frame holding the transaction, so every unknown hash
    kept a reader slot until a cyclic collection, which processd's tuned GC makes rare; 256 of them and every
    read failed with MDB_READERS_FULL. An open SubscribeEvents stream held one for its whole life."""
    gc.disable()  # as rare as processd's collections (common.gctune): nothing frees cycles
    try:
        base = _reader_slots(loaded)
        async with channel(loaded.address) as ch:
            q = query_stub(ch)
            for i in range(300):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await q.GetTransaction(query_pb2.GetTransactionRequest(chain_id=1, hash=i.to_bytes(32, "big")))
                assert info.value.code() == grpc.StatusCode.NOT_FOUND
            await q.ScanEvents(query_pb2.ScanEventsRequest(from_seq_id=1, limit=10))
            await q.ListTransactions(query_pb2.ListTransactionsRequest(limit=10))
            assert _reader_slots(loaded) <= base + 1
            streams = [q.SubscribeEvents(query_pb2.SubscribeEventsRequest(from_seq_id=1)) for _ in range(20)]
            for stream in streams:
                assert (await stream.read()).events
            assert _reader_slots(loaded) <= base + 1
            for stream in streams:
                stream.cancel()
    finally:
        gc.enable()
