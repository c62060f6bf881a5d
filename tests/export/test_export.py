"""The exporter against a real processd and a real ClickHouse: rows equal the log, field by field for samples,
live tailing, and exact resume over a partly written batch."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest

from common.pb.v1 import block_pb2, events_pb2, pool_pb2
from common.testing.clickhouse import ClickHouseServer
from common.testing.ingest_push import push_batches, push_envelopes
from processd.api.server import ProcessdServer
from processd.export.config import ExportConfig
from processd.export.errors import ExportError, SchemaMismatch
from processd.export.exporter import Exporter
from processd.export.schema import CURSOR_TABLE
from tests.export._helpers import block_batch, check_export, envelopes, log_events, pool_batch, sighting_batch
from tests.processd._helpers import make_config
from tests.processd.test_lifecycle import _scenario as lifecycle_scenario

pytestmark = pytest.mark.integration


async def _fill(processd: ProcessdServer, count: int, start: int = 0) -> int:
    """Pushes ``count`` envelopes, then sightings of a third of them, blocks including them and pool states (every
    kind of the log); returns the last committed seq."""
    addr = f"127.0.0.1:{processd.port}"
    envs = envelopes(count, start=start)
    await push_envelopes(addr, envs, batch_size=250, session_id=f"fill{start}")
    await push_batches(addr, [sighting_batch(envs[::3], batch_seq=1 + start)])
    await push_batches(addr, [block_batch(envs[::2], batch_seq=1 + start), pool_batch(batch_seq=1 + start)])
    return (await asyncio.to_thread(log_events, addr))[-1].seq_id


@pytest.mark.parametrize("map_workers", [0, 2])
async def test_export_equals_the_log_then_tails_it(clickhouse: ClickHouseServer, processd: ProcessdServer,
                                                   export_config: ExportConfig, map_workers: int) -> None:
    """In-process and with batch workers (processd.export.workers) alike."""
    addr = f"127.0.0.1:{processd.port}"
    export_config = replace(export_config, map_workers=map_workers)
    last = await _fill(processd, 900)
    async with Exporter(export_config) as exporter:
        await asyncio.wait_for(exporter.wait_exported(last), 60)
        events = await asyncio.to_thread(log_events, addr)
        assert events[-1].seq_id == last
        check_export(clickhouse.query, export_config.database, events)
        # live: what is committed after catch-up arrives over SubscribeEvents
        last = await _fill(processd, 300, start=900)
        await asyncio.wait_for(exporter.wait_exported(last), 60)
        assert exporter.metrics.rows.labels("events")._value.get() == last
    events = await asyncio.to_thread(log_events, addr)
    check_export(clickhouse.query, export_config.database, events)
    db = export_config.database
    # the values, not just the keys: one row of each kind against its event
    seen = next(e for e in events if e.kind == 1)
    tx = seen.tx_seen.tx
    ((sender, to, value, nonce, input_len, first_seen),) = clickhouse.query(
        f"SELECT lower(hex(sender)), lower(hex(to_address)), value, nonce, input_len, toUnixTimestamp(first_seen) "
        f"FROM {db}.transactions WHERE seq = {seen.seq_id}")
    assert (sender, to, value, nonce, input_len) == (tx.sender.hex(), tx.to.hex(),
                                                     str(int.from_bytes(tx.value, "big")), tx.nonce, len(tx.input))
    assert first_seen == seen.first_seen_unix_ns // 10**9
    swap = next(e for e in events
                if e.kind == 2 and e.tx_decoded.features.category == 1 and len(e.tx_decoded.features.path) > 1)
    f = swap.tx_decoded.features
    ((amount_in, path, category, method),) = clickhouse.query(
        f"SELECT amount_in, arrayMap(a -> lower(hex(a)), path), toString(category), method FROM {db}.features "
        f"WHERE seq = {swap.seq_id}")
    assert (amount_in, path, method) == (str(int.from_bytes(f.amount_in, "big")), [p.hex() for p in f.path], f.method)
    assert category == "SWAP"
    opp = next(e for e in events if e.kind == 3).opp_detected.opportunity
    ((score, notional, kind),) = clickhouse.query(
        f"SELECT score, notional_wei, toString(kind) FROM {db}.opportunities WHERE seq = {opp.seq_id}")
    assert score == opp.score and kind.endswith("_CANDIDATE")
    assert notional == (str(int.from_bytes(opp.notional_wei, "big")) if opp.HasField("notional_wei") else None)
    src = next(e for e in events if e.kind == 4)
    ((source_id, tx_seq),) = clickhouse.query(f"SELECT source_id, tx_seq FROM {db}.tx_sources WHERE seq = {src.seq_id}")
    assert (source_id, tx_seq) == ("second", src.tx_source_seen.tx_seq_id)
    _check_blocks_and_pools(clickhouse, db, events)


def _check_blocks_and_pools(clickhouse: ClickHouseServer, db: str, events: list[events_pb2.Event]) -> None:
    """Every blocks and pool_states row, value by value, against its event."""
    blocks = {int(r[0]): r[1:] for r in clickhouse.query(
        f"SELECT seq, number, lower(hex(hash)), lower(hex(parent_hash)), toUnixTimestamp(timestamp), base_fee, "
        f"tx_count, seen_pending, truncated, arrayMap(h -> lower(hex(h)), tx_hashes), toUnixTimestamp(first_seen) "
        f"FROM {db}.blocks")}
    want_blocks = {}
    for e in events:
        if e.kind == events_pb2.EVENT_KIND_BLOCK:
            b = e.block.block
            want_blocks[e.seq_id] = (b.number, b.hash.hex(), b.parent_hash.hex(), b.timestamp,
                                     str(int.from_bytes(b.base_fee, "big")) if b.base_fee else None, b.tx_count,
                                     e.block.seen_pending, int(b.truncated), [t.hash.hex() for t in b.txs],
                                     e.first_seen_unix_ns // 10**9)
    assert want_blocks and blocks == want_blocks
    assert any(v[4] is None for v in blocks.values()) and any(v[6] > 0 for v in blocks.values())
    pools = {int(r[0]): r[1:] for r in clickhouse.query(
        f"SELECT seq, lower(hex(pair)), lower(hex(token0)), lower(hex(token1)), reserve0, reserve1, block_number, "
        f"lower(hex(block_hash)), toString(source) FROM {db}.pool_states")}
    want_pools = {}
    for e in events:
        if e.kind == events_pb2.EVENT_KIND_POOL_STATE:
            p = e.pool_state.state
            want_pools[e.seq_id] = (p.pair.hex(), p.token0.hex(), p.token1.hex(),
                                    str(int.from_bytes(p.reserve0, "big")), str(int.from_bytes(p.reserve1, "big")),
                                    p.block_number, p.block_hash.hex(),
                                    pool_pb2.PoolStateSource.Name(p.source).removeprefix("POOL_STATE_SOURCE_"))
    assert want_pools and pools == want_pools
    assert str(2**256 - 1) in {v[3] for v in pools.values()}  # a uint256 past Decimal's 38 digits, exact


@pytest.mark.parametrize("map_workers", [0, 1])
async def test_resume_rewrites_exactly_what_an_interrupted_batch_left_out(
        clickhouse: ClickHouseServer, processd: ProcessdServer, export_config: ExportConfig, map_workers: int) -> None:
    """A kill between the INSERTs of a batch leaves some tables with its rows past the cursor and some without:
    the next run inserts the missing ones and none twice."""
    addr = f"127.0.0.1:{processd.port}"
    last = await _fill(processd, 600)
    cfg = replace(export_config, exit_at_head=True, map_workers=map_workers)
    async with Exporter(cfg) as exporter:
        await asyncio.wait_for(exporter.wait_closed(), 60)
        assert exporter.exported_seq == last
        with pytest.raises(ExportError, match=f"ended at seq {last}"):  # a finished export fails its waiters
            await asyncio.wait_for(exporter.wait_exported(last + 1), 5)
    db = cfg.database
    # rewind the cursor into the middle of the log and take the rows past it out of two tables: the state a
    # kill after the events/opportunities INSERTs of a batch and before the others (and the cursor) leaves
    cut = last // 2
    clickhouse.query(f"DROP TABLE {db}.{CURSOR_TABLE}")
    for table in ("transactions", "tx_sources"):
        clickhouse.query(f"ALTER TABLE {db}.{table} DELETE WHERE seq >= {cut}")
    for _ in range(200):
        if not clickhouse.query(f"SELECT count() FROM system.mutations WHERE database = '{db}' AND is_done = 0")[0][0]:
            break
        await asyncio.sleep(0.05)
    async with Exporter(replace(cfg, create_schema=True)) as exporter:
        exporter.sink.ensure_schema()
        exporter.sink.execute(f"INSERT INTO {db}.{CURSOR_TABLE} (name, next_seq, schema_version, written) VALUES",
                              [(cfg.name, cut, 1, 0)])
    async with Exporter(cfg) as exporter:
        await asyncio.wait_for(exporter.wait_closed(), 60)
        skipped = exporter.metrics.skipped._value.get()
    assert skipped > 0  # the rows still there past the cursor were recognised, not inserted again
    check_export(clickhouse.query, db, await asyncio.to_thread(log_events, addr))


async def test_a_foreign_table_fails_the_export_and_its_waiters(
        clickhouse: ClickHouseServer, processd: ProcessdServer, export_config: ExportConfig) -> None:
    db = export_config.database
    clickhouse.query(f"CREATE DATABASE {db}")
    clickhouse.query(f"CREATE TABLE {db}.events (seq UInt64) ENGINE = Memory")
    last = await _fill(processd, 10)
    async with Exporter(export_config) as exporter:
        with pytest.raises(SchemaMismatch, match="events has columns"):
            await asyncio.wait_for(exporter.wait_exported(last), 30)


async def test_a_killed_mapping_worker_ends_the_session_and_the_next_one_finishes_exactly_once(
        clickhouse: ClickHouseServer, processd: ProcessdServer, export_config: ExportConfig) -> None:
    """SIGKILL of a batch worker: counted as a mapper failure, new workers, the export still equals the log."""
    addr = f"127.0.0.1:{processd.port}"
    last = await _fill(processd, 900)
    cfg = replace(export_config, exit_at_head=True, map_workers=1)
    async with Exporter(cfg) as exporter:
        assert exporter.mappers is not None
        for _ in range(600):  # the first session has started its worker
            if exporter.mappers.pids():
                break
            await asyncio.sleep(0.05)
        (pid,) = exporter.mappers.pids()
        os.kill(pid, signal.SIGKILL)
        await asyncio.wait_for(exporter.wait_closed(), 120)
        assert exporter.exported_seq == last
        assert exporter.metrics.failures.labels("mapper")._value.get() >= 1
        assert pid not in exporter.mappers.pids()
    check_export(clickhouse.query, cfg.database, await asyncio.to_thread(log_events, addr))


async def test_lifecycle_tables_hold_every_lifecycle_event(clickhouse: ClickHouseServer, tmp_path: Path,
                                                          export_config: ExportConfig) -> None:
    """The lifecycle scenario of tests/processd/test_lifecycle.py (included, replaced by a speed-up and by a block,
    dropped evicted / nonce passed / expired, a reorg and the re-inclusion after it) through a real processd: every
    lifecycle event is a row of its table, value by value."""
    server = ProcessdServer(make_config(tmp_path / "life", analysis_workers=0, lifecycle_ttl_ms=3_600_000))
    await server.start()
    try:
        addr = f"127.0.0.1:{server.port}"
        await lifecycle_scenario(addr)
        events = await asyncio.to_thread(log_events, addr)
        cfg = replace(export_config, processd=addr, exit_at_head=True)
        async with Exporter(cfg) as exporter:
            await asyncio.wait_for(exporter.wait_closed(), 60)
    finally:
        await server.stop(grace_s=0.5)
    check_export(clickhouse.query, cfg.database, events)
    db = cfg.database
    by_kind: dict[int, list[events_pb2.Event]] = {}
    for e in events:
        by_kind.setdefault(e.kind, []).append(e)
    assert {5, 6, 7, 9} <= set(by_kind), sorted(by_kind)
    got = clickhouse.query(f"SELECT seq, lower(hex(tx_hash)), block_number, lower(hex(block_hash)), tx_index, "
                           f"toString(status), inclusion_latency_ms, tx_seq, block_seq, reincluded, source_id "
                           f"FROM {db}.inclusions ORDER BY seq")
    assert [tuple(r) for r in got] == [
        (e.seq_id, e.tx_hash.hex(), b.block_number, b.block_hash.hex(), b.index,
         block_pb2.TxStatus.Name(b.status).removeprefix("TX_STATUS_"), b.inclusion_latency_ms, b.tx_seq_id,
         b.block_seq_id, int(b.reincluded), e.source_id) for e in by_kind[5] for b in [e.tx_included]]
    assert any(r[9] for r in got)  # the re-inclusion after the reorg
    got = clickhouse.query(f"SELECT seq, lower(hex(by_hash)), fee_bump_bps, cancel, tx_seq, by_block "
                           f"FROM {db}.replacements ORDER BY seq")
    assert [tuple(r) for r in got] == [(e.seq_id, b.by_hash.hex(), b.fee_bump_bps, int(b.cancel), b.tx_seq_id,
                                        int(b.by_block)) for e in by_kind[6] for b in [e.tx_replaced]]
    got = clickhouse.query(f"SELECT seq, toString(reason), tx_seq, source_id FROM {db}.drops ORDER BY seq")
    assert [tuple(r) for r in got] == [
        (e.seq_id, events_pb2.DropReason.Name(b.reason).removeprefix("DROP_REASON_"), b.tx_seq_id, b.source_id)
        for e in by_kind[7] for b in [e.tx_dropped]]
    assert {r[1] for r in got} == {"EVICTED", "NONCE_PASSED", "EXPIRED"}
    got = clickhouse.query(f"SELECT seq, number, lower(hex(new_hash)), depth, "
                           f"arrayMap(h -> lower(hex(h)), orphaned_hashes), unincluded, too_deep, "
                           f"toUnixTimestamp(received) FROM {db}.reorgs ORDER BY seq")
    assert [tuple(r) for r in got] == [
        (e.seq_id, r.number, r.new_hash.hex(), r.depth, [h.hex() for h in r.orphaned_hashes], r.unincluded,
         int(r.too_deep), e.received_unix_ns // 10**9) for e in by_kind[9] for r in [e.reorg]]
