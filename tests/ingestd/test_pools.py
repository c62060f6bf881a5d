"""ingestd's pool state path (ingestd/pools.py) against the real Uniswap V2 contracts on anvil: the pairs of pending
router swaps are computed by CREATE2, read once per block (Sync logs, batched getReserves at the block hash), and
every PoolState sent equals getReserves() on the node after that block; gaps resync, bounds drop with a reason."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from common.pb.v1 import pool_pb2, tx_pb2
from common.testing.anvil import AnvilNode
from common.testing.replay import Replayer
from common.testing.swaps import Swap, SwapMaker
from common.testing.uniswap import World, calldata, deploy_world, rpc
from ingestd.config import ConfigError, V2Router, load_config, parse_v2_router
from ingestd.fetcher import BatchFetcher
from ingestd.metrics import PoolStats
from ingestd.pools import PathError, PoolTracker, pair_for, swap_path, swap_selectors
from processd.views.pools import PoolView

CHAIN = 1


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with AnvilNode(chain_id=CHAIN) as node:
        yield deploy_world(node.http_url, CHAIN)


def _b(hex_address: str) -> bytes:
    return bytes.fromhex(hex_address[2:])


def routers(world: World) -> list[V2Router]:
    return [V2Router(CHAIN, _b(d.router), _b(d.factory), world.pair_init_code_hash) for d in world.dexes.values()]


def envelope(swap: Swap) -> tx_pb2.TxEnvelope:
    return tx_pb2.TxEnvelope(chain_id=CHAIN, to=_b(swap.call.to or ""), input=_b(swap.call.input))


def head(world: World) -> tuple[int, bytes, bytes]:
    block = rpc(world.rpc_url, "eth_getBlockByNumber", ["latest", False])
    return int(block["number"], 16), _b(block["hash"]), _b(block["parentHash"])


class Harness:
    """A PoolTracker with a real fetcher on the world's node; what it sends is collected in ``sent``."""

    def __init__(self, world: World, **bounds: int) -> None:
        self.world = world
        self.stats = PoolStats()
        self.sent: list[pool_pb2.PoolState] = []
        self.fetcher = BatchFetcher([world.rpc_url], retries=1, backoff_s=0.001)
        self.tracker = PoolTracker(CHAIN, routers(world), self.fetcher, self.stats, self._send, **bounds)
        self.accept = True

    def _send(self, state: pool_pb2.PoolState) -> bool:
        if self.accept:
            self.sent.append(state)
        return self.accept

    async def swaps(self, maker: SwapMaker, n: int, *, announce: bool = True) -> None:
        """``n`` swaps sent to the node (and shown to the tracker as pending when ``announce``), then mined."""
        drawn = [maker.next_swap() for _ in range(n)]
        if announce:
            for swap in drawn:
                self.tracker.on_pending(envelope(swap))
        async with Replayer(self.world.rpc_url) as replayer:
            assert len(await replayer.send([s.call for s in drawn])) == n
        rpc(self.world.rpc_url, "evm_mine")

    async def block(self) -> list[pool_pb2.PoolState]:
        before = len(self.sent)
        await self.tracker.on_block(*head(self.world))
        return self.sent[before:]


def reserves_equal_the_node(world: World, states: list[pool_pb2.PoolState]) -> None:
    on_node = world.reserves(["0x" + s.pair.hex() for s in states])
    for s in states:
        assert (int.from_bytes(s.reserve0, "big"), int.from_bytes(s.reserve1, "big")) == on_node["0x" + s.pair.hex()]
        pool = next(p for p in world.pools if p.pair == "0x" + s.pair.hex())
        assert (s.token0, s.token1, s.factory) == (_b(pool.token0), _b(pool.token1), _b(world.dexes[pool.dex].factory))


async def test_pending_swaps_pairs_are_read_at_the_next_block_then_follow_sync_logs(world: World) -> None:
    snap = rpc(world.rpc_url, "evm_snapshot")
    h = Harness(world)
    try:
        maker = SwapMaker(world, seed=21, unprotected_share=1.0)
        maker.set_reserves(world.reserves())
        await h.swaps(maker, 40)
        touched = set(h.tracker.pairs)
        assert touched and touched <= {_b(p.pair) for p in world.pools}
        first = await h.block()
        number, block_hash, _ = head(world)
        # every touched pair, once, as of this block: those the block's swaps moved from their Sync logs
        assert {s.pair for s in first} == touched and len(first) == len(touched)
        assert {(s.block_number, s.block_hash, s.chain_id) for s in first} == {(number, block_hash, CHAIN)}
        assert {s.source for s in first} == {pool_pb2.POOL_STATE_SOURCE_SYNC_LOG}
        reserves_equal_the_node(world, first)

        # Swaps the tracker never saw pending still move tracked pairs: their Sync logs carry the new reserves.
        maker.set_reserves(world.reserves())
        await h.swaps(maker, 30, announce=False)
        second = await h.block()
        assert second and {s.source for s in second} == {pool_pb2.POOL_STATE_SOURCE_SYNC_LOG}
        reserves_equal_the_node(world, second)
        assert h.stats.rpc_calls["eth_getLogs"] == 2

        # A pair new to a tracker, in a block without swaps: read by getReserves at the block hash.
        rpc(world.rpc_url, "evm_mine")
        fresh = Harness(world)
        pool = world.pools[-1]
        fresh.tracker.on_pending(tx_pb2.TxEnvelope(to=_b(world.dexes[pool.dex].router), input=_b(calldata(
            "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)", 1, 0, [pool.token0, pool.token1],
            world.traders[0], 2**32))))
        [read] = await fresh.block()
        await fresh.fetcher.aclose()
        assert (read.pair, read.source) == (_b(pool.pair), pool_pb2.POOL_STATE_SOURCE_GET_RESERVES)
        reserves_equal_the_node(world, [read])
        assert (fresh.stats.reads, fresh.stats.rpc_calls["eth_call"]) == (1, 1)

        # Blocks the tracker did not see (a gap): every tracked pair is read again.
        await h.swaps(maker, 10, announce=False)
        rpc(world.rpc_url, "evm_mine")
        rpc(world.rpc_url, "evm_mine")
        again = await h.block()
        assert h.stats.resyncs == 1 and {s.pair for s in again} == set(h.tracker.pairs)
        reserves_equal_the_node(world, again)
        assert h.stats.sent == len(h.sent) and not h.tracker.unread
        # processd's read model fed these states in order holds what the node holds now, for every tracked pair
        view = PoolView()
        for sent in h.sent:
            view.apply(sent)
        on_node = world.reserves(["0x" + p.hex() for p in h.tracker.pairs])
        for pair in h.tracker.pairs:
            held = view.lookup(CHAIN, pair)
            assert held is not None and (held.reserve0, held.reserve1) == on_node["0x" + pair.hex()]
            assert held.block_number == head(world)[0]
    finally:
        await h.fetcher.aclose()
        assert rpc(world.rpc_url, "evm_revert", [snap])


async def test_bounds_and_bad_input_are_counted_drops(world: World) -> None:
    h = Harness(world, max_pairs=2, queue_size=2, reads_per_block=1)
    try:
        uni = world.dexes["uniswap_v2"]
        t = world.tokens

        def swap(router: str, *path: str) -> tx_pb2.TxEnvelope:
            return tx_pb2.TxEnvelope(to=_b(router), input=_b(calldata(
                "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)", 1, 0, [t[s] for s in path],
                world.traders[0], 2**32)))

        h.tracker.on_pending(swap(uni.router, "USDC", "WETH", "DAI", "USDC"))  # 3 pairs: the third beyond 2
        assert h.stats.drops["queue_full"] == 1 and len(h.tracker.pairs) == 2
        h.tracker.on_pending(swap(uni.router[:-2] + "00", "USDC", "WETH"))  # not a configured router: ignored
        bad = swap(uni.router, "USDC", "WETH")
        bad.input = bad.input[:100]
        h.tracker.on_pending(bad)
        assert h.stats.drops["bad_path"] == 1 and h.stats.swaps == 2
        rpc(world.rpc_url, "evm_mine")
        assert len(await h.block()) == 1 and len(h.tracker.unread) == 1  # one read per block
        h.accept = False
        rpc(world.rpc_url, "evm_mine")
        assert await h.block() == [] and h.stats.drops["outbound_queue_full"] == 1
        h.accept = True
        h.tracker.on_pending(swap(uni.router, "UNI", "PEPE"))  # no such pair: read once, then known missing
        assert h.stats.drops["evicted"] == 1
        rpc(world.rpc_url, "evm_mine")
        await h.block()
        assert h.stats.drops["no_pair"] == 1 and not h.tracker.unread
        h.tracker.on_pending(swap(uni.router, "UNI", "PEPE"))
        assert not h.tracker.unread
    finally:
        await h.fetcher.aclose()


def test_path_decoding_and_pair_addresses(world: World) -> None:
    selectors = swap_selectors()
    assert len(selectors) == 9
    for pool in world.pools:
        router = next(r for r in routers(world) if r.factory == _b(world.dexes[pool.dex].factory))
        assert pair_for(router, _b(pool.token1), _b(pool.token0)) == (_b(pool.pair), _b(pool.token0), _b(pool.token1))
    data = _b(calldata("swapExactETHForTokens(uint256,address[],address,uint256)", 5, [world.weth, world.tokens["DAI"]],
                       world.traders[1], 9))
    assert swap_path(data, selectors[data[:4]]) == [_b(world.weth), _b(world.tokens["DAI"])]
    for broken in (data[:40], data[:-64], data[:36] + (2**200).to_bytes(32, "big") + data[68:]):
        with pytest.raises(PathError):
            swap_path(broken, 1)


def test_router_config(world: World) -> None:
    d = world.dexes["sushiswap"]
    text = f"ethereum:{d.router}:{d.factory}:0x{world.pair_init_code_hash.hex()}"
    assert parse_v2_router(text) == V2Router(1, _b(d.router), _b(d.factory), world.pair_init_code_hash)
    cfg = load_config(["--chain", "1=ws://x", "--pool-state", "on", "--v2-router", text], {})
    assert cfg.pool_state == "on" and cfg.v2_routers == (parse_v2_router(text),)
    env = {"MEMPULSE_INGESTD_V2_ROUTERS": f"{text},{text.replace('ethereum', '137')}"}
    assert [r.chain_id for r in load_config(["--chain", "1=ws://x"], env).v2_routers] == [1, 137]
    for bad in (text[:-2], "1:0x12:0x34", text.replace("ethereum", "nochain")):
        with pytest.raises(ConfigError):
            parse_v2_router(bad)
    with pytest.raises(ConfigError, match="block following"):
        load_config(["--chain", "1=ws://x", "--pool-state", "on"], {"MEMPULSE_INGESTD_FOLLOW_BLOCKS": "off"})
