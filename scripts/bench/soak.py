"""Soak run: the whole stack at a steady load for N minutes, RSS of every daemon sampled, no upward trend.

    scripts/soak --minutes 30            # long mode
    scripts/soak --minutes 2             # CI mode: same checks, looser slope bound

Two anvil chains with replay traffic (``--rate-tx-s`` per chain), processd, ingestd and gatewayd, plus a
light reader load on gatewayd (REST polls and one live SSE client), so every daemon's queues, caches and
subscriptions are exercised. Every daemon's RSS and anonymous RSS are sampled from /proc; after a warm-up
(the first two thirds of the run by default, while bounded caches and TTL windows fill) the least-squares slope of
anonymous RSS must stay below ``--max-slope-mib-per-min`` (default: 1 MiB/min for 30 minutes, scaled up
for short runs, where a bounded cache still filling looks like growth). The log's file-backed pages (LMDB
mmap) are excluded from the slope on purpose: they grow with the stored log and are reclaimable page cache.
Also checked: every transaction anvil accepted was stored (drop ratio < 0.5%) and no daemon died. Writes
``artifacts/perf/soak.json`` (or ``soak_short.json`` for runs under 10 minutes). Exit 1 when a check fails.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from common.testing.stack import ChainSpec, Stack, StackConfig
from scripts.bench.harness import RssSampler, summarize, write_artifact
from scripts.bench.pipeline_bench import MAX_DROP_RATIO, Observer

log = logging.getLogger("soak")

#: processd's lifecycle tracking bound in runs under 10 minutes. No block is mined here and the replay repeats its
#: calls (same sender and nonce), so the lifecycle holds nearly every transaction sent as a replaced one until its
#: bound (200,000 by default, ~870 B each: ~8 minutes at 2 x 200 tx/s); a 2-minute run would judge that bounded set
#: still filling. 10,000 is reached within the first minute, inside the warm-up, so the slope after it shows growth
#: past the bound (what a short run can check; the 30-minute run keeps processd's default).
SHORT_LIFECYCLE_MAX_PENDING = 10_000


def default_max_slope(minutes: float) -> float:
    """1 MiB/min for a 30-minute run; proportionally looser for shorter runs (15 MiB/min at 2 minutes)."""
    return max(1.0, 30.0 / max(minutes, 0.1))


class ReaderLoad:
    """Polls a few gateway routes on a thread, like a dashboard would; records latency and errors."""

    def __init__(self, gateway_url: str, interval_s: float = 0.25) -> None:
        self.gateway_url = gateway_url
        self.interval_s = interval_s
        self.latencies_ms: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-readers", daemon=True)

    def _run(self) -> None:
        routes = [("/transactions", {"limit": "50"}), ("/dashboard/snapshot", {}), ("/opps/recent", {})]
        with httpx.Client(base_url=self.gateway_url, timeout=5.0) as client:
            i = 0
            while not self._stop.wait(self.interval_s):
                path, params = routes[i % len(routes)]
                i += 1
                started = time.perf_counter()
                try:
                    ok = client.get(path, params=params).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    if len(self.latencies_ms) < 200_000:
                        self.latencies_ms.append((time.perf_counter() - started) * 1000)
                else:
                    self.errors += 1

    def start(self) -> ReaderLoad:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _by_tenth(sampler: RssSampler) -> dict[str, list[tuple[float, float]]]:
    """(minute, anonymous MiB) at 0%, 10%, ... 100% of the run, per daemon: the growth curve at a glance."""
    out: dict[str, list[tuple[float, float]]] = {}
    for name, series in sampler.series.items():
        n = len(series.t_s)
        if n:
            out[name] = [(round(series.t_s[i] / 60, 1), round(series.anon_mib[i], 1))
                         for i in sorted({int(k * (n - 1) / 10) for k in range(11)})]
    return out


def _stored_per_chain(stack: Stack) -> dict[int, int]:
    snap = stack.get_json("/dashboard/snapshot", tx_limit=1, opp_limit=1)
    return {int(c["chain_id"]): int(c.get("tx_count") or 0) for c in snap.get("chains", [])}


def run(args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """Runs the soak; returns (results, passed)."""
    duration_s = args.minutes * 60.0
    max_slope = args.max_slope_mib_per_min or default_max_slope(args.minutes)
    chains = tuple(ChainSpec(int(c), rate_tx_s=args.rate_tx_s) for c in args.chains.split(","))
    workdir = Path(tempfile.mkdtemp(prefix="mempulse-soak-"))
    max_pending = args.lifecycle_max_pending
    if max_pending is None and args.minutes < 10:
        max_pending = SHORT_LIFECYCLE_MAX_PENDING
    env = {} if max_pending is None else {"MEMPULSE_PROCESSD_LIFECYCLE_MAX_PENDING": str(max_pending)}
    config = StackConfig(chains=chains, start_traffic=False, log_dir=workdir / "logs", env=env)
    interval_s = max(1.0, duration_s / 400)
    with Stack(config) as stack:
        pids = {name: p.pid for name, p in stack.processes.items() if p.pid}
        sampler = RssSampler({n: pid for n, pid in pids.items() if n != "processd"}, interval_s=interval_s)
        if "processd" in pids:  # with its analysis worker processes: their memory is processd's too
            sampler.add("processd", pids["processd"], tree=True)
        sampler.start()
        readers = ReaderLoad(stack.gateway_url).start()
        observer = Observer(stack.gateway_url, workdir / "visible.txt").start()
        died: str | None = None
        try:
            stack.start_generators(duration_s=duration_s)
            deadline = time.monotonic() + duration_s
            while time.monotonic() < deadline:
                time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
                try:
                    stack.check_alive()
                except Exception as exc:
                    died = str(exc)[:2000]
                    break
                log.info("soak: %.0fs left, %s", deadline - time.monotonic(),
                         {n: s.rss_mib[-1] if s.rss_mib else None for n, s in sampler.series.items()})
            stack.stop_generators()
            traffic = stack.traffic_stats()
            accepted = {cid: s.accepted for cid, s in traffic.items()}
            stored: dict[int, int] = {}
            if died is None:  # drain: wait until processd stored what anvil accepted, or stops progressing
                last, last_change = -1, time.monotonic()
                while time.monotonic() - last_change < 10.0:
                    stored = _stored_per_chain(stack)
                    if all(stored.get(c, 0) >= n for c, n in accepted.items()):
                        break
                    total = sum(stored.values())
                    if total != last:
                        last, last_change = total, time.monotonic()
                    time.sleep(0.5)
        finally:
            readers.stop()
            observer_result = observer.stop()
            sampler.stop()
    rss = sampler.summary(warmup_fraction=args.warmup_fraction)
    slopes = {n: s.get("anon_slope_mib_per_min_after_warmup") for n, s in rss.items()}
    # For the record: the slope over the second half too (includes the end of bounded windows filling).
    half = {n: s.get("anon_slope_mib_per_min_after_warmup") for n, s in sampler.summary(0.5).items()}
    worst = max((v for v in slopes.values() if v is not None), default=None)
    total_accepted, total_stored = sum(accepted.values()), sum(min(stored.get(c, 0), n) for c, n in accepted.items())
    drop_ratio = (total_accepted - total_stored) / total_accepted if total_accepted else None
    checks = {
        "no_daemon_died": died is None,
        "anon_rss_slope_ok": worst is not None and worst <= max_slope,
        "drop_ratio_ok": drop_ratio is not None and drop_ratio < MAX_DROP_RATIO,
        "gateway_reads_ok": readers.errors == 0,
    }
    results = {
        "config": {"minutes": args.minutes, "rate_tx_s_per_chain": args.rate_tx_s, "lifecycle_max_pending": max_pending,
                   "warmup_fraction": args.warmup_fraction,
                   "chains": [c.chain_id for c in chains], "sample_interval_s": interval_s,
                   "max_slope_mib_per_min": max_slope},
        "worst_anon_slope_mib_per_min": worst,
        "anon_slope_mib_per_min": slopes,
        "anon_slope_mib_per_min_second_half": half,
        "anon_mib_by_tenth_of_run": _by_tenth(sampler),
        "rss": rss,
        "rss_timeline": sampler.timeline(),
        "accepted_by_anvil": total_accepted,
        "stored": total_stored,
        "drop_ratio": round(drop_ratio, 6) if drop_ratio is not None else None,
        "gateway_reads": {"latency_ms": summarize(readers.latencies_ms, 1), "errors": readers.errors},
        "sse_observer": observer_result,
        "daemon_died": died,
        "checks": checks,
        "passed": all(checks.values()),
    }
    return results, all(checks.values())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Soak the whole stack and check that memory does not grow.")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate-tx-s", type=float, default=200.0, help="replay rate per chain (default 200)")
    parser.add_argument("--chains", default="1,137")
    parser.add_argument("--lifecycle-max-pending", type=int, default=None,
                        help="processd's MEMPULSE_PROCESSD_LIFECYCLE_MAX_PENDING (default: processd's own; "
                             f"{SHORT_LIFECYCLE_MAX_PENDING:,} in runs under 10 minutes)")
    parser.add_argument("--max-slope-mib-per-min", type=float, default=None,
                        help="bound on the anonymous-RSS slope after warm-up (default scales with --minutes)")
    parser.add_argument("--warmup-fraction", type=float, default=2 / 3,
                        help="share of the run excluded from the slope (default 2/3: bounded windows fill first - "
                             "ingestd's dedup keeps 15 minutes of hashes, and its table resizes once more after "
                             "that - so a 30-minute run is judged on its last 10 minutes)")
    parser.add_argument("--name", default=None, help="artifact name (default soak, or soak_short under 10 min)")
    parser.add_argument("--out-dir", type=Path, default=None)
    return parser


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # SIGTERM (scripts/test stopping a background soak) unwinds like an error, so the stack's daemons and anvils
    # are stopped rather than orphaned.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    results, passed = run(args)
    name = args.name or ("soak" if args.minutes >= 10 else "soak_short")
    path = write_artifact(name, results, directory=args.out_dir, mode=f"{args.minutes:g}min")
    print(f"soak {args.minutes:g} min: worst anon-RSS slope {results['worst_anon_slope_mib_per_min']} MiB/min "
          f"(max {results['config']['max_slope_mib_per_min']:.1f}), drop ratio {results['drop_ratio']}, "
          f"checks {results['checks']} -> {path}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
