"""The cost of storing pool states in processd (issue 17), with and without them, in one run.

    python scripts/bench/pool_store_bench.py [--batches 40] [--txs 200] [--pools 20] [--rounds 3]
        [--out artifacts/perf/pool_store.json]

An in-process processd (real gRPC Ingest stream, LMDB, ``--durability sync``) receives ``--batches`` batches of
``--txs`` synthetic envelopes each, once without pool states and once (on a fresh data dir) with ``--pools`` new
pool states per batch (ingestd sends about one per touched pair and block, so 20 per batch is many), alternating
for ``--rounds`` rounds. Reported: wall time and CPU (processd and the pushing client share the process) per batch
of every run, the ratios of the medians, the CPU per pool state, then the restart's rebuild: the time to
rebuild the pool read model from the log (``PoolView.rebuild``: a walk of the ``pools`` index over every state
the first run with pool states stored, and one event read per pair).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from common.pb.v1 import ingest_pb2, pool_pb2
from common.testing.ingest_push import push_batches
from common.testing.netutil import free_port
from common.testing.synth import synthetic_envelopes
from processd.api.server import ProcessdServer
from processd.config import ProcessdConfig
from processd.storage.eventlog import EventLog
from processd.views.pools import PoolView


def _pool(chain_id: int, pair: int, block: int) -> pool_pb2.PoolState:
    return pool_pb2.PoolState(chain_id=chain_id, pair=pair.to_bytes(20, "big"), factory=b"\x02" * 20,
                              token0=b"\x03" * 20, token1=b"\x04" * 20, reserve0=(10**21 + block).to_bytes(9, "big"),
                              reserve1=(10**18 + pair).to_bytes(8, "big"), block_number=block,
                              block_hash=block.to_bytes(32, "big"), source=pool_pb2.POOL_STATE_SOURCE_SYNC_LOG)


def _batches(n: int, txs: int, pools: int, seed: int) -> list[ingest_pb2.TxBatch]:
    envelopes = synthetic_envelopes(n * txs, seed=seed, chain_ids=(137,))
    return [ingest_pb2.TxBatch(session_id="bench", batch_seq=i + 1, envelopes=envelopes[i * txs:(i + 1) * txs],
                               pools=[_pool(137, 1 + k, 100 + i) for k in range(pools)]) for i in range(n)]


async def _push(data_dir: Path, batches: list[ingest_pb2.TxBatch]) -> dict[str, float]:
    config = replace(ProcessdConfig(data_dir=data_dir, listen_port=free_port()), analysis_workers=0)
    srv = await ProcessdServer(config).start()
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        acks = await push_batches(srv.address, batches)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await srv.stop(grace_s=1.0)
    return {"wall_ms_per_batch": 1000 * wall / len(batches), "cpu_ms_per_batch": 1000 * cpu / len(batches),
            "accepted": sum(a.accepted for a in acks), "pools_stored": sum(a.pools_stored for a in acks)}


def _rebuild(data_dir: Path) -> dict[str, float]:
    log = EventLog(data_dir, 1 << 30).open()
    try:
        view = PoolView()
        started = time.perf_counter()
        n = view.rebuild(log)
        seconds = time.perf_counter() - started
    finally:
        log.close()
    return {"events": n, "pairs": len(view), "ms": 1000 * seconds, "us_per_event": 1e6 * seconds / max(n, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--txs", type=int, default=200)
    p.add_argument("--pools", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("artifacts/perf/pool_store.json"))
    args = p.parse_args()
    plain = _batches(args.batches, args.txs, 0, seed=5)
    pooled = _batches(args.batches, args.txs, args.pools, seed=5)
    runs: dict[str, list[dict[str, float]]] = {"without_pools": [], "with_pools": []}
    with tempfile.TemporaryDirectory(prefix="pool-store-bench-") as tmp:
        for r in range(args.rounds):  # alternating, each on a fresh data dir, so drift hits both alike
            runs["without_pools"].append(asyncio.run(_push(Path(tmp) / f"without{r}", plain)))
            runs["with_pools"].append(asyncio.run(_push(Path(tmp) / f"with{r}", pooled)))
        rebuild = _rebuild(Path(tmp) / "with0")

    def median(name: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[name])
    report = {"batches": args.batches, "txs_per_batch": args.txs, "pools_per_batch": args.pools, "runs": runs,
              "wall_ratio": median("with_pools", "wall_ms_per_batch") / median("without_pools", "wall_ms_per_batch"),
              "cpu_ratio": median("with_pools", "cpu_ms_per_batch") / median("without_pools", "cpu_ms_per_batch"),
              "cpu_us_per_pool_state": 1000 * (median("with_pools", "cpu_ms_per_batch")
                                               - median("without_pools", "cpu_ms_per_batch")) / max(args.pools, 1),
              "rebuild": rebuild}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
