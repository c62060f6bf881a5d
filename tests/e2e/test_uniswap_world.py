"""The local Uniswap V2 world (common/testing/uniswap.py) and its swaps (common/testing/swaps.py) on a real anvil:
deployed from the npm build artifacts, pair addresses and init code hash checked against the contracts, swaps
that execute and move the pools, and decode as what they are."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
import lmdb
import pytest
from eth_abi import decode
from prometheus_client.parser import text_string_to_metric_families

from common.rawtx import keccak256
from common.testing.anvil import AnvilNode
from common.testing.replay import Replayer, SentTx
from common.testing.stack import ChainSpec, Stack, StackConfig
from common.testing.swaps import SwapMaker, amount_in, amount_out
from common.testing.traffic import TrafficGenerator
from common.testing.uniswap import (
    DEPLOYER,
    MAINNET_INIT_CODE_HASH,
    V2_CORE_VERSION,
    V2_PERIPHERY_VERSION,
    World,
    artifact,
    calldata,
    check_init_code_hash,
    create_address,
    deploy_world,
    pair_address,
    rpc,
    rpc_batch,
)
from processd.analysis.decoding import Decoder
from processd.storage.eventlog import EventLog
from processd.views.pools import PoolView

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    """One world per module (deploying costs about a second): tests that mine revert to a snapshot."""
    with AnvilNode(chain_id=1) as node:
        yield deploy_world(node.http_url, 1)


@pytest.fixture
def fresh(world: World) -> Iterator[World]:
    """The module's world, reverted to its deployed state after the test."""
    snap = rpc(world.rpc_url, "evm_snapshot")
    yield world
    assert rpc(world.rpc_url, "evm_revert", [snap])


def _send(world: World, swaps: list) -> list[SentTx]:
    async def go() -> list[SentTx]:
        async with Replayer(world.rpc_url) as replayer:
            return await replayer.send([s.call for s in swaps])
    sent = asyncio.run(go())
    assert len(sent) == len(swaps)
    return sent


def _mine_all(world: World, sent: list[SentTx]) -> list[dict]:
    for _ in range(5):
        rpc(world.rpc_url, "evm_mine")
        receipts = rpc_batch(world.rpc_url, [("eth_getTransactionReceipt", [s.tx_hash]) for s in sent])
        if all(r is not None for r in receipts):
            return receipts
    raise AssertionError(f"{sum(r is None for r in receipts)} swaps not mined")


def test_npm_versions_match_the_setup_script() -> None:
    env = (ROOT / "scripts" / "_env.sh").read_text()
    assert re.search(r'^UNISWAP_V2_CORE_NPM_VERSION="([^"]+)"', env, re.M)[1] == V2_CORE_VERSION
    assert re.search(r'^UNISWAP_V2_PERIPHERY_NPM_VERSION="([^"]+)"', env, re.M)[1] == V2_PERIPHERY_VERSION


def test_router_artifact_init_code_hash_is_keccak_of_the_pair_creation_code() -> None:
    pair_code = artifact("v2-core", "UniswapV2Pair")[1]
    assert check_init_code_hash() == keccak256(pair_code) == MAINNET_INIT_CODE_HASH
    assert keccak256(pair_code) in artifact("v2-periphery", "UniswapV2Router02")[1]


def test_deployed_layout_pairs_and_router_quotes(world: World) -> None:
    url = world.rpc_url
    assert world.weth == create_address(DEPLOYER, 0)
    assert [world.dexes[d].factory for d in ("uniswap_v2", "sushiswap")] == [create_address(DEPLOYER, n)
                                                                            for n in (1, 2)]
    assert len({p.pair for p in world.pools}) == len(world.pools)
    reserves = world.reserves()
    for pool in world.pools:
        dex = world.dexes[pool.dex]
        # the factory's CREATE2 address, computed here with keccak256 of the artifact's creation code
        got = rpc(url, "eth_call", [{"to": dex.factory, "data": calldata("getPair(address,address)", pool.token1,
                                                                          pool.token0)}, "latest"])
        assert decode(["address"], bytes.fromhex(got[2:]))[0].lower() == pool.pair
        assert pool.pair == pair_address(dex.factory, pool.token0, pool.token1, world.pair_init_code_hash)
        assert pool.token0 < pool.token1
        # the router finds the pair by its own (hard-coded) init code hash: its quote is the quote on the reserves
        r0, r1 = reserves[pool.pair]
        assert r0 > 0 and r1 > 0
        quoted = rpc(url, "eth_call", [{"to": dex.router, "data": calldata(
            "getAmountsOut(uint256,address[])", r0 // 100, [pool.token0, pool.token1])}, "latest"])
        assert decode(["uint256[]"], bytes.fromhex(quoted[2:]))[0] == (r0 // 100, amount_out(r0 // 100, r0, r1))
    # the same pair on both factories, at different addresses and depths: arbitrage exists
    uni, sushi = world.pool("uniswap_v2", "WETH", "USDC"), world.pool("sushiswap", "WETH", "USDC")
    assert uni.pair != sushi.pair and reserves[uni.pair] != reserves[sushi.pair]
    assert {p.depth for p in world.pools} == {"deep", "medium", "thin"}


def test_traders_are_funded_and_approved(world: World) -> None:
    for trader in world.traders[:3]:
        for symbol, token in world.tokens.items():
            assert world.balance_of(symbol, trader) > 0
            for dex in world.dexes.values():
                got = rpc(world.rpc_url, "eth_call", [{"to": token, "data": calldata(
                    "allowance(address,address)", trader, dex.router)}, "latest"])
                assert int(got, 16) == 2**256 - 1


def test_one_swap_pays_exactly_the_local_quote(fresh: World) -> None:
    maker = SwapMaker(fresh, seed=3, unprotected_share=0.0)
    maker.set_reserves(fresh.reserves())
    swap = next(s for s in iter(maker.next_swap, None) if s.method == "swapExactTokensForTokens" and len(s.path) == 2)
    pool = next(p for p in fresh.pools if p.dex == swap.dex and set(p.symbols) == set(swap.path))
    (amount, min_out, path, to, _) = decode(["uint256", "uint256", "address[]", "address", "uint256"],
                                            bytes.fromhex(swap.call.input[10:]))
    before_out = fresh.balance_of(path[1], to)
    r0, r1 = fresh.reserves([pool.pair])[pool.pair]
    r_in, r_out = (r0, r1) if path[0].lower() == pool.token0 else (r1, r0)
    [receipt] = _mine_all(fresh, _send(fresh, [swap]))
    assert receipt["status"] == "0x1"
    expected = amount_out(amount, r_in, r_out)
    assert expected >= min_out
    assert fresh.balance_of(path[1], to) - before_out == expected
    a0, a1 = fresh.reserves([pool.pair])[pool.pair]
    assert ((a0, a1) if path[0].lower() == pool.token0 else (a1, a0)) == (r_in + amount, r_out - expected)


def test_mined_swaps_move_the_pools(fresh: World) -> None:
    maker = SwapMaker(fresh, seed=11)
    before = fresh.reserves()
    maker.set_reserves(before)
    swaps = [maker.next_swap() for _ in range(150)]
    assert set(Counter(s.method for s in swaps)) == {
        "swapExactTokensForTokens", "swapTokensForExactTokens", "swapExactETHForTokens", "swapETHForExactTokens",
        "swapExactTokensForETH", "swapTokensForExactETH"}
    assert any(len(s.path) == 3 for s in swaps) and any(not s.protected for s in swaps)
    receipts = _mine_all(fresh, _send(fresh, swaps))
    outcome = Counter((s.protected, r["status"]) for s, r in zip(swaps, receipts, strict=True))
    assert outcome[(False, "0x0")] == 0  # no protection: nothing to revert on
    assert outcome[(True, "0x1")] > outcome[(True, "0x0")]  # stale quotes in one block: some slip past their limit
    after = fresh.reserves()
    moved = [p for p in fresh.pools if after[p.pair] != before[p.pair]]
    assert len(moved) >= len(fresh.pools) - 1
    for pool in moved:  # the 0.3% fee stays in the pool: the product of the reserves never falls
        assert after[pool.pair][0] * after[pool.pair][1] > before[pool.pair][0] * before[pool.pair][1]


def test_swaps_decode_as_what_was_built(world: World) -> None:
    maker = SwapMaker(world, seed=5)
    maker.set_reserves(world.reserves())
    decoder = Decoder()
    addresses = {s: bytes.fromhex(a[2:]) for s, a in world.tokens.items()}
    for _ in range(200):
        swap = maker.next_swap()
        call = swap.call
        got = decoder.decode(bytes.fromhex(call.input[2:]), bytes.fromhex(call.to[2:]), call.value,
                             bytes.fromhex(call.sender[2:]))
        assert got is not None and got.decoded, swap
        assert got.method == swap.method
        assert got.path == tuple(addresses[s] for s in swap.path)
        assert got.native_in == (call.value > 0)


def test_exact_output_math_inverts_the_output_math() -> None:
    for r_in, r_out in ((10**24, 5 * 10**21), (3 * 10**18, 6 * 10**27), (10**21, 10**21)):
        for want in (1, 10**15, r_out // 7):
            paid = amount_in(want, r_in, r_out)
            assert amount_out(paid, r_in, r_out) >= want  # what the router checks
            assert paid * 997 * (r_out - want) <= (want * r_in + r_out) * 1000  # and no more than the fee's share


def test_generator_mixes_swaps_into_the_replay_and_mines_them(anvil_factory: object) -> None:
    node = anvil_factory(chain_id=137)  # type: ignore[operator]
    world = deploy_world(node.http_url, 137)
    before = world.reserves()
    accepted: list[SentTx] = []
    gen = TrafficGenerator(node.http_url, 60, chain_id=137, swaps=SwapMaker(world, seed=2), swap_share=0.25,
                           mine_interval_s=0.5, duration_s=3.0, on_accepted=lambda sent, _ns: accepted.extend(sent))
    gen.start()
    assert gen.wait(30)
    stats = gen.stats()
    assert gen.error is None
    swaps = [s for s in accepted if s.call.to in {d.router for d in world.dexes.values()}]
    assert stats.swaps == len(swaps) > 0 and stats.blocks_mined > 0
    assert 0.15 < len(swaps) / len(accepted) < 0.35  # the share, give or take the replay's rejected calls
    rpc(node.http_url, "evm_mine")
    receipts = rpc_batch(node.http_url, [("eth_getTransactionReceipt", [s.tx_hash]) for s in swaps])
    assert sum(1 for r in receipts if r is not None and r["status"] == "0x1") > len(swaps) // 2
    assert world.reserves() != before


def test_generator_refuses_swaps_without_a_maker_or_with_signed_replay(world: World) -> None:
    with pytest.raises(ValueError, match="swap maker"):
        TrafficGenerator(world.rpc_url, 10, swap_share=0.5)
    with pytest.raises(ValueError, match="signed"):
        TrafficGenerator(world.rpc_url, 10, swaps=SwapMaker(world), swap_share=0.5, signed=True)


def _metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(url, timeout=5).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


class _LiveLog:
    """The running processd's event log, read-only from this process (LMDB readers need no lock of the data dir):
    what ``PoolView.rebuild`` reads of an ``EventLog``."""

    def __init__(self, data_dir: Path) -> None:
        self.env = lmdb.open(str(data_dir), readonly=True, lock=True, max_dbs=16, max_readers=256)
        self.events_db = self.env.open_db(b"events", create=False)
        self.pools_db = self.env.open_db(b"pools", create=False)

    def read(self, fn: Callable[[Any], T]) -> T:
        with self.env.begin() as txn:
            return fn(txn)


def _view(log: _LiveLog) -> PoolView:
    view = PoolView()
    view.rebuild(cast(EventLog, log))
    return view


def _reserves_at(world: World, pairs: list[bytes], block: int | str) -> dict[bytes, tuple[int, int]]:
    tag = block if isinstance(block, str) else hex(block)
    answers = rpc_batch(world.rpc_url, [("eth_call", [{"to": "0x" + p.hex(), "data": "0x0902f1ac"}, tag])
                                        for p in pairs])
    return {p: tuple(decode(["uint112", "uint112", "uint32"], bytes.fromhex(a[2:]))[:2])  # type: ignore[misc]
            for p, a in zip(pairs, answers, strict=True)}


def _held(view: PoolView, chain_id: int) -> dict[bytes, tuple[int, int]]:
    out = {}
    for (chain, pair) in list(view._held):
        r = view.lookup(chain, pair)
        if chain == chain_id and r is not None:
            out[pair] = (r.reserve0, r.reserve1)
    return out


def test_processd_holds_the_nodes_reserves_of_every_tracked_pair(tmp_path: Path) -> None:
    """The real stack (world deployed, swaps mined every second, ingestd --pool-state): processd stores the pool
    states; its pool view (rebuilt from its live log with processd's own code) equals getReserves() on the node,
    at each state's block, and at the latest block for every pair ingestd tracks once the last block is in."""
    cfg = StackConfig(chains=(ChainSpec(137, rate_tx_s=20),), gatewayd=False, uniswap=True, pool_state=True,
                      swap_share=0.5, mine_interval_s=1.0, log_dir=tmp_path / "logs", data_dir=tmp_path / "data")
    with Stack(cfg) as stack:
        world = stack.worlds[137]
        ingestd = f"http://{cfg.host}:{stack.metrics_ports['ingestd']}/metrics"
        processd = f"http://{cfg.host}:{stack.metrics_ports['processd']}/metrics"
        stack.wait_for(lambda: _metric(ingestd, "mempulse_ingestd_pool_states_total", stage="stored") >= 20
                       and _metric(ingestd, "mempulse_ingestd_pool_states_total", stage="sync_log") >= 10
                       and _metric(ingestd, "mempulse_ingestd_blocks_total", stage="fetched") >= 6
                       and _metric(ingestd, "mempulse_ingestd_pool_pairs", state="tracked") >= 3, 120,
                       "pool states stored for a few pairs over a few blocks, most from Sync logs")
        stack.stop_generators()  # no more swaps or blocks
        log = _LiveLog(stack.data_dir)

        def caught_up() -> bool:
            # A pair first touched by a swap that arrived after the last block waits for a next block that never
            # comes (generators stopped): it is tracked but never read ("waiting"), so processd cannot hold it.
            held = _held(_view(log), 137)
            tracked = _metric(ingestd, "mempulse_ingestd_pool_pairs", state="tracked")
            waiting = _metric(ingestd, "mempulse_ingestd_pool_pairs", state="waiting")
            return (tracked - waiting <= len(held) <= tracked
                    and held == _reserves_at(world, list(held), "latest"))
        stack.wait_for(caught_up, 60, "processd's pool view equal to the node's reserves of every tracked pair")
        view = _view(log)
        by_block: dict[int, list[bytes]] = {}
        for (_, pair) in list(view._held):
            r = view.lookup(137, pair)
            assert r is not None
            by_block.setdefault(r.block_number, []).append(pair)
        for block, pairs in by_block.items():  # each held state is the node's at its own block
            held = {p: v for p, v in _held(view, 137).items() if p in pairs}
            assert held == _reserves_at(world, pairs, block)
        assert {"0x" + p.hex() for p in _held(view, 137)} <= {p.pair.lower() for p in world.pools}
        sent = _metric(ingestd, "mempulse_ingestd_pool_states_total", stage="sent")
        stack.wait_for(lambda: _metric(ingestd, "mempulse_ingestd_pool_states_total", stage="stored")
                       + _metric(ingestd, "mempulse_ingestd_pool_states_total", stage="ignored") == sent, 30,
                       "every pool state acked")
        stored = _metric(processd, "mempulse_processd_pool_states_total", outcome="stored")
        assert stored == _metric(ingestd, "mempulse_ingestd_pool_states_total", stage="stored") > 0
        assert _metric(processd, "mempulse_processd_pool_states_total", outcome="invalid") == 0
        assert _metric(ingestd, "mempulse_ingestd_pool_swaps_total") > 0
        blocks = _metric(ingestd, "mempulse_ingestd_blocks_total", stage="fetched")
        assert 0 < _metric(ingestd, "mempulse_ingestd_pool_rpc_calls_total", method="eth_getLogs") <= blocks
        for reason in ("bad_path", "queue_full", "evicted", "no_pair", "bad_log", "outbound_queue_full"):
            assert _metric(ingestd, "mempulse_ingestd_pool_drops_total", reason=reason) == 0, reason
        log.env.close()
