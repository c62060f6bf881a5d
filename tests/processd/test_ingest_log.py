"""Ingest.Stream into a real in-process processd: ordering, acks, dedup and validation."""

from __future__ import annotations

import asyncio
import itertools

import grpc
import pytest

from common.pb.v1 import events_pb2, ingest_pb2, query_pb2
from common.testing.ingest_push import channel, push_batches, push_envelopes
from common.testing.synth import synthetic_envelopes
from processd.api.server import ProcessdServer
from tests.processd._helpers import query_stub

SEEN, DECODED, OPP = (events_pb2.EVENT_KIND_TX_SEEN, events_pb2.EVENT_KIND_TX_DECODED,
                      events_pb2.EVENT_KIND_OPP_DETECTED)


async def _all_events(server: ProcessdServer) -> list[events_pb2.Event]:
    out: list[events_pb2.Event] = []
    async with channel(server.address) as ch:
        q = query_stub(ch)
        cursor = 1
        while True:
            r = await q.ScanEvents(query_pb2.ScanEventsRequest(from_seq_id=cursor, limit=1000))
            out.extend(r.events)
            if not r.events:
                return out
            cursor = r.next_seq_id


async def test_concurrent_streams_get_contiguous_seqs_and_exact_ack_ranges(server: ProcessdServer) -> None:
    streams = [synthetic_envelopes(600, seed=s) for s in (1, 2, 3)]
    results = await asyncio.gather(*(push_envelopes(server.address, envs, batch_size=50, session_id=f"s{i}")
                                     for i, envs in enumerate(streams)))
    events = await _all_events(server)
    assert [e.seq_id for e in events] == list(range(1, len(events) + 1))
    ranges = sorted((a.first_seq_id, a.last_seq_id) for acks in results for a in acks)
    # Ack ranges tile the log exactly: no gap, no overlap.
    assert ranges[0][0] == 1 and ranges[-1][1] == len(events)
    for (_, last), (first, _) in itertools.pairwise(ranges):
        assert first == last + 1
    assert sum(a.accepted for acks in results for a in acks) == 1800
    # Per transaction: TX_SEEN, TX_DECODED, then its opportunities, all about the same hash.
    hashes = set()
    i = 0
    while i < len(events):
        seen = events[i]
        assert seen.kind == SEEN and seen.tx_seen.tx.hash == seen.tx_hash
        hashes.add((seen.chain_id, seen.tx_hash))
        assert events[i + 1].kind == DECODED and events[i + 1].tx_hash == seen.tx_hash
        i += 2
        while i < len(events) and events[i].kind == OPP:
            assert events[i].opp_detected.opportunity.seq_id == events[i].seq_id
            assert events[i].tx_hash == seen.tx_hash
            i += 1
    assert len(hashes) == 1800
    # Each stream's acks come in its own batch order, and seq ranges of one stream increase.
    for acks in results:
        firsts = [a.first_seq_id for a in acks]
        assert firsts == sorted(firsts)


async def test_events_carry_what_was_ingested(server: ProcessdServer) -> None:
    envs = synthetic_envelopes(40, seed=5)
    await push_envelopes(server.address, envs, batch_size=40)
    events = [e for e in await _all_events(server) if e.kind == SEEN]
    assert [e.tx_seen.tx for e in events] == envs
    for e, env in zip(events, envs, strict=True):
        assert e.chain_id == env.chain_id
        assert e.first_seen_unix_ns == env.first_seen_unix_ns
        assert e.source_id == env.source_id
        assert e.received_unix_ns > 0


async def test_resend_is_idempotent(server: ProcessdServer) -> None:
    envs = synthetic_envelopes(300, seed=7)
    first = await push_envelopes(server.address, envs, batch_size=100)
    again = await push_envelopes(server.address, envs, batch_size=100, first_batch_seq=10)
    # A batch mixing new and already-stored envelopes stores only the new ones.
    mixed = envs[:50] + synthetic_envelopes(10, seed=8)
    third = await push_envelopes(server.address, mixed, batch_size=60, first_batch_seq=20)
    assert sum(a.accepted for a in first) == 300
    assert all(a.accepted == 0 and a.duplicates == 100 and a.first_seq_id == 0 for a in again)
    assert third[0].accepted == 10 and third[0].duplicates == 50
    events = await _all_events(server)
    keys = [(e.chain_id, e.tx_hash) for e in events if e.kind == SEEN]
    assert len(keys) == len(set(keys)) == 310
    assert third[0].last_seq_id == events[-1].seq_id


async def test_same_hash_on_two_chains_is_two_transactions(server: ProcessdServer) -> None:
    env = synthetic_envelopes(1, seed=9, chain_ids=(1,))[0]
    other = type(env)()
    other.CopyFrom(env)
    other.chain_id = 137
    acks = await push_envelopes(server.address, [env, other, env], batch_size=3)
    assert acks[0].accepted == 2 and acks[0].duplicates == 1


def _bad_envelopes() -> dict[int, list]:
    base = synthetic_envelopes(1, seed=11, chain_ids=(1,))[0]

    def variant(**fields: object):
        e = type(base)()
        e.CopyFrom(base)
        for k, v in fields.items():
            setattr(e, k, v)
        return e

    return {
        ingest_pb2.REJECT_REASON_BAD_HASH: [variant(hash=b"\x01" * 31), variant(hash=b"")],
        ingest_pb2.REJECT_REASON_BAD_ADDRESS: [variant(sender=b"\x02" * 19), variant(to=b"\x03" * 21)],
        ingest_pb2.REJECT_REASON_UNKNOWN_CHAIN: [variant(chain_id=0), variant(chain_id=2**63)],
        ingest_pb2.REJECT_REASON_BAD_QUANTITY: [variant(value=b"\x01" * 33), variant(max_fee_per_gas=b"\x01" * 40)],
        ingest_pb2.REJECT_REASON_TOO_LARGE: [variant(input=b"\x00" * (128 * 1024 + 1))],
    }


async def test_invalid_envelopes_are_rejected_with_reasons_and_counted(server: ProcessdServer) -> None:
    bad = _bad_envelopes()
    good = synthetic_envelopes(3, seed=12, chain_ids=(1,))
    batch = [e for group in bad.values() for e in group] + good
    acks = await push_envelopes(server.address, batch, batch_size=len(batch))
    ack = acks[0]
    assert ack.accepted == 3
    assert {r.reason: r.count for r in ack.rejected} == {reason: len(group) for reason, group in bad.items()}
    async with channel(server.address) as ch:
        snap = await query_stub(ch).GetSnapshot(query_pb2.GetSnapshotRequest(chain_id=1))
    rejected = {r.reason: r.count for r in snap.chains[0].rejected}
    # Rejects of chain 1 are counted per chain (bad chain ids cannot be attributed to a chain).
    assert rejected[ingest_pb2.REJECT_REASON_BAD_HASH] == 2
    assert rejected[ingest_pb2.REJECT_REASON_TOO_LARGE] == 1
    assert ingest_pb2.REJECT_REASON_UNKNOWN_CHAIN not in rejected
    assert snap.chains[0].tx_count == 3


async def test_chain_allow_list(server_factory) -> None:
    srv = await server_factory(chain_ids=frozenset({137}))
    envs = synthetic_envelopes(4, seed=13, chain_ids=(1, 137))
    acks = await push_envelopes(srv.address, envs, batch_size=4)
    assert acks[0].accepted == 2
    assert [(r.reason, r.count) for r in acks[0].rejected] == [(ingest_pb2.REJECT_REASON_UNKNOWN_CHAIN, 2)]


async def test_empty_batch_with_stats_only_is_acked(server: ProcessdServer) -> None:
    stats = ingest_pb2.ChainIngestStats(chain_id=1, seen=10, delivered=8,
                                        dropped=[ingest_pb2.DropCount(reason="fetch_queue_full", count=2)])
    batch = ingest_pb2.TxBatch(session_id="s", batch_seq=1, chain_stats=[stats])
    acks = await push_batches(server.address, [batch])
    assert acks[0].batch_seq == 1 and acks[0].accepted == 0 and acks[0].first_seq_id == 0


async def test_oversized_message_is_resource_exhausted(server_factory) -> None:
    srv = await server_factory(max_message_bytes=64 * 1024, max_input_bytes=1024)
    envs = synthetic_envelopes(400, seed=14)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await push_envelopes(srv.address, envs, batch_size=400)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The server is still fine afterwards.
    acks = await push_envelopes(srv.address, envs[:10], batch_size=10)
    assert acks[0].accepted + acks[0].duplicates + sum(r.count for r in acks[0].rejected) == 10


async def test_full_commit_queue_answers_resource_exhausted_and_resend_completes(server_factory) -> None:
    # The writer waits 300 ms before each commit and the queue holds 100 envelopes: the second batch of a
    # stream cannot get in within 1 ms.
    srv = await server_factory(commit_queue_max_envelopes=100, queue_full_timeout_ms=1, flush_interval_ms=300)
    envs = synthetic_envelopes(200, seed=15)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await push_envelopes(srv.address, envs, batch_size=100)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert srv.metrics.registry.get_sample_value("mempulse_processd_resource_exhausted_total",
                                                 {"cause": "commit_queue_full"}) == 1
    assert srv.writer.queued_envelopes <= 100
    for _ in range(200):  # the first batch is still queued; let it commit
        if srv.writer.queued_envelopes == 0 and not srv.writer.committing:
            break
        await asyncio.sleep(0.05)
    # The resend (as ingestd does after an error) stores the rest exactly once.
    acks = await push_envelopes(srv.address, envs, batch_size=100, first_batch_seq=10, max_inflight=1)
    assert sum(a.accepted for a in acks) + sum(a.duplicates for a in acks) == 200
    events = await _all_events(srv)
    assert len([e for e in events if e.kind == SEEN]) == 200


async def test_analysis_failure_stores_the_tx_undecoded_and_keeps_going(tmp_path) -> None:
    from processd.analysis.analyzer import analyze
    from tests.processd._helpers import make_config

    envs = synthetic_envelopes(20, seed=16)
    poison = envs[7].hash

    def flaky(envelope):
        if envelope.hash == poison:
            raise RuntimeError("decoder bug")
        return analyze(envelope)

    srv = ProcessdServer(make_config(tmp_path / "lmdb"), analyze=flaky)
    await srv.start()
    try:
        acks = await push_envelopes(srv.address, envs, batch_size=10)
        assert sum(a.accepted for a in acks) == 20
        async with channel(srv.address) as ch:
            r = await query_stub(ch).GetTransaction(query_pb2.GetTransactionRequest(chain_id=envs[7].chain_id,
                                                                                    hash=poison))
        assert r.features.features.category == events_pb2.TX_CATEGORY_OTHER
        assert "decoder bug" in r.features.features.decode_error
        assert srv.metrics.registry.get_sample_value("mempulse_processd_analysis_errors_total") == 1
    finally:
        await srv.stop()


async def test_writer_failure_fails_pending_batches_and_signals(server: ProcessdServer, monkeypatch) -> None:
    import lmdb

    def broken(_group):
        raise lmdb.DiskError("injected I/O error")

    monkeypatch.setattr(server.writer, "_commit", broken)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await push_envelopes(server.address, synthetic_envelopes(10, seed=17), batch_size=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert server.writer.failed.is_set()  # __main__ exits 1 on this, for a supervisor to restart processd


async def test_number_of_chains_is_bounded(server_factory) -> None:
    srv = await server_factory(max_chains=2)
    envs = synthetic_envelopes(6, seed=18, chain_ids=(1, 137, 56))
    acks = await push_envelopes(srv.address, envs, batch_size=6)
    assert acks[0].accepted == 4
    assert [(r.reason, r.count) for r in acks[0].rejected] == [(ingest_pb2.REJECT_REASON_UNKNOWN_CHAIN, 2)]
    assert srv.models.chain_ids() == [1, 137]
