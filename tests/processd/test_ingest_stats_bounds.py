"""ChainIngestStats on Ingest.Stream are bounded in bytes (issue 14): a real in-process processd and gRPC stream.

Before the bounds, processd kept every entry as sent (30 messages of 10 MB: 401 MiB -> 1.5 GiB RSS) and the
snapshots embedding them grew without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from common.pb.v1 import ingest_pb2, ingest_pb2_grpc, query_pb2
from common.testing.ingest_push import channel
from common.testing.synth import synthetic_envelopes
from processd.api.server import ProcessdServer
from processd.views.ingest_stats import IngestStatsStore, StatsLimits
from tests.processd._helpers import query_stub


def _stats(chain_id: int, sources: int = 1, source_chars: int = 20, reason: str = "fetch_queue_full",
           seen: int = 10) -> ingest_pb2.ChainIngestStats:
    return ingest_pb2.ChainIngestStats(
        chain_id=chain_id, seen=seen, delivered=seen - 2,
        dropped=[ingest_pb2.DropCount(reason=reason, count=2)],
        sources=[ingest_pb2.SourceHealth(source_id=f"{i:0{source_chars}d}", connected=True) for i in range(sources)])


def _rejected(srv: ProcessdServer, reason: str) -> float:
    value = srv.metrics.registry.get_sample_value("mempulse_processd_ingest_stats_rejected_total", {"reason": reason})
    return value or 0.0


async def test_oversized_stats_are_rejected_counted_and_the_batch_still_stored(server: ProcessdServer) -> None:
    envs = synthetic_envelopes(20, seed=41, chain_ids=(1,))
    huge_sources = _stats(1, sources=20_000, source_chars=200)  # ~4.5 MB: too many sources
    long_reason = _stats(1, reason="x" * 100_000)  # one 100 kB drop reason
    # 8 MB of unknown fields (field 99, length-delimited): held byte for byte by a plain protobuf copy.
    padded = ingest_pb2.ChainIngestStats.FromString(_stats(1).SerializeToString() + b'\x9a\x06\x80\xa4\xe8\x03'
                                                    + b"\x00" * 8_000_000)
    batches = [
        ingest_pb2.TxBatch(session_id="evil-1", batch_seq=1, envelopes=envs[:10], chain_stats=[huge_sources]),
        ingest_pb2.TxBatch(session_id="evil-2", batch_seq=2, envelopes=envs[10:], chain_stats=[long_reason]),
        ingest_pb2.TxBatch(session_id="evil-3", batch_seq=3, chain_stats=[padded]),
        ingest_pb2.TxBatch(session_id="x" * 1_000_000, batch_seq=4, chain_stats=[_stats(1)]),
        ingest_pb2.TxBatch(session_id="good", batch_seq=5, chain_stats=[_stats(1, seen=7)]),
    ]
    sent_all = asyncio.Event()
    keep_open = asyncio.Event()

    async def requests() -> AsyncIterator[ingest_pb2.TxBatch]:
        for batch in batches:
            yield batch
        sent_all.set()
        await keep_open.wait()  # stats are held only while their session's stream is open

    async with channel(server.address) as ch:
        call = ingest_pb2_grpc.IngestStub(ch).Stream(requests(), timeout=60)
        acks = [await call.read() for _ in batches]
        # The transactions of the batches that carried bad stats are all stored.
        assert sum(a.accepted for a in acks) == 20
        snap = await query_stub(ch).GetSnapshot(query_pb2.GetSnapshotRequest(chain_id=1), timeout=10)
        keep_open.set()
    totals = snap.chains[0]
    assert totals.tx_count == 20
    # Only the valid sessions' counters are held and summed (the padded one without its unknown fields); the
    # snapshot stays small.
    assert totals.ingest.seen == 10 + 7 and [s.source_id for s in totals.ingest.sources] == ["0" * 20] * 2
    assert snap.ByteSize() < 64 * 1024
    models = server.models.ingest_stats
    assert len(models) == 2 and models.total_bytes < 1024
    assert _rejected(server, "too_many_items") == 1
    assert _rejected(server, "bad_string") == 1
    assert _rejected(server, "bad_session_id") == 1
    assert server.metrics.registry.get_sample_value("mempulse_processd_ingest_stats_bytes") == models.total_bytes


def test_store_bounds_per_message_per_chain_and_total() -> None:
    seen: list[tuple[str, int]] = []
    limits = StatsLimits(max_entry_bytes=2048, max_entries_per_message=4, max_message_bytes=3000,
                         max_chain_bytes=4000, max_entries=100, max_total_bytes=10_000)
    store = IngestStatsStore(limits, on_reject=lambda reason, count, detail: seen.append((reason, count)))
    store.update("a", [_stats(c, sources=40) for c in range(1, 7)])  # 6 entries of ~1.1 kB
    # 4 read (2 over the message's bytes), 2 beyond the count bound.
    assert ("message_too_many_entries", 2) in seen and seen.count(("message_too_large", 1)) == 2
    assert len(store) == 2
    for session in "bcdefg":  # each chain holds at most max_chain_bytes over its sessions: older ones go
        store.update(session, [_stats(1, sources=40)])
    assert store.chain_bytes[1] <= 4000 and ("evicted_chain_bytes", 1) in seen
    for chain_id in range(10, 40):
        store.update("h", [_stats(chain_id, sources=40)])
    assert store.total_bytes <= 10_000 and ("evicted_total", 1) in seen
    assert sum(store.chain_bytes.values()) == store.total_bytes
    store.end_session("h")
    assert all(k[0] != "h" for k in store.entries) and sum(store.chain_bytes.values()) == store.total_bytes
    assert store.update("i", [_stats(1, sources=1000)]) is None and ("too_many_items", 1) in seen
