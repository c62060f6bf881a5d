"""Fan-out under load: 1,000 concurrent ``/events/stream`` clients with mixed filters on one gatewayd while
ingest runs at the demo rate, every client checked for exactly its matching events.

    python -m scripts.bench.sse_fanout [--clients 1000] [--slow 5] [--duration-s 30] [--rate-tx-s 50] [--short]

Starts a real processd and a real gatewayd (``--sse-max-clients`` above the client count, no per-address
cap, no rate limit), then ``--client-procs`` client processes (this module with ``--client``: raw asyncio
clients of :mod:`common.testing.sseclient`, cheap enough for 500 per process), each client on one of the
:data:`FILTERS` (chain_id x kinds; more filter parameters slot in as more columns), plus ``--slow`` clients
that read their response head and never read again. Once every client is open, envelopes built from real
mainnet calls are pushed over ``Ingest.Stream`` at ``--rate-tx-s`` per chain on chains 1 and 137 (the
demo's rate: 50 tx/s per chain) for ``--duration-s``. Then, per client, the events it should have
received (processd's ScanEvents with its filter, after the head its stream started at) are compared with
what it received: count, first, last and an order-sensitive digest of the ids must all be equal.

Reported (``artifacts/perf/sse_fanout.json``): events/s delivered to clients (sum over clients), the
latency from processd's receive stamp to the client (``received_unix_ms`` to arrival; it includes the
fsync'd commit, so it bounds commit-to-client from above) over sampled clients, gatewayd's RSS before the
clients, with them and at the end, CPU of gatewayd and processd, the slow clients cut (by the gateway's
counted reason) and the processd subscriptions used (shared upstreams).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from common.pb.v1 import ingest_pb2, ingest_pb2_grpc
from common.testing.ingest_push import channel
from common.testing.procfs import rss_bytes
from common.testing.sseclient import Tally, expected_ids, expected_tally, run_client
from common.testing.synth import synthetic_envelopes
from scripts.bench.harness import REPO_ROOT, percentile, tree_cpu_seconds, write_artifact
from scripts.bench.rest_cpu import start_processd

log = logging.getLogger("sse_fanout")

#: (chain_id, kinds) of the clients, round robin; '' = no filter.
FILTERS = tuple((chain, kinds) for chain in ("", "1", "137")
                for kinds in ("", "tx_seen", "opp_detected", "tx_decoded,opp_detected"))
CHAINS = (1, 137)
#: One client in this many keeps every arrival time (latency); the others only count and digest.
SAMPLE_EVERY = 20


def client_specs(clients: int, slow: int) -> list[dict[str, Any]]:
    """Every client: name, path, filter, whether it samples latency or is slow."""
    specs = []
    for i in range(clients):
        chain, kinds = FILTERS[i % len(FILTERS)]
        params = [p for p in (f"chain_id={chain}" if chain else "", f"kinds={kinds}" if kinds else "") if p]
        specs.append({"name": f"c{i}", "path": "/events/stream" + ("?" + "&".join(params) if params else ""),
                      "chain": chain, "kinds": kinds, "sample": i % SAMPLE_EVERY == 0, "slow": False})
    specs += [{"name": f"slow{i}", "path": "/events/stream?include=raw", "chain": "", "kinds": "", "sample": False,
               "slow": True} for i in range(slow)]
    return specs


# ------------------------------------------------------------------------------------------------ client process

async def _until(done: Any, timeout_s: float) -> None:
    """Polls ``done()`` (the clients' tallies change without any event to wait on) until true or the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done():
            return
        await asyncio.sleep(0.05)


async def _client_main(port: int, specs: list[dict[str, Any]], timeout_s: float) -> list[dict[str, Any]]:
    """Opens every client, says so, then waits for the targets (name -> last expected seq) on stdin and runs
    until each good client reached its target (or ``timeout_s``)."""
    tallies = {s["name"]: Tally(s["name"], s["path"]) for s in specs}
    tasks = [asyncio.create_task(run_client("127.0.0.1", port, tallies[s["name"]], sample=s["sample"],
                                            slow=s["slow"])) for s in specs]
    good = [tallies[s["name"]] for s in specs if not s["slow"]]
    await _until(lambda: all(t.head is not None or t.closed for t in good), timeout_s)
    print(orjson.dumps({"heads": {t.name: t.head for t in good}}).decode(), flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    targets: dict[str, int] = orjson.loads(line)
    await _until(lambda: all(t.last >= targets[t.name] or t.closed for t in good), timeout_s)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return [{**t.summary(), "arrivals": t.arrivals} for t in tallies.values()]


def client_process(args: argparse.Namespace) -> int:
    """``--client``: the specs come as one JSON line on stdin; the tallies go to stdout as the last line."""
    specs = orjson.loads(sys.stdin.readline())
    result = asyncio.run(_client_main(args.port, specs, args.timeout_s))
    print(orjson.dumps({"tallies": result, "cpu_s": time.process_time()}).decode(), flush=True)
    return 0


# ------------------------------------------------------------------------------------------------ driver

async def paced_ingest(addr: str, rate_tx_s: float, duration_s: float) -> int:
    """Pushes envelopes on :data:`CHAINS` at ``rate_tx_s`` per chain, in 10 batches a second; returns how many."""
    per_tick = max(1, round(rate_tx_s * len(CHAINS) / 10))
    ticks = int(duration_s * 10)
    envelopes = synthetic_envelopes(per_tick * ticks, seed=1018, chain_ids=CHAINS)
    acked = 0

    async def batches() -> Any:
        start = time.monotonic()
        for i in range(ticks):
            await asyncio.sleep(max(0.0, start + i / 10 - time.monotonic()))
            yield ingest_pb2.TxBatch(session_id="fanout", batch_seq=i + 1,
                                     envelopes=envelopes[i * per_tick:(i + 1) * per_tick])

    async with channel(addr) as ch:
        async for ack in ingest_pb2_grpc.IngestStub(ch).Stream(batches()):
            acked += ack.accepted
            if ack.batch_seq == ticks:
                break
    return acked


def start_gatewayd(work: Path, processd_addr: str, clients: int, gatewayd_from: Path | None) -> tuple[Any, int]:
    """gatewayd with room for every client: stream cap above the count, no per-address cap, no rate limit; its
    package from ``gatewayd_from`` when given (an older revision's ``gatewayd/``, for a before/after run)."""
    from common.testing.netutil import free_port
    from common.testing.process import ManagedProcess, child_env, python_module_argv

    port = free_port()
    proc = ManagedProcess("gatewayd", python_module_argv(
        "gatewayd", "--listen", f"127.0.0.1:{port}", "--processd", processd_addr, "--rate-limit-rps", "0",
        "--sse-max-clients", str(clients + 64), "--max-connections-per-address", "0"),
        work / "gatewayd.log", env=child_env({"MEMPULSE_LOG_LEVEL": "WARNING", **(
            {"PYTHONPATH": f"{gatewayd_from}:{REPO_ROOT}"} if gatewayd_from else {})}),
        cwd=gatewayd_from,  # ``python -m`` puts the working directory first on sys.path
        ready=lambda: httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).status_code == 200,
        ready_timeout_s=60).start()
    return proc, port


def metric(port: int, name: str) -> float:
    """Sum of the samples of ``name`` (a full sample name, labels included, or a prefix) on gatewayd."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def spawn_clients(port: int, specs: list[dict[str, Any]], procs: int, timeout_s: float) -> list[subprocess.Popen[str]]:
    """Starts the client processes, each with its share of the specs, and waits until all their clients are open."""
    children = []
    for i in range(procs):
        child = subprocess.Popen([sys.executable, "-m", "scripts.bench.sse_fanout", "--client", "--port", str(port),
                                  "--timeout-s", str(timeout_s)], cwd=REPO_ROOT, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdin is not None
        child.stdin.write(json.dumps(specs[i::procs]) + "\n")
        child.stdin.flush()
        children.append(child)
    return children


def _heads(children: list[subprocess.Popen[str]]) -> dict[str, int]:
    heads: dict[str, int] = {}
    for child in children:
        assert child.stdout is not None
        heads.update(orjson.loads(child.stdout.readline())["heads"])
    return heads


def _expected(addr: str, specs: list[dict[str, Any]], heads: dict[str, int]) -> dict[str, list[tuple[int, int]]]:
    """Per good client, the (seq_id, received_unix_ms) it must have received: ScanEvents of its filter after
    its head (one scan per distinct filter and head)."""
    scans: dict[tuple[str, str, int], list[tuple[int, int]]] = {}
    out = {}
    for s in specs:
        if s["slow"]:
            continue
        key = (s["chain"], s["kinds"], heads[s["name"]])
        if key not in scans:
            scans[key] = expected_ids(addr, int(s["chain"] or 0), s["kinds"].split(",") if s["kinds"] else [], key[2])
        out[s["name"]] = scans[key]
    return out


def _collect(children: list[subprocess.Popen[str]], targets: dict[str, int]) -> tuple[list[dict[str, Any]], float]:
    """Sends the targets, then reads every client's tally and the client processes' CPU seconds."""
    line = orjson.dumps(targets).decode() + "\n"
    tallies: list[dict[str, Any]] = []
    cpu = 0.0
    for child in children:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(line)
        child.stdin.flush()
    for child in children:
        assert child.stdout is not None
        out = orjson.loads(child.stdout.read().strip().splitlines()[-1])
        tallies += out["tallies"]
        cpu += out["cpu_s"]
        child.wait(60)
    return tallies, cpu


def check(tallies: list[dict[str, Any]], expected: dict[str, list[tuple[int, int]]]) -> dict[str, Any]:
    """Every good client against its expected events; the latency of the sampled ones."""
    starved, latencies = [], []
    delivered = 0
    for t in tallies:
        if t["name"] not in expected:
            continue
        want = expected[t["name"]]
        delivered += t["count"]
        got = (t["count"], t["first"], t["last"], t["digest"])
        if got != expected_tally([seq for seq, _ in want]) or not t["in_order"]:
            starved.append({"name": t["name"], "path": t["path"], "count": t["count"], "expected": len(want),
                            "error_code": t["error_code"]})
        if t["arrivals"]:
            received = dict(want)
            latencies += [ns / 1e6 - received[seq] for seq, ns in t["arrivals"] if seq in received]
    return {"clients_checked": len(expected), "clients_exact": len(expected) - len(starved),
            "starved_clients": len(starved), "starved": starved[:20],
            "events_delivered": delivered, "latency_samples": len(latencies),
            "receive_to_client_ms": {"p50": round(percentile(latencies, 50), 1) if latencies else None,
                                     "p99": round(percentile(latencies, 99), 1) if latencies else None,
                                     "max": round(max(latencies), 1) if latencies else None}}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; returns the artifact's results."""
    with tempfile.TemporaryDirectory(prefix="mempulse-sse-fanout-") as tmp:
        work = Path(tmp)
        # One subscription per client before the shared upstreams: processd's cap must then hold them all.
        processd, addr = start_processd(work, 300, {"MEMPULSE_PROCESSD_MAX_SUBSCRIBERS": str(args.clients + 64)})
        gateway = None
        try:
            gateway, port = start_gatewayd(work, addr, args.clients, args.gatewayd_from)
            gpid, ppid = gateway.pid or 0, processd.pid or 0
            rss_idle = rss_bytes(gpid) or 0
            specs = client_specs(args.clients, args.slow)
            children = spawn_clients(port, specs, args.client_procs, args.duration_s + 60)
            heads = _heads(children)
            rss_open = rss_bytes(gpid) or 0
            upstreams = metric(port, "mempulse_gatewayd_sse_upstreams")
            cpu_g, cpu_p = tree_cpu_seconds(gpid) or 0.0, tree_cpu_seconds(ppid) or 0.0
            events0 = metric(port, "mempulse_gatewayd_sse_events_total")
            t0 = time.monotonic()
            stored = asyncio.run(paced_ingest(addr, args.rate_tx_s, args.duration_s))
            ingest_s = time.monotonic() - t0
            rss_peak = rss_bytes(gpid) or 0
            expected = _expected(addr, specs, heads)
            tallies, client_cpu = _collect(children, {n: (ids[-1][0] if ids else 0) for n, ids in expected.items()})
            wall_s = time.monotonic() - t0
            cpu_g, cpu_p = (tree_cpu_seconds(gpid) or 0.0) - cpu_g, (tree_cpu_seconds(ppid) or 0.0) - cpu_p
            sent = metric(port, "mempulse_gatewayd_sse_events_total") - events0
            cuts = metric(port, 'mempulse_gatewayd_sse_cuts_total{reason="slow_client"}')
            rss_end = rss_bytes(gpid) or 0
        finally:
            if gateway is not None:
                gateway.stop()
            processd.stop()
    checked = check(tallies, expected)
    mib = 1 / (1 << 20)
    return {"config": {"clients": args.clients, "slow_clients": args.slow, "filters": [list(f) for f in FILTERS],
                       "rate_tx_s_per_chain": args.rate_tx_s, "chains": list(CHAINS), "duration_s": args.duration_s,
                       "client_procs": args.client_procs,
                       "gatewayd_from": str(args.gatewayd_from) if args.gatewayd_from else None},
            "stored_tx": stored, "ingest_s": round(ingest_s, 2), "wall_s": round(wall_s, 2),
            "events_per_s_delivered": round(checked["events_delivered"] / ingest_s),
            "gateway_events_sent": int(sent), "processd_subscriptions": int(upstreams),
            "slow_clients_cut": int(cuts), **checked,
            "gatewayd_rss_mib": {"idle": round(rss_idle * mib, 1), "clients_open": round(rss_open * mib, 1),
                                 "after_ingest": round(rss_peak * mib, 1), "end": round(rss_end * mib, 1)},
            "gatewayd_rss_kib_per_client": round((rss_open - rss_idle) / 1024 / max(1, args.clients + args.slow), 1),
            "cpu_s": {"gatewayd": round(cpu_g, 2), "processd": round(cpu_p, 2), "clients": round(client_cpu, 2)},
            "gatewayd_cpu_us_per_event_delivered": round(cpu_g / max(1, checked["events_delivered"]) * 1e6, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--timeout-s", type=float, default=120.0, help=argparse.SUPPRESS)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--slow", type=int, default=5, help="clients that never read after the head")
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--duration-s", type=float, default=30.0)
    parser.add_argument("--rate-tx-s", type=float, default=50.0, help="per chain (the demo's default)")
    parser.add_argument("--short", action="store_true", help="200 clients for 12 s (the perf gate)")
    parser.add_argument("--gatewayd-from", type=Path, default=None,
                        help="a directory holding another revision's gatewayd/ package (git archive REV gatewayd)")
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--out-name", default="sse_fanout")
    args = parser.parse_args(argv)
    if args.client:
        return client_process(args)
    if args.short:
        args.clients, args.duration_s, args.client_procs = 200, 12.0, 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    results = run(args)
    path = write_artifact(args.out_name, results, directory=args.out_dir, mode="short" if args.short else "full")
    keys = ("clients_checked", "clients_exact", "events_per_s_delivered", "receive_to_client_ms", "gatewayd_rss_mib",
            "slow_clients_cut", "processd_subscriptions", "cpu_s")
    print(orjson.dumps({"artifact": str(path), **{k: results[k] for k in keys}}).decode())
    return 0 if results["clients_exact"] == results["clients_checked"] else 1


if __name__ == "__main__":
    sys.exit(main())
