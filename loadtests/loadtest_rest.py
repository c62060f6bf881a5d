"""Headless REST load test of gatewayd: requests/s and p99 of ``/transactions`` and ``/dashboard/snapshot``.

    scripts/loadtest_rest                                  # own stack: 2 anvil chains + replay traffic (ingest running)
    scripts/loadtest_rest --users 64 --run-time-s 60 --rate-tx-s 200
    scripts/loadtest_rest --gateway http://127.0.0.1:8080 --api-key KEY   # a running stack (e.g. the demo)

Writes ``artifacts/perf/loadtest_rest.json`` (and Locust's ``loadtest_rest_stats.csv`` / ``.html``): per route
req/s, p50/p99 and failures, gatewayd's CPU time per request (own stack), and, unless ``--no-baseline``, the
same Locust load against a bare Sanic app serving the same bytes (``loadtests/sanic_baseline.py``): the
ceiling of any Sanic process on this machine at this moment, so a shared, busy machine reads as such.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from common.testing.locust_stats import parse_stats_csv
from common.testing.netutil import free_port, wait_for_port
from common.testing.procfs import cpu_seconds
from common.testing.stack import ChainSpec, Stack, StackConfig
from scripts.bench.harness import ARTIFACT_DIR, REPO_ROOT, write_artifact

log = logging.getLogger("loadtest_rest")

LOCUSTFILE = REPO_ROOT / "loadtests" / "locustfile_rest.py"
BASELINE_APP = REPO_ROOT / "loadtests" / "sanic_baseline.py"
TARGET_RPS = 3000
TARGET_P99_MS = 50


def run_locust(
    host: str,
    users: int,
    run_time_s: int,
    prefix: str,
    out_dir: Path,
    env: dict[str, str],
    locust_args: list[str],
    cpu_pid: int | None = None,
) -> dict[str, Any]:
    """One headless Locust run; returns per-route stats (and the CPU seconds ``cpu_pid`` used meanwhile)."""
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{run_time_s}s",
        "--host",
        host,
        "--csv",
        str(out_dir / prefix),
        "--html",
        str(out_dir / f"{prefix}.html"),
        "--only-summary",
        "--stop-timeout",
        "5",
        *locust_args,
    ]
    cpu0 = cpu_seconds(cpu_pid) if cpu_pid else None
    proc = subprocess.run(
        argv,
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=run_time_s + 120,
        check=False,
    )
    cpu1 = cpu_seconds(cpu_pid) if cpu_pid else None
    if proc.returncode not in (0, 1):
        log.warning("locust exited %s: %s", proc.returncode, proc.stderr[-2000:])
    stats = parse_stats_csv(out_dir / f"{prefix}_stats.csv")
    out: dict[str, Any] = {"exit_status": proc.returncode}
    for key, name in (
        ("transactions", "/transactions"),
        ("snapshot", "/dashboard/snapshot"),
        ("aggregated", "Aggregated"),
    ):
        row = stats.get(name)
        out[key] = {k: row[k] for k in ("rps", "p50_ms", "p99_ms", "avg_ms", "requests", "failures")} if row else None
    agg = out["aggregated"]
    if cpu0 is not None and cpu1 is not None and agg and agg["requests"]:
        out["server_cpu_s"] = round(cpu1 - cpu0, 2)
        out["server_cpu_us_per_request"] = round((cpu1 - cpu0) * 1e6 / agg["requests"], 1)
    return out


def wait_for_data(url: str, headers: dict[str, str], timeout_s: float = 120.0) -> tuple[bytes, bytes]:
    """Waits until both chains have at least 25 transactions; returns real /transactions and snapshot bodies."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            bodies = [
                httpx.get(f"{url}/transactions", params={"chain_id": c, "limit": 25}, headers=headers, timeout=5.0)
                for c in (1, 137)
            ]
            if all(b.status_code == 200 and len(b.json()["transactions"]) == 25 for b in bodies):
                snap = httpx.get(f"{url}/dashboard/snapshot", params={"chain_id": 1}, headers=headers, timeout=5.0)
                return bodies[0].content, snap.content
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("loadtest_rest: no transactions reached the gateway within the timeout")
        time.sleep(1.0)


def run_baseline(
    bodies: tuple[bytes, bytes], users: int, run_time_s: int, out_dir: Path, locust_args: list[str]
) -> dict[str, Any]:
    """The same Locust load against a bare Sanic app serving the same bytes (see sanic_baseline.py)."""
    files = []
    for body in bodies:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
            fh.write(body)
        files.append(fh.name)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(BASELINE_APP), str(port), *files],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_for_port("127.0.0.1", port, 30):
            return {"error": "baseline app did not start"}
        return run_locust(
            f"http://127.0.0.1:{port}", users, run_time_s, "loadtest_rest_baseline", out_dir, {}, locust_args, proc.pid
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for name in files:
            os.unlink(name)


def run(args: argparse.Namespace) -> dict[str, Any]:
    out_dir: Path = args.out_dir or ARTIFACT_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = list(args.api_key) or [k for k in os.environ.get("MEMPULSE_GATEWAYD_API_KEYS", "").split(",") if k.strip()]
    stack: Stack | None = None
    tmp = tempfile.TemporaryDirectory(prefix="loadtest-rest-")
    url = args.gateway
    if not url:
        # One key per Locust user, each with its own bucket: the limiter runs on every request, as in production.
        keys = [f"loadtest-key-{i:03d}" for i in range(args.users)]
        keys_file = Path(tmp.name) / "api-keys"
        keys_file.write_text("\n".join(keys) + "\n")
        gw_args = (
            "--api-keys-file",
            str(keys_file),
            "--rate-limit-rps",
            str(args.key_rps),
            "--rate-limit-burst",
            str(int(args.key_rps)),
            "--cache-ttl-ms",
            str(args.cache_ttl_ms),
            "--workers",
            str(args.workers),
        )
        chains = (ChainSpec(1, rate_tx_s=args.rate_tx_s), ChainSpec(137, rate_tx_s=args.rate_tx_s))
        stack = Stack(StackConfig(chains=chains, gatewayd_args=gw_args)).start()
        url = stack.gateway_url
    try:
        headers = {"x-api-key": keys[0]} if keys else {}
        bodies = wait_for_data(url, headers)
        locust_args = ["--processes", str(args.locust_processes)] if args.locust_processes > 1 else []
        pid = stack.processes["gatewayd"].pid if stack is not None and args.workers == 1 else None
        env = {"MEMPULSE_LOADTEST_API_KEYS": ",".join(keys)}
        load0 = os.getloadavg()[0]
        log.info("load test: %d users for %ds against %s", args.users, args.run_time_s, url)
        gateway = run_locust(url, args.users, args.run_time_s, "loadtest_rest", out_dir, env, locust_args, cpu_pid=pid)
        load1 = os.getloadavg()[0]
        tx_stored = None
        if stack is not None:
            snap = httpx.get(f"{url}/dashboard/snapshot", headers=headers, timeout=10).json()
            tx_stored = {c["chain_id"]: c["tx_count"] for c in snap["chains"]}
        # Calibration while the stack (and its ingest) still runs: same machine load as the gateway run.
        baseline = None if args.no_baseline else run_baseline(bodies, args.users, args.run_time_s, out_dir, locust_args)
    finally:
        if stack is not None:
            stack.stop()
        tmp.cleanup()
    tx = gateway["transactions"] or {}
    results: dict[str, Any] = {
        "config": {
            "users": args.users,
            "run_time_s": args.run_time_s,
            "own_stack": stack is not None,
            "replay_rate_tx_s_per_chain": args.rate_tx_s if stack is not None else None,
            "cache_ttl_ms": args.cache_ttl_ms if stack is not None else None,
            "workers": args.workers,
            "api_keys": len(keys),
        },
        "load_average_1m": {"before": round(load0, 2), "after": round(load1, 2)},
        "transactions": gateway["transactions"],
        "snapshot": gateway["snapshot"],
        "aggregated": gateway["aggregated"],
        "gatewayd_cpu_us_per_request": gateway.get("server_cpu_us_per_request"),
        "tx_stored_by_chain_at_end": tx_stored,
        "target": {
            "rps": TARGET_RPS,
            "p99_ms": TARGET_P99_MS,
            "met": bool(
                gateway["aggregated"]
                and gateway["aggregated"]["rps"] >= TARGET_RPS
                and tx.get("p99_ms") is not None
                and tx["p99_ms"] < TARGET_P99_MS
            ),
        },
        "bare_sanic_baseline": baseline,
    }
    if baseline and baseline.get("aggregated") and gateway["aggregated"]:
        results["rps_vs_bare_sanic"] = round(gateway["aggregated"]["rps"] / baseline["aggregated"]["rps"], 3)
    return results


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Headless Locust load test of gatewayd's REST hot paths.")
    p.add_argument("--gateway", help="base URL of a running gatewayd (default: start an own stack)")
    p.add_argument(
        "--api-key", action="append", default=[],
        help="API key for --gateway (repeatable; default: MEMPULSE_GATEWAYD_API_KEYS)"
    )
    p.add_argument("--users", type=int, default=64, help="concurrent Locust users (default 64)")
    p.add_argument("--run-time-s", type=int, default=30)
    p.add_argument("--rate-tx-s", type=float, default=100.0, help="replay traffic per chain in the own stack")
    p.add_argument("--key-rps", type=float, default=1000.0, help="rate limit per key in the own stack")
    p.add_argument("--cache-ttl-ms", type=int, default=50, help="gatewayd --cache-ttl-ms in the own stack")
    p.add_argument("--workers", type=int, default=1, help="gatewayd --workers in the own stack")
    p.add_argument("--locust-processes", type=int, default=1, help="Locust worker processes (load generator)")
    p.add_argument("--no-baseline", action="store_true", help="skip the bare-Sanic calibration run")
    p.add_argument("--name", default="loadtest_rest", help="artifact name (artifacts/perf/NAME.json)")
    p.add_argument("--out-dir", type=Path, default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    results = run(args)
    path = write_artifact(args.name, results, directory=args.out_dir)
    agg, tx, snap = results["aggregated"] or {}, results["transactions"] or {}, results["snapshot"] or {}
    base = (results.get("bare_sanic_baseline") or {}).get("aggregated") or {}
    print(
        f"gatewayd: {agg.get('rps')} req/s total; /transactions {tx.get('rps')} req/s p99 {tx.get('p99_ms')} ms; "
        f"/dashboard/snapshot {snap.get('rps')} req/s p99 {snap.get('p99_ms')} ms; "
        f"CPU {results['gatewayd_cpu_us_per_request']} us/request; bare Sanic on this machine now: "
        f"{base.get('rps')} req/s -> {path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
