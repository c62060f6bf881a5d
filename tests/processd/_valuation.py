"""Shared by the valuation tests: a dictionary reserve source and synthetic reserves for the pairs of swaps."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from processd.analysis.valuation.amm import sort_tokens
from processd.analysis.valuation.pairs import Venues, pair_address
from processd.analysis.valuation.state import PoolReserves
from processd.analysis.valuation.value import pairs_needed

WETH = bytes.fromhex("c02aaa39b223fe8d0a0e5c4f27ead9083c756cc2")
USDC = bytes.fromhex("a0b86991c6218b36c1d19d4a2e9eb0ce3606eb48")
DAI = bytes.fromhex("6b175474e89094c44da98b954eedeac495271d0f")
UNI_ROUTER = bytes.fromhex("7a250d5630b4cf539739df2c5dacb4c659f2488d")
SUSHI_ROUTER = bytes.fromhex("d9e1ce17f2641f24ae83637ab66a2cca9c378b9f")
VENUES = Venues()
UNI, SUSHI = VENUES.factories(1)


class DictSource:
    """A :class:`ReserveSource` over a dict (the pool-state view's stand-in)."""

    def __init__(self, pools: Iterable[PoolReserves]) -> None:
        self.pools = {(p.chain_id, p.pair): p for p in pools}
        self.lookups = 0

    def lookup(self, chain_id: int, pair: bytes) -> PoolReserves | None:
        self.lookups += 1
        return self.pools.get((chain_id, pair))


def pool(factory: object, token_a: bytes, reserve_a: int, token_b: bytes, reserve_b: int,
         block: int = 100, chain_id: int = 1) -> PoolReserves:
    """A pool of ``factory`` (a :class:`Factory`) holding ``reserve_a`` of token_a and ``reserve_b`` of token_b."""
    t0, t1 = sort_tokens(token_a, token_b)
    r0, r1 = (reserve_a, reserve_b) if t0 == token_a else (reserve_b, reserve_a)
    pair = pair_address(factory.address, factory.init_code_hash, token_a, token_b)  # type: ignore[attr-defined]
    return PoolReserves(chain_id, pair, t0, t1, r0, r1, block)


def synthetic_reserves(calls: Iterable[tuple[int, bytes, bytes]], venues: Venues = VENUES) -> list[PoolReserves]:
    """Deterministic made-up reserves (1e18..1e24 base units) for every pair the calls' valuation reads; the
    tokens of a pair are not known from its address alone, so each call's path is used."""
    from processd.analysis.valuation.calldata import v2_path

    out: dict[bytes, PoolReserves] = {}
    for chain_id, to, data in calls:
        path = v2_path(data)
        factory = venues.factory_of_router(chain_id, to)
        if path is None or factory is None:
            continue
        weth = venues.wrapped_native(chain_id)
        wanted = {pair: None for pair in pairs_needed(chain_id, to, data, venues)}
        tokens = set(path) | ({weth} if weth else set())
        for f in venues.factories(chain_id):
            for a in tokens:
                for b in tokens:
                    if a < b and (pair := pair_address(f.address, f.init_code_hash, a, b)) in wanted:
                        h = hashlib.sha256(pair).digest()
                        r0 = (1 + h[0]) * 10 ** (18 + h[1] % 5)
                        r1 = (1 + h[2]) * 10 ** (18 + h[3] % 5)
                        out[pair] = PoolReserves(chain_id, pair, a, b, r0, r1, 1000 + h[4])
    return list(out.values())
