"""Runs both Locust files headless against a stack and summarizes them into ``artifacts/perf/loadtest.json``.

    scripts/loadtest [--users-rest 16] [--users-ingest 2] [--run-time-s 30] [--rate-tx-s 100]
    scripts/loadtest --gateway http://127.0.0.1:8080 --processd 127.0.0.1:50051   # an already running stack

Without ``--gateway``/``--processd`` it starts its own stack (two anvil chains with replay traffic at
``--rate-tx-s`` per chain, so ingest is running, plus processd, ingestd and gatewayd). Then, one after the
other: ``loadtests/locustfile_rest.py`` against gatewayd (when present) and ``loadtests/locustfile_ingest.py``
against processd's ``Ingest.Stream``. Locust's CSV and HTML reports go to ``artifacts/perf/locust_rest*``
and ``artifacts/perf/locust_ingest*``; the JSON artifact keeps req/s, failures and p50/p99 per request
name, and the ingest tx/s (batches/s x batch size). API keys for the REST file pass through the environment.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from common.testing.locust_stats import parse_stats_csv
from common.testing.stack import ChainSpec, Stack, StackConfig
from scripts.bench.harness import ARTIFACT_DIR, REPO_ROOT, write_artifact

log = logging.getLogger("loadtest")

REST_FILE = REPO_ROOT / "loadtests" / "locustfile_rest.py"
INGEST_FILE = REPO_ROOT / "loadtests" / "locustfile_ingest.py"


def run_locust(locustfile: Path, host: str, users: int, run_time_s: int, prefix: str,
               env: dict[str, str]) -> dict[str, Any]:
    """Runs one locustfile headless; returns its parsed stats (and the exit status)."""
    out_dir = Path(env.get("MEMPULSE_PERF_OUT", str(ARTIFACT_DIR)))
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "-u", str(users),
            "-r", str(users), "-t", f"{run_time_s}s", "--host", host, "--csv", str(out_dir / prefix),
            "--html", str(out_dir / f"{prefix}.html"), "--only-summary", "--stop-timeout", "5"]
    log.info("running %s", " ".join(argv))
    proc = subprocess.run(argv, cwd=REPO_ROOT, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=run_time_s + 120, check=False)
    if proc.returncode not in (0, 1):  # 1 = some requests failed: the stats say which
        log.warning("locust exited %s: %s", proc.returncode, proc.stderr[-2000:])
    stats = parse_stats_csv(out_dir / f"{prefix}_stats.csv")
    return {"exit_status": proc.returncode, "by_name": stats, "csv": str(out_dir / f"{prefix}_stats.csv")}


def _pick(stats: dict[str, dict[str, Any]], fragment: str) -> dict[str, Any] | None:
    """The stats row whose name contains ``fragment`` (the REST locustfile names requests by route)."""
    for name, row in stats.items():
        if fragment in name and name != "Aggregated":
            return {k: row[k] for k in ("rps", "p50_ms", "p99_ms", "requests", "failures")}
    return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    env = {"MEMPULSE_PERF_OUT": str(args.out_dir or ARTIFACT_DIR),
           "MEMPULSE_LOADTEST_BATCH_SIZE": str(args.ingest_batch_size)}
    stack: Stack | None = None
    gateway, processd = args.gateway, args.processd
    if not gateway or not processd:
        chains = (ChainSpec(1, rate_tx_s=args.rate_tx_s), ChainSpec(137, rate_tx_s=args.rate_tx_s))
        stack = Stack(StackConfig(chains=chains)).start()
        gateway, processd = stack.gateway_url, stack.processd_addr
    try:
        rest: dict[str, Any] = {"skipped": f"{REST_FILE.name} not present"}
        if REST_FILE.exists():
            rest = run_locust(REST_FILE, gateway, args.users_rest, args.run_time_s, "locust_rest", env)
        ingest = run_locust(INGEST_FILE, processd, args.users_ingest, args.run_time_s, "locust_ingest", env)
    finally:
        if stack is not None:
            stack.stop()
    ingest_row = next((r for n, r in ingest["by_name"].items() if n.startswith("Ingest.Stream")), None)
    by_name = rest.get("by_name", {})
    return {
        "config": {"users_rest": args.users_rest, "users_ingest": args.users_ingest, "run_time_s": args.run_time_s,
                   "replay_rate_tx_s_per_chain": args.rate_tx_s if stack is not None else None,
                   "ingest_batch_size": args.ingest_batch_size, "own_stack": stack is not None},
        "rest": {
            "transactions": _pick(by_name, "/transactions") if by_name else None,
            "snapshot": _pick(by_name, "/dashboard/snapshot") if by_name else None,
            "aggregated": by_name.get("Aggregated"),
            "by_name": by_name,
            "exit_status": rest.get("exit_status"),
        },
        "ingest": {
            "batches_per_s": ingest_row["rps"] if ingest_row else None,
            "tx_per_s": round(ingest_row["rps"] * args.ingest_batch_size, 1) if ingest_row and ingest_row["rps"]
            else None,
            "batch_to_ack_p50_ms": ingest_row["p50_ms"] if ingest_row else None,
            "batch_to_ack_p99_ms": ingest_row["p99_ms"] if ingest_row else None,
            "failures": ingest_row["failures"] if ingest_row else None,
            "exit_status": ingest["exit_status"],
        },
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Run the REST and gRPC-ingest Locust files headless.")
    parser.add_argument("--gateway", help="gatewayd base URL of a running stack (default: start one)")
    parser.add_argument("--processd", help="processd HOST:PORT of a running stack (default: start one)")
    parser.add_argument("--users-rest", type=int, default=16)
    parser.add_argument("--users-ingest", type=int, default=2)
    parser.add_argument("--run-time-s", type=int, default=30)
    parser.add_argument("--rate-tx-s", type=float, default=100.0, help="replay traffic per chain in the own stack")
    parser.add_argument("--ingest-batch-size", type=int, default=500)
    parser.add_argument("--name", default="loadtest")
    parser.add_argument("--out-dir", type=Path, default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    results = run(args)
    path = write_artifact(args.name, results, directory=args.out_dir)
    print(f"REST /transactions {results['rest']['transactions']}, /dashboard/snapshot {results['rest']['snapshot']}; "
          f"ingest {results['ingest']['tx_per_s']} tx/s -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
