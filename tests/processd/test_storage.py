"""Storage limits with a real LMDB: map growth, storage_full rejects without crash, retention pruning."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from common.pb.v1 import events_pb2, ingest_pb2, query_pb2
from common.testing.ingest_push import channel, push_envelopes
from common.testing.synth import synthetic_envelopes
from processd.api.server import ProcessdServer
from processd.storage.eventlog import META_SCHEMA, SCHEMA_VERSION, U32, EventLog, ScanStats, StorageError
from tests.processd._helpers import query_stub

STORAGE_FULL = ingest_pb2.REJECT_REASON_STORAGE_FULL


def _full(acks: list[ingest_pb2.IngestAck]) -> int:
    return sum(r.count for a in acks for r in a.rejected if r.reason == STORAGE_FULL)


async def test_map_grows_when_allowed(server_factory) -> None:
    srv: ProcessdServer = await server_factory(map_size_mb=1, map_max_size_mb=64)
    acks = await push_envelopes(srv.address, synthetic_envelopes(6000, seed=61), batch_size=500)
    assert _full(acks) == 0 and sum(a.accepted for a in acks) == 6000
    assert srv.writer.map_grows >= 1 and srv.eventlog.map_size_bytes > 1 << 20
    assert srv.metrics.registry.get_sample_value("mempulse_processd_map_grows_total") == srv.writer.map_grows


async def test_map_full_rejects_storage_full_and_stays_up(server_factory) -> None:
    srv: ProcessdServer = await server_factory(map_size_mb=1, map_max_size_mb=1)
    envs = synthetic_envelopes(6000, seed=62)
    # One batch in flight: every group commit is exactly one batch, so which batches were rejected is
    # deterministic (with several in flight the split depends on how the writer happened to group them).
    acks = await push_envelopes(srv.address, envs, batch_size=200, max_inflight=1)
    full = _full(acks)
    accepted = sum(a.accepted for a in acks)
    assert full > 0 and accepted > 0 and full + accepted == 6000
    for a in acks:  # a rejected batch stored nothing and claims no seqs
        if any(r.reason == STORAGE_FULL for r in a.rejected):
            assert a.accepted == 0 and a.first_seq_id == 0 and a.last_seq_id == 0
    assert srv.metrics.registry.get_sample_value("mempulse_processd_rejects_total", {"reason": "storage_full"}) == full
    # Still serving reads, and the stored part is intact and contiguous.
    async with channel(srv.address) as ch:
        q = query_stub(ch)
        snap = await q.GetSnapshot(query_pb2.GetSnapshotRequest())
        assert sum(c.tx_count for c in snap.chains) == accepted
        r = await q.ScanEvents(query_pb2.ScanEventsRequest(from_seq_id=1, limit=5000))
        assert [e.seq_id for e in r.events] == list(range(1, len(r.events) + 1))
    # Resending a rejected batch later is still answered (storage_full again, never a crash): the log only
    # grew since it was rejected.
    first_rejected = next(i for i, a in enumerate(acks) if any(r.reason == STORAGE_FULL for r in a.rejected))
    again = await push_envelopes(srv.address, envs[first_rejected * 200:(first_rejected + 1) * 200],
                                 batch_size=200, first_batch_seq=1000)
    assert _full(again) == 200


async def test_retention_by_count_prunes_oldest_and_keeps_indexes_consistent(server_factory) -> None:
    srv: ProcessdServer = await server_factory(retention_max_events=1000)
    envs = synthetic_envelopes(3000, seed=63)
    await push_envelopes(srv.address, envs, batch_size=100)
    last = srv.models.last_seq
    first = srv.eventlog.first_seq()
    # The bound plus the slack of one commit (pruning happens in the commit that crosses the bound).
    assert last - first + 1 <= 1000 + 5 * 100
    async with channel(srv.address) as ch:
        q = query_stub(ch)
        r = await q.ScanEvents(query_pb2.ScanEventsRequest(from_seq_id=1, limit=5000))
        assert r.events[0].seq_id == first and [e.seq_id for e in r.events] == list(range(first, last + 1))
        assert r.events[0].kind == events_pb2.EVENT_KIND_TX_SEEN  # transactions are pruned whole
        r137 = await q.ScanEvents(query_pb2.ScanEventsRequest(chain_id=137, limit=5000))
        assert [e.seq_id for e in r137.events] == [e.seq_id for e in r.events if e.chain_id == 137]
        retained = {(e.chain_id, e.tx_hash) for e in r.events if e.kind == events_pb2.EVENT_KIND_TX_SEEN}
        snap = await q.GetSnapshot(query_pb2.GetSnapshotRequest())
        assert sum(c.replay.pending_count for c in snap.chains) == len(retained)
        assert sum(c.tx_count for c in snap.chains) == 3000  # cumulative totals survive pruning
        oldest = envs[0]
        try:
            await q.GetTransaction(query_pb2.GetTransactionRequest(chain_id=oldest.chain_id, hash=oldest.hash))
            raise AssertionError("pruned transaction still found")
        except Exception as exc:  # NOT_FOUND
            assert "not found" in str(exc)
    with srv.eventlog.begin() as txn:
        tx_keys = sum(1 for _ in txn.cursor(db=srv.eventlog.tx_db))
        chain_keys = sum(1 for _ in txn.cursor(db=srv.eventlog.chain_db))
    assert tx_keys == len(retained) and chain_keys == len(retained)  # one chain_seq entry per transaction


async def test_retention_by_age(server_factory) -> None:
    srv: ProcessdServer = await server_factory(retention_max_age_s=1)
    await push_envelopes(srv.address, synthetic_envelopes(300, seed=64), batch_size=100)
    import asyncio

    await asyncio.sleep(1.2)
    await push_envelopes(srv.address, synthetic_envelopes(10, seed=65), batch_size=10, session_id="late")
    # Everything older than a second went in the commit of the late batch.
    assert srv.eventlog.first_seq() > 600


def test_a_log_of_another_schema_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    """A directory written by a processd of another schema (1: seqs inside values) is never read as schema 2."""
    log = EventLog(tmp_path / "lmdb", 1 << 20).open()
    assert log.env is not None
    with log.env.begin(write=True) as txn:
        txn.put(META_SCHEMA, U32.pack(1), db=log.meta_db)
    log.close()
    with pytest.raises(StorageError, match="schema version 1, this processd reads 2"):
        EventLog(tmp_path / "lmdb", 1 << 20).open()
    assert SCHEMA_VERSION == 2


def test_one_writer_per_data_dir(tmp_path: Path) -> None:
    """A second EventLog on a held data dir is refused (it would keep its own seq counter and overwrite the
    first one's events); the lock goes with close(), and with a refused open() too."""
    first = EventLog(tmp_path / "lmdb", 1 << 20).open()
    with pytest.raises(StorageError, match="in use by another processd"):
        EventLog(tmp_path / "lmdb", 1 << 20).open()
    first.close()
    first.close()  # idempotent
    again = EventLog(tmp_path / "lmdb", 1 << 20).open()
    assert again.last_seq() == 0
    again.close()


@pytest.mark.parametrize("part", ["blocks", "gone", "pools"])
async def test_a_storage_full_batch_of_blocks_gone_reports_or_pool_states_only_is_counted_for_a_resend(
        part: str) -> None:
    """A batch without envelopes that the writer refused as storage_full must say so in its ack (ingestd resends a
    batch whose ack counts STORAGE_FULL, and drops it otherwise): a batch of TxGone reports only was acked as if
    applied, and its reports were lost."""
    from common.pb.v1 import block_pb2, pool_pb2
    from processd.pipeline import PendingBatch
    from processd.storage.writer import CommitJob

    loop = asyncio.get_running_loop()
    items = {"blocks": [block_pb2.BlockEnvelope(chain_id=1, number=1)] * 2,
             "gone": [(1, b"\x01" * 32, "s", 1)] * 2,
             "pools": [pool_pb2.PoolState(chain_id=1)] * 2}
    job = CommitJob(batch_seq=7, envelopes=0, received_ns=1, prepared=loop.create_future(),
                    done=loop.create_future(), **{part: items[part]})  # type: ignore[arg-type]
    job.storage_full = True
    ack = PendingBatch(batch_seq=7, envelopes=(), received_ns=1, job=job).ack()
    assert _full([ack]) == 2


async def test_the_unfiltered_scan_fast_path_pages_as_the_generic_walk(server_factory) -> None:
    """ScanEvents without a filter steps the cursor at C level (EventLog._scan_plain): the same pages, cursor and
    counters as the generic walk (forced here with a ``keep`` that keeps everything), at every page edge: the
    limit, the examined bound, the byte budget, the end of the log, a start past it."""
    srv = await server_factory()
    await push_envelopes(srv.address, synthetic_envelopes(60, seed=4), batch_size=25)
    log = srv.eventlog
    last = log.last_seq()
    sizes = []
    with log.begin() as txn:
        for from_seq, limit, examined, max_bytes in ((1, 1000, 20000, 0), (1, 7, 20000, 0), (5, 50, 9, 0),
                                                     (last - 3, 10, 20000, 0), (last + 1, 10, 20000, 0),
                                                     (0, 40, 20000, 3000), (2, 40, 20000, 1)):
            pages = []
            for keep in (None, lambda _txn, _seq: True):
                stats = ScanStats()
                out = log.scan_as(lambda value, seq: (seq, bytes(value)), txn, from_seq, limit, stats=stats,
                                  max_examined=examined, max_bytes=max_bytes, keep=keep)
                pages.append((out, stats))
            assert pages[0] == pages[1], (from_seq, limit, examined, max_bytes)
            sizes.append(len(pages[0][0][0]))
    assert sizes == [last, 7, 9, 4, 0, sizes[5], 1] and 1 < sizes[5] < 40 and last > 60
