"""The cost of ingestd's pool state path (ingestd/pools.py, issue 17), with and without it, in one run.

    python scripts/bench/pool_state_bench.py [--blocks 20] [--swaps-per-block 50] [--out artifacts/perf/pool_state.json]

On a fresh anvil with the local Uniswap V2 world: per block, ``--swaps-per-block`` router swaps are sent and mined;
the tracker sees them pending (``on_pending``) and handles the block (``on_block``). Reported: node requests per
block by method, CPU per pending transaction for a swap and for a transaction that is not one (the cost every
envelope pays when the path is on, against 0 when it is off), CPU per block (the requests' parsing and the states
built; wall time includes anvil's answers), and the states per block.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from common.pb.v1 import pool_pb2, tx_pb2
from common.testing.anvil import AnvilNode
from common.testing.replay import Replayer
from common.testing.swaps import SwapMaker
from common.testing.uniswap import deploy_world, rpc
from ingestd.config import V2Router
from ingestd.fetcher import BatchFetcher
from ingestd.metrics import PoolStats
from ingestd.pools import PoolTracker


def _b(text: str) -> bytes:
    return bytes.fromhex(text[2:])


async def _run(url: str, blocks: int, per_block: int) -> dict[str, object]:
    world = deploy_world(url, 1)
    maker = SwapMaker(world, seed=1)
    routers = [V2Router(1, _b(d.router), _b(d.factory), world.pair_init_code_hash) for d in world.dexes.values()]
    stats = PoolStats()
    sent: list[pool_pb2.PoolState] = []
    other = tx_pb2.TxEnvelope(to=b"\x11" * 20, input=bytes.fromhex("a9059cbb") + bytes(64))  # an ERC-20 transfer
    cpu_pending = cpu_other = cpu_block = wall_block = 0.0
    async with BatchFetcher([url]) as fetcher, Replayer(url) as replayer:
        def keep(state: pool_pb2.PoolState) -> bool:
            sent.append(state)
            return True

        tracker = PoolTracker(1, routers, fetcher, stats, keep)
        for _ in range(blocks):
            maker.set_reserves(world.reserves())
            swaps = [maker.next_swap() for _ in range(per_block)]
            envelopes = [tx_pb2.TxEnvelope(to=_b(s.call.to or ""), input=_b(s.call.input)) for s in swaps]
            t0 = time.process_time()
            for env in envelopes:
                tracker.on_pending(env)
            cpu_pending += time.process_time() - t0
            t0 = time.process_time()
            for _ in range(per_block):
                tracker.on_pending(other)
            cpu_other += time.process_time() - t0
            await replayer.send([s.call for s in swaps])
            rpc(url, "evm_mine")
            block = rpc(url, "eth_getBlockByNumber", ["latest", False])
            t0, w0 = time.process_time(), time.perf_counter()
            await tracker.on_block(int(block["number"], 16), _b(block["hash"]), _b(block["parentHash"]))
            cpu_block += time.process_time() - t0
            wall_block += time.perf_counter() - w0
    n = blocks * per_block
    return {
        "blocks": blocks, "swaps_per_block": per_block, "pairs_tracked": len(tracker.pairs),
        # eth_call: calls per block, all in one batch request (at most one per block by construction)
        "rpc_per_block": {"eth_getLogs": stats.rpc_calls["eth_getLogs"] / blocks,
                          "eth_call": stats.rpc_calls["eth_call"] / blocks},
        "states_per_block": round(len(sent) / blocks, 2),
        "cpu_us_per_pending_swap": round(cpu_pending / n * 1e6, 2),
        "cpu_us_per_pending_other_tx": round(cpu_other / n * 1e6, 3),
        "cpu_ms_per_block": round(cpu_block / blocks * 1e3, 3),
        "wall_ms_per_block": round(wall_block / blocks * 1e3, 3),
        "path_off_cost": "0 (the worker does not call the tracker)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--swaps-per-block", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("artifacts/perf/pool_state.json"))
    args = parser.parse_args()
    with AnvilNode(chain_id=1) as node:
        result = asyncio.run(_run(node.http_url, args.blocks, args.swaps_per_block))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
