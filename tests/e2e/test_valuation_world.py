"""Valued opportunities on the real stack (issue 17): the local Uniswap world on anvil, swaps in the traffic mined
every second, ingestd reading the touched pools' reserves (--pool-state), processd valuing the pending swaps on
the logged pool states (its venues file written from the deployed world), gatewayd serving them. The figures of
sandwiches are recomputed here with an independent constant-product formula on the reserves the node had at the
opportunity's state block (``eth_call getReserves`` at that block): equal to the wei."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from eth_abi import decode

from common.rawtx import keccak256
from common.testing.stack import ChainSpec, Stack, StackConfig
from common.testing.uniswap import World, pair_address, rpc, rpc_batch

#: Gas of a sandwich (docs/valuation.md: two transactions of one pair swap each).
SANDWICH_GAS = 2 * (21_000 + 90_000)
#: Gas of a back-run (one transaction of two pair swaps).
BACKRUN_GAS = 21_000 + 2 * 90_000
#: keccak256("Sync(uint112,uint112)"): the pair's event on every reserve change.
SYNC_TOPIC = "0x" + keccak256(b"Sync(uint112,uint112)").hex()
_EXACT_IN = {"7ff36ab5": "swapExactETHForTokens", "38ed1739": "swapExactTokensForTokens"}
_EXACT_OUT = {"fb3bdb41": "swapETHForExactTokens", "8803dbee": "swapTokensForExactTokens"}


def out_(a: int, r_in: int, r_out: int) -> int:
    """UniswapV2Library.getAmountOut, written out again (0.3% fee)."""
    return a * 997 * r_out // (r_in * 1000 + a * 997)


def in_(b: int, r_in: int, r_out: int) -> int:
    """UniswapV2Library.getAmountIn (the router's ``+ 1``)."""
    return r_in * b * 1000 // ((r_out - b) * 997) + 1


def victim(world: World, tx: dict[str, Any]) -> tuple[str, int, int, list[str]] | None:
    """(kind "in"/"out", amount, bound, path) of a 2-token WETH-in router swap; None for any other."""
    data = bytes.fromhex(tx["input"][2:])
    selector, args, value = data[:4].hex(), data[4:], int(tx["value"], 16)
    if selector == "7ff36ab5":
        out_min, path, _, _ = decode(["uint256", "address[]", "address", "uint256"], args)
        got = ("in", value, out_min, path)
    elif selector == "38ed1739":
        amount, out_min, path, _, _ = decode(["uint256", "uint256", "address[]", "address", "uint256"], args)
        got = ("in", amount, out_min, path)
    elif selector == "fb3bdb41":
        amount_out, path, _, _ = decode(["uint256", "address[]", "address", "uint256"], args)
        got = ("out", amount_out, value, path)
    elif selector == "8803dbee":
        amount_out, in_max, path, _, _ = decode(["uint256", "uint256", "address[]", "address", "uint256"], args)
        got = ("out", amount_out, in_max, path)
    else:
        return None
    path = [p.lower() for p in got[3]]
    return (got[0], got[1], got[2], path) if len(path) == 2 and path[0] == world.weth else None


def sandwich_profit(kind: str, amount: int, bound: int, x: int, r: int, s: int) -> int | None:
    """Back-run output - front-run input for front-run ``x`` on (R WETH, S token); None if the victim's bound
    breaks (it would revert) or a step's output is 0."""
    f = out_(x, r, s)
    if f <= 0:
        return None
    if kind == "in":
        v_out = out_(amount, r + x, s - f)
        if v_out < bound or v_out <= 0:
            return None
        r2, s2 = r + x + amount, s - f - v_out
    else:
        if amount >= s - f:
            return None
        v_in = in_(amount, r + x, s - f)
        if v_in > bound:
            return None
        r2, s2 = r + x + v_in, s - f - amount
    return out_(f, s2, r2) - x


def reserves_at(world: World, pair: str, block: int) -> tuple[int, int]:
    [answer] = rpc_batch(world.rpc_url, [("eth_call", [{"to": pair, "data": "0x0902f1ac"}, hex(block)])])
    r0, r1, _ = decode(["uint112", "uint112", "uint32"], bytes.fromhex(answer[2:]))
    return r0, r1


def check_sandwich(world: World, o: dict[str, Any]) -> bool:
    """Recomputes ``o``'s figures (a sandwich of a 2-token WETH-in swap); False when ``o`` is not such a one."""
    tx = rpc(world.rpc_url, "eth_getTransactionByHash", [o["tx_hash"]])
    v = victim(world, tx) if tx is not None else None
    dex = next((d for d in world.dexes.values() if d.router == tx["to"].lower()), None) if tx else None
    if v is None or dex is None or o["kind"] != "sandwich_candidate":
        return False
    kind, amount, bound, path = v
    pair = pair_address(dex.factory, path[0], path[1], world.pair_init_code_hash)
    r0, r1 = reserves_at(world, pair, o["state_block_number"])
    r, s = (r0, r1) if path[0] < path[1] else (r1, r0)
    x = int(o["frontrun_amount_in"])
    profit = sandwich_profit(kind, amount, bound, x, r, s)
    assert profit is not None, (o, r, s)  # the reported front-run keeps the victim's bound
    assert profit == int(o["sandwich_profit_wei"]), (o, profit)
    # no better front-run next to it (the stated tolerance: 1 base unit of the true maximum)
    for near in (x - 2, x - 1, x + 1, x + 2):
        p = sandwich_profit(kind, amount, bound, near, r, s) if near > 0 else None
        assert p is None or p <= profit + 1, (o, near, p)
    price = int(tx.get("maxFeePerGas") or tx["gasPrice"], 16)
    assert int(o["gas_cost_wei"]) == SANDWICH_GAS * price
    assert int(o["net_profit_wei"]) == profit - SANDWICH_GAS * price > 0  # WETH: 1 wei of it is 1 wei
    assert o["profit_token"] == world.weth
    return True


def synced_between(world: World, pairs: list[str], first: int, last: int) -> bool:
    """Whether any of ``pairs`` emitted a Sync (its reserves changed) in blocks ``first..last``."""
    if last < first:
        return False
    logs = rpc(world.rpc_url, "eth_getLogs", [{"address": pairs, "topics": [SYNC_TOPIC], "fromBlock": hex(first),
                                                "toBlock": hex(last)}])
    return bool(logs)


def check_backrun(world: World, o: dict[str, Any]) -> bool:
    """Recomputes ``o``'s figures (a back-run of a 2-token WETH-in swap through the other factory's pair); False
    when ``o`` is not such a one, or when a pair it read changed between its state block and the block before the
    victim's (then the reserves processd held for each pair are not all those at the state block)."""
    tx = rpc(world.rpc_url, "eth_getTransactionByHash", [o["tx_hash"]])
    v = victim(world, tx) if tx is not None else None
    dex = next((d for d in world.dexes.values() if d.router == tx["to"].lower()), None) if tx else None
    if v is None or dex is None or o["kind"] != "backrun_candidate":
        return False
    [other] = [d for d in world.dexes.values() if d is not dex]
    kind, amount, _, path = v
    pairs = [pair_address(d.factory, path[0], path[1], world.pair_init_code_hash) for d in (dex, other)]
    block = o["state_block_number"]
    mined = int(tx["blockNumber"], 16) if tx.get("blockNumber") else int(rpc(world.rpc_url, "eth_blockNumber"), 16) + 1
    if synced_between(world, pairs, block + 1, mined - 1):
        return False
    (v0, v1), (o0, o1) = (reserves_at(world, p, block) for p in pairs)
    weth_first = path[0] < path[1]
    r, s = (v0, v1) if weth_first else (v1, v0)  # the victim's pair: WETH, token
    oa, ob = (o0, o1) if weth_first else (o1, o0)  # the other pair: WETH, token
    if kind == "in":
        got = out_(amount, r, s)
        r2, s2 = r + amount, s - got
    else:
        r2, s2 = r + in_(amount, r, s), s - amount
    x = int(o["backrun_amount_in"])

    def profit(x: int) -> int:
        return out_(out_(x, oa, ob), s2, r2) - x  # WETH -> token on the other pair, token -> WETH on the victim's
    assert profit(x) == int(o["backrun_profit_wei"]), (o, profit(x))
    assert all(profit(near) <= profit(x) + 1 for near in (x - 2, x - 1, x + 1, x + 2) if near > 0)
    price = int(tx.get("maxFeePerGas") or tx["gasPrice"], 16)
    assert int(o["gas_cost_wei"]) == BACKRUN_GAS * price
    assert int(o["net_profit_wei"]) == profit(x) - BACKRUN_GAS * price > 0
    return True


def test_processd_values_the_worlds_swaps_to_the_wei(tmp_path: Path) -> None:
    cfg = StackConfig(chains=(ChainSpec(137, rate_tx_s=25),), uniswap=True, pool_state=True, swap_share=0.6,
                      mine_interval_s=1.0, log_dir=tmp_path / "logs", data_dir=tmp_path / "data")
    with Stack(cfg) as stack:
        world = stack.worlds[137]
        venues = json.loads((stack.log_dir / "valuation-venues.json").read_text())
        assert {(v["factory"], v["routers"][0], v["wrapped_native"]) for v in venues} == {
            (d.factory, d.router, world.weth) for d in world.dexes.values()}
        url = f"{stack.gateway_url}/opps/recent"

        def valued() -> list[dict[str, Any]]:
            resp = httpx.get(url, params={"min_profit_wei": "1", "limit": 200}, timeout=10)
            assert resp.status_code == 200, resp.text
            return list(resp.json()["opportunities"])

        def enough() -> bool:
            opps = valued()
            return sum(1 for o in opps if o["kind"] == "sandwich_candidate") >= 20 and any(
                o["kind"] == "backrun_candidate" for o in opps)
        stack.wait_for(enough, 240, "valued sandwiches and back-runs with a net profit on /opps/recent")
        stack.stop_generators()
        opps = valued()
        assert all(o["valued"] and int(o["net_profit_wei"]) >= 1 and o["state_block_number"] >= 1 for o in opps)
        assert all(o["frontrun_amount_in"] and o["sandwich_profit_wei"] for o in opps
                   if o["kind"] == "sandwich_candidate")
        assert all(o["backrun_amount_in"] and o["backrun_profit_wei"] for o in opps
                   if o["kind"] == "backrun_candidate")
        sandwiches = sum(1 for o in opps if check_sandwich(world, o))
        backruns = sum(1 for o in opps if check_backrun(world, o))
        kinds = Counter(o["kind"] for o in opps)
        print(f"valued opportunities with net profit: {len(opps)} {dict(kinds)}; recomputed equal to the wei: "
              f"{sandwiches} sandwiches, {backruns} back-runs")
        assert sandwiches >= 3 and backruns >= 1
