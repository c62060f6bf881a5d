"""gatewayd's CPU per REST request against a bare Sanic handler serving the same bytes, in the same run.

    python -m scripts.bench.rest_cpu [--tx 3000] [--requests 4000] [--connections 8] [--rounds 3] [--short]

Starts, each in its own process: a real processd seeded over ``Ingest.Stream`` with ``--tx`` synthetic
transactions built from real mainnet calls (decoded, scored, stored in LMDB), a real gatewayd in front of it
(the CLI with its defaults but the rate limit off, as the demo runs it), and ``loadtests/sanic_baseline.py``,
a bare Sanic app whose handlers return the bytes gatewayd answered for the same paths. The load comes from
``scripts.bench.http_load`` in its own process (raw asyncio, keep-alive, a fixed request count), against each
server in turn, alternating over ``--rounds`` rounds after a warm-up round that is not counted.

Measured per round and server: the CPU time of the server's process tree over the round, divided by the requests
answered; to the nanosecond, from the scheduler's per-thread figures (``/proc/<pid>/task/*/schedstat``: the servers'
threads live through a round), not in 10 ms ticks (a short round's ~100 ms of CPU, counted in ticks, moved a
ratio by up to a fifth). processd's CPU over gatewayd's rounds is reported apart: it is the backend, not
gatewayd (with the micro-cache most requests never reach it). The artifact is ``artifacts/perf/rest_cpu.json``;
``ratios`` holds gatewayd / bare per route, of each server's least CPU per request over the rounds (interference only
adds CPU; the medians are in ``routes``), the issue's target is <= 1.3.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import orjson

from common.testing.ingest_push import push_envelopes
from common.testing.netutil import free_port
from common.testing.process import ManagedProcess, child_env, python_module_argv
from common.testing.synth import synthetic_envelopes
from scripts.bench.harness import REPO_ROOT, ratio, tree_cpu_seconds, write_artifact

log = logging.getLogger("rest_cpu")

#: (route name, path) measured: the issue's two views.
ROUTES = (("transactions", "/transactions?chain_id=1&limit=50"), ("snapshot", "/dashboard/snapshot"))
BASELINE_APP = REPO_ROOT / "loadtests" / "sanic_baseline.py"
#: The key of the ``--auth`` runs (sent to the bare app too, which ignores it).
API_KEY = "rest-cpu-bench-key"


def _grpc_serving(addr: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(addr) as ch:
        resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
        return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)


def _http_ok(url: str) -> bool:
    return httpx.get(url, timeout=1.0).status_code == 200


def start_processd(work: Path, tx: int, env: dict[str, str] | None = None) -> tuple[ManagedProcess, str]:
    """A real processd in ``work`` holding ``tx`` stored transactions (checked)."""
    addr = f"127.0.0.1:{free_port()}"
    proc = ManagedProcess("processd", python_module_argv("processd", "--data-dir", str(work / "data"),
                                                         "--listen", addr),
                          work / "processd.log", env=child_env({"MEMPULSE_LOG_LEVEL": "WARNING", **(env or {})}),
                          ready=lambda: _grpc_serving(addr), ready_timeout_s=60).start()
    acks = asyncio.run(push_envelopes(addr, synthetic_envelopes(tx, seed=18), batch_size=250, session_id="rest"))
    stored = sum(a.accepted for a in acks)
    if stored != tx:
        raise RuntimeError(f"processd stored {stored} of {tx} transactions")
    return proc, addr


def start_gatewayd(work: Path, processd_addr: str, auth: bool,
                   gatewayd_from: Path | None = None) -> tuple[ManagedProcess, int]:
    """The real gatewayd CLI in front of ``processd_addr``: rate limit off, or with ``auth`` an API key required
    and a rate limit that runs on every request but never refuses (the production path). Its package comes from
    ``gatewayd_from`` when given (another revision's ``gatewayd/``, for a before/after run)."""
    port = free_port()
    extra = ["--rate-limit-rps", "1000000", "--rate-limit-burst", "1000000"] if auth else ["--rate-limit-rps", "0"]
    env = {"MEMPULSE_LOG_LEVEL": "WARNING", **({"MEMPULSE_GATEWAYD_API_KEYS": API_KEY} if auth else {}),
           **({"PYTHONPATH": f"{gatewayd_from}:{REPO_ROOT}"} if gatewayd_from else {})}
    proc = ManagedProcess("gatewayd", python_module_argv("gatewayd", "--listen", f"127.0.0.1:{port}", "--processd",
                                                         processd_addr, *extra),
                          work / "gatewayd.log", env=child_env(env), cwd=gatewayd_from,  # -m: cwd first on sys.path
                          ready=lambda: _http_ok(f"http://127.0.0.1:{port}/healthz"), ready_timeout_s=60).start()
    return proc, port


def start_bare(work: Path, gateway_port: int) -> tuple[ManagedProcess, int, dict[str, int]]:
    """The bare Sanic app serving the bytes gatewayd answers for :data:`ROUTES` (sizes returned)."""
    sizes: dict[str, int] = {}
    files: list[str] = []
    for name, path in ROUTES:
        body = httpx.get(f"http://127.0.0.1:{gateway_port}{path}", headers={"x-api-key": API_KEY},
                         timeout=10).raise_for_status().content
        (work / f"{name}.json").write_bytes(body)
        files.append(str(work / f"{name}.json"))
        sizes[name] = len(body)
    port = free_port()
    proc = ManagedProcess("sanic_baseline", [sys.executable, str(BASELINE_APP), str(port), *files],
                          work / "bare.log", env=child_env(),
                          ready=lambda: _http_ok(f"http://127.0.0.1:{port}/transactions"), ready_timeout_s=60).start()
    return proc, port, sizes


def load(port: int, path: str, requests: int, connections: int) -> dict[str, Any]:
    """Runs :mod:`scripts.bench.http_load` in its own process; returns its summary line."""
    out = subprocess.run([sys.executable, "-m", "scripts.bench.http_load", "--port", str(port), "--path", path,
                          "--requests", str(requests), "--connections", str(connections),
                          "--header", f"x-api-key: {API_KEY}"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=True)
    result: dict[str, Any] = orjson.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure(server: ManagedProcess, port: int, path: str, args: argparse.Namespace, connections: int,
            backend: ManagedProcess | None = None) -> dict[str, Any]:
    """One round against one server: its CPU per request (us), and the backend's when given."""
    assert server.pid is not None
    cpu0 = tree_cpu_seconds(server.pid, exact=True) or 0.0
    back0 = (tree_cpu_seconds(backend.pid, exact=True) or 0.0) if backend is not None and backend.pid else 0.0
    result = load(port, path, args.requests, connections)
    cpu = (tree_cpu_seconds(server.pid, exact=True) or 0.0) - cpu0
    ok = result["statuses"].get("200", 0)
    if ok != args.requests:
        raise RuntimeError(f"{server.name} {path}: {result['statuses']} of {args.requests} requests")
    row = {"cpu_us_per_request": round(cpu / ok * 1e6, 1), "rps": result["rps"], "body_bytes": result["body_bytes"]}
    if backend is not None and backend.pid:
        back = (tree_cpu_seconds(backend.pid, exact=True) or 0.0) - back0
        row["processd_cpu_us_per_request"] = round(back / ok * 1e6, 1)
    return row


def cases(args: argparse.Namespace) -> list[tuple[str, str, int]]:
    """(case name, path, client connections) of every measurement: each route at each connection count."""
    return [(f"{name}_c{conns}", path, conns) for conns in args.connections for name, path in ROUTES]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Starts the three servers, runs the rounds, returns the results."""
    with tempfile.TemporaryDirectory(prefix="mempulse-rest-cpu-") as tmp:
        work = Path(tmp)
        processd, addr = start_processd(work, args.tx)
        gateway = bare = None
        try:
            gateway, gport = start_gatewayd(work, addr, args.auth, args.gatewayd_from)
            bare, bport, sizes = start_bare(work, gport)
            rounds: dict[str, dict[str, list[dict[str, Any]]]] = {n: {"gatewayd": [], "bare": []}
                                                                  for n, _, _ in cases(args)}
            for index in range(args.rounds + 1):  # round 0 warms up both servers and is not kept
                for name, path, conns in cases(args):
                    g = measure(gateway, gport, path, args, conns, processd)
                    b = measure(bare, bport, path, args, conns)
                    if index:
                        rounds[name]["gatewayd"].append(g)
                        rounds[name]["bare"].append(b)
                        log.info("round %d %s: gatewayd %.1f us, bare %.1f us, processd %.1f us", index, name,
                                 g["cpu_us_per_request"], b["cpu_us_per_request"], g["processd_cpu_us_per_request"])
        finally:
            for proc in (bare, gateway, processd):
                if proc is not None:
                    proc.stop()
    return summarize(rounds, sizes, args)


def summarize(rounds: dict[str, dict[str, list[dict[str, Any]]]], sizes: dict[str, int],
              args: argparse.Namespace) -> dict[str, Any]:
    """Medians and minimums per route and server, and gatewayd / bare per route (of the minimums)."""
    routes: dict[str, Any] = {}
    ratios: dict[str, float | None] = {}
    for name, path, conns in cases(args):
        g, b = rounds[name]["gatewayd"], rounds[name]["bare"]
        med = {
            "gatewayd_cpu_us_per_request": statistics.median(r["cpu_us_per_request"] for r in g),
            "bare_cpu_us_per_request": statistics.median(r["cpu_us_per_request"] for r in b),
            "gatewayd_cpu_us_per_request_min": min(r["cpu_us_per_request"] for r in g),
            "bare_cpu_us_per_request_min": min(r["cpu_us_per_request"] for r in b),
            "processd_cpu_us_per_request": statistics.median(r["processd_cpu_us_per_request"] for r in g),
            "gatewayd_rps": statistics.median(r["rps"] for r in g),
            "bare_rps": statistics.median(r["rps"] for r in b),
        }
        # Of the rounds' least CPU per request: interference (another process, a frequency change) only adds CPU,
        # and in short rounds it moved one server's median by up to 75 % (the same bare handler: 55 and 95 us).
        ratios[name] = ratio(med["gatewayd_cpu_us_per_request_min"], med["bare_cpu_us_per_request_min"])
        routes[name] = {"path": path, "connections": conns, "body_bytes": sizes[name.rsplit("_c", 1)[0]], **med,
                        "rounds": rounds[name]}
    return {"config": {"tx": args.tx, "requests": args.requests, "connections": args.connections,
                       "rounds": args.rounds, "auth_and_rate_limit": args.auth,
                       "gatewayd_from": str(args.gatewayd_from) if args.gatewayd_from else None},
            "routes": routes, "ratios": ratios, "target_ratio": 1.3}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tx", type=int, default=3000, help="transactions stored in processd first")
    parser.add_argument("--requests", type=int, default=4000, help="requests per round and server")
    parser.add_argument("--connections", type=lambda v: [int(x) for x in v.split(",")], default=[8, 64],
                        help="kept-alive connections of the client, comma-separated counts (each measured)")
    parser.add_argument("--rounds", type=int, default=3, help="counted rounds (after one warm-up round)")
    parser.add_argument("--auth", action="store_true",
                        help="gatewayd requires an API key and runs its rate limiter (never refusing) on every request")
    parser.add_argument("--gatewayd-from", type=Path, default=None,
                        help="a directory holding another revision's gatewayd/ package (git archive REV gatewayd)")
    parser.add_argument("--short", action="store_true", help="a quick run (1,500 requests, 5 rounds)")
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--out-name", default="rest_cpu")
    args = parser.parse_args(argv)
    if args.short:
        args.requests, args.rounds = 1500, 5
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    results = run(args)
    path = write_artifact(args.out_name, results, directory=args.out_dir, mode="short" if args.short else "full")
    print(orjson.dumps({"artifact": str(path), "ratios": results["ratios"]}).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
