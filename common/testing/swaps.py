"""Executable Uniswap V2 router swaps for the traffic generator, on a :class:`~common.testing.uniswap.World`.

Beside the replayed mainnet calldata (the decoding corpus, which executes against nothing on anvil), the
generator sends real router swaps from the world's funded traders: ``swapExactTokensForTokens``,
``swapTokensForExactTokens``, ``swapExactETHForTokens``, ``swapETHForExactTokens``, ``swapExactTokensForETH``
and ``swapTokensForExactETH``, direct or two hops through WETH, sized as a log-uniform share of the pool's
reserves (now and then a whale), with a slippage setting drawn per swap (a share with no protection at all:
``amountOutMin = 0`` or ``amountInMax`` = everything). Amounts are quoted from the reserves the generator last
read from the node (:meth:`SwapMaker.refresh`), so a mined block of them really moves the pools.

Each swap is a :class:`~common.testing.fixtures.MainnetCall` (sender = a trader, to = a router), so the
replayer sends it like any replayed call (impersonated, its own nonces).
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx
import orjson
from eth_abi import decode

from common.testing.fixtures import MainnetCall
from common.testing.uniswap import Pool, World, calldata

#: Slippage tolerances a swap picks from when it is protected (fractions of the quote).
SLIPPAGES = (0.001, 0.005, 0.005, 0.01, 0.01, 0.03, 0.1)
_SIZE_MIN, _SIZE_MAX, _WHALE_MAX = 1e-5, 1e-2, 5e-2  # swap size: share of the input reserve
_WHALE_SHARE = 0.05
_TWO_HOP_SHARE = 0.25
_DEADLINE_S = 1_200
_GAS_PER_HOP, _GAS_BASE = 90_000, 120_000
_MAX_UINT = 2**256 - 1


def amount_out(amount_in: int, reserve_in: int, reserve_out: int) -> int:
    """UniswapV2Library.getAmountOut: the output of ``amount_in`` after the 0.3% fee."""
    with_fee = amount_in * 997
    return with_fee * reserve_out // (reserve_in * 1000 + with_fee)


def amount_in(amount_out_: int, reserve_in: int, reserve_out: int) -> int:
    """UniswapV2Library.getAmountIn: the input that buys ``amount_out_`` (requires ``amount_out_ < reserve_out``)."""
    return reserve_in * amount_out_ * 1000 // ((reserve_out - amount_out_) * 997) + 1


@dataclass(frozen=True, slots=True)
class Swap:
    """One generated swap: the router method, its token path (symbols) and the call that sends it."""

    method: str
    dex: str
    path: tuple[str, ...]
    protected: bool
    call: MainnetCall


class SwapMaker:
    """Draws swaps on ``world``'s pools (deterministic for a ``seed``). Call :meth:`refresh` (or
    :meth:`set_reserves`) before :meth:`next_swap` so amounts are quoted on the current reserves.

    ``unprotected_share``: the share of swaps without slippage protection.
    """

    def __init__(self, world: World, *, seed: int = 0, unprotected_share: float = 0.2) -> None:
        if not 0.0 <= unprotected_share <= 1.0:
            raise ValueError(f"unprotected_share must be in [0, 1], got {unprotected_share}")
        self.world = world
        self.unprotected_share = unprotected_share
        self._rng = random.Random(seed)
        self._reserves: dict[str, tuple[int, int]] = {}
        self.refreshed_mono = 0.0
        self.made = 0
        # One gas price per trader, as a wallet keeps its fee setting, and because anvil (1.7.1) drops, when it
        # mines, a pending transaction priced above an earlier-nonce one of the same sender (docs/valuation.md).
        self._price = {t: self._rng.randrange(20, 80) * 10**9 + self._rng.randrange(10**9) for t in world.traders}

    def set_reserves(self, reserves: Mapping[str, tuple[int, int]]) -> None:
        """Takes ``pair -> (reserve0, reserve1)`` (e.g. :meth:`World.reserves`)."""
        self._reserves.update(reserves)
        self.refreshed_mono = time.monotonic()

    async def refresh(self, client: httpx.AsyncClient) -> None:
        """Reads every pool's ``getReserves()`` from the node in one batch."""
        pairs = [p.pair for p in self.world.pools]
        payload = [{"jsonrpc": "2.0", "id": i, "method": "eth_call",
                    "params": [{"to": pair, "data": calldata("getReserves()")}, "latest"]}
                   for i, pair in enumerate(pairs)]
        resp = await client.post(self.world.rpc_url, content=orjson.dumps(payload),
                                 headers={"content-type": "application/json"})
        resp.raise_for_status()
        by_id = {item.get("id"): item for item in orjson.loads(resp.content)}
        out = {}
        for i, pair in enumerate(pairs):
            result = (by_id.get(i) or {}).get("result")
            if isinstance(result, str) and len(result) >= 2 + 64 * 3:
                r0, r1, _ = decode(["uint112", "uint112", "uint32"], bytes.fromhex(result[2:]))
                out[pair] = (r0, r1)
        self.set_reserves(out)

    def _reserve(self, pool: Pool, token_in: str) -> tuple[int, int]:
        r0, r1 = self._reserves[pool.pair]
        return (r0, r1) if token_in == pool.token0 else (r1, r0)

    def _route(self) -> tuple[str, list[Pool], list[str]]:
        """A dex, the pools of the hops and the token path (addresses)."""
        pool = self._rng.choice([p for p in self.world.pools if p.pair in self._reserves])
        path = [pool.token0, pool.token1] if self._rng.random() < 0.5 else [pool.token1, pool.token0]
        hops = [pool]
        weth = self.world.weth
        if path[1] == weth and self._rng.random() < _TWO_HOP_SHARE:
            onward = [p for p in self.world.pools if p.dex == pool.dex and weth in (p.token0, p.token1)
                      and p is not pool and p.pair in self._reserves]
            if onward:
                nxt = self._rng.choice(onward)
                hops.append(nxt)
                path.append(nxt.token1 if nxt.token0 == weth else nxt.token0)
        return pool.dex, hops, path

    def _size(self) -> float:
        high = _WHALE_MAX if self._rng.random() < _WHALE_SHARE else _SIZE_MAX
        return _SIZE_MIN * (high / _SIZE_MIN) ** self._rng.random()  # log-uniform

    def next_swap(self) -> Swap:
        """The next swap (raises ValueError before any reserves are known)."""
        if not self._reserves:
            raise ValueError("no pool reserves known yet: call refresh() or set_reserves() first")
        dex, hops, path = self._route()
        weth = self.world.weth
        eth_in, eth_out = path[0] == weth, path[-1] == weth
        exact_out = self._rng.random() < 0.3
        native = self._rng.random() < 0.65  # WETH legs mostly as ether, as most users swap
        protected = self._rng.random() >= self.unprotected_share
        slip = self._rng.choice(SLIPPAGES)
        amounts = self._exact_out_amounts(hops, path) if exact_out else None
        if amounts is not None:
            limit = int(amounts[0] * (1 + slip)) if protected else None
        else:
            exact_out = False
            r_in, _ = self._reserve(hops[0], path[0])
            amounts = [max(1, int(r_in * self._size()))]
            for pool, token in zip(hops, path[:-1], strict=True):
                r_in, r_out = self._reserve(pool, token)
                amounts.append(amount_out(amounts[-1], r_in, r_out))
            limit = int(amounts[-1] * (1 - slip)) if protected else 0
        return self._build(dex, path, amounts, exact_out, limit, native and (eth_in or eth_out), protected)

    def _exact_out_amounts(self, hops: list[Pool], path: list[str]) -> list[int] | None:
        """Amounts along ``path`` for an exact output drawn from the last pool; None when an earlier hop cannot
        supply the input the later one needs (a thin first pool)."""
        _, last_out = self._reserve(hops[-1], path[-2])
        amounts = [max(1, int(last_out * self._size()))]
        for pool, token in zip(reversed(hops), reversed(path[:-1]), strict=True):
            r_in, r_out = self._reserve(pool, token)
            if amounts[0] >= r_out:
                return None
            amounts.insert(0, amount_in(amounts[0], r_in, r_out))
        return amounts

    def _build(self, dex: str, path: list[str], amounts: list[int], exact_out: bool, limit: int | None,
               native: bool, protected: bool) -> Swap:
        trader = self._rng.choice(self.world.traders)
        deadline = int(time.time()) + _DEADLINE_S
        router = self.world.dexes[dex].router
        eth_in = native and path[0] == self.world.weth
        value = 0
        if exact_out:
            in_max = limit if limit is not None else (amounts[0] * 100 if eth_in else _MAX_UINT)
            if eth_in:
                method, value = "swapETHForExactTokens", in_max  # the router refunds what it does not need
                data = calldata(f"{method}(uint256,address[],address,uint256)", amounts[-1], path, trader, deadline)
            else:
                method = "swapTokensForExactETH" if native else "swapTokensForExactTokens"
                data = calldata(f"{method}(uint256,uint256,address[],address,uint256)", amounts[-1], in_max, path,
                                trader, deadline)
        elif eth_in:
            method, value = "swapExactETHForTokens", amounts[0]
            data = calldata(f"{method}(uint256,address[],address,uint256)", limit, path, trader, deadline)
        else:
            method = "swapExactTokensForETH" if native else "swapExactTokensForTokens"
            data = calldata(f"{method}(uint256,uint256,address[],address,uint256)", amounts[0], limit, path, trader,
                            deadline)
        self.made += 1
        call = MainnetCall(block=0, position=self.made, tx_hash="", sender=trader, to=router, value=value,
                           gas=_GAS_BASE + _GAS_PER_HOP * (len(path) - 1), input=data, base_fee=None,
                           effective_gas_price=self._price[trader])
        symbols = tuple(self.world.symbols.get(a, a) for a in path)
        return Swap(method, dex, symbols, protected, call)
