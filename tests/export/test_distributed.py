"""The distributed layout, locally: two ClickHouse servers as two shards of one cluster, Distributed tables
sharded by chain_id, the exporter writing through them; queries through either server see both shards."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from common.testing.clickhouse import CLUSTER, ClickHouseServer
from common.testing.ingest_push import push_batches, push_envelopes
from processd.api.server import ProcessdServer
from processd.export.config import ExportConfig
from processd.export.exporter import Exporter
from tests.export._helpers import check_export, envelopes, log_events, sighting_batch

pytestmark = pytest.mark.integration


async def test_two_shards_hold_the_log_split_by_chain(shards: tuple[ClickHouseServer, ClickHouseServer],
                                                      processd: ProcessdServer) -> None:
    first, second = shards
    addr = f"127.0.0.1:{processd.port}"
    envs = envelopes(900)
    await push_envelopes(addr, envs, batch_size=300)
    cfg = replace(ExportConfig(), processd=addr, clickhouse_host=first.host, clickhouse_port=first.port,
                  database="sharded", cluster=CLUSTER, batch_rows=800, flush_interval_ms=20, retry_backoff_ms=50)
    async with Exporter(cfg) as exporter:
        events = await asyncio.to_thread(log_events, addr)
        await asyncio.wait_for(exporter.wait_exported(events[-1].seq_id), 60)
        # live events go through the Distributed tables as well
        await push_batches(addr, [sighting_batch(envs[::4], batch_seq=1)])
        events = await asyncio.to_thread(log_events, addr)
        await asyncio.wait_for(exporter.wait_exported(events[-1].seq_id), 60)
    # through the Distributed tables of either server: the whole log, per chain, no duplicates (FINAL included)
    check_export(first.query, "sharded", events)
    check_export(second.query, "sharded", events)
    # each shard holds whole chains: chain_id % 2 picks the shard (56 -> the first, 1 and 137 -> the second)
    local = {name: {int(c): int(n) for c, n in server.query(
        "SELECT chain_id, count() FROM sharded.events_local GROUP BY chain_id")}
        for name, server in (("first", first), ("second", second))}
    per_chain: dict[int, int] = {}
    for ev in events:
        per_chain[ev.chain_id] = per_chain.get(ev.chain_id, 0) + 1
    assert local == {"first": {56: per_chain[56]}, "second": {1: per_chain[1], 137: per_chain[137]}}
    # a query answered across both shards: decoded transactions per chain through a join done on each shard
    rows = first.query("SELECT chain_id, count() FROM sharded.features WHERE decoded = 1 GROUP BY chain_id "
                       "ORDER BY chain_id")
    want = sorted((c, sum(1 for e in events if e.kind == 2 and e.chain_id == c and e.tx_decoded.features.decoded))
                  for c in per_chain)
    assert [(int(c), int(n)) for c, n in rows] == [w for w in want if w[1]]
