"""Benchmark of the valuation (issue 17): its cost per swap, and processd's full-path throughput with it on vs off.

Measured in one run, interleaved (the machine is shared: ratios matter more than absolute figures):

- ``per_swap``: over the Uniswap V2 / Sushiswap router swaps of the bundled mainnet fixtures, µs per swap of
  ``Analyzer.analyze_fields`` with the swap's reserves vs without a reserve source (the difference is the
  valuation: pair addresses, the closed forms, the exact searches, the extra opportunity fields), of
  ``Valuer.value`` alone, and of the pipeline's gathering (``gather``: the path read from the calldata, CREATE2
  pair addresses, the source's lookups) per swap.
- ``prepare``: ``prepare_batch`` (what an analysis worker runs per batch: validation, analysis, encoding) over the
  fixture mix in batches of 250, with the batches' reserves vs without, µs per transaction of the mix (the CPU
  the valuation adds to the workers, without the noise of a whole daemon on a shared machine), plus the
  pipeline's gathering per transaction of the mix (on the event loop).
- ``throughput``: a real in-process ``ProcessdServer`` (LMDB, analysis worker processes, gRPC ingest) fed the
  fixture mix (every call of the fixtures, new hashes per run) and, separately, the V2 router swaps alone;
  rounds alternate off / on, each on a fresh data directory; tx/s per run, median per mode, and the ratio.

The reserves are SYNTHETIC: deterministic made-up reserves (1e18..1e24 base units) for every pair the corpus
swaps read (their hops, the same pair on the other factory, the input token's WETH pair), not mainnet state; the
cost of the search does not depend on whether a sandwich turns out profitable. Writes
``artifacts/perf/valuation.json``.

Run: ``python -m scripts.bench.valuation_bench [--rounds 3] [--copies 4] [--workers 2]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from common.pb.v1 import tx_pb2
from common.testing.ingest_push import push_envelopes
from common.testing.netutil import free_port
from common.testing.samples import fixture_envelopes
from processd.analysis.analyzer import Analyzer
from processd.analysis.valuation.calldata import v2_path
from processd.analysis.valuation.pairs import Venues, pair_address
from processd.analysis.valuation.state import PoolReserves
from processd.analysis.valuation.value import gather, pairs_needed
from processd.api.server import ProcessdServer
from processd.config import ProcessdConfig
from scripts.bench.harness import write_artifact


class MappingSource:
    """A ReserveSource over a dict (what the pool-state view will be)."""

    def __init__(self, pools: Iterable[PoolReserves]) -> None:
        self.pools = {(p.chain_id, p.pair): p for p in pools}

    def lookup(self, chain_id: int, pair: bytes) -> PoolReserves | None:
        return self.pools.get((chain_id, pair))


def synthetic_reserves(envelopes: Iterable[tx_pb2.TxEnvelope], venues: Venues) -> list[PoolReserves]:
    """Deterministic made-up reserves for every pair the swaps' valuation reads (module doc)."""
    out: dict[bytes, PoolReserves] = {}
    for e in envelopes:
        path = v2_path(e.input)
        if path is None or venues.factory_of_router(e.chain_id, e.to) is None:
            continue
        wanted = set(pairs_needed(e.chain_id, e.to, e.input, venues))
        weth = venues.wrapped_native(e.chain_id)
        tokens = sorted(set(path) | ({weth} if weth else set()))
        for f in venues.factories(e.chain_id):
            for i, a in enumerate(tokens):
                for b in tokens[i + 1:]:
                    pair = pair_address(f.address, f.init_code_hash, a, b)
                    if pair in wanted:
                        h = hashlib.sha256(pair).digest()
                        out[pair] = PoolReserves(e.chain_id, pair, a, b, (1 + h[0]) * 10 ** (18 + h[1] % 7),
                                                 (1 + h[2]) * 10 ** (18 + h[3] % 7), 1000 + h[4])
    return list(out.values())


def _timed(fn: Callable[[], object]) -> float:
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    finally:
        gc.enable()


def per_swap(swaps: list[tx_pb2.TxEnvelope], source: MappingSource, venues: Venues, rounds: int) -> dict[str, Any]:
    analyzer = Analyzer(venues=venues)
    state = source.pools
    fields = [(e.chain_id, e.hash, e.sender, e.to, e.value, e.gas_price, None, None, e.input) for e in swaps]

    def analyze(reserves: dict | None) -> Callable[[], None]:
        def loop() -> None:
            for f in fields:
                analyzer.analyze_fields(*f, reserves)
        return loop

    decoded = [(e, analyzer.decode_call(e.chain_id, e.to, int.from_bytes(e.value, "big"), e.sender, e.input)[0])
               for e in swaps]

    def value_only() -> None:
        for e, call in decoded:
            if call is not None:
                analyzer.valuer.value(e.chain_id, e.to, call, int.from_bytes(e.value, "big"),
                                      int.from_bytes(e.gas_price, "big"), state)

    calls = [(e.chain_id, e.to, e.input) for e in swaps]
    timings: dict[str, list[float]] = {"analyze_off": [], "analyze_on": [], "value": [], "gather": []}
    for _ in range(rounds):  # interleaved
        timings["analyze_off"].append(_timed(analyze(None)))
        timings["analyze_on"].append(_timed(analyze(state)))
        timings["value"].append(_timed(value_only))
        timings["gather"].append(_timed(lambda: gather(calls, source, venues)))
    n = len(swaps)
    out: dict[str, Any] = {k: round(statistics.median(v) / n * 1e6, 2) for k, v in timings.items()}
    out = {f"{k}_us_per_swap": v for k, v in out.items()}
    out["valuation_us_per_swap"] = round(out["analyze_on_us_per_swap"] - out["analyze_off_us_per_swap"], 2)
    outcomes = [analyzer.valuer.value(e.chain_id, e.to, c, int.from_bytes(e.value, "big"),
                                      int.from_bytes(e.gas_price, "big"), state) for e, c in decoded if c is not None]
    out["swaps"] = n
    out["valued"] = sum(1 for v in outcomes if not isinstance(v, str))
    out["profitable_sandwich"] = sum(1 for v in outcomes if not isinstance(v, str) and v.sandwich is not None)
    out["profitable_backrun"] = sum(1 for v in outcomes if not isinstance(v, str) and v.backrun is not None)
    return out


def prepare_cost(everything: list[tx_pb2.TxEnvelope], source: MappingSource, venues: Venues,
                 rounds: int) -> dict[str, Any]:
    from common.pb.v1 import ingest_pb2
    from processd.analysis.prepare import prepare_batch
    from processd.analysis.valuation.state import from_wire, to_wire

    envs = _copies(everything, 1, "prepare")
    raws = [ingest_pb2.TxBatch(batch_seq=1, envelopes=envs[i:i + 250]).SerializeToString()
            for i in range(0, len(envs), 250)]
    analyzer = Analyzer(venues=venues)

    def gathered() -> list[tuple[Any, ...]]:
        out = []
        for raw in raws:
            batch = ingest_pb2.TxBatch.FromString(raw).envelopes
            calls = [(e.chain_id, to, e.input) for e in batch
                     if (to := e.to) and venues.factory_of_router(e.chain_id, to) is not None]
            out.append(to_wire(gather(calls, source, venues)[0]))
        return out

    rows = gathered()
    timings: dict[str, list[float]] = {"off": [], "on": [], "gather": []}
    for _ in range(rounds):
        timings["off"].append(_timed(lambda: [prepare_batch(r, 1, analyzer, frozenset(), 1 << 20) for r in raws]))
        timings["on"].append(_timed(lambda: [prepare_batch(r, 1, analyzer, frozenset(), 1 << 20, from_wire(w))
                                             for r, w in zip(raws, rows, strict=True)]))
        timings["gather"].append(_timed(gathered))
    n = len(envs)
    off, on = statistics.median(timings["off"]), statistics.median(timings["on"])
    return {"tx": n, "off_us_per_tx": round(off / n * 1e6, 2), "on_us_per_tx": round(on / n * 1e6, 2),
            "gather_us_per_tx": round(statistics.median(timings["gather"]) / n * 1e6, 2),
            "worker_cost_pct": round((on / off - 1) * 100, 1)}


def _copies(envelopes: list[tx_pb2.TxEnvelope], copies: int, salt: str) -> list[tx_pb2.TxEnvelope]:
    """``copies`` of the envelopes with new hashes (every run stores new transactions)."""
    out = []
    for c in range(copies):
        for i, e in enumerate(envelopes):
            n = tx_pb2.TxEnvelope()
            n.CopyFrom(e)
            n.hash = hashlib.sha256(f"{salt}/{c}/{i}".encode() + e.hash).digest()
            n.source_id = "bench"
            n.first_seen_unix_ns = time.time_ns()
            out.append(n)
    return out


async def _one_run(work: Path, config: ProcessdConfig, source: MappingSource | None,
                   envelopes: list[tx_pb2.TxEnvelope]) -> float:
    data = work / f"run-{time.time_ns()}"
    server = await ProcessdServer(replace(config, data_dir=data, listen_port=free_port()),
                                  reserve_source=source).start()
    try:
        await push_envelopes(server.address, envelopes[:500], batch_size=250, session_id="warm")
        t0 = time.perf_counter()
        acks = await push_envelopes(server.address, envelopes[500:], batch_size=250, session_id="run",
                                    first_batch_seq=100)
        elapsed = time.perf_counter() - t0
        assert sum(a.accepted for a in acks) == len(envelopes) - 500
        return (len(envelopes) - 500) / elapsed
    finally:
        await server.stop(grace_s=1)
        shutil.rmtree(data, ignore_errors=True)


async def throughput(mixes: dict[str, list[tx_pb2.TxEnvelope]], source: MappingSource, args: argparse.Namespace,
                     work: Path) -> dict[str, Any]:
    config = ProcessdConfig(data_dir=work, analysis_workers=args.workers, durability="nosync", flush_interval_ms=1)
    out: dict[str, Any] = {}
    for name, base in mixes.items():
        runs: dict[str, list[float]] = {"off": [], "on": []}
        for r in range(args.rounds):
            for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
                envs = _copies(base, args.copies, f"{name}{r}{mode}")
                runs[mode].append(await _one_run(work, config, source if mode == "on" else None, envs))
                print(f"{name} round {r} {mode}: {runs[mode][-1]:,.0f} tx/s", flush=True)
        off, on = statistics.median(runs["off"]), statistics.median(runs["on"])
        out[name] = {"tx": len(base) * args.copies - 500, "tx_per_s_off": [round(x) for x in runs["off"]],
                     "tx_per_s_on": [round(x) for x in runs["on"]], "median_off": round(off), "median_on": round(on),
                     "on_over_off": round(on / off, 3), "cost_pct": round((1 - on / off) * 100, 1)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--copies", type=int, default=4, help="copies of the fixture mix per throughput run")
    parser.add_argument("--workers", type=int, default=2, help="processd --analysis-workers")
    parser.add_argument("--out-name", default="valuation")
    args = parser.parse_args()
    venues = Venues()
    everything = fixture_envelopes(chain_id=1)
    swaps = [e for e in everything if e.to and v2_path(e.input) is not None
             and venues.factory_of_router(e.chain_id, e.to) is not None]
    source = MappingSource(synthetic_reserves(swaps, venues))
    results: dict[str, Any] = {"reserves": "synthetic (deterministic, 1e18..1e24 base units per pool; not mainnet "
                               "state)", "pools": len(source.pools), "load_avg_1m": os.getloadavg()[0],
                               "workers": args.workers, "durability": "nosync"}
    results["per_swap"] = per_swap(swaps, source, venues, max(5, args.rounds * 2))
    print("per swap:", results["per_swap"], flush=True)
    results["prepare"] = prepare_cost(everything, source, venues, max(5, args.rounds * 2))
    print("prepare:", results["prepare"], flush=True)
    work = Path(tempfile.mkdtemp(prefix="valuation-bench-"))
    try:
        mixes = {"fixture_mix": everything, "v2_swaps_only": swaps * max(1, len(everything) // len(swaps))}
        results["throughput"] = asyncio.run(throughput(mixes, source, args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["load_avg_1m_end"] = os.getloadavg()[0]
    path = write_artifact(args.out_name, results, command="python -m scripts.bench.valuation_bench")
    print(path)


if __name__ == "__main__":
    main()
