"""Export benchmark: mempulse-export's throughput and CPU per row next to a plain clickhouse-driver bulk insert of
the same rows (the floor), and its lag behind the live log at the demo rate. Writes ``artifacts/perf/export.json``.

One run, one machine, one ClickHouse server (Debian's 18.16, started here on free ports):

1. processd (a subprocess) gets ``--tx`` synthetic transactions on three chains, plus later-source sightings of a
   third of them; its log is then read once with ScanEvents and mapped to rows (before any clock starts).
2. **floor**: those rows inserted with clickhouse-driver, one INSERT per table holding every row, into an empty
   database: the cost of getting the rows into ClickHouse at all. Two ways, the same values of the same types
   into the same tables: rows (``client.execute(sql, rows)``, the plain bulk insert) and columns
   (``columnar=True``, the column lists the exporter itself inserts, copied before the clock: the driver
   rewrites them in place). The columnar one is faster, so it is the floor the ratio is taken against; the
   ratio to the row insert is reported beside it.
3. **export**: the exporter (in this process, so its CPU is this process's CPU: ``time.process_time``) exports
   the same log from processd into another empty database, ``--exit-at-head``, default batch size. Its work on
   top of the floor: ScanEvents pages over gRPC, protobuf parsing, the mapping, batching, the cursor.
   processd's CPU while it serves the export (its ScanEvents pages) is measured too: it runs on the same cores,
   and so is ClickHouse's (per row, for the floor and the exporter alike: its INSERT work and the background
   merges of the parts the INSERTs made), and where the export loop's wall time went (waiting for processd,
   mapping, waiting for ClickHouse: ``mempulse_export_stage_seconds_total``).
   Then the same with the protobuf mapper (the C page mapper, processd/export/_colmap.c, switched off in this
   process: what the exporter did before it, and does where it is not compiled), and with ``--map-workers`` (2)
   batch worker processes (MEMPULSE_EXPORT_MAP_WORKERS: each parses, maps and inserts whole catch-up batches):
   their CPU counts as the exporter's, their start-up (once per exporter process) is timed apart.
   The exporter's own stages (parsing the pages, the C mapping, the protobuf columnar mapping, the row-by-row
   reference mapping) are timed alone on the same pages beforehand.
   2. and 3. alternate ``--repeat`` times (3), each into an empty database; the medians are reported, and the
   ratios pair by pair.
4. **lag**: the exporter tails the log while transactions arrive at the demo rate (``--rate``, 50 tx/s, in
   batches every 100 ms like ingestd's); each event's lag = when its batch was written to ClickHouse - when
   processd received it. p50/p99/max over every event.

Target (issue 21): export throughput >= 50% of the floor, lag p99 < 2 s.

    python -m scripts.bench.export_bench            # 60k transactions (~309k rows), 30 s of live traffic
    python -m scripts.bench.export_bench --short    # 5k, 10 s
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from clickhouse_driver import Client

from common.gctune import tune_gc
from common.pb.v1 import ingest_pb2, tx_pb2
from common.testing.clickhouse import ClickHouseServer
from common.testing.ingest_push import push_batches, push_envelopes
from common.testing.process import ManagedProcess, child_env, python_module_argv
from common.testing.synth import synthetic_envelopes
from processd.export import colmap
from processd.export.config import ExportConfig
from processd.export.exporter import Exporter
from processd.export.mapper import BatchSummary, Columns, Row, columns_of, empty_columns, extend_columns, rows_of
from processd.export.metrics import STAGES
from processd.export.schema import DATA_TABLES, insert_sql
from processd.export.sink import ClickHouseSink
from scripts.bench.harness import REPO_ROOT, percentile, ratio, tree_cpu_seconds, write_artifact

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


async def _log_pages(addr: str) -> list[bytes]:
    """Every ScanEvents page of the log as processd sent it (serialized), 5000 events a page as the exporter's."""
    from common.pb.v1 import query_pb2
    from processd.export.source import channel

    pages: list[bytes] = []
    async with channel(addr, 64 << 20) as ch:
        scan = ch.unary_unary("/mempulse.v1.Query/ScanEvents",
                              request_serializer=query_pb2.ScanEventsRequest.SerializeToString,
                              response_deserializer=None)  # the bytes as sent
        seq = 1
        while True:
            raw = await scan(query_pb2.ScanEventsRequest(from_seq_id=seq, limit=ExportConfig().scan_page_events))
            pages.append(raw)
            resp = query_pb2.ScanEventsResponse.FromString(raw)
            seq = resp.next_seq_id
            if seq > resp.last_seq_id:
                return pages


def _log_rows(pages: list[bytes]) -> tuple[dict[str, list[Row]], dict[str, Columns], int, dict[str, float]]:
    """Every event of the log as rows and as columns (the exporter's mapper), the event count, and the CPU seconds
    of the exporter's own stages on them, each timed alone: parsing the pages, the C mapping the exporter uses
    (``map_columns``, from the pages' bytes), the protobuf columnar mapping (its fallback), the row-by-row
    reference mapping."""
    from common.pb.v1 import query_pb2

    cpu0 = time.process_time()
    parsed = [query_pb2.ScanEventsResponse.FromString(raw).events for raw in pages]
    cpu1 = time.process_time()
    columns = empty_columns()
    for raw, events in zip(pages, parsed, strict=True):
        extend_columns(columns, colmap.columns_of_page(raw, _given(events)))
    cpu2 = time.process_time()
    for events in parsed:
        columns_of(events)
    cpu3 = time.process_time()
    rows: dict[str, list[Row]] = {table.name: [] for table in DATA_TABLES}
    for events in parsed:
        for table, table_rows in rows_of(events).items():
            rows[table].extend(table_rows)
    cpu4 = time.process_time()
    stages = {"parse": cpu1 - cpu0, "map_columns": cpu2 - cpu1, "map_columns_protobuf": cpu3 - cpu2,
              "map_rows_reference": cpu4 - cpu3}
    return rows, columns, sum(len(events) for events in parsed), stages


def _given(events: Sequence[Any]) -> Callable[[], Sequence[Any]]:
    return lambda: events


@contextlib.contextmanager
def _protobuf_mapper() -> Iterator[None]:
    """The exporter in this process without the C page mapper (as where it is not compiled)."""
    compiled = colmap._colmap
    colmap._colmap = None
    colmap.plan.cache_clear()
    try:
        yield
    finally:
        colmap._colmap = compiled
        colmap.plan.cache_clear()


def _floor(cfg: ExportConfig, rows: dict[str, list[Row]], columns: dict[str, Columns] | None,
           ch_pid: int | None) -> dict[str, Any]:
    """The plain bulk insert: ``rows`` one row tuple at a time, or (``columns`` given) the same values as columns."""
    sink = ClickHouseSink(cfg)
    sink.ensure_schema()
    # clickhouse-driver's own Client (the exporter's sink encodes its columns itself: processd.export.native)
    client = Client(cfg.clickhouse_host, port=cfg.clickhouse_port)
    client.execute("SELECT 1")  # connected before the clock, as the exporter's resume is its first statement
    n = sum(len(r) for r in rows.values())
    # fresh lists per run: the driver replaces NULLs and enum names in the lists it is given
    data: dict[str, Any] = {t: [list(c) for c in cols] for t, cols in columns.items()} if columns else rows
    ch0 = tree_cpu_seconds(ch_pid) if ch_pid else None
    cpu0, t0 = time.process_time(), time.perf_counter()
    for table in DATA_TABLES:
        client.execute(insert_sql(cfg.database, table), data[table.name], columnar=columns is not None)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    sink.close()
    client.disconnect()
    return {"rows": n, "seconds": round(wall, 3), "rows_per_s": round(n / wall),
            "cpu_us_per_row": round(cpu / n * 1e6, 2), "clickhouse_cpu_us_per_row": _per_row(ch_pid, ch0, n)}


def _per_row(pid: int | None, before: float | None, rows: int) -> float | None:
    """CPU us per row of process ``pid`` (and its children) since ``before`` (ClickHouse: its INSERT work and the
    background merges that ran meanwhile, which its parts start)."""
    after = tree_cpu_seconds(pid) if pid else None
    return round((after - before) / rows * 1e6, 2) if after is not None and before is not None else None


async def _export(cfg: ExportConfig, rows_total: int, processd_pid: int | None, ch_pid: int | None) -> dict[str, Any]:
    ClickHouseSink(cfg).ensure_schema()  # created before the clock, as for the floor (the resume is timed)
    exporter = Exporter(replace(cfg, exit_at_head=True, create_schema=False))
    # Mapping workers start once per exporter process (spawned: each imports the exporter's modules anew); a
    # tailing exporter pays it once in its life, so it is timed apart and the run measures the steady state.
    start_s = time.perf_counter()
    if exporter.mappers is not None:
        await exporter.mappers.start()
    start_s = time.perf_counter() - start_s
    startup_cpu = _workers_cpu(exporter)
    served0 = tree_cpu_seconds(processd_pid) if processd_pid else None
    ch0 = tree_cpu_seconds(ch_pid) if ch_pid else None
    cpu0, t0 = time.process_time(), time.perf_counter()
    async with exporter:
        await exporter.wait_closed()
        written = sum(exporter.metrics.rows.labels(t.name)._value.get() for t in DATA_TABLES)
        workers_cpu = _workers_cpu(exporter) - startup_cpu  # the workers' CPU is the exporter's: read before they stop
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0 + workers_cpu
    served1 = tree_cpu_seconds(processd_pid) if processd_pid else None
    assert written == rows_total, f"exported {written} rows, the log makes {rows_total}"
    return {"rows": int(written), "seconds": round(wall, 3), "rows_per_s": round(written / wall),
            "cpu_us_per_row": round(cpu / written * 1e6, 2), "map_workers": cfg.map_workers,
            "workers_cpu_us_per_row": round(workers_cpu / written * 1e6, 2),
            "workers_startup": {"seconds": round(start_s, 3), "cpu_s": round(startup_cpu, 3)},
            "processd_cpu_s": round(served1 - served0, 3) if served0 is not None and served1 is not None else None,
            "clickhouse_cpu_us_per_row": _per_row(ch_pid, ch0, int(written)),
            # where the export loop's wall time went (mempulse_export_stage_seconds_total)
            "stage_wall_s": {stage: round(exporter.metrics.stage_seconds.labels(stage)._value.get(), 3)
                             for stage in STAGES}}


def _workers_cpu(exporter: Exporter) -> float:
    return sum(tree_cpu_seconds(pid) or 0.0 for pid in exporter.mappers.pids()) if exporter.mappers else 0.0


async def _lag(cfg: ExportConfig, addr: str, rate: float, seconds: float, start_index: int) -> dict[str, Any]:
    lags_ms: list[float] = []

    def on_batch(summary: BatchSummary, done_ns: int) -> None:
        lags_ms.extend((done_ns - received) / 1e6 for received in summary.received_ns)

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
    tune_gc()  # the collector settings mempulse-export runs with (the floor gets them too)
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
            rows, columns, events, stages = _log_rows(await _log_pages(addr))
            total = sum(len(r) for r in rows.values())
            base = replace(ExportConfig(), processd=addr, clickhouse_host=ch.host, clickhouse_port=ch.port)
            floors, row_floors, exports, pb_exports, worker_exports = [], [], [], [], []
            for i in range(args.repeat):  # alternating, each into an empty database: the machine's load varies
                row_floors.append(_floor(replace(base, database=f"rowfloor{i}"), rows, None, ch.pid))
                floors.append(_floor(replace(base, database=f"floor{i}"), rows, columns, ch.pid))
                exports.append(await _export(replace(base, database=f"export{i}"), total, proc.pid, ch.pid))
                with _protobuf_mapper():
                    pb_exports.append(await _export(replace(base, database=f"protobuf{i}"), total, proc.pid, ch.pid))
                worker_exports.append(await _export(replace(base, database=f"workers{i}", map_workers=args.map_workers),
                                                    total, proc.pid, ch.pid))
            lag = await _lag(replace(base, database="export0"), addr, args.rate, args.live_s, args.tx)
            version = ch.query("SELECT version()")[0][0]
        finally:
            proc.stop()
            ch.stop()
    floor, row_floor = _median(floors), _median(row_floors)
    export, with_workers = _versus(exports, floors, row_floors), _versus(worker_exports, floors, row_floors)
    protobuf = _versus(pb_exports, floors, row_floors)
    served = sorted(e["processd_cpu_s"] or 0.0 for e in exports)[len(exports) // 2]
    return {
        "clickhouse_version": version, "transactions": args.tx, "events": events, "rows": total,
        "floor_bulk_insert": floor, "floor_row_insert": row_floor, "exporter": export["median"],
        "exporter_map_workers": with_workers["median"], "exporter_protobuf_mapper": protobuf["median"],
        "c_mapper": colmap.available(),
        "runs": {"floor": floors, "floor_rows": row_floors, "exporter": exports,
                 "exporter_protobuf_mapper": pb_exports, "exporter_map_workers": worker_exports},
        "throughput_vs_floor": export["vs_floor"], "throughput_vs_floor_per_run": export["vs_floor_per_run"],
        "throughput_vs_row_floor": export["vs_row_floor"],
        "throughput_vs_row_floor_per_run": export["vs_row_floor_per_run"],
        "map_workers": {"workers": args.map_workers, **{k: v for k, v in with_workers.items() if k != "median"}},
        "protobuf_mapper": {k: v for k, v in protobuf.items() if k != "median"},
        # the exporter over the same exporter with the protobuf mapper, round by round (the C mapper's gain)
        "c_mapper_speedup_per_run": sorted(ratio(e["rows_per_s"], p["rows_per_s"]) or 0.0
                                           for e, p in zip(exports, pb_exports, strict=True)),
        "cpu_per_row_vs_floor": ratio(export["median"]["cpu_us_per_row"], floor["cpu_us_per_row"]),
        "processd_scan_cpu_us_per_event": round(served / events * 1e6, 2),
        # the exporter's own stages, CPU us per row, each timed alone on the same pages (the driver's share is
        # the floor's cpu_us_per_row)
        "stages_cpu_us_per_row": {name: round(cpu / total * 1e6, 2) for name, cpu in stages.items()},
        "lag_at_demo_rate": lag,
        "targets": {"throughput_vs_floor_min": 0.5, "lag_p99_ms_max": 2000},
        "targets_met": {"throughput": export["vs_floor"] >= 0.5,
                        "throughput_every_run": min(export["vs_floor_per_run"]) >= 0.5,
                        "throughput_map_workers": with_workers["vs_floor"] >= 0.5,
                        "lag": lag["p99_ms"] < 2000},
    }


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return sorted(runs, key=lambda r: r["rows_per_s"])[len(runs) // 2]


def _versus(exports: list[dict[str, Any]], floors: list[dict[str, Any]],
            row_floors: list[dict[str, Any]]) -> dict[str, Any]:
    """The median export run and its throughput over each floor, pair by pair (the same round of the loop)."""
    vs = sorted(ratio(e["rows_per_s"], f["rows_per_s"]) or 0.0 for f, e in zip(floors, exports, strict=True))
    vs_rows = sorted(ratio(e["rows_per_s"], f["rows_per_s"]) or 0.0 for f, e in zip(row_floors, exports, strict=True))
    return {"median": _median(exports), "vs_floor": vs[len(vs) // 2], "vs_floor_per_run": vs,
            "vs_row_floor": vs_rows[len(vs_rows) // 2], "vs_row_floor_per_run": vs_rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tx", type=int, default=60_000,
                   help="transactions in the log (default 60000: ~309k rows, so a run is not its start-up)")
    p.add_argument("--rate", type=float, default=50.0, help="live rate for the lag run, tx/s (the demo's: 50)")
    p.add_argument("--live-s", type=float, default=30.0, help="seconds of live traffic (default 30)")
    p.add_argument("--repeat", type=int, default=3, help="floor/exporter pairs, alternating (median reported)")
    p.add_argument("--short", action="store_true", help="5000 transactions, 10 s of live traffic, one pair")
    p.add_argument("--map-workers", type=int, default=2, help="batch workers of the second exporter run (default 2)")
    p.add_argument("--out-name", default="export")
    args = p.parse_args()
    if args.short:
        args.tx, args.live_s, args.repeat = min(args.tx, 5000), min(args.live_s, 10.0), 1
    results = asyncio.run(run(args))
    path = write_artifact(args.out_name, results, mode="short" if args.short else "full")
    print(path)
    f, e, lag = results["floor_bulk_insert"], results["exporter"], results["lag_at_demo_rate"]
    w = results["exporter_map_workers"]
    print(f"floor {f['rows_per_s']} rows/s ({f['cpu_us_per_row']} us/row), exporter {e['rows_per_s']} rows/s "
          f"({e['cpu_us_per_row']} us/row): {results['throughput_vs_floor']} of the floor, "
          f"{results['throughput_vs_row_floor']} of the row insert; with {args.map_workers} batch workers "
          f"{w['rows_per_s']} rows/s ({w['cpu_us_per_row']} us/row): {results['map_workers']['vs_floor']} of the "
          f"floor; protobuf mapper {results['protobuf_mapper']['vs_floor']} of the floor; per run: exporter "
          f"{results['throughput_vs_floor_per_run']}, protobuf mapper {results['protobuf_mapper']['vs_floor_per_run']}"
          f"; lag at {lag['rate_tx_s']} tx/s p50 {lag['p50_ms']} ms p99 {lag['p99_ms']} ms")


if __name__ == "__main__":
    main()
