"""Fixtures of the exporter tests: a real ClickHouse server (one per module, a database per test) and a real
in-process processd with its LMDB log in tmp_path."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from common.testing.clickhouse import ClickHouseServer, shard_pair
from processd.api.server import ProcessdServer
from processd.export.config import ExportConfig
from tests.export._helpers import require_clickhouse
from tests.processd._helpers import make_config

_databases = itertools.count(1)


@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseServer]:
    """One running clickhouse-server for the module (tests isolate themselves by database)."""
    require_clickhouse()
    server = ClickHouseServer(tmp_path_factory.mktemp("clickhouse"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def shards(tmp_path: Path) -> Iterator[tuple[ClickHouseServer, ClickHouseServer]]:
    """Two running clickhouse-servers, the two shards of the cluster ``mempulse_shards``."""
    require_clickhouse()
    pair = shard_pair(tmp_path / "shards")
    try:
        for server in pair:
            server.start()
        yield pair
    finally:
        for server in pair:
            server.stop()


@pytest.fixture
async def processd(tmp_path: Path) -> AsyncIterator[ProcessdServer]:
    """A running processd (analysis in-process: the machine's cores are shared)."""
    server = ProcessdServer(make_config(tmp_path / "lmdb", analysis_workers=0))
    await server.start()
    yield server
    await server.stop(grace_s=0.5)


@pytest.fixture
def export_config(clickhouse: ClickHouseServer, processd: ProcessdServer) -> ExportConfig:
    """An exporter config for this test's own database, small batches so a test spans several."""
    return replace(ExportConfig(), processd=f"127.0.0.1:{processd.port}",
                   clickhouse_host=clickhouse.host, clickhouse_port=clickhouse.port,
                   database=f"export_test_{next(_databases)}", batch_rows=700, flush_interval_ms=20,
                   scan_page_events=500, retry_backoff_ms=50)
