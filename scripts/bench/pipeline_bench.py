"""End-to-end benchmark on real anvil nodes: throughput and drop ratio at stepped rates, ingest-to-visible
latency through gatewayd, RSS and CPU of every daemon over time, and stream catch-up time.

    python -m scripts.bench.pipeline_bench [--mode short|full] [--rates 100,200,400] [--step-s 15]

A whole stack runs as subprocesses (:mod:`common.testing.stack`: one anvil per chain, processd, ingestd,
gatewayd). Replay generators push real mainnet calls into every anvil at a target rate per chain, one step
per rate, and record each hash anvil accepted. A separate observer process
(:mod:`scripts.bench.sse_observer`) follows gatewayd's ``/events/stream`` and stamps each ``tx_seen`` event
when it arrives. Per step:

- drop ratio = accepted by anvil but never visible through the gateway (after a drain period) / accepted;
- ingest-to-visible latency = visible time - ingestd's ``first_seen`` stamp of the notification;
- send-to-visible latency = visible time - the generator's send time (includes anvil's own work).

The search stops at the first step whose drop ratio reaches 0.5% or where anvil no longer accepts the
offered rate (anvil, not mempulse, is then the limit; the artifact says which). "Target load" is the
highest passing step. Writes ``artifacts/perf/<name>.json`` (default ``pipeline``).
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from common.testing.replay import SentTx
from common.testing.stack import ChainSpec, Stack, StackConfig
from scripts.bench.harness import (
    RssSampler,
    StepResult,
    stepped_rate_search,
    summarize,
    write_artifact,
)

log = logging.getLogger("pipeline_bench")

P99_LIMIT_MS = 700.0
P99_TARGET_MS = 100.0
MAX_DROP_RATIO = 0.005
MODES: dict[str, dict[str, Any]] = {
    # rates are per chain; two chains by default, so the offered total is twice these.
    "short": {"rates": [100.0, 300.0], "step_s": 6.0},
    "full": {"rates": [100.0, 200.0, 400.0, 600.0, 800.0, 1000.0], "step_s": 15.0},
}


class VisibleTail:
    """Incrementally reads the observer's output file:
    hash -> (first_seen_unix_ms, received_unix_ms, visible_unix_ns)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: dict[str, tuple[int, int, int]] = {}
        self.last_seq = 0
        self._offset = 0
        self._partial = b""

    def poll(self) -> int:
        """Reads what was appended since the last call; returns the number of new events."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return 0
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            parts = line.split()
            if len(parts) != 5:
                continue
            seq, tx_hash, first_ms, received_ms, visible_ns = parts
            self.seen.setdefault(tx_hash.decode().lower(), (int(first_ms), int(received_ms), int(visible_ns)))
            self.last_seq = max(self.last_seq, int(seq))
        return len(lines)


class Observer:
    """The SSE observer subprocess (started with :meth:`start`, stopped with SIGTERM by :meth:`stop`)."""

    def __init__(self, gateway_url: str, out: Path, extra: list[str] | None = None) -> None:
        self.argv = [sys.executable, "-m", "scripts.bench.sse_observer", "--gateway", gateway_url,
                     "--out", str(out), *(extra or [])]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_connected_s: float = 20.0) -> Observer:
        """Starts the observer and waits until its stream is open (so no early event is missed)."""
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[2])
        if wait_connected_s > 0 and self.proc.stdout is not None:
            ready, _, _ = select.select([self.proc.stdout], [], [], wait_connected_s)
            line = self.proc.stdout.readline() if ready else b""
            if b"connected" not in line:
                raise RuntimeError(f"SSE observer did not connect within {wait_connected_s:.0f}s: {line[:300]!r}")
        return self

    def stop(self) -> dict[str, Any]:
        proc, self.proc = self.proc, None
        if proc is None:
            return {}
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        try:
            return dict(orjson.loads(out.strip().splitlines()[-1])) if out.strip() else {}
        except (orjson.JSONDecodeError, IndexError):
            return {}


def _snapshot(stack: Stack) -> dict[str, Any]:
    try:
        return dict(stack.get_json("/dashboard/snapshot", tx_limit=1, opp_limit=1))
    except Exception as exc:  # the benchmark reports what it could not read rather than dying
        log.warning("snapshot failed: %s", exc)
        return {}


def _ingest_health(snapshot: dict[str, Any]) -> dict[str, Any]:
    """Per chain: ingestd's forwarded drop ratio and drops by reason (as gatewayd shows them)."""
    out: dict[str, Any] = {}
    for chain in snapshot.get("chains", []) or []:
        ingest = chain.get("ingest") or {}
        out[str(chain.get("chain_id"))] = {"drop_ratio": chain.get("drop_ratio"), "seen": ingest.get("seen"),
                                           "delivered": ingest.get("delivered"), "dropped": ingest.get("dropped")}
    return out


def make_step_runner(stack: Stack, tail: VisibleTail, step_s: float, drain_timeout_s: float,
                     ) -> Callable[[float], StepResult]:
    """Returns run_step(total_rate) for :func:`stepped_rate_search`."""
    n_chains = len(stack.config.chains)

    def run_step(total_rate: float) -> StepResult:
        sent: dict[str, int] = {}
        lock = threading.Lock()

        def on_accepted(txs: list[SentTx], sent_ns: int) -> None:
            with lock:
                for tx in txs:
                    sent[tx.tx_hash.lower()] = sent_ns

        stack.start_generators(rate_tx_s=total_rate / n_chains, on_accepted=on_accepted, duration_s=step_s)
        for gen in stack.generators.values():
            gen.wait(step_s + 60)
        stats = stack.traffic_stats()
        stack.check_alive()
        with lock:
            accepted_hashes = dict(sent)
        deadline = time.monotonic() + drain_timeout_s
        last_progress, delivered = time.monotonic(), -1
        while time.monotonic() < deadline:
            tail.poll()
            now_delivered = sum(1 for h in accepted_hashes if h in tail.seen)
            if now_delivered == len(accepted_hashes):
                delivered = now_delivered
                break
            if now_delivered != delivered:
                delivered, last_progress = now_delivered, time.monotonic()
            elif time.monotonic() - last_progress > 5.0:
                break
            time.sleep(0.2)
        visible = [tail.seen[h] for h in accepted_hashes if h in tail.seen]
        latencies = [v / 1e6 - first for first, _, v in visible]
        to_processd = [received - first for first, received, _ in visible]
        processd_to_visible = [v / 1e6 - received for _, received, v in visible]
        send_to_visible = [(tail.seen[h][2] - ns) / 1e6 for h, ns in accepted_hashes.items() if h in tail.seen]
        offered = sum(s.sent + s.behind for s in stats.values())
        return StepResult(
            target_rate=total_rate, offered=offered, accepted=len(accepted_hashes), delivered=max(delivered, 0),
            duration_s=step_s,
            extra={
                "ingest_to_visible_ms": summarize(latencies, 1),
                # The split at processd's receive stamp (ms resolution): ingestd's fetch + batching + gRPC,
                # then processd's commit + gatewayd's SSE delivery.
                "first_seen_to_processd_ms": summarize(to_processd, 1),
                "processd_to_visible_ms": summarize(processd_to_visible, 1),
                "send_to_visible_ms": summarize(send_to_visible, 1),
                "anvil_accepted_rate_per_chain": {str(cid): round(s.accepted_rate_tx_s, 1)
                                                  for cid, s in stats.items()},
                "generator_behind": sum(s.behind for s in stats.values()),
                "generator_send_errors": sum(s.send_errors for s in stats.values()),
                "rejected_by_anvil": sum(s.rejected for s in stats.values()),
                "ingest_health": _ingest_health(_snapshot(stack)),
            })

    return run_step


def measure_catch_up(stack: Stack, workdir: Path) -> dict[str, Any]:
    """Time for a new SSE client to replay the whole log (every event kind) from seq 1 to the high-water."""
    last_seq = int(_snapshot(stack).get("last_seq_id") or 0)
    if last_seq <= 0:
        return {"events": 0}
    obs = Observer(stack.gateway_url, workdir / "catchup.txt",
                   ["--from-seq-id", "1", "--until-seq", str(last_seq), "--kinds", "tx_seen,tx_decoded,opp_detected",
                    "--timeout-s", "300"])
    started = time.monotonic()
    obs.start(wait_connected_s=0)
    assert obs.proc is not None
    try:
        obs.proc.wait(timeout=320)
    except subprocess.TimeoutExpired:
        pass
    result = obs.stop()
    wall = time.monotonic() - started
    events = int(result.get("events") or 0)
    elapsed = float(result.get("elapsed_s") or wall)
    return {"log_events": last_seq, "events_replayed": events, "elapsed_s": round(elapsed, 2),
            "events_per_s": round(events / elapsed, 1) if elapsed > 0 else None,
            "complete": int(result.get("last_seq") or 0) >= last_seq}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Runs the whole benchmark and returns the artifact's results."""
    mode = MODES[args.mode]
    rates = [float(r) for r in args.rates.split(",")] if args.rates else mode["rates"]
    step_s = args.step_s or mode["step_s"]
    chains = tuple(ChainSpec(int(c)) for c in args.chains.split(","))
    workdir = Path(tempfile.mkdtemp(prefix="mempulse-pipeline-bench-"))
    config = StackConfig(chains=chains, start_traffic=False, log_dir=workdir / "logs",
                         replay_batch_size=args.replay_batch_size)
    with Stack(config) as stack:
        pids = {name: p.pid for name, p in stack.processes.items() if p.pid}
        pids["bench+generators"] = os.getpid()
        sampler = RssSampler(pids, interval_s=args.rss_interval_s)
        for cid, node in stack.anvils.items():  # the npm launcher's child is the real anvil: sample the tree
            if node.pid:
                sampler.add(f"anvil-{cid}", node.pid, tree=True)
        sampler.start()
        observer = Observer(stack.gateway_url, workdir / "visible.txt").start()
        tail = VisibleTail(workdir / "visible.txt")
        run_step = make_step_runner(stack, tail, step_s, args.drain_timeout_s)
        try:
            warm = run_step(20.0 * len(chains))  # warm-up: connections, caches, the first commits
            log.info("warm-up: %d accepted, %d visible", warm.accepted, warm.delivered)
            search = stepped_rate_search(run_step, [r * len(chains) for r in rates], MAX_DROP_RATIO,
                                         log=log.info)
            observer_result = observer.stop()
            catch_up = measure_catch_up(stack, workdir)
        finally:
            observer.stop()
            sampler.stop()
        final_snapshot = _snapshot(stack)
    shutil.rmtree(workdir, ignore_errors=True)  # kept (with the daemons' logs) only when the run failed
    best = next((s for s in reversed(search["steps"]) if s["target_rate"] == search["best_target_rate"]), None)
    latency = best["extra"]["ingest_to_visible_ms"] if best else summarize([])
    p99 = latency.get("p99")
    return {
        "config": {"mode": args.mode, "chains": [c.chain_id for c in chains], "rates_per_chain": rates,
                   "step_s": step_s, "drain_timeout_s": args.drain_timeout_s,
                   "replay_batch_size": args.replay_batch_size},
        "warmup": warm.as_dict(),
        "rate_search": search,
        "target_load": {
            "total_rate_tx_s": search["best_target_rate"],
            "achieved_tx_s": search["best_achieved_rate"],
            "drop_ratio": search["best_drop_ratio"],
            "ingest_to_visible_ms": latency,
            "send_to_visible_ms": best["extra"]["send_to_visible_ms"] if best else None,
            "first_seen_to_processd_ms": best["extra"]["first_seen_to_processd_ms"] if best else None,
            "processd_to_visible_ms": best["extra"]["processd_to_visible_ms"] if best else None,
        },
        "max_anvil_accepted_tx_s": max((sum(s["extra"]["anvil_accepted_rate_per_chain"].values())
                                        for s in search["steps"]), default=None),
        "slo": {
            "p99_ingest_to_visible_ms": {"value": p99, "limit": P99_LIMIT_MS, "target": P99_TARGET_MS,
                                         "pass": p99 is not None and p99 < P99_LIMIT_MS,
                                         "meets_target": p99 is not None and p99 < P99_TARGET_MS},
            "drop_ratio": {"value": search["best_drop_ratio"], "limit": MAX_DROP_RATIO,
                           "pass": search["best_drop_ratio"] is not None
                           and search["best_drop_ratio"] < MAX_DROP_RATIO},
        },
        "catch_up": catch_up,
        "observer": observer_result,
        "rss": sampler.summary(),
        "rss_timeline": sampler.timeline(),
        "final_ingest_health": _ingest_health(final_snapshot),
        "stored_events": final_snapshot.get("last_seq_id"),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="End-to-end mempulse benchmark on real anvil nodes.")
    parser.add_argument("--mode", choices=sorted(MODES), default="full")
    parser.add_argument("--rates", help="comma-separated target rates per chain, tx/s (overrides the mode)")
    parser.add_argument("--step-s", type=float, default=None, help="seconds of traffic per step")
    parser.add_argument("--chains", default="1,137", help="chain ids, one anvil each (default 1,137)")
    parser.add_argument("--drain-timeout-s", type=float, default=20.0,
                        help="max wait after a step for accepted transactions to become visible")
    parser.add_argument("--replay-batch-size", type=int, default=100, help="eth_sendTransaction per JSON-RPC batch")
    parser.add_argument("--rss-interval-s", type=float, default=1.0)
    parser.add_argument("--name", default=None, help="artifact name (default pipeline, or pipeline_short)")
    parser.add_argument("--out-dir", type=Path, default=None, help="artifact directory (default artifacts/perf)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    results = run(args)
    name = args.name or ("pipeline" if args.mode == "full" else "pipeline_short")
    path = write_artifact(name, results, directory=args.out_dir, mode=args.mode)
    target = results["target_load"]
    print(f"pipeline: best {target['total_rate_tx_s']} tx/s offered, {target['achieved_tx_s']} tx/s visible, "
          f"drop {target['drop_ratio']}, ingest-to-visible {target['ingest_to_visible_ms']} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
