"""Query pages and SubscribeEvents messages are cut by bytes as well as by count (issue 14).

A page of legal transactions (127 KiB of calldata each, the limit being 128 KiB) used to pass processd's 16 MiB
gRPC send limit: ListTransactions / ScanEvents / GetSnapshot failed with RESOURCE_EXHAUSTED on every retry, and
a SubscribeEvents catch-up over such a stretch failed the same way on every resume. Each test walks the whole
stretch through the real server with the default limits and checks that every record comes exactly once.
"""

from __future__ import annotations

import asyncio

import pytest

from common.pb.v1 import query_pb2, tx_pb2
from common.testing.ingest_push import channel, push_envelopes
from common.testing.synth import synthetic_envelopes
from processd.api.server import ProcessdServer
from tests.processd._helpers import query_stub

CALLDATA_BYTES = 127 * 1024
#: 140 x 127 KiB = 17.4 MiB of calldata: more than one 16 MiB message.
BIG_TXS = 140
#: The default page budget: half of the 16 MiB gRPC message limit (ProcessdConfig.page_bytes).
PAGE_BYTES = 8 * 1024 * 1024


def big_envelopes(count: int, seed: int) -> list[tx_pb2.TxEnvelope]:
    """Legal envelopes with 127 KiB of calldata each (on one chain, so chain-filtered walks see them all)."""
    envelopes = synthetic_envelopes(count, seed=seed, chain_ids=(1,))
    for i, e in enumerate(envelopes):
        e.input = bytes([i % 251]) * CALLDATA_BYTES
    return envelopes


@pytest.fixture
async def big(server_factory) -> ProcessdServer:
    # A long group-commit wait so the live test's two batches land in one commit (one hub.publish).
    srv: ProcessdServer = await server_factory(flush_interval_ms=300)
    acks = await push_envelopes(srv.address, big_envelopes(BIG_TXS, seed=1401), batch_size=70)
    assert sum(a.accepted for a in acks) == BIG_TXS
    return srv


def _check_page(resp, records: int, limit: int) -> None:
    assert records >= 1, "a page always holds at least one record"
    assert resp.ByteSize() <= PAGE_BYTES, resp.ByteSize()
    if resp.truncated:
        assert records < limit and resp.ByteSize() > PAGE_BYTES - 2 * CALLDATA_BYTES, "cut only when full"


@pytest.mark.parametrize("ascending", [False, True])
@pytest.mark.parametrize("chain_id", [0, 1])
async def test_list_transactions_pages_are_cut_by_bytes(big: ProcessdServer, ascending: bool, chain_id: int) -> None:
    async with channel(big.address) as ch:
        q = query_stub(ch)
        seqs: list[int] = []
        cursor, pages, truncated = (1 if ascending else 0), 0, 0
        while True:
            r = await q.ListTransactions(query_pb2.ListTransactionsRequest(
                chain_id=chain_id, limit=200, cursor=cursor, ascending=ascending))
            pages += 1
            _check_page(r, len(r.transactions), 200)
            truncated += r.truncated
            seqs += [t.seq_id for t in r.transactions]
            if not r.next_cursor:
                break
            cursor = r.next_cursor
    assert len(seqs) == BIG_TXS == len(set(seqs))
    assert seqs == sorted(seqs, reverse=not ascending)
    assert pages == 3 and truncated == 2  # about 64 transactions (8 MiB) per page


async def test_scan_events_pages_are_cut_by_bytes(big: ProcessdServer) -> None:
    async with channel(big.address) as ch:
        q = query_stub(ch)
        seqs: list[int] = []
        cursor, pages = 1, 0
        while True:
            r = await q.ScanEvents(query_pb2.ScanEventsRequest(from_seq_id=cursor, limit=1000))
            pages += 1
            _check_page(r, len(r.events), 1000)
            seqs += [e.seq_id for e in r.events]
            if r.next_seq_id > r.last_seq_id:
                break
            assert r.truncated
            cursor = r.next_seq_id
    assert seqs == list(range(1, big.models.last_seq + 1))
    assert pages == 3


async def test_snapshot_transactions_are_cut_by_bytes_and_continue_by_cursor(big: ProcessdServer) -> None:
    async with channel(big.address) as ch:
        q = query_stub(ch)
        snap = await q.GetSnapshot(query_pb2.GetSnapshotRequest(tx_limit=200))
        assert snap.ByteSize() <= PAGE_BYTES + 2 * CALLDATA_BYTES
        assert snap.recent_transactions_truncated
        first = [t.seq_id for t in snap.recent_transactions]
        assert 0 < len(first) < BIG_TXS
        # The older ones follow from ListTransactions, cursor = the last seq_id of the snapshot.
        rest = await q.ListTransactions(query_pb2.ListTransactionsRequest(limit=200, cursor=first[-1]))
        everything = await q.ListTransactions(query_pb2.ListTransactionsRequest(limit=5, cursor=0))
        assert [t.seq_id for t in everything.transactions] == first[:5]
        assert rest.transactions[0].seq_id < first[-1]
        assert not (await q.GetSnapshot(query_pb2.GetSnapshotRequest(tx_limit=10))).recent_transactions_truncated


async def _read_until(call, last_seq: int, seqs: list[int], sizes: list[int]) -> None:
    async for msg in call:
        seqs.extend(e.seq_id for e in msg.events)
        if msg.events:
            sizes.append(msg.ByteSize())
        if seqs and seqs[-1] >= last_seq:
            return


async def test_subscribe_catch_up_and_live_messages_are_cut_by_bytes(big: ProcessdServer) -> None:
    backlog = big.models.last_seq
    async with channel(big.address) as ch:
        call = query_stub(ch).SubscribeEvents(query_pb2.SubscribeEventsRequest(from_seq_id=1))
        seqs: list[int] = []
        sizes: list[int] = []
        await asyncio.wait_for(_read_until(call, backlog, seqs, sizes), 30)
        assert seqs == list(range(1, backlog + 1))
        assert max(sizes) <= (1 << 20) + CALLDATA_BYTES and len(sizes) >= BIG_TXS // 8
        # Live: two batches of 100 big transactions in one commit (400 events, 25 MiB) reach the subscriber
        # as several messages, each under the budget.
        for _ in range(100):
            if big.hub.subscribers:
                break
            await asyncio.sleep(0.02)
        acks = await push_envelopes(big.address, big_envelopes(200, seed=1402), batch_size=100, session_id="live")
        assert sum(a.accepted for a in acks) == 200
        live: list[int] = []
        sizes.clear()
        await asyncio.wait_for(_read_until(call, big.models.last_seq, live, sizes), 30)
        call.cancel()
    assert live == list(range(backlog + 1, big.models.last_seq + 1))
    assert max(sizes) <= (1 << 20) + CALLDATA_BYTES
