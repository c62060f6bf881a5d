"""Benchmark of the valuation (issue 17): its cost per swap, and processd's full-path throughput with it off, with
the valuation of a base revision (``--base``, default the merge base with main) and with the working tree's, in one
run.

Measured in one run (the machine is shared: ratios matter more than absolute figures):

- ``per_swap``: over the Uniswap V2 / Sushiswap router swaps of the bundled mainnet fixtures, CPU µs per swap of
  ``Valuer.value`` of the base revision (its package imported next to the working tree's,
  ``scripts/bench/baseline.py``) and of the working tree, on the same decoded calls and reserves, over all swaps
  and over the valued ones alone, and on pools 100x deeper (``deep``: the same swaps 100x smaller against their
  pools, as most mempool swaps are; fewer of them can gain); of ``Analyzer.analyze_fields`` with the swap's
  reserves vs without a reserve source (the difference is the valuation: pair addresses, the closed forms, the
  exact refinement, the extra opportunity fields); and of the pipeline's gathering (``gather``: the path read
  from the calldata, the route's plan, the source's lookups) per swap. Variants interleaved, medians.
- ``prepare``: per mix (below), ``prepare_batch`` (what an analysis worker runs per batch: validation, analysis,
  encoding) in batches of 250, with the batches' reserves vs without, CPU µs per transaction (the CPU the
  valuation adds to the workers, without the noise of a whole daemon on a shared machine), plus the pipeline's
  gathering per transaction (on the event loop).
- ``throughput``: a real ``ProcessdServer`` (LMDB, analysis worker processes, gRPC ingest), each run in a fresh
  process on a fresh data directory: ``off`` (no reserve source), ``base`` (a reserve source, the base revision's
  whole tree, exported with ``git archive``) and ``new`` (a reserve source, the working tree); a round starts the
  three together (each warmed up with :data:`WARM_COPIES` copies of the mix, so every process's route caches are
  warm as in a running daemon, the collector set as processd's ``__main__`` sets it), then told to go at once: they
  run side by side, sharing the machine's load of that moment; or, with ``--slices N``, their timed pushes take
  turns in N parts, one run at a time (:func:`_round`: each part has the machine to itself but for its other
  tenants, so it measures a lone processd, whose throughput the valuation costs on each batch's critical path, not
  only in CPU); tx/s and CPU per transaction per run, costs per round and their medians (:func:`throughput`).
  Mixes: ``fixture_mix`` (every call of the fixtures, 7% of them V2 router swaps), ``demo_mix`` (the fixture mix
  plus V2 router swaps for 10% of the sends, as the demo's traffic: ``--swap-share 0.1`` of executable swaps beside
  replayed mainnet calls), ``v2_swaps_only`` (the V2 router swaps alone) and ``v2_valued_only`` (only the swaps the
  synthetic reserves let be valued: the worst case, every swap searched).

In-process times are CPU time of the bench process (``time.process_time``), not wall time.

The reserves are SYNTHETIC: deterministic made-up reserves (1e18..1e24 base units) for every pair the corpus
swaps read (their hops, the same pair on the other factory, the input token's WETH pair), not mainnet state; the
cost of the search does not depend on whether a sandwich turns out profitable, but a swap whose bound already
fails on them is cheap (about half of them: hence ``v2_valued_only``). Writes ``artifacts/perf/valuation.json``.

Run: ``python -m scripts.bench.valuation_bench [--rounds 5] [--copies 6] [--slices 0] [--workers 2] [--base REV]``
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
from common.testing.procfs import cpu_seconds, descendants
from common.testing.samples import fixture_envelopes
from processd.analysis.analyzer import Analyzer
from processd.analysis.valuation.calldata import v2_path
from processd.analysis.valuation.pairs import Venues, pair_address
from processd.analysis.valuation.state import PoolReserves
from processd.analysis.valuation.value import gather, pairs_needed
from processd.api.server import ProcessdServer
from processd.config import ProcessdConfig
from scripts.bench.harness import REPO_ROOT, write_artifact


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
    """CPU seconds of this process running ``fn`` (not wall time: on the shared machine another process taking the
    core between two lines would count), with the collector off."""
    gc.collect()
    gc.disable()
    try:
        t0 = time.process_time()
        fn()
        return time.process_time() - t0
    finally:
        gc.enable()


def per_swap(swaps: list[tx_pb2.TxEnvelope], source: MappingSource, venues: Venues, rounds: int,
             base_valuer: Any) -> dict[str, Any]:
    analyzer = Analyzer(venues=venues)
    state = source.pools
    fields = [(e.chain_id, e.hash, e.sender, e.to, e.value, e.gas_price, None, None, e.input) for e in swaps]

    def analyze(reserves: dict | None) -> Callable[[], None]:
        def loop() -> None:
            for f in fields:
                analyzer.analyze_fields(*f, reserves)
        return loop

    decoded = [(e, c) for e in swaps
               if (c := analyzer.decode_call(e.chain_id, e.to, int.from_bytes(e.value, "big"), e.sender, e.input)[0])
               is not None]
    outcomes = [analyzer.valuer.value(e.chain_id, e.to, c, int.from_bytes(e.value, "big"),
                                      int.from_bytes(e.gas_price, "big"), state) for e, c in decoded]
    valued = [d for d, v in zip(decoded, outcomes, strict=True) if not isinstance(v, str)]

    def value_only(valuer: Any, calls: list[tuple[tx_pb2.TxEnvelope, Any]], at: dict = state) -> Callable[[], None]:
        def loop() -> None:
            for e, call in calls:
                valuer.value(e.chain_id, e.to, call, int.from_bytes(e.value, "big"), int.from_bytes(e.gas_price, "big"),
                             at)
        return loop

    # Pools 100x deeper: the same swaps are 100x smaller against them, as most mempool swaps are against their
    # pools (fewer gain over two fees, fewer pay their gas: the early stops matter there).
    deep = {k: replace(p, reserve0=p.reserve0 * 100, reserve1=p.reserve1 * 100) for k, p in state.items()}

    calls = [(e.chain_id, e.to, e.input) for e in swaps]
    timings: dict[str, list[float]] = {k: [] for k in ("analyze_off", "analyze_on", "value_base", "value_new",
                                                       "value_base_valued", "value_new_valued", "value_base_deep",
                                                       "value_new_deep", "gather")}
    for _ in range(rounds):  # interleaved
        timings["analyze_off"].append(_timed(analyze(None)))
        timings["analyze_on"].append(_timed(analyze(state)))
        timings["value_base"].append(_timed(value_only(base_valuer, decoded)))
        timings["value_new"].append(_timed(value_only(analyzer.valuer, decoded)))
        timings["value_base_valued"].append(_timed(value_only(base_valuer, valued)) * len(swaps) / len(valued))
        timings["value_new_valued"].append(_timed(value_only(analyzer.valuer, valued)) * len(swaps) / len(valued))
        timings["value_base_deep"].append(_timed(value_only(base_valuer, decoded, deep)))
        timings["value_new_deep"].append(_timed(value_only(analyzer.valuer, decoded, deep)))
        timings["gather"].append(_timed(lambda: gather(calls, source, venues)))
    n = len(swaps)
    out: dict[str, Any] = {f"{k}_us_per_swap": round(statistics.median(v) / n * 1e6, 2) for k, v in timings.items()}
    out["valuation_us_per_swap"] = round(out["analyze_on_us_per_swap"] - out["analyze_off_us_per_swap"], 2)
    out["value_new_over_base"] = round(out["value_new_us_per_swap"] / out["value_base_us_per_swap"], 3)
    out["value_valued_new_over_base"] = round(out["value_new_valued_us_per_swap"]
                                              / out["value_base_valued_us_per_swap"], 3)
    out["value_deep_new_over_base"] = round(out["value_new_deep_us_per_swap"] / out["value_base_deep_us_per_swap"], 3)
    deep_outcomes = [analyzer.valuer.value(e.chain_id, e.to, c, int.from_bytes(e.value, "big"),
                                           int.from_bytes(e.gas_price, "big"), deep) for e, c in decoded]
    out["deep"] = {"valued": sum(1 for v in deep_outcomes if not isinstance(v, str)),
                   "sandwich_net_positive": sum(1 for v in deep_outcomes if not isinstance(v, str)
                                                and v.sandwich is not None and (v.sandwich.net or 0) > 0),
                   "backrun_net_positive": sum(1 for v in deep_outcomes if not isinstance(v, str)
                                               and v.backrun is not None and (v.backrun.net or 0) > 0)}
    out["swaps"] = n
    out["valued"] = len(valued)
    out["profitable_sandwich"] = sum(1 for v in outcomes if not isinstance(v, str) and v.sandwich is not None)
    out["profitable_backrun"] = sum(1 for v in outcomes if not isinstance(v, str) and v.backrun is not None)
    return out


def prepare_cost(mixed: dict[str, list[tx_pb2.TxEnvelope]], source: MappingSource, venues: Venues,
                 rounds: int) -> dict[str, Any]:
    """Per mix: the analysis workers' ``prepare_batch`` CPU per transaction with the batches' reserves vs without,
    and the pipeline's gathering (event loop), in batches of 250, rounds interleaved, medians. ``cost_pct`` is what
    the valuation adds to this part of processd's work (the rest, ingest, commit, read models, is the same either
    way, so the full path's share is lower)."""
    from common.pb.v1 import ingest_pb2
    from processd.analysis.prepare import prepare_batch
    from processd.analysis.valuation.state import from_wire, to_wire

    out: dict[str, Any] = {}
    analyzer = Analyzer(venues=venues)
    for name, mix in mixed.items():
        envs = _copies(mix, 1, "prepare")
        raws = [ingest_pb2.TxBatch(batch_seq=1, envelopes=envs[i:i + 250]).SerializeToString()
                for i in range(0, len(envs), 250)]

        parsed = [ingest_pb2.TxBatch.FromString(raw) for raw in raws]  # the pipeline has parsed the batch anyway

        def gathered(parsed: list[Any] = parsed) -> list[Any]:
            rows = []
            for message in parsed:
                batch = message.envelopes
                calls = [(e.chain_id, to, e.input) for e in batch  # as the pipeline's _reserves
                         if (to := e.to) in venues.router_addresses]
                rows.append(to_wire(gather(calls, source, venues)[0]))
            return rows

        rows = gathered()
        for r, w in zip(raws, rows, strict=True):  # warm: the route caches filled, as in a running worker
            prepare_batch(r, 1, analyzer, frozenset(), 1 << 20, from_wire(w))
        timings: dict[str, list[float]] = {"off": [], "on": [], "gather": []}
        def off(raws: list[bytes] = raws) -> None:
            for r in raws:
                prepare_batch(r, 1, analyzer, frozenset(), 1 << 20)

        def on(raws: list[bytes] = raws, rows: list[Any] = rows) -> None:
            for r, w in zip(raws, rows, strict=True):
                prepare_batch(r, 1, analyzer, frozenset(), 1 << 20, from_wire(w))

        for _ in range(rounds):
            timings["off"].append(_timed(off))
            timings["on"].append(_timed(on))
            timings["gather"].append(_timed(gathered))
        n = len(envs)
        t_off, t_on, t_g = (statistics.median(timings[k]) / n * 1e6 for k in ("off", "on", "gather"))
        out[name] = {"tx": n, "off_us_per_tx": round(t_off, 2), "on_us_per_tx": round(t_on, 2),
                     "gather_us_per_tx": round(t_g, 2), "worker_cost_pct": round((1 - t_off / t_on) * 100, 1),
                     "cost_pct": round((1 - t_off / (t_on + t_g)) * 100, 1)}
    return out


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


def _tree_cpu_s() -> float:
    """CPU seconds of this process and its children (the analysis workers) so far, every thread of each, from the
    scheduler's nanosecond counters (``/proc/<pid>/task/<tid>/schedstat``; the 100 Hz ``stat`` ticks would make a
    part of a run, a fraction of a second, uncertain by several percent), or the ticks where there are none."""
    pids = [os.getpid(), *descendants(os.getpid())]
    total = 0.0
    for pid in pids:
        ns = _schedstat_ns(pid)
        total += ns / 1e9 if ns is not None else cpu_seconds(pid) or 0.0
    return total


def _schedstat_ns(pid: int) -> int | None:
    """Nanoseconds on CPU of every thread of ``pid`` (None without schedstat)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    total = 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as fh:
                total += int(fh.read().split()[0])
        except (OSError, ValueError, IndexError):
            if tid == str(pid):
                return None
    return total


#: Copies of the mix each throughput run pushes before the timed push: every route of the mix then reaches each
#: analysis worker (a batch goes to the least busy one) and the pipeline, so their route and pair-address caches
#: are warm, as in a daemon that has run a while (resolving a route costs a few keccak256, ~60 µs: cold, the
#: ~100 routes of the mix cost each process a few ms, ~1.5 µs per timed transaction of a run).
WARM_COPIES = 2


async def _one_run(config: ProcessdConfig, source: MappingSource | None, envelopes: list[tx_pb2.TxEnvelope],
                   warm: int, slices: int, gate: Callable[[], object]) -> tuple[float, float]:
    """(tx/s, CPU µs per transaction of processd, its workers and the in-process sender) of the timed push of
    ``envelopes[warm:]`` after a warm-up push of ``envelopes[:warm]``, in ``slices`` parts (0: one); ``gate`` is
    called before each part (it returns when this run's turn comes) and after the last with ``None`` (it reports
    the part done). tx/s and CPU are those of the parts alone: a run idles between its turns."""
    server = await ProcessdServer(replace(config, listen_port=free_port()), reserve_source=source).start()
    loop = asyncio.get_running_loop()
    try:
        await push_envelopes(server.address, envelopes[:warm], batch_size=250, session_id="warm")
        timed = envelopes[warm:]
        per = -(-len(timed) // max(1, slices))
        elapsed = cpu = 0.0
        accepted = 0
        for k in range(0, len(timed), per):
            await loop.run_in_executor(None, gate)
            cpu0 = _tree_cpu_s()
            t0 = time.perf_counter()
            acks = await push_envelopes(server.address, timed[k:k + per], batch_size=250, session_id=f"run{k}",
                                        first_batch_seq=100)
            elapsed += time.perf_counter() - t0
            cpu += _tree_cpu_s() - cpu0
            accepted += sum(a.accepted for a in acks)
            if slices:
                print("done", flush=True)
        assert accepted == len(timed)
        return len(timed) / elapsed, cpu / len(timed) * 1e6
    finally:
        await server.stop(grace_s=1)


def corpus() -> tuple[list[tx_pb2.TxEnvelope], list[tx_pb2.TxEnvelope], MappingSource, Venues]:
    """(the fixture mix, its V2 router swaps, the synthetic reserve source, the venues)."""
    venues = Venues()
    everything = fixture_envelopes(chain_id=1)
    swaps = [e for e in everything if e.to and v2_path(e.input) is not None
             and venues.factory_of_router(e.chain_id, e.to) is not None]
    return everything, swaps, MappingSource(synthetic_reserves(swaps, venues)), venues


def valued_swaps(swaps: list[tx_pb2.TxEnvelope], analyzer: Analyzer,
                 source: MappingSource) -> list[tx_pb2.TxEnvelope]:
    """The swaps the synthetic reserves let be valued (the others fail their own bound on them)."""
    out = []
    for e in swaps:
        call = analyzer.decode_call(e.chain_id, e.to, int.from_bytes(e.value, "big"), e.sender, e.input)[0]
        if call is not None and not isinstance(analyzer.valuer.value(
                e.chain_id, e.to, call, int.from_bytes(e.value, "big"), int.from_bytes(e.gas_price, "big"),
                source.pools), str):
            out.append(e)
    return out


def mixes(everything: list[tx_pb2.TxEnvelope], swaps: list[tx_pb2.TxEnvelope],
          valued: list[tx_pb2.TxEnvelope]) -> dict[str, list[tx_pb2.TxEnvelope]]:
    """The throughput mixes (module doc), each about as long as the fixture mix."""
    n = len(everything)
    extra = n // 9  # 10% of the sends: extra / (n + extra)
    return {"fixture_mix": everything,
            "demo_mix": [*everything, *(swaps[i % len(swaps)] for i in range(extra))],
            "v2_swaps_only": swaps * max(1, n // len(swaps)),
            "v2_valued_only": valued * max(1, n // max(1, len(valued)))}


def _ready_then_wait() -> None:
    """The ``--one-run`` gate: says ``ready`` on stdout the first time, then returns at each line on stdin (the
    parent's go)."""
    import sys

    if not _said_ready:
        _said_ready.append(True)
        print("ready", flush=True)
    sys.stdin.readline()


_said_ready: list[bool] = []


def one_run_main(mix: str, mode: str, copies: int, workers: int, salt: str, slices: int) -> None:
    """``--one-run``: one throughput run in this process (which may run another revision's tree), tx/s on stdout;
    after its warm-up it says ``ready`` and waits for a line on stdin before its timed push, or before each of its
    ``slices`` parts, saying ``done`` after each (:func:`_round`)."""
    import json
    import sys

    everything, swaps, source, venues = corpus()
    analyzer = Analyzer(venues=venues)
    valued = valued_swaps(swaps, analyzer, source) if mix == "v2_valued_only" else []
    mixed = mixes(everything, swaps, valued)[mix]
    envs = _copies(mixed, copies + WARM_COPIES, salt)
    warm = len(mixed) * WARM_COPIES
    work = Path(tempfile.mkdtemp(prefix="valuation-bench-"))
    from processd.__main__ import tune_gc  # the tree under test's: as its processd runs

    tune_gc()  # the collector as the daemon sets it (processd/__main__.py); the workers keep the default
    try:
        # off: valuation off altogether (no pool view, no gathering); on: the synthetic reserves as the source.
        config = ProcessdConfig(data_dir=work, analysis_workers=workers, durability="nosync", flush_interval_ms=1,
                                valuation=mode == "on")
        rate, cpu_us = asyncio.run(_one_run(config, source if mode == "on" else None, envs, warm, slices,
                                            _ready_then_wait))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    import processd
    print(json.dumps({"tx_per_s": rate, "cpu_us_per_tx": cpu_us, "tx": len(envs) - warm,
                      "processd": str(Path(processd.__file__).parent),
                      "python": sys.version.split()[0]}))


def _round(runs: list[tuple[Path, str, str]], args: argparse.Namespace, salt: str) -> list[dict[str, Any]]:
    """One round: a ``--one-run`` process per (tree, mix, reserve source on|off), all started and warmed up
    together, then told to go at once: their timed pushes share the machine's load of that moment (it swings 2-3x
    between minutes here) instead of each meeting another. With ``--slices`` N their timed pushes take turns
    instead: N parts each, one run at a time, the order rotating each turn, so each part runs alone on the machine
    (no mode takes the cores from another) and the modes' parts alternate within seconds, meeting the same load."""
    import subprocess
    import sys

    procs = []
    for i, (tree, mix, on) in enumerate(runs):
        env = {**os.environ, "PYTHONPATH": str(tree)}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--one-run", mix, on, "--copies", str(args.copies),
               "--workers", str(args.workers), "--salt", f"{salt}-{i}", "--slices", str(args.slices)]
        procs.append(subprocess.Popen(cmd, cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True))
    try:
        for p in procs:
            if _line(p) != "ready":
                raise RuntimeError(f"a --one-run process exited before its run ({p.args!r})")
        if args.slices:
            for k in range(args.slices):
                for p in procs[k % len(procs):] + procs[:k % len(procs)]:
                    _say(p, "go")
                    if _line(p) != "done":
                        raise RuntimeError(f"a --one-run process failed in its part {k} ({p.args!r})")
        else:
            for p in procs:
                _say(p, "go")
        return [_result(p, tree) for p, (tree, _, _) in zip(procs, runs, strict=True)]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _line(p: Any) -> str:
    assert p.stdout is not None
    return str(p.stdout.readline()).strip()


def _say(p: Any, line: str) -> None:
    assert p.stdin is not None
    p.stdin.write(line + "\n")
    p.stdin.flush()


def _result(p: Any, tree: Path) -> dict[str, Any]:
    """A finished ``--one-run``'s JSON line, checked to come from ``tree``'s processd."""
    import json

    out, _ = p.communicate(timeout=900)
    if p.returncode != 0:
        raise RuntimeError(f"a --one-run process failed ({p.args!r})")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    if Path(result["processd"]).resolve() != (tree / "processd").resolve():
        raise RuntimeError(f"the run imported {result['processd']}, not {tree}/processd")
    return result


def throughput(mix_names: list[str], trees: dict[str, tuple[Path, str]], args: argparse.Namespace) -> dict[str, Any]:
    """Every mix in every mode (``trees``: mode -> (tree, reserve source on|off)), a round running its modes side
    by side or in turns (:func:`_round`).

    The modes of a round meet the same load of the machine, so the costs are read per round
    (``cpu_cost_pct_<mode>_rounds``, 1 - off/mode of that round's CPU per transaction; likewise
    ``cost_pct_<mode>_rounds`` from tx/s), then their median and worst round; the ratio of the modes' medians over
    all rounds is reported too (``cpu_cost_pct_<mode>``). Side by side the modes take cores from each other, and
    one that finishes first leaves the others more of the machine for their last part: tx/s says as much about the
    scheduler as about the modes, CPU per transaction does not (when processd is CPU-bound, the throughput cost is
    1 - off/on of it). In turns (``--slices``) tx/s is a lone processd's."""
    out: dict[str, Any] = {}
    modes = list(trees)
    for name in mix_names:
        runs: dict[str, list[float]] = {m: [] for m in modes}
        cpu: dict[str, list[float]] = {m: [] for m in modes}
        tx = 0
        for r in range(args.rounds):
            results = _round([(trees[m][0], name, trees[m][1]) for m in modes], args, f"{name}{r}")
            for mode, result in zip(modes, results, strict=True):
                runs[mode].append(result["tx_per_s"])
                cpu[mode].append(result["cpu_us_per_tx"])
                tx = result["tx"]
            print(f"{name} round {r}: " + ", ".join(f"{m} {runs[m][-1]:,.0f} tx/s {cpu[m][-1]:.1f} µs CPU/tx"
                                                      for m in modes), flush=True)
        out[name] = _throughput_entry(tx, runs, cpu, modes)
    return out


def _throughput_entry(tx: int, runs: dict[str, list[float]], cpu: dict[str, list[float]],
                      modes: list[str]) -> dict[str, Any]:
    """One mix's figures (:func:`throughput`)."""
    medians = {m: statistics.median(v) for m, v in runs.items()}
    cpu_medians = {m: statistics.median(v) for m, v in cpu.items()}
    entry: dict[str, Any] = {"tx": tx, **{f"tx_per_s_{m}": [round(x) for x in v] for m, v in runs.items()},
                             **{f"median_{m}": round(v) for m, v in medians.items()},
                             **{f"cpu_us_per_tx_{m}": [round(x, 1) for x in v] for m, v in cpu.items()},
                             **{f"median_cpu_us_per_tx_{m}": round(v, 1) for m, v in cpu_medians.items()}}
    for m in modes:
        if m == "off":
            continue
        entry[f"{m}_over_off"] = round(medians[m] / medians["off"], 3)
        entry[f"cost_pct_{m}"] = round((1 - medians[m] / medians["off"]) * 100, 1)
        rate_rounds = [round((1 - x / o) * 100, 1) for x, o in zip(runs[m], runs["off"], strict=True)]
        entry[f"cost_pct_{m}_rounds"] = rate_rounds
        entry[f"cost_pct_{m}_round_median"] = round(statistics.median(rate_rounds), 1)
        # CPU per transaction is far less sensitive to the other work on a shared machine than tx/s: when
        # processd is CPU-bound, the throughput cost is 1 - off/on of it.
        entry[f"cpu_cost_pct_{m}"] = round((1 - cpu_medians["off"] / cpu_medians[m]) * 100, 1)
        cpu_rounds = [round((1 - o / x) * 100, 1) for x, o in zip(cpu[m], cpu["off"], strict=True)]
        entry[f"cpu_cost_pct_{m}_rounds"] = cpu_rounds
        entry[f"cpu_cost_pct_{m}_round_median"] = round(statistics.median(cpu_rounds), 1)
        entry[f"cpu_cost_pct_{m}_worst_round"] = max(cpu_rounds)
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--copies", type=int, default=6, help="copies of the mix per throughput run (longer runs: "
                        "the CPU clock ticks 100 times a second per process)")
    parser.add_argument("--workers", type=int, default=2, help="processd --analysis-workers")
    parser.add_argument("--slices", type=int, default=0, help="0: the runs of a round side by side; N: each run's "
                        "timed push in N parts, the runs of a round taking turns (each part alone on the machine)")
    parser.add_argument("--base", default="", help="the revision to compare with (default: merge-base HEAD main)")
    parser.add_argument("--mixes", default="fixture_mix,demo_mix,v2_swaps_only,v2_valued_only")
    parser.add_argument("--out-name", default="valuation")
    parser.add_argument("--one-run", nargs=2, metavar=("MIX", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--salt", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_run:
        one_run_main(args.one_run[0], args.one_run[1], args.copies, args.workers, args.salt, args.slices)
        return
    from scripts.bench import baseline

    base = baseline.resolve(args.base or baseline.merge_base("HEAD", "main"))
    everything, swaps, source, venues = corpus()
    old = baseline.load_package(base, "processd.analysis.valuation", "baseline_valuation")
    results: dict[str, Any] = {"reserves": "synthetic (deterministic, 1e18..1e24 base units per pool; not mainnet "
                               "state)", "pools": len(source.pools), "load_avg_1m": os.getloadavg()[0],
                               "workers": args.workers, "durability": "nosync", "base": base,
                               "copies": args.copies, "warm_copies": WARM_COPIES, "rounds": args.rounds,
                               "slices": args.slices,
                               "new": baseline.resolve("HEAD") + ("+dirty" if baseline.dirty() else "")}
    results["per_swap"] = per_swap(swaps, source, venues, max(5, args.rounds * 2),
                                   old.value.Valuer(old.pairs.Venues()))
    print("per swap:", results["per_swap"], flush=True)
    valued = valued_swaps(swaps, Analyzer(venues=venues), source)
    results["prepare"] = prepare_cost(mixes(everything, swaps, valued), source, venues, max(7, args.rounds * 2))
    print("prepare:", results["prepare"], flush=True)
    base_tree = baseline.export_tree(base)
    try:
        trees = {"off": (REPO_ROOT, "off"), "base": (base_tree, "on"), "new": (REPO_ROOT, "on")}
        results["throughput"] = throughput(args.mixes.split(","), trees, args)
    finally:
        shutil.rmtree(base_tree, ignore_errors=True)
    results["load_avg_1m_end"] = os.getloadavg()[0]
    path = write_artifact(args.out_name, results, command="python -m scripts.bench.valuation_bench")
    print(path)


if __name__ == "__main__":
    main()
