"""Prints the README's performance table (markdown) from the latest artifacts in ``artifacts/perf/``.

    python -m scripts.bench.render_table [--dir artifacts/perf]

Each row reads one value from one artifact (see ``ROWS``); a row whose artifact or value is missing says
"not measured" rather than showing a stale figure. Under the table it prints when and on what machine each
artifact was produced, and the command that reproduces the whole set.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from scripts.bench.budget import resolve
from scripts.bench.harness import ARTIFACT_DIR

REPRODUCE = "./scripts/perf_tx_pipeline_baseline.sh"


@dataclass(frozen=True)
class Row:
    """One table row: a label, where the value comes from, how to show it, and the target it is held to."""

    label: str
    artifact: str
    path: str
    fmt: str
    target: str = ""


ROWS: tuple[Row, ...] = (
    # ingestd vs the naive loop on the same anvil nodes (scripts/bench/ingest_bench.py).
    Row("ingestd, anvil direct, chain 1 (tx/s delivered to processd)", "ingest", "ingestd_direct.chains.1.ingest_tx_s",
        "{:,.0f}", "anvil-bound"),
    Row("Naive loop, anvil direct, chain 1 (tx/s)", "ingest", "naive_direct.chains.1.naive_tx_s", "{:,.0f}", ""),
    Row("ingestd / naive, direct (worst chain, same run)", "ingest", "ratios.direct.min", "{:.1f}x",
        "floor when anvil is the limit"),
    Row("ingestd, through 30 ms proxy, chain 1 (tx/s)", "ingest", "ingestd_proxy.chains.1.ingest_tx_s", "{:,.0f}", ""),
    Row("Naive loop, through 30 ms proxy, chain 1 (tx/s)", "ingest", "naive_proxy.chains.1.naive_tx_s", "{:,.0f}",
        ""),
    Row("ingestd / naive, through 30 ms proxy (worst chain, same run)", "ingest", "ratios.proxy.min", "{:.1f}x",
        ">= 5x"),
    Row("ingestd drop ratio, direct", "ingest", "ingestd_direct.drop_ratio", "{:.3%}", "< 0.5%"),
    # processd over gRPC into LMDB with synthetic envelopes (scripts/bench/processd_bench.py).
    Row("processd full path over gRPC (a stream per chain, as ingestd), sync group commit, median of 3 rounds (tx/s)",
        "processd", "full.tx_per_s", "{:,.0f}", "50,000+"),
    Row("  round 1 of 3, log growing from 0 to 100k transactions (tx/s)", "processd", "rounds.0.full.tx_per_s",
        "{:,.0f}", ""),
    Row("  round 2, 100k to 200k", "processd", "rounds.1.full.tx_per_s", "{:,.0f}", ""),
    Row("  round 3, 200k to 300k", "processd", "rounds.2.full.tx_per_s", "{:,.0f}", ""),
    Row("Bare floor: gRPC bidi stream + LMDB puts, one fsync'd commit per batch (tx/s)", "processd",
        "floor.tx_per_s", "{:,.0f}", ""),
    Row("Full path / floor (same run)", "processd", "full_over_floor", "{:.2f}x", ""),
    Row("processd CPU per transaction, full path, all its processes (us)", "processd",
        "full.server_cpu_us_per_tx", "{:.0f}", ""),
    Row("  of which the daemon process (gRPC, dedup, seqs, LMDB, read models)", "processd",
        "full.server_main_cpu_us_per_tx", "{:.0f}", ""),
    Row("  of which the analysis workers (validation, decoding, features, ranking, encoding)", "processd",
        "full.server_workers_cpu_us_per_tx", "{:.0f}", ""),
    Row("Client's share, done before the clock (JSON parse + protobuf, CPU us per tx)", "processd",
        "full.client_encode_us_per_tx", "{:.0f}", ""),
    Row("Batch-to-durable-ack p99, full path at that rate (ms)", "processd", "full.batch_to_ack_ms.p99", "{:,.0f}",
        ""),
    Row("GetSnapshot p50 at 10k / 1M events (ms)", "processd", "queries_by_size.0.latency_ms.snapshot.p50",
        "{:.2f}", "flat"),
    Row("  at 1M events", "processd", "queries_by_size.2.latency_ms.snapshot.p50", "{:.2f}", "flat"),
    Row("ScanEvents (100 from a random cursor) p50 at 1M events (ms)", "processd",
        "queries_by_size.2.latency_ms.scan.p50", "{:.2f}", "flat"),
    Row("Query p50 growth, smallest to largest log: snapshot", "processd",
        "query_p50_growth_smallest_to_largest.snapshot", "{:.2f}x", "~1x"),
    Row("Query p50 growth, smallest to largest log: scan", "processd", "query_p50_growth_smallest_to_largest.scan",
        "{:.2f}x", "~1x"),
    # processd's analysis (scripts/bench/analysis_bench.py).
    Row("Decode + features + ranking, one core (tx/s)", "analysis", "analyze_fast.tx_per_s_one_core_best_cpu",
        "{:,.0f}", ""),
    # End to end on real anvil nodes (scripts/bench/pipeline_bench.py).
    Row("End-to-end sustained rate, 2 anvil chains, drop < 0.5% (tx/s visible)", "pipeline",
        "target_load.achieved_tx_s", "{:,.0f}", "anvil-bound; ratio to accepted below"),
    Row("Drop ratio at that rate (accepted by anvil, never visible)", "pipeline", "target_load.drop_ratio",
        "{:.3%}", "< 0.5%"),
    Row("Most anvil accepted in any step (tx/s, both chains)", "pipeline", "max_anvil_accepted_tx_s", "{:,.0f}",
        "the node's limit, not ours"),
    Row("Ingest-to-visible latency p50 (ms, notification -> SSE client)", "pipeline",
        "target_load.ingest_to_visible_ms.p50", "{:.1f}", ""),
    Row("Ingest-to-visible latency p99 (ms)", "pipeline", "target_load.ingest_to_visible_ms.p99", "{:.1f}",
        "< 700 (own target < 100)"),
    Row("Ingest-to-visible latency max (ms)", "pipeline", "target_load.ingest_to_visible_ms.max", "{:.1f}", ""),
    Row("SSE catch-up replay of the whole log (events/s)", "pipeline", "catch_up.events_per_s", "{:,.0f}", ""),
    # CPU per transaction at fixed rates vs a plain web3.py loop (scripts/bench/rate_sweep.py, issue 20).
    Row("CPU per tx at 200 tx/s, ingestd + processd (all processes), --full-tx on (us)", "rate_sweep",
        "phases.direct.200.mempulse_on.cpu_us_per_tx", "{:,.0f}", ""),
    Row("  --full-tx off (hashes + batch fetch)", "rate_sweep", "phases.direct.200.mempulse_off.cpu_us_per_tx",
        "{:,.0f}", ""),
    Row("  web3.py full-transactions subscription loop, stores nothing (us)", "rate_sweep",
        "phases.direct.200.web3.cpu_us_per_tx", "{:,.0f}", ""),
    Row("mempulse / web3.py CPU per tx at 200 tx/s (same run)", "rate_sweep",
        "cpu_per_tx_ratios.direct.200.mempulse_on.over_web3", "{:.2f}x", "<= 1.0x"),
    Row("web3.py / mempulse CPU per tx at the most anvil accepts (same run)", "rate_sweep",
        "cpu_per_tx_ratios.direct.max.mempulse_on.web3_over", "{:.2f}x", ">= 1.5x"),
    Row("p99 announce-to-stored at the most anvil accepts (ms)", "rate_sweep",
        "phases.direct.max.mempulse_on.latency_ms.p99", "{:.0f}", "<= 150"),
    Row("Idle CPU, no traffic: ingestd (% of a core)", "rate_sweep", "idle.core_percent.ingestd", "{:.2f}", "< 1"),
    Row("  processd with its workers", "rate_sweep", "idle.core_percent.processd", "{:.2f}", "< 1"),
    Row("  gatewayd", "rate_sweep", "idle.core_percent.gatewayd", "{:.2f}", "< 1"),
    # gRPC boundary evaluation (scripts/bench/grpc_boundary.py).
    Row("Ingest -> processd across gRPC, best batch size (CPU us per tx, all processes)", "grpc_boundary",
        "best.grpc_cpu_us_per_tx", "{:.0f}", ""),
    Row("Same path in one process, direct call (CPU us per tx)", "grpc_boundary", "best.inprocess_cpu_us_per_tx",
        "{:.0f}", ""),
    Row("gRPC / in-process throughput at that batch size (same run)", "grpc_boundary", "best.grpc_over_inprocess",
        "{:.2f}x", ">= 0.3x"),
    # Soak (scripts/soak).
    Row("Soak: anonymous-RSS slope after warm-up, worst daemon (MiB/min)", "soak", "worst_anon_slope_mib_per_min",
        "{:.2f}", "no upward trend"),
    Row("Soak duration (min)", "soak", "config.minutes", "{:.0f}", "30"),
    # REST load (loadtests/, scripts/loadtest).
    Row("REST /transactions (req/s, with ingest running)", "loadtest_rest", "transactions.rps", "{:,.0f}",
        ">= 3,000 (all routes)"),
    Row("REST /transactions p99 (ms)", "loadtest_rest", "transactions.p99_ms", "{:.0f}", "< 50"),
    Row("REST /dashboard/snapshot (req/s)", "loadtest_rest", "snapshot.rps", "{:,.0f}", ""),
    Row("REST /dashboard/snapshot p99 (ms)", "loadtest_rest", "snapshot.p99_ms", "{:.0f}", "< 50"),
    Row("REST all routes (req/s)", "loadtest_rest", "aggregated.rps", "{:,.0f}", ">= 3,000"),
    Row("gatewayd / bare Sanic app on the same machine, same run (req/s)", "loadtest_rest", "rps_vs_bare_sanic",
        "{:.2f}x", ""),
    # gatewayd's CPU per request against a bare Sanic handler serving the same bytes (scripts/bench/rest_cpu.py).
    Row("gatewayd CPU per request, /transactions?chain_id=1&limit=50, 8 keep-alive connections (us)", "rest_cpu",
        "routes.transactions_c8.gatewayd_cpu_us_per_request", "{:.0f}", ""),
    Row("  bare Sanic handler, same bytes, same run (us)", "rest_cpu", "routes.transactions_c8.bare_cpu_us_per_request",
        "{:.0f}", ""),
    Row("gatewayd / bare CPU per request: /transactions, 8 connections", "rest_cpu", "ratios.transactions_c8",
        "{:.2f}x", "<= 1.3x"),
    Row("  /transactions, 64 connections", "rest_cpu", "ratios.transactions_c64", "{:.2f}x", "<= 1.3x"),
    Row("  /dashboard/snapshot, 8 connections", "rest_cpu", "ratios.snapshot_c8", "{:.2f}x", "<= 1.3x"),
    Row("  /dashboard/snapshot, 64 connections", "rest_cpu", "ratios.snapshot_c64", "{:.2f}x", "<= 1.3x"),
    # 1,000 SSE clients on one gatewayd at the demo's ingest rate (scripts/bench/sse_fanout.py).
    Row("SSE fan-out: clients with exactly their matching events (of 1,000, mixed filters)", "sse_fanout",
        "clients_exact", "{:,.0f}", "all"),
    Row("  events/s delivered to them, ingest at 2 x 50 tx/s", "sse_fanout", "events_per_s_delivered", "{:,.0f}", ""),
    Row("  processd receive -> client p99 (ms; bounds commit-to-client)", "sse_fanout", "receive_to_client_ms.p99",
        "{:.0f}", ""),
    Row("  gatewayd RSS with 1,000 clients, after ingest (MiB)", "sse_fanout", "gatewayd_rss_mib.after_ingest",
        "{:.0f}", "bounded"),
    Row("  clients that stopped reading, cut with a counted reason (of 5)", "sse_fanout", "slow_clients_cut",
        "{:.0f}", "5"),
    # 1,000 filters of 1% on one SubscribeMany stream against none, pass by pass (scripts/bench/filter_bench.py).
    Row("SubscribeMany, 1,000 filters of 1%: processd CPU per tx / none (median of passes)", "filters_many_1000",
        "many_ratios.1000.cpu_per_tx_vs_none.median", "{:.2f}x", "<= 1.25x"),
    Row("  worst pass", "filters_many_1000", "many_ratios.1000.cpu_per_tx_vs_none.max", "{:.2f}x", "<= 1.25x"),
    Row("  processd's main process (event loop + writer), median", "filters_many_1000",
        "many_ratios.1000.main_cpu_vs_none.median", "{:.2f}x", ""),
    Row("  ingest throughput / none (median of passes)", "filters_many_1000",
        "many_ratios.1000.throughput_vs_none.median", "{:.2f}x", ">= 0.75x"),
    Row("  worst pass", "filters_many_1000", "many_ratios.1000.throughput_vs_none.min", "{:.2f}x", ">= 0.75x"),
    Row("processd gRPC ingest under Locust, 2 streams x 500/batch (tx/s)", "loadtest", "ingest.tx_per_s",
        "{:,.0f}", ""),
    Row("  batch-to-durable-ack p99 (ms)", "loadtest", "ingest.batch_to_ack_p99_ms", "{:.0f}", ""),
    # The transaction lifecycle's cost: processd with blocks and tracking vs the same build without blocks, with
    # blocks but lifecycle_enabled=false, and with the engine in the writer's thread, alternating in one run
    # (scripts/bench/lifecycle_bench.py).
    Row("processd throughput kept with the lifecycle on, vs no blocks (tx/s, same run, median of rounds)",
        "lifecycle", "paired_cpu.tx_per_s_ratio.p50", "{:.2f}x", ">= 0.85x"),
    Row("  vs blocks stored, lifecycle off", "lifecycle", "paired_cpu.tx_per_s_ratio_vs_blocks_no_lifecycle.p50",
        "{:.2f}x", ">= 0.85x"),
    Row("processd CPU per tx, lifecycle on (us, all processes)", "lifecycle", "paired_cpu.lifecycle_cpu_us_per_tx.p50",
        "{:.1f}", ""),
    Row("  lifecycle on / no blocks (same run)", "lifecycle", "paired_cpu.ratio.p50", "{:.2f}x", ""),
    Row("  lifecycle on / blocks, lifecycle off (same run)", "lifecycle", "paired_cpu.ratio_vs_blocks_no_lifecycle.p50",
        "{:.2f}x", ""),
    Row("  main process (event loop + single writer), lifecycle on / no blocks", "lifecycle",
        "paired_cpu.main_ratio.p50", "{:.2f}x", ""),
    Row("  lifecycle process / engine in the writer's thread: throughput (same run)", "lifecycle",
        "paired_cpu.tx_per_s_ratio_vs_in_thread.p50", "{:.2f}x", ""),
    Row("  lifecycle process / engine in the writer's thread: main process CPU (same run)", "lifecycle",
        "paired_cpu.main_ratio_vs_in_thread.p50", "{:.2f}x", ""),
    Row("  lifecycle on, this build / the `--baseline` tree (throughput, same run; the artifact names it)",
        "lifecycle", "paired_cpu.tx_per_s_ratio_vs_baseline.p50", "{:.2f}x", ""),
    Row("Single writer's thread per tx, lifecycle on (us)", "lifecycle_writer", "lifecycle_writer_us_per_tx.p50",
        "{:.1f}", ""),
    Row("  no blocks (us, same run)", "lifecycle_writer", "blocks_off_writer_us_per_tx.p50", "{:.1f}", ""),
    Row("  blocks, lifecycle off (us, same run)", "lifecycle_writer", "blocks_no_lifecycle_writer_us_per_tx.p50",
        "{:.1f}", ""),
    Row("  lifecycle on, engine in the writer's thread (us, same run)", "lifecycle_writer",
        "lifecycle_in_thread_writer_us_per_tx.p50", "{:.1f}", ""),
)


def _value(doc: dict[str, Any] | None, path: str) -> Any:
    if doc is None:
        return None
    found = resolve(doc.get("results", {}), path)
    return found[0][1] if found else None


def render(artifacts_dir: Path, rows: tuple[Row, ...] = ROWS) -> str:
    """The markdown table plus provenance lines."""
    docs: dict[str, dict[str, Any] | None] = {}
    for row in rows:
        if row.artifact not in docs:
            path = artifacts_dir / f"{row.artifact}.json"
            docs[row.artifact] = orjson.loads(path.read_bytes()) if path.exists() else None
    lines = ["| Measure | Result | Target | Artifact |", "|---|---:|---|---|"]
    for row in rows:
        value = _value(docs[row.artifact], row.path)
        shown = row.fmt.format(value) if isinstance(value, int | float) and not isinstance(value, bool) \
            else "not measured"
        lines.append(f"| {row.label} | {shown} | {row.target} | `{row.artifact}.json` |")
    lines.append("")
    for name, doc in docs.items():
        if doc is None:
            continue
        machine = doc.get("machine", {})
        lines.append(f"- `{name}.json`: {doc.get('created_utc')}, mode {doc.get('mode')}, "
                     f"{machine.get('cpu_count')} x {machine.get('cpu_model')}, "
                     f"load average {machine.get('load_avg_1m_at_start')} at start / "
                     f"{machine.get('load_avg_1m_at_end')} at end, commit {machine.get('git_commit')}")
    lines.append("")
    lines.append(f"Reproduce: `{REPRODUCE}` (writes `artifacts/perf/*.json`), then "
                 "`python -m scripts.bench.render_table`.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the README performance table from artifacts/perf.")
    parser.add_argument("--dir", type=Path, default=ARTIFACT_DIR)
    args = parser.parse_args(argv)
    print(render(args.dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
