"""ingestd benchmark: two anvil chains at the highest rate they accept, then a naive ingest loop for comparison.

    python -m scripts.bench.ingest_bench [--short] [--drive-s 30] [--latency-ms 30] [--name ingest]

Four phases against the same two anvil nodes (chain ids 1 and 137, ``--no-mining``), each with replayed
mainnet calls sent as fast as anvil accepts them (one replayer per chain, batched ``eth_sendTransaction``):

1. ``ingestd_direct``: ingestd (``--full-tx off``: WS hashes + batch fetch) -> a real processd. After the
   drive, wait until ingestd has settled, then read every stored transaction back over Query and check that
   every accepted hash was delivered. Reports tx/s per chain, drop ratio, fetch batch sizes, RPC latency and
   notification-to-ack latency (ingestd's own histograms).
2. ``ingestd_proxy``: the same through a fault proxy (``common.testing.faultproxy``) adding ``--latency-ms`` round
   trip to every HTTP request and half of it to every WS frame each way: a hosted provider.
3. ``naive_direct`` / 4. ``naive_proxy``: a naive loop in its own process (one ``eth_getTransactionByHash`` per
   hash, generic ``json`` parsing, awaited inside the WS read loop), directly and through the proxy. It only
   builds the envelope and does not send it anywhere, which flatters it.

Ratios: ingestd tx/s over naive tx/s, per chain, for both paths. On localhost both can hit anvil's own
acceptance rate, in which case the direct ratio says little: the artifact records whether anvil was the
limit (ingestd kept up with everything anvil accepted). Writes ``artifacts/perf/<name>.json`` (default
``ingest``; ``ingest_short`` with ``--short``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
from prometheus_client.parser import text_string_to_metric_families

from common.pb.v1 import query_pb2, query_pb2_grpc
from common.testing.anvil import AnvilNode
from common.testing.fixtures import load_mainnet_calls
from common.testing.netutil import free_port, wait_for_port
from common.testing.procfs import cpu_seconds, rss_bytes
from common.testing.replay import Replayer
from scripts.bench.harness import REPO_ROOT, ratio, tree_cpu_seconds, write_artifact

log = logging.getLogger("ingest_bench")
CHAINS = {1: "ethereum", 137: "polygon"}
PHASES = ("ingestd_direct", "ingestd_proxy", "naive_direct", "naive_proxy")
PY = sys.executable


# ------------------------------------------------------------------------------------------ traffic

async def drive(http_url: str, duration_s: float, batch_size: int, offset: int) -> dict[str, Any]:
    """Sends replayed calls back to back for ``duration_s``; returns accepted hashes and rates."""
    calls = load_mainnet_calls()
    cycle = itertools.cycle(calls[offset:] + calls[:offset])
    accepted: list[str] = []
    started = time.monotonic()
    async with Replayer(http_url, batch_size=batch_size) as replayer:
        while time.monotonic() - started < duration_s:
            try:
                sent = await replayer.send([next(cycle) for _ in range(batch_size)])
            except httpx.HTTPError as exc:
                log.warning("replay failed: %s", exc)
                continue
            accepted.extend(s.tx_hash for s in sent)
        elapsed = time.monotonic() - started
        return {"accepted": accepted, "sent": replayer.stats.sent, "rejected": replayer.stats.rejected,
                "elapsed_s": elapsed, "accepted_tx_s": len(accepted) / elapsed}


async def drive_all(nodes: dict[int, AnvilNode], duration_s: float, batch_size: int, phase: int) -> dict[int, Any]:
    results = await asyncio.gather(*(drive(n.http_url, duration_s, batch_size, 500 * phase + 37 * cid % 400)
                                     for cid, n in nodes.items()))
    return dict(zip(nodes, results, strict=True))


async def drive_paced(nodes: dict[int, AnvilNode], rate_per_s: float, duration_s: float) -> None:
    """Light, paced traffic (for latency without saturation)."""
    calls = load_mainnet_calls()

    async def one(node: AnvilNode, offset: int) -> None:
        async with Replayer(node.http_url, batch_size=10) as replayer:
            await replayer.run(calls[offset:] + calls[:offset], rate_per_s, duration_s)

    await asyncio.gather(*(one(n, 1000 + 50 * i) for i, n in enumerate(nodes.values())))


def clear_pool(node: AnvilNode) -> None:
    """Empties anvil's pending pool between phases (keeps the nodes comparable from phase to phase)."""
    try:
        httpx.post(node.http_url, json={"jsonrpc": "2.0", "id": 1, "method": "anvil_dropAllTransactions",
                                        "params": []}, timeout=30)
    except httpx.HTTPError as exc:
        log.warning("anvil_dropAllTransactions failed: %s", exc)


# ------------------------------------------------------------------------------------------ metrics

def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def msum(m: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for lab, v in m.get(name, []) if all(lab.get(k) == x for k, x in labels.items()))


def hist_quantile(m: dict[str, list[tuple[dict[str, str], float]]], name: str, q: float,
                  since: dict[str, list[tuple[dict[str, str], float]]] | None = None, **labels: str) -> float | None:
    """Quantile of a Prometheus histogram (summed over matching series; minus the ``since`` scrape when
    given), linear within the bucket."""
    buckets: dict[float, float] = {}
    for sign, scraped in ((1.0, m), (-1.0, since or {})):
        for lab, v in scraped.get(name + "_bucket", []):
            if all(lab.get(k) == x for k, x in labels.items()):
                le = float(lab["le"])
                buckets[le] = buckets.get(le, 0.0) + sign * v
    if not buckets:
        return None
    edges = sorted(buckets)
    total = buckets[edges[-1]]
    if total == 0:
        return None
    target = q * total
    prev_edge, prev_count = 0.0, 0.0
    for edge in edges:
        count = buckets[edge]
        if count >= target:
            if math.isinf(edge):
                return prev_edge
            span = count - prev_count
            return prev_edge + (edge - prev_edge) * ((target - prev_count) / span if span else 1.0)
        prev_edge, prev_count = edge, count
    return prev_edge


def delta(m: dict[str, list[tuple[dict[str, str], float]]],
          base: dict[str, list[tuple[dict[str, str], float]]]) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Counters and histogram series of ``m`` minus those of the earlier scrape ``base``; gauges as in ``m``."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for name, samples in m.items():
        if not name.endswith(("_total", "_bucket", "_sum", "_count")):
            out[name] = samples
            continue
        before = {tuple(sorted(lab.items())): v for lab, v in base.get(name, [])}
        out[name] = [(lab, v - before.get(tuple(sorted(lab.items())), 0.0)) for lab, v in samples]
    return out


def settled(m: dict[str, list[tuple[dict[str, str], float]]], chain: str) -> bool:
    losses = sum(v for lab, v in m.get("mempulse_ingestd_drops_total", []) if lab.get("chain") == chain
                 and lab.get("reason") != "dedup")
    return (msum(m, "mempulse_ingestd_delivered_total", chain=chain) + losses
            == msum(m, "mempulse_ingestd_seen_total", chain=chain)
            and msum(m, "mempulse_ingestd_unacked_batches", chain=chain) == 0
            and msum(m, "mempulse_ingestd_queue_depth", chain=chain) == 0)


def stored_hashes(processd_addr: str, chain_id: int) -> set[str]:
    out: set[str] = set()
    with grpc.insecure_channel(processd_addr) as channel:
        stub = query_pb2_grpc.QueryStub(channel)
        cursor = 0
        while True:
            page = stub.ListTransactions(query_pb2.ListTransactionsRequest(
                chain_id=chain_id, limit=1000, cursor=cursor, ascending=True), timeout=30)
            out.update("0x" + s.tx.hash.hex() for s in page.transactions)
            if not page.next_cursor or not page.transactions:
                return out
            cursor = page.next_cursor


# ------------------------------------------------------------------------------------------ phases

def start_proxy(upstream: str, latency_ms: float, logs: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([PY, "-m", "common.testing.faultproxy", "--upstream", upstream,
                             "--listen", f"127.0.0.1:{port}", "--latency-ms", str(latency_ms)], cwd=REPO_ROOT,
                            stdout=(logs / f"proxy-{port}.log").open("wb"), stderr=subprocess.STDOUT)
    if not wait_for_port("127.0.0.1", port, 15):
        raise RuntimeError("fault proxy did not start")
    return proc, f"127.0.0.1:{port}"


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 15) -> int | None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def run_ingestd_phase(name: str, endpoints: dict[int, tuple[str, str]], nodes: dict[int, AnvilNode],
                      processd_addr: str, args: argparse.Namespace, phase: int, logs: Path,
                      processd_pid: int) -> dict[str, Any]:
    metrics_port = free_port()
    cmd = [PY, "-m", "ingestd", "--processd", processd_addr, "--metrics-port", str(metrics_port),
           "--full-tx", args.full_tx]
    for cid, (ws, http) in endpoints.items():
        cmd += ["--chain", f"{cid}={ws},{http}"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=(logs / f"{name}.log").open("wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if msum(scrape(metrics_port), "mempulse_ingestd_source_connected") >= len(endpoints):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{name}: ingestd did not become ready (see {logs / (name + '.log')})")
            time.sleep(0.1)
        light: dict[str, Any] = {}
        if args.light_rate > 0:
            log.info("%s: light load, %.0f tx/s per chain for %.0fs", name, args.light_rate, args.light_s)
            before = scrape(metrics_port)
            asyncio.run(drive_paced(nodes, args.light_rate, args.light_s))
            time.sleep(1.0)
            after = scrape(metrics_port)
            for cid in nodes:
                ch = CHAINS[cid]
                light[str(cid)] = {
                    "rate_tx_s": args.light_rate,
                    "envelopes": msum(after, "mempulse_ingestd_notification_to_ack_seconds_count", chain=ch)
                    - msum(before, "mempulse_ingestd_notification_to_ack_seconds_count", chain=ch),
                    "notification_to_ack_ms": {
                        q: _ms(hist_quantile(after, "mempulse_ingestd_notification_to_ack_seconds", v, since=before,
                                             chain=ch))
                        for q, v in (("p50", 0.5), ("p99", 0.99))},
                    "rpc_latency_ms": {
                        q: _ms(hist_quantile(after, "mempulse_ingestd_rpc_latency_seconds", v, since=before, chain=ch))
                        for q, v in (("p50", 0.5), ("p99", 0.99))}}
        log.info("%s: driving both chains for %.0fs", name, args.drive_s)
        base = scrape(metrics_port)  # the drive's figures are deltas from here (the light step is excluded)
        cpu0 = cpu_seconds(proc.pid) or 0.0
        pcpu0 = tree_cpu_seconds(processd_pid) or 0.0  # its analysis workers included
        t0 = time.monotonic()
        traffic = asyncio.run(drive_all(nodes, args.drive_s, args.replay_batch_size, phase))
        settle_deadline = time.monotonic() + args.drain_timeout_s
        done_at: dict[int, float] = {}
        while time.monotonic() < settle_deadline and len(done_at) < len(nodes):
            m = scrape(metrics_port)
            for cid in nodes:
                if cid not in done_at and settled(m, CHAINS[cid]) and msum(
                        delta(m, base), "mempulse_ingestd_seen_total",
                        chain=CHAINS[cid]) >= len(traffic[cid]["accepted"]):
                    done_at[cid] = time.monotonic()
            time.sleep(0.1)
        m = delta(scrape(metrics_port), base)
        cpu = (cpu_seconds(proc.pid) or 0.0) - cpu0
        pcpu = (tree_cpu_seconds(processd_pid) or 0.0) - pcpu0
        rss = rss_bytes(proc.pid)
        chains: dict[str, Any] = {}
        for cid in nodes:
            ch = CHAINS[cid]
            accepted = traffic[cid]["accepted"]
            stored = stored_hashes(processd_addr, cid)
            missing = len(set(accepted) - stored)
            drops = {lab["reason"]: v for lab, v in m.get("mempulse_ingestd_drops_total", [])
                     if lab.get("chain") == ch and v}
            loss = sum(v for r, v in drops.items() if r != "dedup")
            seen = msum(m, "mempulse_ingestd_seen_total", chain=ch)
            elapsed = (done_at.get(cid) or time.monotonic()) - t0
            delivered = msum(m, "mempulse_ingestd_delivered_total", chain=ch)
            bcount = msum(m, "mempulse_ingestd_fetch_batch_hashes_count", chain=ch)
            obcount = msum(m, "mempulse_ingestd_outbound_batch_envelopes_count", chain=ch)
            chains[str(cid)] = {
                "accepted_by_anvil": len(accepted),
                "anvil_accept_tx_s": round(traffic[cid]["accepted_tx_s"], 1),
                "replay_rejected": traffic[cid]["rejected"],
                "seen": seen, "delivered": delivered,
                "delivered_all_accepted": missing == 0, "accepted_not_stored": missing,
                "drops_by_reason": drops, "drop_ratio": round(loss / seen, 6) if seen else None,
                "settled": cid in done_at,
                "ingest_tx_s": round(delivered / elapsed, 1) if elapsed > 0 else None,
                "kept_up_with_anvil": cid in done_at and done_at[cid] - t0 < traffic[cid]["elapsed_s"] + 2.0,
                "fetch_batch_size_mean": round(msum(m, "mempulse_ingestd_fetch_batch_hashes_sum", chain=ch) / bcount, 1)
                if bcount else None,
                "fetch_batch_size_p50": hist_quantile(m, "mempulse_ingestd_fetch_batch_hashes", 0.5, chain=ch),
                "fetch_batches": bcount,
                "outbound_batch_size_mean":
                    round(msum(m, "mempulse_ingestd_outbound_batch_envelopes_sum", chain=ch) / obcount, 1)
                if obcount else None,
                "rpc_latency_ms": {q: _ms(hist_quantile(m, "mempulse_ingestd_rpc_latency_seconds", v, chain=ch))
                                   for q, v in (("p50", 0.5), ("p99", 0.99))},
                "notification_to_ack_ms": {
                    q: _ms(hist_quantile(m, "mempulse_ingestd_notification_to_ack_seconds", v, chain=ch))
                    for q, v in (("p50", 0.5), ("p99", 0.99))},
                "notification_to_enqueue_ms": {
                    q: _ms(hist_quantile(m, "mempulse_ingestd_notification_to_enqueue_seconds", v, chain=ch))
                    for q, v in (("p50", 0.5), ("p99", 0.99))},
                "batch_write_to_ack_ms": {q: _ms(hist_quantile(m, "mempulse_ingestd_stream_ack_seconds", v, chain=ch))
                                          for q, v in (("p50", 0.5), ("p99", 0.99))},
                "rpc_errors": {f"{lab['code']}": v for lab, v in m.get("mempulse_ingestd_rpc_errors_total", [])
                               if lab.get("chain") == ch and v},
            }
        total_seen = sum(c["seen"] for c in chains.values())
        total_loss = sum(sum(v for r, v in c["drops_by_reason"].items() if r != "dedup") for c in chains.values())
        delivered_total = sum(c["delivered"] for c in chains.values())
        return {"chains": chains, "drop_ratio": round(total_loss / total_seen, 6) if total_seen else None,
                "light_load": light,
                "ingestd_cpu_s": round(cpu, 2),
                "ingestd_cpu_ms_per_tx": round(cpu * 1000 / delivered_total, 3) if delivered_total else None,
                "ingestd_rss_mib": round(rss / 2**20, 1) if rss else None,
                "processd_cpu_s": round(pcpu, 2),
                "processd_cpu_ms_per_tx": round(pcpu * 1000 / delivered_total, 3) if delivered_total else None,
                "load_avg_1m_after": round(os.getloadavg()[0], 2),
                "every_accepted_tx_delivered": all(c["delivered_all_accepted"] for c in chains.values()),
                "ingestd_exit_status": stop(proc)}
    finally:
        stop(proc)
        for node in nodes.values():
            clear_pool(node)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def run_naive_phase(name: str, endpoints: dict[int, tuple[str, str]], nodes: dict[int, AnvilNode],
                    args: argparse.Namespace, phase: int) -> dict[str, Any]:
    cap_s = args.drive_s + args.naive_extra_s
    workers = {cid: subprocess.Popen([PY, "-m", "scripts.bench.ingest_bench", "--naive-worker", ws, http,
                                      "--naive-cap-s", str(cap_s)], cwd=REPO_ROOT, stdout=subprocess.PIPE)
               for cid, (ws, http) in endpoints.items()}
    try:
        for proc in workers.values():
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != b"READY":
                raise RuntimeError(f"{name}: naive worker did not start")
        log.info("%s: driving both chains for %.0fs (naive loop capped at %.0fs)", name, args.drive_s, cap_s)
        traffic = asyncio.run(drive_all(nodes, args.drive_s, args.replay_batch_size, phase))
        chains = {}
        for cid, proc in workers.items():
            out, _ = proc.communicate(timeout=cap_s + 60)
            lines = out.decode().strip().splitlines()
            if proc.returncode != 0 or not lines:
                raise RuntimeError(f"{name}: naive worker for chain {cid} failed (exit {proc.returncode})")
            result = json.loads(lines[-1])
            accepted = len(traffic[cid]["accepted"])
            result.update(accepted_by_anvil=accepted, anvil_accept_tx_s=round(traffic[cid]["accepted_tx_s"], 1),
                          processed_fraction=round(result["processed"] / accepted, 4) if accepted else None)
            chains[str(cid)] = result
        return {"chains": chains}
    finally:
        for proc in workers.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for node in nodes.values():
            clear_pool(node)


# ------------------------------------------------------------------------------------------ naive worker

async def naive_worker(ws_url: str, http_url: str, cap_s: float, idle_s: float = 3.0) -> dict[str, Any]:
    """The loop a first version would write: for each notification, await one fetch, then go on reading."""
    import websockets

    processed = 0
    latencies: list[float] = []
    first = last = 0.0
    connection_lost = ""
    # Keepalive off: while the loop is behind, the library stops reading the socket and pongs would time out,
    # which would end the measurement rather than show the loop's throughput.
    async with httpx.AsyncClient(timeout=30) as client, websockets.connect(ws_url, max_size=None,
                                                                          ping_interval=None) as ws:
        await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe",
                                  "params": ["newPendingTransactions"]}))
        sub = json.loads(await ws.recv())["result"]
        print("READY", flush=True)
        started = time.monotonic()
        while True:
            remaining = cap_s - (time.monotonic() - started)
            if remaining <= 0:
                break
            try:
                raw = await asyncio.wait_for(ws.recv(), min(remaining, idle_s if processed else remaining))
            except TimeoutError:
                break
            except websockets.ConnectionClosed as exc:
                connection_lost = str(exc)[:200]
                break
            msg = json.loads(raw)
            if msg.get("params", {}).get("subscription") != sub:
                continue
            if not first:
                first = time.monotonic()
            t = time.perf_counter()
            resp = await client.post(http_url, json={"jsonrpc": "2.0", "id": processed + 2,
                                                     "method": "eth_getTransactionByHash",
                                                     "params": [msg["params"]["result"]]})
            tx = json.loads(resp.text).get("result")
            latencies.append(time.perf_counter() - t)
            if tx:
                _envelope = {"hash": bytes.fromhex(tx["hash"][2:]), "from": bytes.fromhex(tx["from"][2:]),
                             "value": int(tx["value"], 16), "input": bytes.fromhex(tx["input"][2:])}
                processed += 1
                last = time.monotonic()
    latencies.sort()
    span = last - first
    return {"processed": processed, "active_s": round(span, 2),
            "naive_tx_s": round(processed / span, 1) if span > 0 else None,
            "hit_cap": time.monotonic() - started >= cap_s - 0.5, "connection_lost": connection_lost,
            "fetch_latency_ms": {"p50": round(latencies[len(latencies) // 2] * 1000, 2) if latencies else None,
                                 "p99": round(latencies[int(len(latencies) * 0.99)] * 1000, 2) if latencies else None}}


# ------------------------------------------------------------------------------------------ main

def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    logs = tmp / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    nodes = {cid: AnvilNode(chain_id=cid) for cid in CHAINS}
    try:
        for node in nodes.values():
            node.start()
        pport = free_port()
        processd = subprocess.Popen([PY, "-m", "processd", "--data-dir", str(tmp / "lmdb"), "--listen",
                                     f"127.0.0.1:{pport}"], cwd=REPO_ROOT,
                                    stdout=(logs / "processd.log").open("wb"), stderr=subprocess.STDOUT)
        procs.append(processd)
        if not wait_for_port("127.0.0.1", pport, 30):
            raise RuntimeError("processd did not start")
        direct = {cid: (n.ws_url, n.http_url) for cid, n in nodes.items()}
        proxied = {}
        for cid, n in nodes.items():
            proc, addr = start_proxy(n.http_url, args.latency_ms, logs)
            procs.append(proc)
            proxied[cid] = (f"ws://{addr}", f"http://{addr}")
        results: dict[str, Any] = {"drive_s": args.drive_s, "proxy_latency_ms": args.latency_ms,
                                   "full_tx": args.full_tx, "replay_batch_size": args.replay_batch_size}
        addr = f"127.0.0.1:{pport}"
        for i, phase in enumerate(PHASES):
            if phase not in args.phases:
                continue
            endpoints = direct if phase.endswith("direct") else proxied
            if phase.startswith("ingestd"):
                results[phase] = run_ingestd_phase(phase, endpoints, nodes, addr, args, i, logs, processd.pid)
            else:
                results[phase] = run_naive_phase(phase, endpoints, nodes, args, i)
        results["ratios"] = {}
        for path in ("direct", "proxy"):
            if f"ingestd_{path}" not in results or f"naive_{path}" not in results:
                continue
            per_chain = {cid: ratio(results[f"ingestd_{path}"]["chains"][cid]["ingest_tx_s"],
                                    results[f"naive_{path}"]["chains"][cid]["naive_tx_s"], 2)
                         for cid in results[f"ingestd_{path}"]["chains"]}
            anvil_limited = all(results[f"ingestd_{path}"]["chains"][c]["kept_up_with_anvil"] for c in per_chain)
            naive_kept_up = all((results[f"naive_{path}"]["chains"][c]["processed_fraction"] or 0) > 0.99
                                and results[f"naive_{path}"]["chains"][c]["active_s"] <= args.drive_s + 2.0
                                for c in per_chain)
            results["ratios"][path] = {
                "ingestd_over_naive_by_chain": per_chain,
                "min": min((r for r in per_chain.values() if r is not None), default=None),
                "ingestd_limited_by_anvil": anvil_limited, "naive_limited_by_anvil": naive_kept_up,
                "note": ("both kept up with everything anvil accepted: anvil is the limit, the ratio says little"
                         if anvil_limited and naive_kept_up else
                         "ingestd kept up with anvil (so its figure is anvil's rate and the ratio a floor); the naive "
                         "loop fell behind" if anvil_limited else
                         "ingestd did not keep up with anvil"),
            }
        ingest_phases = [p for p in ("ingestd_direct", "ingestd_proxy") if p in results]
        results["target_drop_ratio_met"] = all((results[p]["drop_ratio"] or 0) < 0.005 for p in ingest_phases)
        results["every_accepted_tx_delivered"] = all(results[p]["every_accepted_tx_delivered"] for p in ingest_phases)
        results["target_ratio_proxy_met"] = ((results["ratios"].get("proxy") or {}).get("min") or 0) >= 5
        results["logs"] = str(logs)
        return results
    finally:
        for proc in reversed(procs):
            stop(proc)
        for node in nodes.values():
            node.stop()
        if not args.keep_logs:
            shutil.rmtree(tmp / "lmdb", ignore_errors=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="ingestd benchmark vs a naive ingest loop on two anvil chains.")
    parser.add_argument("--short", action="store_true", help="short mode (< 2 minutes): 5 s drive per phase")
    parser.add_argument("--drive-s", type=float, default=None, help="seconds of traffic per phase (30; 5 short)")
    parser.add_argument("--latency-ms", type=float, default=30.0, help="round trip the proxy adds (default 30)")
    parser.add_argument("--full-tx", choices=("off", "auto"), default="off",
                        help="ingestd --full-tx (default off: exercise the batch fetch path)")
    parser.add_argument("--replay-batch-size", type=int, default=100)
    parser.add_argument("--light-rate", type=float, default=50.0,
                        help="tx/s per chain of the light-load latency step before each ingestd drive (0 = skip)")
    parser.add_argument("--light-s", type=float, default=None, help="seconds of light load (10; 3 short)")
    parser.add_argument("--drain-timeout-s", type=float, default=30.0)
    parser.add_argument("--naive-extra-s", type=float, default=None,
                        help="how long the naive loop may keep working after the drive (default = drive)")
    parser.add_argument("--name", default=None, help="artifact name (default ingest, or ingest_short)")
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated subset of " + ", ".join(PHASES))
    parser.add_argument("--naive-worker", nargs=2, metavar=("WS", "HTTP"), help=argparse.SUPPRESS)
    parser.add_argument("--naive-cap-s", type=float, default=60.0, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        build_parser().error(f"unknown phases: {sorted(unknown)}")
    if args.naive_worker:
        result = asyncio.run(naive_worker(args.naive_worker[0], args.naive_worker[1], args.naive_cap_s))
        print(json.dumps(result), flush=True)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.drive_s is None:
        args.drive_s = 5.0 if args.short else 30.0
    if args.light_s is None:
        args.light_s = 3.0 if args.short else 10.0
    if args.naive_extra_s is None:
        args.naive_extra_s = 3.0 if args.short else args.drive_s
    started = time.monotonic()
    results = run(args)
    results["wall_s"] = round(time.monotonic() - started, 1)
    name = args.name or ("ingest_short" if args.short else "ingest")
    path = write_artifact(name, results, directory=args.out_dir, mode="short" if args.short else "full")
    keys = ("ingest_tx_s", "naive_tx_s", "drop_ratio", "anvil_accept_tx_s", "delivered_all_accepted",
            "notification_to_ack_ms", "rpc_latency_ms", "fetch_batch_size_mean")
    summary = {p: {c: {k: v for k, v in d.items() if k in keys} for c, d in results[p]["chains"].items()}
               for p in PHASES if p in results}
    print(json.dumps({"artifact": str(path), "summary": summary, "ratios": results["ratios"],
                      "wall_s": results["wall_s"]}, indent=1))


if __name__ == "__main__":
    main()
