"""Benchmark of ingestd's lifecycle work (issue 16) against a real anvil (``--no-mining``) holding N pending
transactions, in interleaved rounds within one run (the machine is shared: ratios matter more than absolutes):

- ``recheck``: one :class:`ingestd.pending.PendingTracker` round over the N tracked hashes (batched
  ``eth_getTransactionByHash``, ``fetch_batch_size`` 100): JSON-RPC requests, and ingestd's CPU and wall time per
  round, per 1,000 tracked transactions; compared with ``fetch``, the live path's cost of fetching the same N
  transactions once (the same batched request, plus mapping each to a ``TxEnvelope``), as ``recheck_over_fetch``.
- ``backfill``: one :class:`ingestd.backfill.Backfill` run (``txpool_content``, every transaction mapped to an
  envelope the way the worker does), wall and CPU time for N; compared with ``fetch`` as ``backfill_over_fetch``.
- ``track_add``: the hot-path cost of tracking one delivered envelope (``PendingTracker.add``), in microseconds.

Run: ``python -m scripts.bench.ingest_lifecycle_bench [--pending 1000,2000] [--rounds 5]`` writes
``artifacts/perf/ingest_lifecycle.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from common.testing.anvil import AnvilNode
from common.testing.fixtures import load_mainnet_calls
from common.testing.replay import Replayer
from ingestd.backfill import Backfill, BackfillStats
from ingestd.fetcher import BatchFetcher
from ingestd.mapping import tx_to_envelope
from ingestd.pending import PendingStats, PendingTracker
from scripts.bench.harness import write_artifact

CHAIN_ID = 137
BATCH = 100


async def _measure(fn: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """(wall s, CPU s of this process) of one awaited call."""
    w0, c0 = time.perf_counter(), time.process_time()
    await fn()
    return time.perf_counter() - w0, time.process_time() - c0


async def _one_size(url: str, hashes: list[bytes], rounds: int) -> dict[str, Any]:
    n = len(hashes)
    async with BatchFetcher([url], max_in_flight=1) as fetcher:
        stats = PendingStats()
        tracker = PendingTracker(CHAIN_ID, fetcher, stats, capacity=n * 2, interval_s=3600, batch_size=BATCH,
                                 send=lambda g: True, blocks_busy=lambda: False)
        for h in hashes:
            tracker.add(h, "bench")

        async def fetch() -> None:
            for start in range(0, n, BATCH):
                outcome = await fetcher.fetch(hashes[start:start + BATCH])
                for h, tx in outcome.found:
                    tx_to_envelope(tx, CHAIN_ID, "bench", 1, h)

        def deliver(tx: Any, seen_ns: int) -> str:
            tx_to_envelope(tx, CHAIN_ID, "bench", seen_ns)
            return "delivered"

        backfill = Backfill("bench", fetcher, BackfillStats(), n * 2, deliver)
        samples: dict[str, list[tuple[float, float]]] = {"recheck": [], "fetch": [], "backfill": []}
        requests_per_round = []
        for _ in range(rounds):
            before = stats.requests
            samples["recheck"].append(await _measure(lambda: tracker.recheck(min_age_s=0)))
            requests_per_round.append(stats.requests - before)
            samples["fetch"].append(await _measure(fetch))
            samples["backfill"].append(await _measure(backfill.run_once))
        assert len(tracker) == n, "every tracked transaction is still pending"
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in samples.items()}
    per_k = 1000 / n
    return {
        "pending": n,
        "recheck_requests_per_round": max(requests_per_round),
        "recheck_requests_per_1000_tracked": round(max(requests_per_round) * per_k, 1),
        "recheck_cpu_ms_per_1000_tracked": round(med["recheck"][1] * per_k * 1e3, 2),
        "recheck_wall_ms_per_1000_tracked": round(med["recheck"][0] * per_k * 1e3, 2),
        "fetch_cpu_ms_per_1000": round(med["fetch"][1] * per_k * 1e3, 2),
        "recheck_over_fetch_cpu": round(med["recheck"][1] / med["fetch"][1], 3),
        "backfill_wall_s": round(med["backfill"][0], 4),
        "backfill_cpu_s": round(med["backfill"][1], 4),
        "backfill_over_fetch_wall": round(med["backfill"][0] / med["fetch"][0], 3),
        "fetch_wall_s": round(med["fetch"][0], 4),
    }


def _track_add_us(n: int = 100_000) -> float:
    """Microseconds per PendingTracker.add (the hot path's added cost per delivered envelope), bounded set full."""
    tracker = PendingTracker(CHAIN_ID, None, PendingStats(), capacity=n // 2, interval_s=1,  # type: ignore[arg-type]
                             batch_size=BATCH, send=lambda g: True, blocks_busy=lambda: False)
    keys = [i.to_bytes(32, "big") for i in range(n)]
    c0 = time.process_time()
    for k in keys:
        tracker.add(k, "bench")
    return round((time.process_time() - c0) / n * 1e6, 3)


def run(sizes: list[int], rounds: int) -> dict[str, Any]:
    calls = load_mainnet_calls()
    out: dict[str, Any] = {"track_add_us": _track_add_us(), "sizes": []}
    for n in sizes:
        with AnvilNode(chain_id=CHAIN_ID) as node:
            async def send(node: AnvilNode = node, n: int = n) -> list[str]:
                async with Replayer(node.http_url, batch_size=100) as replayer:
                    sent: list[str] = []
                    salt = 0
                    while len(sent) < n:  # more than the fixture holds: the same calls again, a new gas limit
                        batch = [dataclasses.replace(c, gas=c.gas + salt) for c in calls[:n - len(sent)]]
                        sent += [s.tx_hash for s in await replayer.send(batch)]
                        salt += 1
                    return sent

            sent = asyncio.run(send())
            hashes = [bytes.fromhex(h[2:]) for h in sent]
            out["sizes"].append(asyncio.run(_one_size(node.http_url, hashes, rounds)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ingest_lifecycle_bench", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--pending", default="1000,2000", help="comma-separated pending pool sizes")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out-name", default="ingest_lifecycle")
    args = parser.parse_args(argv)
    results = run([int(x) for x in args.pending.split(",")], args.rounds)
    path = write_artifact(args.out_name, results, command="python -m scripts.bench.ingest_lifecycle_bench")
    print(results)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
