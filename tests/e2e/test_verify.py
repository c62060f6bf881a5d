"""Proof by execution (common/testing/verify.py) on a real anvil with the real Uniswap V2 world: sandwiches and
backruns predicted by exact integer constant-product math (the reference below, independent of processd and of
common/testing/verify_reference.py) realize exactly what was predicted, a front-run past the victim's bound makes
the victim revert, and every execution leaves the chain as it found it."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from common.testing.anvil import AnvilNode
from common.testing.replay import Replayer
from common.testing.swaps import SwapMaker
from common.testing.uniswap import (
    UniswapWorldError,
    World,
    calldata,
    deploy_world,
    rpc,
    rpc_batch,
    send_and_mine,
    trader_address,
)
from common.testing.verify import Leg, Outcome, Prediction, VictimTx, execute, fetch_victim, fund_searcher
from common.testing.verify_cli import attach_world, predictions_from_opportunity_json, summarize
from common.testing.verify_processd import StateReader, skip_if_state_moved
from common.testing.verify_reference import Pools, decode_swap, predict_backrun, predict_sandwich

_SWAP = "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)"
_SWAP_OUT = "swapTokensForExactTokens(uint256,uint256,address[],address,uint256)"
_SWAP_ETH = "swapExactETHForTokens(uint256,address[],address,uint256)"


def out_of(x: int, r_in: int, r_out: int) -> int:
    """The test's own UniswapV2Library.getAmountOut."""
    return x * 997 * r_out // (r_in * 1000 + x * 997)


def in_for(y: int, r_in: int, r_out: int) -> int:
    """The test's own UniswapV2Library.getAmountIn."""
    return r_in * y * 1000 // ((r_out - y) * 997) + 1


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[World, str]]:
    with AnvilNode(chain_id=1) as node:
        w = deploy_world(node.http_url, 1)
        yield w, fund_searcher(w)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as c:
        yield c


def _state(w: World, searcher: str) -> tuple:
    """What an execution must leave untouched: head, reserves, the searcher's nonce and balances."""
    head = rpc(w.rpc_url, "eth_blockNumber")
    nonce = rpc(w.rpc_url, "eth_getTransactionCount", [searcher, "latest"])
    return head, w.reserves(), nonce, tuple(w.balance_of(t, searcher) for t in w.tokens)


def _send_victims(w: World, txs: list[dict]) -> list[VictimTx]:
    hashes = rpc_batch(w.rpc_url, [("eth_sendTransaction", [tx]) for tx in txs])
    victims = [fetch_victim(w.rpc_url, h) for h in hashes]
    assert all(v is not None for v in victims)
    return [v for v in victims if v is not None]


def _victim_tx(w: World, trader: int, signature: str, *args: object, value: int = 0) -> dict:
    sender = trader_address(trader)
    return {"from": sender, "to": w.dexes["uniswap_v2"].router, "value": hex(value), "gas": hex(400_000),
            "gasPrice": hex(30 * 10**9), "data": calldata(signature, *args)}


def _oriented(w: World, pool_pair: str, token_in: str) -> tuple[int, int]:
    r0, r1 = w.reserves([pool_pair])[pool_pair]
    pool = next(p for p in w.pools if p.pair == pool_pair)
    return (r0, r1) if pool.token0 == token_in else (r1, r0)


def test_hand_built_sandwich_realizes_the_tests_own_math(world: tuple[World, str], client: httpx.Client) -> None:
    """A sandwich computed here by hand (not by verify_reference) on a thin pool, victim bound 3%: exact."""
    w, searcher = world
    weth, uni = w.tokens["WETH"], w.tokens["UNI"]
    pair = w.pool("uniswap_v2", "WETH", "UNI").pair
    r_in, r_out = _oriented(w, pair, weth)
    v_in = r_in // 200
    v_min = out_of(v_in, r_in, r_out) * 97 // 100
    [victim] = _send_victims(w, [_victim_tx(w, 1, _SWAP, v_in, v_min, [weth, uni], trader_address(1), 2**40)])
    x = r_in // 400  # well inside the 3% bound for this pool (checked below)
    y = out_of(x, r_in, r_out)
    v_out = out_of(v_in, r_in + x, r_out - y)
    assert v_out >= v_min
    back = out_of(y, r_out - y - v_out, r_in + x + v_in)
    p = Prediction(chain_id=1, victim_hash=victim.hash, victim=victim, kind="sandwich", pairs=(pair,),
                   profit_token=weth, front=(Leg(w.dexes["uniswap_v2"].router, (weth, uni), x, y),),
                   back=(Leg(w.dexes["uniswap_v2"].router, (uni, weth), y, back),), predicted_profit_wei=back - x)
    before = _state(w, searcher)
    out = execute(w, p, searcher, client=client)
    assert (out.status, out.ordering_ok, out.victim_status, out.leg_statuses) == ("executed", True, 1, [1, 1])
    assert out.realized_profit_wei == back - x > 0 and out.exact, out.explanation
    assert out.token_deltas == {"native": -out.gas_paid_wei, weth: back - x}
    assert out.reverted and _state(w, searcher) == before


def test_front_run_past_the_bound_makes_the_victim_revert(world: tuple[World, str], client: httpx.Client) -> None:
    w, searcher = world
    weth, usdc = w.tokens["WETH"], w.tokens["USDC"]
    pair = w.pool("uniswap_v2", "WETH", "USDC").pair
    router = w.dexes["uniswap_v2"].router
    r_in, r_out = _oriented(w, pair, weth)
    v_in = r_in // 1000
    v_min = out_of(v_in, r_in, r_out) * 99 // 100
    [victim] = _send_victims(w, [_victim_tx(w, 2, _SWAP, v_in, v_min, [weth, usdc], trader_address(2), 2**40)])
    ok = 0  # the largest front-run the victim's 1% bound allows, by the test's own bisection
    lo, hi = 0, r_in // 10
    while hi - lo > 1:
        mid = (lo + hi) // 2
        y = out_of(mid, r_in, r_out)
        lo, hi = (mid, hi) if out_of(v_in, r_in + mid, r_out - y) >= v_min else (lo, mid)
    ok = lo
    for x, victim_status in ((ok, 1), (ok + 1, 0), (2 * ok, 0)):
        y = out_of(x, r_in, r_out)
        p = Prediction(chain_id=1, victim_hash=victim.hash, victim=victim, kind="sandwich", pairs=(pair,),
                       profit_token=weth, front=(Leg(router, (weth, usdc), x, y),),
                       back=(Leg(router, (usdc, weth), y, 0),), predicted_profit_wei=0)
        out = execute(w, p, searcher, client=client)
        assert out.status == "executed" and out.ordering_ok and out.reverted
        assert out.victim_status == victim_status, (x, out.explanation)
        if victim_status == 0:
            assert out.realized_profit_wei is not None and out.realized_profit_wei < 0  # paid two fees, no victim
            assert "victim reverted" in out.explanation


def test_reference_sandwiches_are_exact_across_victims(world: tuple[World, str], client: httpx.Client) -> None:
    """Many SwapMaker victims (all six methods, one and two hops, deep to thin, protected or not) plus hand-made
    exact-out and two-hop ones: every profitable reference sandwich realizes its prediction to the wei."""
    w, searcher = world
    weth, usdc, uni, dai = (w.tokens[s] for s in ("WETH", "USDC", "UNI", "DAI"))
    # on the thin WETH/UNI pool (60 ETH): exact-out two hops, exact-in two hops, ether in; all unprotected
    made = [_victim_tx(w, 3, _SWAP_OUT, 2_000 * 10**18, 10**24, [uni, weth, dai], trader_address(3), 2**40),
            _victim_tx(w, 4, _SWAP, 300 * 10**18, 0, [uni, weth, usdc], trader_address(4), 2**40),
            _victim_tx(w, 5, _SWAP_ETH, 0, [weth, uni], trader_address(5), 2**40, value=10**18)]
    victims = _send_victims(w, made)
    maker = SwapMaker(w, seed=17, unprotected_share=0.3)
    maker.set_reserves(w.reserves())
    swaps = [maker.next_swap() for _ in range(90)]

    async def send() -> list[str]:
        async with Replayer(w.rpc_url) as replayer:
            return [s.tx_hash for s in await replayer.send([s.call for s in swaps])]
    victims += [v for v in (fetch_victim(w.rpc_url, h, client=client) for h in asyncio.run(send())) if v]
    before, pools = _state(w, searcher), Pools(w)
    kinds: Counter[str] = Counter()
    for victim in victims:
        p = predict_sandwich(w, victim, pools)
        if p is None:
            continue
        swap = decode_swap(victim)
        assert swap is not None
        depth = next(q.depth for q in w.pools if q.pair == p.pairs[0])
        kinds.update([f"exact_in={swap.exact_in}", f"hops={len(swap.path) - 1}", depth])
        out = execute(w, p, searcher, client=client)
        assert out.status == "executed" and out.ordering_ok and out.victim_status == 1, out.explanation
        assert out.exact and out.realized_profit_wei == p.predicted_profit_wei > 0, out.explanation
        assert out.reverted and p.native_per_token is not None and out.realized_net_wei is not None
        num, den = p.native_per_token  # the net: the same price, the receipts' gas instead of the estimate
        assert out.realized_net_wei == out.realized_profit_wei * num // den - out.gas_paid_wei
    assert [predict_sandwich(w, v, pools) is not None for v in victims[:3]] == [True] * 3  # the hand-made ones
    assert kinds["exact_in=True"] >= 10 and kinds["exact_in=False"] >= 3 and kinds["hops=2"] >= 2, kinds
    assert kinds["thin"] >= 3 and kinds["medium"] + kinds["deep"] >= 3, kinds
    assert _state(w, searcher) == before


def test_reference_backruns_are_exact(world: tuple[World, str], client: httpx.Client) -> None:
    """A two-factory arbitrage after each victim realizes its prediction to the wei."""
    w, searcher = world
    maker = SwapMaker(w, seed=5)
    maker.set_reserves(w.reserves())
    swaps = [maker.next_swap() for _ in range(40)]

    async def send() -> list[str]:
        async with Replayer(w.rpc_url) as replayer:
            return [s.tx_hash for s in await replayer.send([s.call for s in swaps])]
    victims = [v for v in (fetch_victim(w.rpc_url, h, client=client) for h in asyncio.run(send())) if v]
    pools, executed = Pools(w), 0
    for victim in victims:
        p = predict_backrun(w, victim, pools)
        if p is None:
            continue
        assert p.front == () and len(p.back) == 2 and p.back[0].router != p.back[1].router
        out = execute(w, p, searcher, client=client)
        assert out.status == "executed" and out.ordering_ok and out.victim_status == 1, out.explanation
        assert out.exact and out.realized_profit_wei == p.predicted_profit_wei > 0, out.explanation
        executed += 1
    assert executed >= 10


def test_failures_are_reported_and_reverted(world: tuple[World, str], client: httpx.Client) -> None:
    """A searcher that cannot pay fails mid-way (after the snapshot): failed, reverted, chain untouched; a victim
    that was mined is skipped."""
    w, searcher = world
    weth, uni = w.tokens["WETH"], w.tokens["UNI"]
    [victim] = _send_victims(w, [_victim_tx(w, 6, _SWAP, 10**18, 0, [weth, uni], trader_address(6), 2**40)])
    p = predict_sandwich(w, victim)
    assert p is not None
    broke = "0x" + "00" * 19 + "99"
    before = _state(w, searcher)
    out = execute(w, p, broke, client=client)
    assert out.status == "failed" and out.reverted and "eth_sendTransaction" in out.explanation
    assert _state(w, searcher) == before
    snap = rpc(w.rpc_url, "evm_snapshot")
    try:
        if rpc(w.rpc_url, "eth_getTransactionByHash", [victim.hash]) is None:  # not left pending by the failure
            rpc(w.rpc_url, "eth_sendTransaction", [victim.send_params()])
        rpc(w.rpc_url, "evm_mine")
        assert rpc(w.rpc_url, "eth_getTransactionReceipt", [victim.hash]) is not None
        out = execute(w, p, searcher, client=client)
        assert out.status == "skipped" and out.explanation == "victim already mined" and out.reverted
    finally:
        assert rpc(w.rpc_url, "evm_revert", [snap])


def _victim_stub(tx_hash: str = "0x" + "ab" * 32) -> VictimTx:
    return VictimTx(hash=tx_hash, sender="0x" + "11" * 20, to="0x" + "22" * 20, input="0x", value=0, gas=200_000,
                    nonce=3, tx_type=0, gas_price=30 * 10**9, max_fee_per_gas=None, max_priority_fee_per_gas=None)


def _opportunity(victim: VictimTx, kind: str, block: int, token: str, **figures: str) -> dict[str, Any]:
    """An opportunity as gatewayd renders it (gatewayd/serializers.py): only the fields the adapter reads vary."""
    return {"chain_id": 1, "tx_hash": "0x" + victim.hash[2:].upper(), "kind": kind, "valued": True,
            "valuation_note": "", "profit_token": token, "state_block_number": block, "price_impact_bps": 12,
            "net_profit_wei": None, "sandwich_profit_wei": None, "frontrun_amount_in": None,
            "backrun_profit_wei": None, "backrun_amount_in": None, "gas_cost_wei": None, **figures}


def test_opportunity_json_adapter(world: tuple[World, str], client: httpx.Client) -> None:
    """processd's opportunity JSON becomes legs on the world's routers: a sandwich sells frontrun_amount_in on the
    victim's pair and sells back all it bought (one getAmountOut on the reserves at state_block_number), a
    back-run sells backrun_amount_in on the other factory's pair and the middle amount on the victim's; the
    profit is processd's figure. Not valued, not profitable, another kind or victim, or malformed: None. A pair
    that synced after the state block makes the prediction skipped (state moved)."""
    w, _ = world
    weth, link, uni = w.tokens["WETH"], w.tokens["LINK"], w.tokens["UNI"]
    uni_router, sushi_router = w.dexes["uniswap_v2"].router, w.dexes["sushiswap"].router
    [victim] = _send_victims(w, [_victim_tx(w, 7, _SWAP, 10**18, 0, [weth, link], trader_address(7), 2**40)])
    block = int(rpc(w.rpc_url, "eth_blockNumber"), 16)
    pair, twin = w.pool("uniswap_v2", "WETH", "LINK").pair, w.pool("sushiswap", "WETH", "LINK").pair
    state = StateReader(w, client)
    sw = _opportunity(victim, "sandwich_candidate", block, weth, frontrun_amount_in="1000000", sandwich_profit_wei="77",
                      gas_cost_wei="30", net_profit_wei="47")
    p = predictions_from_opportunity_json(sw, victim, w, state)
    bought = out_of(10**6, *_oriented(w, pair, weth))
    assert p is not None and (p.source, p.kind, p.pairs, p.profit_token, p.state_block_number) == (
        "processd", "sandwich", (pair,), weth, block)
    assert p.front == (Leg(uni_router, (weth, link), 10**6, bought),)
    assert p.back == (Leg(uni_router, (link, weth), bought, 10**6 + 77),)
    assert (p.predicted_profit_wei, p.predicted_net_wei, p.predicted_gas_cost_wei, p.native_per_token) == (
        77, 47, 30, (77, 77))
    assert p.gas_price_wei == 30 * 10**9
    br = _opportunity(victim, "backrun_candidate", block, weth, backrun_amount_in="5000", backrun_profit_wei="9")
    q = predictions_from_opportunity_json(br, victim, w, state)
    middle = out_of(5000, *_oriented(w, twin, weth))
    assert q is not None and q.kind == "backrun" and q.front == () and q.pairs == (pair, twin)
    assert q.back == (Leg(sushi_router, (weth, link), 5000, middle), Leg(uni_router, (link, weth), middle, 5009))
    assert (q.predicted_profit_wei, q.predicted_net_wei, q.native_per_token) == (9, None, None)
    for no in ({**sw, "valued": False}, {**sw, "kind": "arb_candidate"}, {**sw, "sandwich_profit_wei": "0"},
               {**sw, "sandwich_profit_wei": None}, {**sw, "sandwich_profit_wei": "lots"},
               {**sw, "profit_token": link}, {**br, "backrun_amount_in": None}):
        assert predictions_from_opportunity_json(no, victim, w, state) is None, no
    other = _victim_stub()
    assert predictions_from_opportunity_json({**sw, "tx_hash": other.hash}, victim, w, state) is None
    # WETH/UNI has no sushiswap pool: a back-run of it names a pool the world does not have
    [lone] = _send_victims(w, [_victim_tx(w, 8, _SWAP, 10**18, 0, [weth, uni], trader_address(8), 2**40)])
    assert predictions_from_opportunity_json({**br, "tx_hash": lone.hash}, lone, w, state) is None
    assert skip_if_state_moved(p, state) is None
    snap = rpc(w.rpc_url, "evm_snapshot")
    try:  # the victim mined moves the pair: both predictions read it
        rpc(w.rpc_url, "evm_mine")
        assert rpc(w.rpc_url, "eth_getTransactionReceipt", [victim.hash]) is not None
        for pred in (p, q):
            out = skip_if_state_moved(pred, state)
            assert out is not None and out.status == "skipped" and out.explanation.startswith("state moved")
            assert pair in out.explanation and twin not in out.explanation
    finally:
        assert rpc(w.rpc_url, "evm_revert", [snap])


def test_summary_counts_exact_and_losses() -> None:
    victim = _victim_stub()
    leg = Leg("0x" + "22" * 20, ("0x" + "aa" * 20, "0x" + "bb" * 20), 1, 1)
    preds = [Prediction(chain_id=1, victim_hash=victim.hash, victim=victim, kind=k, pairs=(), profit_token="t",
                        front=(leg,), back=(leg,), predicted_profit_wei=5) for k in ("sandwich", "backrun", "sandwich")]
    outs = [Outcome(victim.hash, "sandwich", "executed", 5, realized_profit_wei=5, exact=True, reverted=True),
            Outcome(victim.hash, "backrun", "executed", 5, realized_profit_wei=-1, reverted=True, explanation="x"),
            Outcome(victim.hash, "sandwich", "skipped", 5, reverted=True, explanation="victim already mined")]
    s = summarize(preds, outs)
    assert (s["executed"], s["exact"], s["exact_rate"], s["predicted_profitable_that_lost"]) == (2, 1, 0.5, 1)
    assert s["statuses"] == {"executed": 2, "skipped": 1} and s["all_reverted"]
    assert s["profit_by_token"] == {"t": {"predicted": "10", "realized": "4"}}
    assert [d["why"] for d in s["differences"]] == ["x", "victim already mined"]


def test_signed_dynamic_fee_victim(world: tuple[World, str], client: httpx.Client) -> None:
    """A really signed EIP-1559 victim (an anvil dev account, signed by the node, sent raw) goes back into the
    pool from its raw bytes with its own hash; the tips are computed from its priority fee."""
    w, searcher = world
    weth, uni = w.tokens["WETH"], w.tokens["UNI"]
    router = w.dexes["uniswap_v2"].router
    dev = str(rpc(w.rpc_url, "eth_accounts")[0]).lower()
    nonce = int(rpc(w.rpc_url, "eth_getTransactionCount", [dev, "pending"]), 16)
    setup = [{"from": dev, "to": weth, "data": calldata("deposit()"), "value": hex(10**20)},
             {"from": dev, "to": weth, "data": calldata("approve(address,uint256)", router, 2**256 - 1)}]
    send_and_mine(w.rpc_url, [{**tx, "nonce": hex(nonce + i), "gas": hex(120_000), "gasPrice": hex(500 * 10**9)}
                              for i, tx in enumerate(setup)], "funding the dev account")
    tx = {"from": dev, "to": router, "nonce": hex(nonce + 2), "gas": hex(300_000), "value": "0x0", "type": "0x2",
          "chainId": hex(w.chain_id), "maxFeePerGas": hex(200 * 10**9), "maxPriorityFeePerGas": hex(3 * 10**9),
          "data": calldata(_SWAP, 10**18, 0, [weth, uni], dev, 2**40)}
    raw = rpc(w.rpc_url, "eth_signTransaction", [tx])
    tx_hash = rpc(w.rpc_url, "eth_sendRawTransaction", [raw])
    victim = fetch_victim(w.rpc_url, tx_hash, client=client)
    assert victim is not None and victim.raw is not None and victim.tx_type == 2
    assert victim.max_priority_fee_per_gas == 3 * 10**9 and victim.tip_at(10**9) == 3 * 10**9
    p = predict_sandwich(w, victim)
    assert p is not None
    out = execute(w, p, searcher, client=client)
    assert out.status == "executed" and out.ordering_ok and out.exact and out.reverted, out.explanation
    assert out.victim_status == 1 and out.leg_statuses == [1, 1]


def test_attach_world_finds_the_deployed_world(world: tuple[World, str]) -> None:
    """--attach rebuilds the World of a running stack from the deterministic layout, checked on the node."""
    w, _ = world
    got = attach_world(w.rpc_url, w.chain_id)
    assert (got.weth, got.dexes, got.tokens, got.pools, got.traders, got.symbols) == (
        w.weth, w.dexes, w.tokens, w.pools, w.traders, w.symbols)
    with AnvilNode(chain_id=1) as empty, pytest.raises(UniswapWorldError):
        attach_world(empty.http_url, 1)
