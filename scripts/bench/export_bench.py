"""Export benchmark: mempulse-export's throughput and CPU per row next to a plain clickhouse-driver bulk insert of
the same rows (the floor), and its lag behind the live log at the demo rate. Writes ``artifacts/perf/export.json``.

One run, one machine, one ClickHouse server (Debian's 18.16, started here on free ports):

1. processd (a subprocess) gets ``--tx`` synthetic transactions on three chains, plus later-source sightings of a
   third of them; its log is then read once with ScanEvents and mapped to rows (before any clock starts).
2. **floor**: those rows inserted with clickhouse-driver, one INSERT per table holding every row, into an empty
   database: the cost of getting the rows into ClickHouse at all.
3. **export**: the exporter (in this process, so its CPU is this process's CPU: ``time.process_time``) exports
   the same log from processd into another empty database, ``--exit-at-head``, default batch size. Its work on
   top of the floor: ScanEvents pages over gRPC, protobuf parsing, the mapping, batching, the cursor.
   2. and 3. alternate ``--repeat`` times (3), each into an empty database; the medians are reported.
4. **lag**: the exporter tails the log while transactions arrive at the demo rate (``--rate``, 50 tx/s, in
   batches every 100 ms like ingestd's); each event's lag = when its batch was written to ClickHouse - when
   processd received it. p50/p99/max over every event.

Target (issue 21): export throughput >= 50% of the floor, lag p99 < 2 s.

    python -m scripts.bench.export_bench            # 20k transactions, 30 s of live traffic
    python -m scripts.bench.export_bench --short    # 5k, 10 s
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from common.pb.v1 import ingest_pb2, tx_pb2
from common.testing.clickhouse import ClickHouseServer
from common.testing.ingest_push import push_batches, push_envelopes
from common.testing.process import ManagedProcess, child_env, python_module_argv
from common.testing.synth import synthetic_envelopes
from processd.export.config import ExportConfig
from processd.export.exporter import Exporter
from processd.export.mapper import Columns, Row, rows_of
from processd.export.schema import DATA_TABLES, insert_sql
from processd.export.sink import ClickHouseSink
from scripts.bench.harness import REPO_ROOT, percentile, ratio, write_artifact

CHAINS = (1, 137, 56)


def _serving(addr: str) -> bool:
    """True once processd answers grpc.health.v1 Check with SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(addr) as channel:
        try:
            resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1.0)
        except grpc.RpcError:
            return False
        return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)


def _processd(root: Path) -> tuple[ManagedProcess, str]:
    from common.testing.netutil import free_port

    port = free_port()
    addr = f"127.0.0.1:{port}"
    proc = ManagedProcess("processd", python_module_argv(
        "processd", "--data-dir", str(root / "lmdb"), "--listen", addr, "--durability", "nosync",
        "--flush-interval-ms", "2"), root / "processd.log", env=child_env(), cwd=REPO_ROOT,
        ready=lambda: _serving(addr), ready_timeout_s=60)
    return proc, addr


def _sightings(envs: list[tx_pb2.TxEnvelope], batch_seq: int) -> ingest_pb2.TxBatch:
    return ingest_pb2.TxBatch(session_id="bench-sightings", batch_seq=batch_seq, sightings=[
        tx_pb2.TxSighting(chain_id=e.chain_id, hash=e.hash, source_id="second", seen_unix_ns=e.first_seen_unix_ns + 9)
        for e in envs])


async def _log_rows(addr: str) -> tuple[dict[str, list[Row]], int]:
    """Every event of the log as rows (ScanEvents + the exporter's mapper), and the event count."""
    from common.pb.v1 import query_pb2, query_pb2_grpc
    from processd.export.source import channel

    rows: dict[str, list[Row]] = {table.name: [] for table in DATA_TABLES}
    events = 0
    async with channel(addr, 64 << 20) as ch:
        stub = query_pb2_grpc.QueryStub(ch)
        seq = 1
        while True:
            resp = await stub.ScanEvents(query_pb2.ScanEventsRequest(from_seq_id=seq, limit=5000))
            for table, table_rows in rows_of(resp.events).items():
                rows[table].extend(table_rows)
            events += len(resp.events)
            seq = resp.next_seq_id
            if seq > resp.last_seq_id:
                return rows, events


def _floor(cfg: ExportConfig, rows: dict[str, list[Row]]) -> dict[str, Any]:
    sink = ClickHouseSink(cfg)
    sink.ensure_schema()
    client = sink.client
    n = sum(len(r) for r in rows.values())
    cpu0, t0 = time.process_time(), time.perf_counter()
    for table in DATA_TABLES:
        client.execute(insert_sql(cfg.database, table), rows[table.name])
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    sink.close()
    return {"rows": n, "seconds": round(wall, 3), "rows_per_s": round(n / wall),
            "cpu_us_per_row": round(cpu / n * 1e6, 2)}


async def _export(cfg: ExportConfig, rows_total: int) -> dict[str, Any]:
    ClickHouseSink(cfg).ensure_schema()  # created before the clock, as for the floor (the resume is timed)
    cpu0, t0 = time.process_time(), time.perf_counter()
    async with Exporter(replace(cfg, exit_at_head=True, create_schema=False)) as exporter:
        await exporter.wait_closed()
        written = sum(exporter.metrics.rows.labels(t.name)._value.get() for t in DATA_TABLES)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    assert written == rows_total, f"exported {written} rows, the log makes {rows_total}"
    return {"rows": int(written), "seconds": round(wall, 3), "rows_per_s": round(written / wall),
            "cpu_us_per_row": round(cpu / written * 1e6, 2)}


async def _lag(cfg: ExportConfig, addr: str, rate: float, seconds: float, start_index: int) -> dict[str, Any]:
    lags_ms: list[float] = []

    def on_batch(columns: dict[str, Columns], done_ns: int) -> None:
        lags_ms.extend((done_ns - received) / 1e6 for received in columns["events"][5])

    tick_s = 0.1
    per_tick = max(1, round(rate * tick_s))
    ticks = int(seconds / tick_s)
    envs = synthetic_envelopes(per_tick * ticks, seed=99, chain_ids=CHAINS, start=start_index)
    async with Exporter(cfg, on_batch=on_batch) as exporter:
        await asyncio.sleep(1.0)  # caught up with the backlog (none: the floor run exported it)
        lags_ms.clear()
        began = time.monotonic()
        batches = [ingest_pb2.TxBatch(session_id="bench-live", batch_seq=i + 1,
                                      envelopes=envs[i * per_tick:(i + 1) * per_tick]) for i in range(ticks)]
        head = 0
        for i, batch in enumerate(batches):
            (ack,) = await push_batches(addr, [batch])
            head = max(head, ack.last_seq_id)
            await asyncio.sleep(max(0.0, began + (i + 1) * tick_s - time.monotonic()))
        await asyncio.wait_for(exporter.wait_exported(head), 60)
    return {"rate_tx_s": rate, "seconds": seconds, "events": len(lags_ms),
            "flush_interval_ms": cfg.flush_interval_ms, "batch_rows": cfg.batch_rows,
            "p50_ms": round(percentile(lags_ms, 50), 1), "p99_ms": round(percentile(lags_ms, 99), 1),
            "max_ms": round(max(lags_ms), 1)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mempulse-export-bench-") as tmp:
        root = Path(tmp)
        ch = ClickHouseServer(root / "clickhouse")
        proc, addr = _processd(root)
        try:
            ch.start()
            proc.start()
            envs = synthetic_envelopes(args.tx, seed=5, chain_ids=CHAINS)
            await push_envelopes(addr, envs, batch_size=500)
            await push_batches(addr, [_sightings(envs[i:i + 500:3], 1 + i // 500) for i in range(0, len(envs), 500)])
            rows, events = await _log_rows(addr)
            total = sum(len(r) for r in rows.values())
            base = replace(ExportConfig(), processd=addr, clickhouse_host=ch.host, clickhouse_port=ch.port)
            floors, exports = [], []
            for i in range(args.repeat):  # alternating, each into an empty database: the machine's load varies
                floors.append(_floor(replace(base, database=f"floor{i}"), rows))
                exports.append(await _export(replace(base, database=f"export{i}"), total))
            lag = await _lag(replace(base, database="export0"), addr, args.rate, args.live_s, args.tx)
            version = ch.query("SELECT version()")[0][0]
        finally:
            proc.stop()
            ch.stop()
    ratios = sorted(ratio(e["rows_per_s"], f["rows_per_s"]) or 0.0 for f, e in zip(floors, exports, strict=True))
    floor = sorted(floors, key=lambda f: f["rows_per_s"])[len(floors) // 2]
    export = sorted(exports, key=lambda e: e["rows_per_s"])[len(exports) // 2]
    return {
        "clickhouse_version": version, "transactions": args.tx, "events": events, "rows": total,
        "floor_bulk_insert": floor, "exporter": export, "runs": {"floor": floors, "exporter": exports},
        "throughput_vs_floor": ratios[len(ratios) // 2], "throughput_vs_floor_per_run": ratios,
        "cpu_per_row_vs_floor": ratio(export["cpu_us_per_row"], floor["cpu_us_per_row"]),
        "lag_at_demo_rate": lag,
        "targets": {"throughput_vs_floor_min": 0.5, "lag_p99_ms_max": 2000},
        "targets_met": {"throughput": ratios[len(ratios) // 2] >= 0.5,
                        "lag": lag["p99_ms"] < 2000},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tx", type=int, default=20_000, help="transactions in the log (default 20000)")
    p.add_argument("--rate", type=float, default=50.0, help="live rate for the lag run, tx/s (the demo's: 50)")
    p.add_argument("--live-s", type=float, default=30.0, help="seconds of live traffic (default 30)")
    p.add_argument("--repeat", type=int, default=3, help="floor/exporter pairs, alternating (median reported)")
    p.add_argument("--short", action="store_true", help="5000 transactions, 10 s of live traffic, one pair")
    p.add_argument("--out-name", default="export")
    args = p.parse_args()
    if args.short:
        args.tx, args.live_s, args.repeat = min(args.tx, 5000), min(args.live_s, 10.0), 1
    results = asyncio.run(run(args))
    path = write_artifact(args.out_name, results, mode="short" if args.short else "full")
    print(path)
    f, e, lag = results["floor_bulk_insert"], results["exporter"], results["lag_at_demo_rate"]
    print(f"floor {f['rows_per_s']} rows/s ({f['cpu_us_per_row']} us/row), exporter {e['rows_per_s']} rows/s "
          f"({e['cpu_us_per_row']} us/row): {results['throughput_vs_floor']} of the floor; lag at {lag['rate_tx_s']} "
          f"tx/s p50 {lag['p50_ms']} ms p99 {lag['p99_ms']} ms")


if __name__ == "__main__":
    main()
