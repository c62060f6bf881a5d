"""Schema upgrades and kinds the exporter does not know, against a real processd and real ClickHouse servers:

* tables of schema 1 (``events.kind`` without BLOCK and POOL_STATE, no blocks / pool_states tables), holding an
  older exporter's rows with a batch half written past its cursor, are upgraded in place at start (one server, and
  two shards behind Distributed tables) and the export goes on exactly once, new kinds included;
* an ``events.kind`` that is not a subset of ours stays a SchemaMismatch;
* a kind this exporter's proto does not know (what a newer processd writes) still gets its events row, as
  UNSPECIFIED, counted and logged once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from dataclasses import replace

import pytest
from clickhouse_driver import Client

from common.pb.v1 import events_pb2
from common.testing.clickhouse import CLUSTER, ClickHouseServer
from common.testing.ingest_push import push_batches, push_envelopes
from processd.api.server import ProcessdServer
from processd.export import colmap, mapper
from processd.export.config import ExportConfig
from processd.export.errors import SchemaMismatch
from processd.export.exporter import Exporter
from processd.export.schema import (
    CURSOR_TABLE,
    EVENTS,
    FEATURES,
    OPPORTUNITIES,
    SCHEMA_VERSION,
    TRANSACTIONS,
    TX_SOURCES,
    Table,
    cursor_ddl,
    distributed_ddl,
    insert_sql,
    local_name,
    storage_ddl,
)
from processd.export.sink import upgrade_enums
from tests.export._helpers import block_batch, check_export, envelopes, log_events, pool_batch, sighting_batch

pytestmark = pytest.mark.integration

#: The ``events.kind`` of schema 1, as the previous exporter declared it.
V1_KIND = "Enum8('UNSPECIFIED' = 0, 'TX_SEEN' = 1, 'TX_DECODED' = 2, 'OPP_DETECTED' = 3, 'TX_SOURCE_SEEN' = 4)"
V1_EVENTS = replace(EVENTS, columns=tuple((n, V1_KIND if n == "kind" else k) for n, k in EVENTS.columns))
#: The tables of schema 1 (the other four have not changed since).
V1_TABLES: tuple[Table, ...] = (TRANSACTIONS, FEATURES, OPPORTUNITIES, TX_SOURCES, V1_EVENTS)
#: Tables that a kill of the old exporter in the middle of its last batch left holding that batch's rows.
PARTIAL = ("opportunities", "events")


def _client(server: ClickHouseServer) -> Client:
    return Client(server.host, port=server.port, settings={"insert_distributed_sync": 1})


def _old_export(servers: Sequence[ClickHouseServer], db: str, cluster: str, events: Sequence[events_pb2.Event],
                cut: int, name: str = "default") -> None:
    """What the schema-1 exporter left: its tables (on every server), the rows of ``events`` below ``cut`` in every
    table, those from ``cut`` on in :data:`PARTIAL` only (killed between INSERTs), its cursor at ``cut``."""
    for server in servers:
        client = _client(server)
        client.execute(f"CREATE DATABASE `{db}`")
        for table in V1_TABLES:
            client.execute(storage_ddl(db, table, cluster))
            if cluster:
                client.execute(distributed_ddl(db, table, cluster))
        client.disconnect()
    client = _client(servers[0])
    client.execute(cursor_ddl(db))
    rows = mapper.rows_of(events)
    for table in V1_TABLES:
        keep = [r for r in rows[table.name] if r[1] < cut or table.name in PARTIAL]
        if keep:
            client.execute(insert_sql(db, table), [list(c) for c in zip(*keep, strict=True)], columnar=True)
    client.execute(f"INSERT INTO `{db}`.`{CURSOR_TABLE}` (name, next_seq, schema_version, written) VALUES",
                   [(name, cut, 1, 0)])
    client.disconnect()


async def _fill_old_then_new(processd: ProcessdServer) -> tuple[list[events_pb2.Event], list[events_pb2.Event]]:
    """A log of schema-1 kinds only, then blocks and pool states after it: (the first part, the whole log)."""
    addr = f"127.0.0.1:{processd.port}"
    envs = envelopes(600)
    await push_envelopes(addr, envs, batch_size=200)
    await push_batches(addr, [sighting_batch(envs[::3], batch_seq=1)])
    old = await asyncio.to_thread(log_events, addr)
    await push_batches(addr, [block_batch(envs[::2], batch_seq=1), pool_batch(batch_seq=1)])
    return old, await asyncio.to_thread(log_events, addr)


def _kind_types(server: ClickHouseServer, db: str) -> dict[str, str]:
    return {str(t): str(k) for t, k in server.query(
        "SELECT table, type FROM system.columns WHERE database = %(db)s AND name = 'kind' AND table LIKE 'events%%'",
        {"db": db})}


async def _export_upgraded(cfg: ExportConfig, servers: Sequence[ClickHouseServer], processd: ProcessdServer) -> None:
    addr = f"127.0.0.1:{processd.port}"
    old, events = await _fill_old_then_new(processd)
    cut = old[len(old) // 2].seq_id
    _old_export(servers, cfg.database, cfg.cluster, old[:len(old) * 3 // 4], cut)
    assert set(_kind_types(servers[0], cfg.database).values()) == {V1_KIND}
    async with Exporter(replace(cfg, exit_at_head=True)) as exporter:
        await asyncio.wait_for(exporter.wait_closed(), 90)
        assert exporter.exported_seq == events[-1].seq_id
        assert exporter.metrics.skipped._value.get() > 0  # the half-written batch was recognised, not inserted twice
        assert exporter.metrics.rows.labels("blocks")._value.get() > 0
    want = dict(EVENTS.columns)["kind"].replace(" ", "")
    for server in servers:  # events (and events_local on each shard) hold every kind now
        types = _kind_types(server, cfg.database)
        assert types and {t.replace(" ", "") for t in types.values()} == {want}, types
        check_export(server.query, cfg.database, events)
    # a later run finds cursor rows of both versions and goes on tailing
    await push_batches(addr, [pool_batch(batch_seq=2)])
    events = await asyncio.to_thread(log_events, addr)
    async with Exporter(replace(cfg, exit_at_head=True)) as exporter:
        await asyncio.wait_for(exporter.wait_closed(), 60)
    versions = servers[0].query(f"SELECT DISTINCT schema_version FROM {cfg.database}.{CURSOR_TABLE}")
    assert sorted(int(v) for (v,) in versions) == [1, SCHEMA_VERSION]
    for server in servers:
        check_export(server.query, cfg.database, events)


async def test_a_schema_1_table_is_upgraded_in_place_and_the_export_goes_on_exactly_once(
        clickhouse: ClickHouseServer, processd: ProcessdServer, export_config: ExportConfig) -> None:
    await _export_upgraded(export_config, [clickhouse], processd)


async def test_schema_1_shards_and_distributed_tables_are_upgraded_in_place(
        shards: tuple[ClickHouseServer, ClickHouseServer], processd: ProcessdServer,
        export_config: ExportConfig) -> None:
    first, _ = shards
    cfg = replace(export_config, clickhouse_host=first.host, clickhouse_port=first.port, database="upgraded",
                  cluster=CLUSTER)
    await _export_upgraded(cfg, shards, processd)
    assert local_name(EVENTS, CLUSTER) in _kind_types(first, "upgraded")


def test_the_enum_upgrade_rewrites_no_part_and_is_idempotent(clickhouse: ClickHouseServer) -> None:
    """The ALTER is a metadata change on 18.16: the active parts keep their names and times, the rows read back."""
    db = "enum_upgrade"
    client = _client(clickhouse)
    client.execute(f"CREATE DATABASE {db}")
    client.execute(storage_ddl(db, V1_EVENTS))
    client.execute(f"INSERT INTO {db}.events (chain_id, seq, kind) SELECT number % 3, number, number % 5 "
                   "FROM system.numbers LIMIT 200000")
    parts = f"SELECT name, modification_time FROM system.parts WHERE database = '{db}' AND active ORDER BY name"
    before = client.execute(parts)
    assert upgrade_enums(client.execute, db, "", "test") == ["events.kind"]
    assert client.execute(parts) == before
    assert upgrade_enums(client.execute, db, "", "test") == []
    assert {str(k): int(n) for k, n in client.execute(f"SELECT kind, count() FROM {db}.events GROUP BY kind")} == {
        "UNSPECIFIED": 40000, "TX_SEEN": 40000, "TX_DECODED": 40000, "OPP_DETECTED": 40000, "TX_SOURCE_SEEN": 40000}
    client.execute(f"INSERT INTO {db}.events (chain_id, seq, kind) VALUES", [(1, 200000, "BLOCK")])
    client.disconnect()


async def test_an_enum_that_is_not_a_subset_of_ours_stays_a_mismatch(
        clickhouse: ClickHouseServer, processd: ProcessdServer, export_config: ExportConfig) -> None:
    db = export_config.database
    clashing = V1_KIND.replace("'TX_SOURCE_SEEN' = 4", "'TX_SOURCE_SEEN' = 4, 'SOMETHING_ELSE' = 8")
    clickhouse.query(f"CREATE DATABASE {db}")
    clickhouse.query(storage_ddl(db, replace(EVENTS, columns=tuple(
        (n, clashing if n == "kind" else k) for n, k in EVENTS.columns))))
    async with Exporter(export_config) as exporter:
        with pytest.raises(SchemaMismatch, match="events has columns"):
            await asyncio.wait_for(exporter.wait_exported(1), 30)
    assert "SOMETHING_ELSE" in _kind_types(clickhouse, db)["events"]  # left as it was


async def test_a_kind_the_exporter_does_not_know_is_exported_as_unspecified_and_counted(
        clickhouse: ClickHouseServer, processd: ProcessdServer, export_config: ExportConfig,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """POOL_STATE taken out of the mapper's kinds: what an exporter built before it sees of a newer processd's log."""
    pool = events_pb2.EVENT_KIND_POOL_STATE
    monkeypatch.delitem(mapper.KIND_NAMES, pool)
    monkeypatch.delitem(mapper.DETAIL, pool)
    monkeypatch.delitem(mapper._DETAIL_COLUMNS, pool)
    # the C mapper's plan (its kinds' names) built again from the mapper's kinds, for this test only
    monkeypatch.setattr(colmap, "plan", functools.cache(colmap.plan.__wrapped__))
    addr = f"127.0.0.1:{processd.port}"
    envs = envelopes(300)
    await push_envelopes(addr, envs, batch_size=100)
    await push_batches(addr, [pool_batch(batch_seq=1), block_batch(envs, batch_seq=1), pool_batch(batch_seq=2)])
    events = await asyncio.to_thread(log_events, addr)
    pools = {e.seq_id for e in events if e.kind == pool}
    assert pools
    with caplog.at_level(logging.WARNING, logger="processd.export.exporter"):
        async with Exporter(replace(export_config, exit_at_head=True, batch_rows=100)) as exporter:
            await asyncio.wait_for(exporter.wait_closed(), 60)
            assert exporter.exported_seq == events[-1].seq_id
            assert exporter.metrics.unknown_kinds._value.get() == len(pools)
    warnings = [r for r in caplog.records if "does not know" in r.getMessage()]
    assert len(warnings) == 1 and f"seq {min(pools)}" in warnings[0].getMessage()
    db = export_config.database
    kinds = {int(s): str(k) for s, k in clickhouse.query(f"SELECT seq, kind FROM {db}.events")}
    assert set(kinds) == {e.seq_id for e in events}  # complete by seq
    assert {s for s, k in kinds.items() if k == "UNSPECIFIED"} == pools
    assert clickhouse.query(f"SELECT count() FROM {db}.pool_states") == [(0,)]
