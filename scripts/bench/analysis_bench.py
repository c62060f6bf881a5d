"""Benchmark of processd's per-transaction analysis (decode -> features -> ranking) over the real fixture mix.

Measured in the same run, same process, interleaved rounds (the machine is shared, so ratios matter more
than absolute figures):

- ``analyze_fast``: ``Analyzer.analyze`` with the fast decoder, µs per transaction over all 2,294 fixture
  calls (empty calldata, transfers, unknown calls and swaps in their real mix), the analysis parsed into
  protobuf messages;
- ``analyze_encoded_fast``: ``Analyzer.analyze_encoded``, the same analysis serialized (what processd runs
  and stores, without the parse);
- ``analyze_eth_abi``: the same ``analyze`` with eth-abi as the argument decoder;
- ``decode_fast`` / ``decode_eth_abi``: argument decoding alone of every fixture call with a known
  selector, fast decoder vs ``eth_abi.decode``, µs per transaction of the mix and per decoded call;
- per-category µs/tx for analyze_fast; decode coverage by category and protocol; opportunities by kind.

Run: ``python -m scripts.bench.analysis_bench [--rounds 7] [--out-name analysis]``
writes ``artifacts/perf/analysis.json``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import eth_abi

from common.pb.v1 import events_pb2, tx_pb2
from common.testing.samples import fixture_envelopes
from processd.analysis.analyzer import Analyzer
from processd.analysis.decoding import all_methods
from scripts.bench.eth_abi_backend import EthAbiArgsDecoder
from scripts.bench.harness import write_artifact

CATEGORY_NAMES = {v: k.removeprefix("TX_CATEGORY_").lower() for k, v in events_pb2.TxCategory.items()}
KIND_NAMES = {v: k.removeprefix("OPPORTUNITY_KIND_").lower() for k, v in events_pb2.OpportunityKind.items()}


def _time_round(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call, with the GC paused as in steady state."""
    gc.collect()
    gc.disable()
    try:
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - w0, time.process_time() - c0
    finally:
        gc.enable()


def _summary(samples: list[tuple[float, float]], per: int) -> dict[str, float]:
    wall = [w / per * 1e6 for w, _ in samples]
    cpu = [c / per * 1e6 for _, c in samples]
    return {
        "us_per_item_best_wall": round(min(wall), 3),
        "us_per_item_median_wall": round(statistics.median(wall), 3),
        "us_per_item_best_cpu": round(min(cpu), 3),
        "us_per_item_median_cpu": round(statistics.median(cpu), 3),
    }


def run(rounds: int) -> dict[str, Any]:
    envelopes = fixture_envelopes(chain_id=1)
    polygon = fixture_envelopes(chain_id=137)
    fast = Analyzer()
    slow = Analyzer(factory=EthAbiArgsDecoder)
    methods = all_methods()
    known = [(methods[e.input[:4]], e.input) for e in envelopes if e.input[:4] in methods]
    n = len(envelopes)

    def analyze_all(analyzer: Analyzer, envs: list[tx_pb2.TxEnvelope], encoded: bool = False) -> Callable[[], None]:
        fn: Callable[[tx_pb2.TxEnvelope], object] = analyzer.analyze_encoded if encoded else analyzer.analyze

        def loop() -> None:
            for e in envs:  # results are dropped: this measures analysis, not the storage path's buffers
                fn(e)

        return loop

    def decode_fast() -> None:
        for method, data in known:
            try:
                method.args.decode(memoryview(data))
            except ValueError:
                pass

    def decode_eth_abi() -> None:
        for method, data in known:
            try:
                eth_abi.decode(method.types, data[4:])
            except Exception:  # timing only: rejections cost what they cost
                pass

    def proto_floor() -> None:
        # The least any analysis does: one TxFeatures with five fields set (a machine-speed reference).
        make = events_pb2.TxFeatures
        for _ in range(n):
            f = make()
            f.category = events_pb2.TX_CATEGORY_OTHER
            f.value = b"\x01"
            f.gas_price = b"\x02"
            f.priority_fee = b"\x02"
            f.calldata_len = 1

    cases: dict[str, tuple[Callable[[], None], int]] = {
        "proto_floor": (proto_floor, n),
        "analyze_fast": (analyze_all(fast, envelopes), n),
        "analyze_encoded_fast": (analyze_all(fast, envelopes, encoded=True), n),
        "analyze_fast_chain137": (analyze_all(fast, polygon), n),
        "analyze_eth_abi": (analyze_all(slow, envelopes), n),
        "decode_fast": (decode_fast, n),
        "decode_eth_abi": (decode_eth_abi, n),
    }
    samples: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for fn, _ in cases.values():  # warm-up (lazy tables, caches)
        fn()
    for _ in range(rounds):  # interleaved: a noisy moment hits every case alike
        for name, (fn, _) in cases.items():
            samples[name].append(_time_round(fn))
    results: dict[str, Any] = {name: _summary(samples[name], per) for name, (_, per) in cases.items()}
    for name in ("decode_fast", "decode_eth_abi"):
        results[name]["us_per_decoded_call_best_cpu"] = round(min(c for _, c in samples[name]) / len(known) * 1e6, 3)
    results["ratios"] = {
        "analyze_eth_abi_over_fast": round(results["analyze_eth_abi"]["us_per_item_best_cpu"]
                                           / results["analyze_fast"]["us_per_item_best_cpu"], 2),
        "decode_eth_abi_over_fast": round(results["decode_eth_abi"]["us_per_item_best_cpu"]
                                          / results["decode_fast"]["us_per_item_best_cpu"], 2),
    }
    results["analyze_fast"]["tx_per_s_one_core_best_cpu"] = round(1e6 / results["analyze_fast"]["us_per_item_best_cpu"])
    results["per_category_analyze_fast"] = _per_category(fast, envelopes, rounds)
    results["coverage"] = _coverage(fast, envelopes)
    results["fixture"] = {"calls": n, "known_selector_calls": len(known)}
    return results


def _per_category(analyzer: Analyzer, envelopes: list[tx_pb2.TxEnvelope], rounds: int) -> dict[str, Any]:
    groups: dict[str, list[tx_pb2.TxEnvelope]] = defaultdict(list)
    for e in envelopes:
        f = analyzer.analyze(e).features
        key = "empty_calldata" if not e.input else ("unknown_selector" if not f.method else CATEGORY_NAMES[f.category])
        groups[key].append(e)
    out = {}
    for key, envs in sorted(groups.items()):
        best = min(_time_round(_loop(analyzer, envs))[1] for _ in range(rounds))
        out[key] = {"count": len(envs), "us_per_tx_best_cpu": round(best / len(envs) * 1e6, 3)}
    return out


def _loop(analyzer: Analyzer, envs: list[tx_pb2.TxEnvelope]) -> Callable[[], None]:
    fn = analyzer.analyze

    def loop() -> None:
        for e in envs:
            fn(e)

    return loop


def _coverage(analyzer: Analyzer, envelopes: list[tx_pb2.TxEnvelope]) -> dict[str, Any]:
    by_category: Counter[str] = Counter()
    by_protocol: Counter[str] = Counter()
    by_method: Counter[str] = Counter()
    by_kind: Counter[str] = Counter()
    decoded = errors = 0
    for e in envelopes:
        a = analyzer.analyze(e)
        f = a.features
        by_category[CATEGORY_NAMES[f.category]] += 1
        by_protocol[f"{f.protocol or '-'}/{CATEGORY_NAMES[f.category]}"] += 1
        if f.method:
            by_method[f.method] += 1
        decoded += f.decoded
        errors += bool(f.decode_error)
        for o in a.opportunities:
            by_kind[KIND_NAMES[o.kind]] += 1
    return {
        "decoded": decoded,
        "decode_errors": errors,
        "empty_calldata": sum(1 for e in envelopes if not e.input),
        "unknown_selector": sum(1 for e in envelopes if e.input and not analyzer.analyze(e).features.method),
        "by_category": dict(by_category.most_common()),
        "by_protocol_category": dict(by_protocol.most_common()),
        "by_method": dict(by_method.most_common()),
        "opportunities_by_kind": dict(by_kind.most_common()),
    }


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per case (best and median reported)")
    parser.add_argument("--out-name", default="analysis", help="artifact name under artifacts/perf/")
    args = parser.parse_args()
    results = run(args.rounds)
    path = write_artifact(args.out_name, results)
    fast, slow = results["analyze_fast"], results["analyze_eth_abi"]
    print(f"analyze (fast decoder): {fast['us_per_item_best_cpu']} µs/tx best CPU, "
          f"{fast['us_per_item_median_wall']} µs/tx median wall")
    print(f"analyze (eth-abi decoder): {slow['us_per_item_best_cpu']} µs/tx best CPU")
    print(f"decode only: fast {results['decode_fast']['us_per_decoded_call_best_cpu']} µs/call, "
          f"eth-abi {results['decode_eth_abi']['us_per_decoded_call_best_cpu']} µs/call")
    print(f"per category: {results['per_category_analyze_fast']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
