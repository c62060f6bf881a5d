"""``./scripts/demo --export clickhouse``'s parts: the status line's export part from the exporter's metrics, and
DemoExport running a real ClickHouse and mempulse-export beside a real processd until the log is exported."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from clickhouse_driver import Client

from common.testing.demo import build_parser
from common.testing.demo_export import DemoExport, export_status, parse_export_metrics
from common.testing.ingest_push import push_envelopes
from tests.export._helpers import envelopes, require_clickhouse
from tests.reliability._support import ProcessdProc


def test_status_part_from_the_exporter_metrics() -> None:
    text = ("# HELP mempulse_export_lag_seconds ...\nmempulse_export_lag_seconds 0.25\n"
            "mempulse_export_exported_seq 120.0\nmempulse_export_head_seq 130.0\nmempulse_export_batches_total 3.0\n")
    metrics = parse_export_metrics(text)
    assert metrics == {"mempulse_export_lag_seconds": 0.25, "mempulse_export_exported_seq": 120.0,
                       "mempulse_export_head_seq": 130.0}
    assert export_status(metrics) == "export lag 0.25 s, seq 120/130"
    assert export_status({"mempulse_export_head_seq": 7.0}) == "export starting (seq 0/7)"


def test_the_default_demo_has_no_export() -> None:
    assert build_parser().parse_args([]).export is None
    assert build_parser().parse_args(["--export", "clickhouse"]).export == "clickhouse"


@pytest.mark.integration
def test_demo_export_follows_the_log(tmp_path: Path) -> None:
    require_clickhouse()
    proc = ProcessdProc(tmp_path / "lmdb", tmp_path / "processd.log", "--analysis-workers", "0")
    try:
        proc.start()
        acks = asyncio.run(push_envelopes(proc.addr, envelopes(300)))
        head = max(a.last_seq_id for a in acks)
        with DemoExport(tmp_path / "clickhouse", proc.addr, tmp_path) as export:
            deadline = time.monotonic() + 60
            while export.metrics().get("mempulse_export_exported_seq", 0) < head:
                assert time.monotonic() < deadline, export.exporter.log_tail()
                time.sleep(0.1)
            assert export.status().startswith("export lag ") and f"seq {head}/{head}" in export.status()
            client = Client(export.clickhouse.host, port=export.clickhouse.port)
            assert client.execute("SELECT count(), max(seq) FROM mempulse.events") == [(head, head)]
            client.disconnect()
        assert not export.exporter.alive and not export.clickhouse.alive
    finally:
        proc.stop()
