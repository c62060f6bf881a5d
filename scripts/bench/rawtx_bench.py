"""Benchmark of ingestd's per-transaction CPU for the signed raw bytes (``--raw-tx``), over the real fixture mix.

Each bundled mainnet call becomes a node's JSON-RPC object of type 0-4 in turn, with a signature and the typed
fields its type has (``common.testing.synth.typed_envelopes`` + ``rpc_object``), and is mapped the way ingestd's worker
does it, in interleaved rounds (the machine is shared, so the difference matters more than absolute figures):

- ``map``: ``tx_to_envelope`` alone (``--raw-tx off``, and the cost of ``fetch`` mode in ingestd, which adds
  a second batched request per fetch instead of CPU);
- ``map_encode``: ``tx_to_envelope`` + ``verified_raw`` (RLP re-encoding + keccak256 + the hash check) + setting
  raw_tx (``--raw-tx encode``, the default);
- ``encode_only``: ``verified_raw`` alone on mapped envelopes; ``serialize_growth_bytes``: how much the raw bytes
  add to the serialized envelope (what ingestd sends and processd stores), mean per transaction.

Run: ``python -m scripts.bench.rawtx_bench [--rounds 7]`` writes ``artifacts/perf/rawtx.json``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

from common.pb.v1 import tx_pb2
from common.rawtx import verified_raw
from common.testing.fixtures import load_mainnet_calls
from common.testing.synth import rpc_object, typed_envelopes
from ingestd.mapping import tx_to_envelope
from scripts.bench.harness import write_artifact

CHAIN_ID = 1


def _cpu_round(fn: Callable[[], Any]) -> float:
    """CPU seconds of this process for one call, with the GC paused as in steady state."""
    gc.collect()
    gc.disable()
    try:
        c0 = time.process_time()
        fn()
        return time.process_time() - c0
    finally:
        gc.enable()


def run(rounds: int) -> dict[str, Any]:
    n = len(load_mainnet_calls())
    envelopes = [e for e in typed_envelopes(n, chain_ids=(CHAIN_ID,)) if e.raw_tx]  # signed ones only
    objects = [rpc_object(e) for e in envelopes]
    mapped = [tx_to_envelope(o, CHAIN_ID, "bench", 1) for o in objects]

    def map_only() -> None:
        for o in objects:
            tx_to_envelope(o, CHAIN_ID, "bench", 1)

    def map_encode() -> None:
        for o in objects:
            env = tx_to_envelope(o, CHAIN_ID, "bench", 1)
            env.raw_tx = verified_raw(env)
            env.raw_tx_origin = tx_pb2.RAW_TX_ORIGIN_REENCODED

    def encode_only() -> None:
        for env in mapped:
            verified_raw(env)

    samples: dict[str, list[float]] = {"map": [], "map_encode": [], "encode_only": []}
    for _ in range(rounds):
        samples["map"].append(_cpu_round(map_only))
        samples["map_encode"].append(_cpu_round(map_encode))
        samples["encode_only"].append(_cpu_round(encode_only))
    per = len(objects)
    us = {k: {"us_per_tx_best_cpu": round(min(v) / per * 1e6, 2),
              "us_per_tx_median_cpu": round(statistics.median(v) / per * 1e6, 2)} for k, v in samples.items()}
    added = us["map_encode"]["us_per_tx_median_cpu"] - us["map"]["us_per_tx_median_cpu"]
    growth = sum(len(e.raw_tx) + 4 for e in envelopes) / per  # raw_tx bytes + tag/length + origin field
    return {
        "transactions": per,
        "types": sorted({e.tx_type for e in envelopes}),
        "mean_input_bytes": round(sum(len(e.input) for e in envelopes) / per, 1),
        **us,
        "encode_added_us_per_tx_median": round(added, 2),
        "encode_cpu_share_of_a_core_at_200_tx_s": round(added * 200 / 1e6, 5),
        "serialize_growth_bytes": round(growth, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rawtx_bench", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out-name", default="rawtx")
    args = parser.parse_args(argv)
    results = run(args.rounds)
    path = write_artifact(args.out_name, results, command="python -m scripts.bench.rawtx_bench")
    print(results)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
