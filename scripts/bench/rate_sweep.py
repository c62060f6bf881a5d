"""CPU per transaction of the whole pipeline at fixed rates, side by side with a plain web3.py loop (issue 20).

    python -m scripts.bench.rate_sweep [--short] [--rates 20,200,2000,max] [--paths direct,proxy]
                                       [--consumers mempulse_on,mempulse_off,web3,floor] [--drive-s 10]

One anvil node (chain 1, ``--no-mining``) receives replayed mainnet calls at a fixed rate (``max`` = back to back,
as fast as anvil accepts them), and one consumer at a time reads them, directly or through the fault proxy adding a
hosted provider's round trip (``--latency-ms``, 30 by default):

``mempulse_on`` / ``mempulse_off``
    ingestd (``--full-tx on``: full objects on the WebSocket; ``off``: hashes + batch fetch) -> a fresh processd
    (durable group commit, decoding and scoring in its analysis workers). CPU = ingestd + processd with every
    descendant.
``web3``
    web3.py's ``eth.subscribe("newPendingTransactions", True)`` (full transactions) read in a plain ``async for``
    loop in its own process, which keeps each hash and the time it saw it and stores nothing.
``floor``
    the least any Python consumer does: one ``websockets`` connection, ``orjson.loads`` of each notification.

The measured window is the same for every consumer: from the first send until the consumer's processes have gone
quiet after the drive (CPU under 2% of a core for 0.5 s), read from ``/proc`` (the run time of every thread of
every process of the consumer, to the nanosecond; the user+sys ticks too, as a cross-check: ``cpu_s_ticks``), so
nothing polls the consumer while it works. Delivered = accepted hashes the consumer stored (mempulse:
read back from processd over Query) or saw (the loops). Latency: mempulse, ingestd's announce-to-durable-ack
histogram (``notification_to_ack``); the loops, anvil's acceptance (the send's answer) to the loop seeing it.
RSS per process (and its anonymous part) at the end of each phase.

An ``idle`` phase first runs processd, ingestd (connected, no traffic) and gatewayd for ``--idle-s`` and reports
each one's CPU as a share of a core. Writes ``artifacts/perf/rate_sweep.json`` (``rate_sweep_short`` with
``--short``: 200 tx/s direct, mempulse --full-tx on and the web3 loop, about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from common.testing.anvil import AnvilNode
from common.testing.fixtures import MainnetCall, load_mainnet_calls
from common.testing.netutil import free_port, wait_for_port
from common.testing.procfs import cpu_reader, descendants, exact_cpu_available, rss_anon_bytes, rss_bytes
from common.testing.replay import Replayer
from scripts.bench.harness import REPO_ROOT, percentile, ratio, read_artifact, tree_cpu_seconds, write_artifact
from scripts.bench.ingest_bench import clear_pool, delta, hist_quantile, msum, scrape, start_proxy, stop, stored_hashes

log = logging.getLogger("rate_sweep")
PY = sys.executable
CHAIN_ID = 1
CHAIN = "ethereum"
CONSUMERS = ("mempulse_on", "mempulse_off", "web3", "floor")
#: A consumer counts as done when its processes used less than this share of a core over QUIET_WINDOW_S.
QUIET_CORE_SHARE = 0.02
QUIET_WINDOW_S = 0.5


# ------------------------------------------------------------------------------------------ traffic

async def paced_drive(http_url: str, rate: float | None, duration_s: float, calls: list[MainnetCall],
                      offset: int) -> dict[str, Any]:
    """Sends replayed calls at ``rate`` tx/s (None = back to back in batches of 100) for ``duration_s``.

    Returns the accepted hashes with the unix time anvil's answer arrived (anvil announces a transaction when it
    accepts it, so this is the announce time to within the send's round trip)."""
    cycle = itertools.cycle(calls[offset:] + calls[:offset])
    accepted: list[tuple[str, float]] = []
    async with Replayer(http_url, batch_size=100) as replayer:
        await replayer.fund(c.sender for c in calls)  # before the window: funding is not traffic
        started = time.monotonic()
        sent = 0
        while True:
            elapsed = time.monotonic() - started
            if elapsed >= duration_s:
                break
            due = 100 if rate is None else int(elapsed * rate) + 1 - sent
            if due <= 0:
                await asyncio.sleep(max(0.001, (sent + 1) / rate - elapsed) if rate else 0.001)
                continue
            batch = [next(cycle) for _ in range(min(due, 100))]
            try:
                answered = await replayer.send(batch)
            except httpx.HTTPError as exc:
                log.warning("replay failed: %s", exc)
                continue
            now = time.time()
            accepted.extend((s.tx_hash, now) for s in answered)
            sent += len(batch)
        elapsed = time.monotonic() - started
    return {"accepted": accepted, "elapsed_s": elapsed, "accepted_tx_s": len(accepted) / elapsed,
            "rejected": replayer.stats.rejected}


# ------------------------------------------------------------------------------------------ processes

def tree_pids(pid: int) -> list[int]:
    return [pid, *descendants(pid)]


def cpu_of(pids: dict[str, int], exact: bool = False) -> dict[str, float]:
    """CPU seconds of each named process and its descendants: user+sys in clock ticks, or (``exact``) the
    scheduler's run time of their live threads to the nanosecond (a 6 s phase at 200 tx/s is a few hundred ms of
    CPU over several processes: 10 ms ticks each moved the short sweep's ratio by several percent)."""
    return {name: tree_cpu_seconds(pid, exact=exact) or 0.0 for name, pid in pids.items()}


def wait_quiet(pids: dict[str, int], deadline_s: float) -> tuple[float, dict[str, float]]:
    """Waits until the processes together use under QUIET_CORE_SHARE of a core over QUIET_WINDOW_S (or the
    deadline passes); returns the monotonic time and the CPU readings at that point."""
    end = time.monotonic() + deadline_s
    prev_t, prev = time.monotonic(), cpu_of(pids, exact=True)
    while True:
        time.sleep(QUIET_WINDOW_S)
        now, cur = time.monotonic(), cpu_of(pids, exact=True)
        if sum(cur.values()) - sum(prev.values()) < QUIET_CORE_SHARE * (now - prev_t) or now > end:
            # the consumer was done by the start of this quiet window: that is where its work ended
            return prev_t, prev
        prev_t, prev = now, cur


def memory_of(pid: int, name: str) -> dict[str, dict[str, float | None]]:
    """RSS and anonymous RSS in MiB of ``pid`` and of each of its descendants (``name/1``, ``name/2``, ...)."""
    out: dict[str, dict[str, float | None]] = {}
    for i, p in enumerate(tree_pids(pid)):
        rss, anon = rss_bytes(p), rss_anon_bytes(p)
        out[name if i == 0 else f"{name}/{i}"] = {"rss_mib": round(rss / 2**20, 1) if rss else None,
                                                  "anon_mib": round(anon / 2**20, 1) if anon else None}
    return out


def start_processd(tmp: Path, logs: Path, tag: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    data = tmp / f"lmdb-{tag}"
    proc = subprocess.Popen([PY, "-m", "processd", "--data-dir", str(data), "--listen", f"127.0.0.1:{port}"],
                            cwd=REPO_ROOT, stdout=(logs / f"processd-{tag}.log").open("wb"), stderr=subprocess.STDOUT)
    if not wait_for_port("127.0.0.1", port, 30):
        stop(proc)
        raise RuntimeError(f"processd did not start (see {logs}/processd-{tag}.log)")
    return proc, f"127.0.0.1:{port}"


def start_ingestd(ws: str, http: str, processd: str, full_tx: str, logs: Path,
                  tag: str) -> tuple[subprocess.Popen[bytes], int]:
    metrics_port = free_port()
    proc = subprocess.Popen([PY, "-m", "ingestd", "--processd", processd, "--metrics-port", str(metrics_port),
                             "--full-tx", full_tx, "--chain", f"{CHAIN_ID}={ws},{http}"], cwd=REPO_ROOT,
                            stdout=(logs / f"ingestd-{tag}.log").open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            if msum(scrape(metrics_port), "mempulse_ingestd_source_connected") >= 1:
                return proc, metrics_port
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            stop(proc)
            raise RuntimeError(f"ingestd did not become ready (see {logs}/ingestd-{tag}.log)")
        time.sleep(0.1)


def start_loop_worker(kind: str, ws: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([PY, "-m", "scripts.bench.rate_sweep", f"--{kind}-worker", ws], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"READY":
        stop(proc)
        raise RuntimeError(f"{kind} worker did not start")
    return proc


# ------------------------------------------------------------------------------------------ phases

def run_phase(consumer: str, rate: float | None, ws: str, http: str, node: AnvilNode, calls: list[MainnetCall],
              args: argparse.Namespace, tmp: Path, logs: Path, index: int) -> dict[str, Any]:
    tag = f"{consumer}-{index}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        pids: dict[str, int]
        if consumer.startswith("mempulse"):
            processd, addr = start_processd(tmp, logs, tag)
            procs.append(processd)
            ingestd, mport = start_ingestd(ws, http, addr, consumer.rsplit("_", 1)[1], logs, tag)
            procs.insert(0, ingestd)
            pids = {"ingestd": ingestd.pid, "processd": processd.pid}
            before = scrape(mport)
        else:
            worker = start_loop_worker(consumer, ws)
            procs.append(worker)
            pids = {consumer: worker.pid}
        time.sleep(0.5)  # start-up work (imports, connections) out of the window
        ticks0, cpu0 = cpu_of(pids), cpu_of(pids, exact=True)
        main_cpu = cpu_reader(True)
        processd_main0 = main_cpu(pids["processd"]) if "processd" in pids else None
        t0 = time.monotonic()
        traffic = asyncio.run(paced_drive(node.http_url, rate, args.drive_s, calls, 300 * index % len(calls)))
        t1, cpu1 = wait_quiet(pids, args.drain_timeout_s)
        ticks1 = cpu_of(pids)  # (the cross-check in ticks, read just after the quiet window: the consumer is idle)
        processd_main1 = main_cpu(pids["processd"]) if "processd" in pids else None
        accepted = dict(traffic["accepted"])
        ticks = {name: ticks1[name] - ticks0[name] for name in pids}
        cpu = {name: cpu1[name] - cpu0[name] for name in pids}
        memory: dict[str, Any] = {}
        for name, pid in pids.items():
            memory.update(memory_of(pid, name))
        out: dict[str, Any] = {"consumer": consumer, "target_tx_s": rate or "max",
                               "accepted": len(accepted), "accepted_tx_s": round(traffic["accepted_tx_s"], 1),
                               "replay_rejected": traffic["rejected"], "window_s": round(t1 - t0, 2)}
        if consumer.startswith("mempulse"):
            m = delta(scrape(mport), before)
            stored = stored_hashes(addr, CHAIN_ID)
            delivered = len(set(accepted) & stored)
            fetches = msum(m, "mempulse_ingestd_fetch_batch_hashes_count", chain=CHAIN)
            batches = msum(m, "mempulse_ingestd_outbound_batch_envelopes_count", chain=CHAIN)
            out.update(
                latency_ms={q: _ms(hist_quantile(m, "mempulse_ingestd_notification_to_ack_seconds", v, chain=CHAIN))
                            for q, v in (("p50", 0.5), ("p99", 0.99))},
                latency_from="ingestd notification -> processd durable ack",
                fetch_requests=fetches,
                fetch_batch_mean=round(msum(m, "mempulse_ingestd_fetch_batch_hashes_sum", chain=CHAIN) / fetches, 2)
                if fetches else None,
                outbound_batches=batches,
                outbound_batch_mean=round(msum(m, "mempulse_ingestd_outbound_batch_envelopes_sum", chain=CHAIN)
                                          / batches, 2) if batches else None)
            if processd_main0 is not None and processd_main1 is not None:
                cpu["processd_main"] = processd_main1 - processd_main0
                cpu["processd_workers"] = cpu["processd"] - cpu["processd_main"]
        else:
            worker = procs[0]
            worker.send_signal(signal.SIGTERM)
            stdout, _ = worker.communicate(timeout=30)
            lines = stdout.decode().strip().splitlines()
            seen = json.loads(lines[-1])["seen"] if lines else []
            latencies = [max(0.0, t - accepted[h]) * 1000 for h, t in seen if h in accepted]
            delivered = len({h for h, _ in seen} & set(accepted))
            out.update(latency_ms={"p50": _round(percentile(latencies, 50)), "p99": _round(percentile(latencies, 99))}
                       if latencies else {"p50": None, "p99": None},
                       latency_from="anvil accepted (send answered) -> loop saw it")
        total_cpu = sum(cpu[name] for name in pids)
        out.update(delivered=delivered, delivered_ratio=round(delivered / len(accepted), 4) if accepted else None,
                   cpu_s={k: round(v, 3) for k, v in cpu.items()}, cpu_s_total=round(total_cpu, 3),
                   cpu_s_ticks={k: round(v, 3) for k, v in ticks.items()}, cpu_exact=exact_cpu_available(),
                   cpu_us_per_tx=round(total_cpu * 1e6 / delivered, 1) if delivered else None,
                   cpu_core_share=round(total_cpu / (t1 - t0), 3) if t1 > t0 else None, memory_mib=memory,
                   rss_mib_total=round(sum(v["rss_mib"] or 0 for v in memory.values()), 1))
        log.info("%s at %s tx/s: accepted %d delivered %d, %s us/tx, p99 %s ms", consumer, rate or "max",
                 len(accepted), delivered, out["cpu_us_per_tx"], out["latency_ms"]["p99"])
        return out
    finally:
        for proc in procs:
            stop(proc)
        clear_pool(node)


def run_idle(node: AnvilNode, tmp: Path, logs: Path, idle_s: float) -> dict[str, Any]:
    """processd, ingestd (connected to anvil, nothing sent) and gatewayd at rest: each one's share of a core."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        processd, addr = start_processd(tmp, logs, "idle")
        procs.append(processd)
        ingestd, _ = start_ingestd(node.ws_url, node.http_url, addr, "on", logs, "idle")
        procs.insert(0, ingestd)
        gport = free_port()
        gatewayd = subprocess.Popen([PY, "-m", "gatewayd", "--listen", f"127.0.0.1:{gport}", "--processd", addr],
                                    cwd=REPO_ROOT, stdout=(logs / "gatewayd-idle.log").open("wb"),
                                    stderr=subprocess.STDOUT)
        procs.insert(0, gatewayd)
        if not wait_for_port("127.0.0.1", gport, 30):
            raise RuntimeError("gatewayd did not start")
        pids = {"ingestd": ingestd.pid, "processd": processd.pid, "gatewayd": gatewayd.pid}
        time.sleep(3.0)  # start-up work (workers forking, first stats) out of the window
        cpu0, t0 = cpu_of(pids), time.monotonic()
        time.sleep(idle_s)
        cpu1, t1 = cpu_of(pids), time.monotonic()
        memory: dict[str, Any] = {}
        for name, pid in pids.items():
            memory.update(memory_of(pid, name))
        share = {name: round((cpu1[name] - cpu0[name]) / (t1 - t0) * 100, 3) for name in pids}
        log.info("idle: %% of a core %s", share)
        return {"seconds": round(t1 - t0, 1), "core_percent": share, "memory_mib": memory,
                "every_daemon_under_1_percent": all(v < 1.0 for v in share.values())}
    finally:
        for proc in procs:
            stop(proc)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _round(value: float) -> float:
    return round(value, 1)


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """Ratios of CPU per tx measured in the same run (mempulse over the web3 loop, per path, rate and mode) and
    the issue's targets."""
    out: dict[str, Any] = {}
    for path, by_rate in results["phases"].items():
        for rate, by_consumer in by_rate.items():
            web3 = (by_consumer.get("web3") or {}).get("cpu_us_per_tx")
            floor = (by_consumer.get("floor") or {}).get("cpu_us_per_tx")
            for mode in ("mempulse_on", "mempulse_off"):
                mine = (by_consumer.get(mode) or {}).get("cpu_us_per_tx")
                if mine is None:
                    continue
                out.setdefault(path, {}).setdefault(rate, {})[mode] = {
                    "over_web3": ratio(mine, web3, 2), "web3_over": ratio(web3, mine, 2),
                    "over_floor": ratio(mine, floor, 2)}
    direct = out.get("direct", {})
    targets: dict[str, Any] = {}
    at200 = direct.get("200", {}).get("mempulse_on", {}).get("over_web3")
    if at200 is not None:
        targets["at_200_cpu_per_tx_le_web3"] = at200 <= 1.0
    peak = direct.get("max", {}).get("mempulse_on", {}).get("web3_over")
    if peak is not None:
        targets["at_max_web3_over_mempulse_ge_1_5"] = peak >= 1.5
    p99 = (results["phases"].get("direct", {}).get("max", {}).get("mempulse_on") or {}).get("latency_ms", {})
    if p99.get("p99") is not None:
        targets["at_max_p99_le_150_ms"] = p99["p99"] <= 150
    if "idle" in results:
        targets["idle_every_daemon_under_1_percent"] = results["idle"]["every_daemon_under_1_percent"]
    return {"cpu_per_tx_ratios": out, "targets": targets}


def render_markdown(doc: dict[str, Any]) -> str:
    """The README's rate-sweep table from an artifact: one row per path, rate and consumer."""
    results = doc["results"]
    lines = ["| path | rate (tx/s, accepted) | consumer | delivered | p99 ms | CPU us/tx | vs web3.py | RSS MiB |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    ratios = results.get("cpu_per_tx_ratios", {})
    for path, by_rate in results["phases"].items():
        for rate, by_consumer in by_rate.items():
            for consumer, d in by_consumer.items():
                over = (ratios.get(path, {}).get(rate, {}).get(consumer) or {}).get("over_web3")
                p99 = d.get("latency_ms", {}).get("p99")
                lines.append(f"| {path} | {rate} ({d['accepted_tx_s']:,.0f}) | {consumer} | "
                             f"{(d.get('delivered_ratio') or 0) * 100:.1f}% | {'-' if p99 is None else f'{p99:.0f}'} | "
                             f"{d.get('cpu_us_per_tx') or 0:,.0f} | {'' if over is None else f'{over:.2f}x'} | "
                             f"{d.get('rss_mib_total') or 0:.0f} |")
    idle = results.get("idle", {}).get("core_percent")
    if idle:
        lines += ["", "Idle, % of a core: " + ", ".join(f"{k} {v:.2f}" for k, v in idle.items())]
    machine = doc.get("machine", {})
    lines += ["", f"`{doc.get('name')}.json`: {doc.get('created_utc')}, {machine.get('cpu_count')} x "
              f"{machine.get('cpu_model')}, load average {machine.get('load_avg_1m_at_start')} at start / "
              f"{machine.get('load_avg_1m_at_end')} at end, commit {machine.get('git_commit')}"]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ loop workers

async def _until_sigterm(loop_body: Any) -> None:
    task = asyncio.ensure_future(loop_body)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def web3_worker(ws_url: str) -> list[tuple[str, float]]:
    """A plain web3.py loop: full pending transactions from one subscription, each hash kept with the time."""
    from web3 import AsyncWeb3, WebSocketProvider

    seen: list[tuple[str, float]] = []

    async def body() -> None:
        async with AsyncWeb3(WebSocketProvider(ws_url)) as w3:
            await w3.eth.subscribe("newPendingTransactions", True)
            print("READY", flush=True)
            async for payload in w3.socket.process_subscriptions():
                tx = payload["result"]
                seen.append((tx["hash"].to_0x_hex(), time.time()))

    await _until_sigterm(body())
    return seen


async def floor_worker(ws_url: str) -> list[tuple[str, float]]:
    """The floor: one websockets connection and orjson.loads of each notification, nothing else."""
    import orjson
    import websockets

    seen: list[tuple[str, float]] = []

    async def body() -> None:
        async with websockets.connect(ws_url, max_size=None) as ws:
            await ws.send(b'{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newPendingTransactions",true]}')
            orjson.loads(await ws.recv())
            print("READY", flush=True)
            async for raw in ws:
                msg = orjson.loads(raw)
                seen.append((msg["params"]["result"]["hash"], time.time()))

    await _until_sigterm(body())
    return seen


# ------------------------------------------------------------------------------------------ main

def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="rate-sweep-"))
    logs = tmp / "logs"
    logs.mkdir()
    node = AnvilNode(chain_id=CHAIN_ID)
    proxy: subprocess.Popen[bytes] | None = None
    calls = load_mainnet_calls()
    results: dict[str, Any] = {"drive_s": args.drive_s, "proxy_latency_ms": args.latency_ms, "phases": {}}
    try:
        node.start()
        if args.idle_s > 0:
            results["idle"] = run_idle(node, tmp, logs, args.idle_s)
        index = 0
        for path in args.paths:
            if path == "proxy":
                proxy, addr = start_proxy(node.http_url, args.latency_ms, logs)
                ws, http = f"ws://{addr}", f"http://{addr}"
            else:
                ws, http = node.ws_url, node.http_url
            for rate_text in args.rates:
                rate = None if rate_text == "max" else float(rate_text)
                for consumer in args.consumers:
                    index += 1
                    results["phases"].setdefault(path, {}).setdefault(rate_text, {})[consumer] = run_phase(
                        consumer, rate, ws, http, node, calls, args, tmp, logs, index)
            if proxy is not None:
                stop(proxy)
                proxy = None
        results.update(summarize(results))
        results["logs"] = str(logs)
        return results
    finally:
        if proxy is not None:
            stop(proxy)
        node.stop()
        if not args.keep_data:
            for lmdb in tmp.glob("lmdb-*"):
                shutil.rmtree(lmdb, ignore_errors=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="CPU per tx of mempulse vs a plain web3.py loop at fixed rates.")
    parser.add_argument("--short", action="store_true",
                        help="the gate's version (about a minute): 200 tx/s direct, mempulse_on and web3, 6 s")
    parser.add_argument("--rates", default=None, help="comma-separated tx/s or 'max' (default 20,200,2000,max)")
    parser.add_argument("--paths", default=None, help="direct,proxy (default both; short: direct)")
    parser.add_argument("--consumers", default=None, help="subset of " + ",".join(CONSUMERS))
    parser.add_argument("--drive-s", type=float, default=None, help="seconds of traffic per phase (10; 6 short)")
    parser.add_argument("--idle-s", type=float, default=None, help="seconds of the idle phase (10; 5 short; 0 = skip)")
    parser.add_argument("--latency-ms", type=float, default=30.0, help="round trip the proxy adds (default 30)")
    parser.add_argument("--drain-timeout-s", type=float, default=30.0)
    parser.add_argument("--name", default=None, help="artifact name (default rate_sweep, or rate_sweep_short)")
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--keep-data", action="store_true")
    parser.add_argument("--table", type=Path, metavar="ARTIFACT", help="print the markdown table of an artifact")
    parser.add_argument("--web3-worker", metavar="WS", help=argparse.SUPPRESS)
    parser.add_argument("--floor-worker", metavar="WS", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.web3_worker or args.floor_worker:
        worker = web3_worker(args.web3_worker) if args.web3_worker else floor_worker(args.floor_worker)
        seen = asyncio.run(worker)
        print(json.dumps({"seen": seen}), flush=True)
        return
    if args.table:
        print(render_markdown(read_artifact(args.table)))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    short = args.short
    args.rates = (args.rates or ("200" if short else "20,200,2000,max")).split(",")
    args.paths = (args.paths or ("direct" if short else "direct,proxy")).split(",")
    args.consumers = (args.consumers or ("mempulse_on,web3" if short else ",".join(CONSUMERS))).split(",")
    for value, allowed, what in ((args.paths, ("direct", "proxy"), "path"), (args.consumers, CONSUMERS, "consumer")):
        unknown = set(value) - set(allowed)
        if unknown:
            build_parser().error(f"unknown {what}: {sorted(unknown)}")
    if args.drive_s is None:
        args.drive_s = 6.0 if short else 10.0
    if args.idle_s is None:
        args.idle_s = 5.0 if short else 10.0
    started = time.monotonic()
    results = run(args)
    results["wall_s"] = round(time.monotonic() - started, 1)
    name = args.name or ("rate_sweep_short" if short else "rate_sweep")
    path = write_artifact(name, results, directory=args.out_dir, mode="short" if short else "full")
    table = {f"{p}/{r}/{c}": (d.get("cpu_us_per_tx"), d.get("latency_ms", {}).get("p99"), d.get("delivered_ratio"))
             for p, by_rate in results["phases"].items() for r, by_c in by_rate.items() for c, d in by_c.items()}
    print(json.dumps({"artifact": str(path), "us_per_tx_p99_delivered": table, "idle": results.get("idle", {}).get(
        "core_percent"), "targets": results["targets"], "wall_s": results["wall_s"]}, indent=1))


if __name__ == "__main__":
    main()
