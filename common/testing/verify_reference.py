"""A reference predictor for the verifier, independent of processd: exact-integer constant-product math.

Dev tooling. For a pending Uniswap V2 router swap on a :class:`~common.testing.uniswap.World` it reads the
reserves of the pools on the victim's path from the node (latest block, right before execution) and computes,
with UniswapV2Library's ``getAmountOut``/``getAmountIn`` (997/1000 fee, integer division, as the pair checks):

* :func:`predict_sandwich`: the front-run on the victim's first hop that maximizes the searcher's profit while the
  victim still meets its own bound (``amountOutMin`` of an exact-in swap, ``amountInMax`` or the ether sent of an
  exact-out one: a front-run past it makes the victim revert), and the back-run that sells all it bought;
* :func:`predict_backrun`: after the victim, the arbitrage between the two factories' pools of a pair the victim
  traded (buy where cheap, sell where dear), sized to maximize profit.

Both return a :class:`~common.testing.verify.Prediction` (None when nothing profitable exists), which
:func:`~common.testing.verify.execute` then proves on the chain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from eth_abi import decode

from common.testing.uniswap import World, pair_address, rpc_batch
from common.testing.verify import Leg, Prediction, VictimTx

#: Router02 swap methods: selector -> (name, exact_in, ether_in, argument types).
_METHODS: dict[str, tuple[str, bool, bool, list[str]]] = {}
_SIGS = (
    ("swapExactTokensForTokens", True, False, ["uint256", "uint256", "address[]", "address", "uint256"]),
    ("swapTokensForExactTokens", False, False, ["uint256", "uint256", "address[]", "address", "uint256"]),
    ("swapExactETHForTokens", True, True, ["uint256", "address[]", "address", "uint256"]),
    ("swapETHForExactTokens", False, True, ["uint256", "address[]", "address", "uint256"]),
    ("swapExactTokensForETH", True, False, ["uint256", "uint256", "address[]", "address", "uint256"]),
    ("swapTokensForExactETH", False, False, ["uint256", "uint256", "address[]", "address", "uint256"]),
)
_LEG_GAS = 110_000  # rough gas of one single-hop router swap (the net figure is an estimate; profit is exact)


def get_amount_out(amount_in: int, reserve_in: int, reserve_out: int) -> int:
    """UniswapV2Library.getAmountOut (0 for a zero input)."""
    if amount_in <= 0:
        return 0
    with_fee = amount_in * 997
    return with_fee * reserve_out // (reserve_in * 1000 + with_fee)


def get_amount_in(amount_out: int, reserve_in: int, reserve_out: int) -> int | None:
    """UniswapV2Library.getAmountIn; None when ``amount_out`` is not below ``reserve_out`` (the pair reverts)."""
    if amount_out >= reserve_out:
        return None
    return reserve_in * amount_out * 1000 // ((reserve_out - amount_out) * 997) + 1


@dataclass(frozen=True, slots=True)
class VictimSwap:
    """A decoded router swap: the router, its token path, exact in or out, the fixed amount and the bound."""

    router: str
    path: tuple[str, ...]
    exact_in: bool
    amount: int  # amountIn (exact in) or amountOut (exact out)
    limit: int  # amountOutMin (exact in) or amountInMax / the ether sent (exact out)


def decode_swap(victim: VictimTx) -> VictimSwap | None:
    """The victim's Router02 swap, or None when its calldata is not one of the six swap methods."""
    if not _METHODS:
        from common.testing.uniswap import _selector  # the world module's selector cache

        for name, exact_in, eth_in, types in _SIGS:
            _METHODS["0x" + _selector(f"{name}({','.join(types)})").hex()] = (name, exact_in, eth_in, types)
    method = _METHODS.get(victim.input[:10])
    if method is None:
        return None
    _, exact_in, eth_in, types = method
    args = decode(types, bytes.fromhex(victim.input[10:]))
    if eth_in:
        first, path = args[0], args[1]
        amount, limit = (victim.value, first) if exact_in else (first, victim.value)
    else:
        amount, limit, path = args[0], args[1], args[2]
    return VictimSwap(victim.to, tuple(a.lower() for a in path), exact_in, amount, limit)


class Pools:
    """The reserves of a world's pairs, read from the node once (oriented lookups by token pair and factory)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.by_router = {dex.router: dex for dex in world.dexes.values()}
        self.reserves = world.reserves()
        self._token0 = {p.pair: p.token0 for p in world.pools}

    def pair(self, router: str, a: str, b: str) -> str | None:
        """The pair of tokens ``a``/``b`` on the factory of ``router`` (None when the world has none)."""
        dex = self.by_router.get(router)
        if dex is None:
            return None
        pair = pair_address(dex.factory, a, b, self.world.pair_init_code_hash)
        return pair if pair in self.reserves else None

    def oriented(self, pair: str, token_in: str) -> tuple[int, int]:
        """(reserve of ``token_in``, reserve of the other token) of ``pair``."""
        r0, r1 = self.reserves[pair]
        return (r0, r1) if self._token0[pair] == token_in else (r1, r0)


def _victim_amounts(swap: VictimSwap, hops: list[tuple[int, int]]) -> list[int] | None:
    """The victim's amounts along its path on reserves ``hops`` (oriented), None when it would revert (bound
    broken or a pool cannot supply)."""
    if swap.exact_in:
        amounts = [swap.amount]
        for r_in, r_out in hops:
            amounts.append(get_amount_out(amounts[-1], r_in, r_out))
        return amounts if amounts[-1] >= swap.limit and amounts[-1] > 0 else None
    amounts = [swap.amount]
    for r_in, r_out in reversed(hops):
        need = get_amount_in(amounts[0], r_in, r_out)
        if need is None:
            return None
        amounts.insert(0, need)
    return amounts if amounts[0] <= swap.limit else None


def _argmax(f: Callable[[int], int], lo: int, hi: int) -> int:
    """An integer maximizing the unimodal ``f`` on [lo, hi] (ternary search, then the few points left)."""
    while hi - lo > 8:
        m1, m2 = lo + (hi - lo) // 3, hi - (hi - lo) // 3
        if f(m1) < f(m2):
            lo = m1 + 1
        else:
            hi = m2
    return max(range(lo, hi + 1), key=f)


def _max_feasible(ok: Callable[[int], bool], cap: int) -> int:
    """The largest x in [0, cap] with ok(x) (ok is monotone: true up to a point), by bisection."""
    if ok(cap):
        return cap
    lo, hi = 0, cap  # ok(lo) holds (no front-run), ok(hi) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def predict_sandwich(world: World, victim: VictimTx, pools: Pools | None = None,
                     max_share: float = 0.2) -> Prediction | None:
    """The profit-maximizing sandwich of ``victim``'s first hop within its bound (front-run at most ``max_share``
    of the input reserve), or None when the victim is not a world swap or no front-run profits."""
    swap = decode_swap(victim)
    pools = pools or Pools(world)
    if swap is None or swap.router not in pools.by_router or len(swap.path) < 2:
        return None
    pairs = [pools.pair(swap.router, a, b) for a, b in zip(swap.path, swap.path[1:], strict=False)]
    if any(p is None for p in pairs):
        return None
    hops = [pools.oriented(p, t) for p, t in zip(pairs, swap.path, strict=False) if p is not None]
    r_in, r_out = hops[0]
    if _victim_amounts(swap, hops) is None:
        return None  # the victim reverts even untouched

    def after_front(x: int) -> tuple[int, tuple[int, int]]:
        y = get_amount_out(x, r_in, r_out)
        return y, (r_in + x, r_out - y)

    def victim_ok(x: int) -> bool:
        return _victim_amounts(swap, [after_front(x)[1], *hops[1:]]) is not None

    def profit(x: int) -> int:
        y, first = after_front(x)
        amounts = _victim_amounts(swap, [first, *hops[1:]])
        if amounts is None or y <= 0:
            return -(10**80)
        back_in, back_out = first[0] + amounts[0], first[1] - amounts[1]
        return get_amount_out(y, back_out, back_in) - x

    x = _argmax(profit, 1, max(1, _max_feasible(victim_ok, int(r_in * max_share))))
    gain = profit(x)
    if gain <= 0:
        return None
    y = after_front(x)[0]
    token_in, token_mid = swap.path[0], swap.path[1]
    front = Leg(swap.router, (token_in, token_mid), x, y)
    back = Leg(swap.router, (token_mid, token_in), y, x + gain)
    return _prediction(pools, victim, "sandwich", (pairs[0] or "",), token_in, (front,), (back,), gain,
                       f"exact_{'in' if swap.exact_in else 'out'} {len(swap.path) - 1}-hop victim")


def native_per_token(pools: Pools, token: str) -> tuple[int, int] | None:
    """The spot price of ``token`` in WETH as (WETH reserve, token reserve) of its WETH pool on the first factory
    that has one; (1, 1) for WETH; None without such a pool."""
    weth = pools.world.weth
    if token == weth:
        return 1, 1
    for router in pools.by_router:
        pair = pools.pair(router, token, weth)
        if pair is not None:
            r_token, r_weth = pools.oriented(pair, token)
            return r_weth, r_token
    return None


def _prediction(pools: Pools, victim: VictimTx, kind: str, pairs: tuple[str, ...], token: str,
                front: tuple[Leg, ...], back: tuple[Leg, ...], gain: int, detail: str) -> Prediction:
    """The prediction, its net in native wei: profit at the token's spot price minus an estimate of the legs' gas
    (``_LEG_GAS`` each at the victim's price: the searcher pays about that, one wei above or below its tip)."""
    price = victim.gas_price or victim.max_fee_per_gas or 0
    rate = native_per_token(pools, token)
    legs = len(front) + len(back)
    net = None if rate is None else gain * rate[0] // rate[1] - legs * _LEG_GAS * price
    return Prediction(chain_id=pools.world.chain_id, victim_hash=victim.hash, victim=victim,
                      kind="sandwich" if kind == "sandwich" else "backrun", pairs=pairs, profit_token=token,
                      front=front, back=back, predicted_profit_wei=gain, predicted_net_wei=net, gas_price_wei=price,
                      back_sells_all=True, native_per_token=rate, source="reference", detail=detail)


def _pool_after_victim(swap: VictimSwap, pools: Pools, hop: int) -> tuple[str, str, str, tuple[int, int]] | None:
    """(pair, token_in, token_out, oriented reserves after the victim) of the victim's hop ``hop``."""
    pairs = [pools.pair(swap.router, a, b) for a, b in zip(swap.path, swap.path[1:], strict=False)]
    if any(p is None for p in pairs):
        return None
    hops = [pools.oriented(p, t) for p, t in zip(pairs, swap.path, strict=False) if p is not None]
    amounts = _victim_amounts(swap, hops)
    if amounts is None:
        return None
    r_in, r_out = hops[hop]
    return pairs[hop] or "", swap.path[hop], swap.path[hop + 1], (r_in + amounts[hop], r_out - amounts[hop + 1])


def predict_backrun(world: World, victim: VictimTx, pools: Pools | None = None,
                    max_share: float = 0.2) -> Prediction | None:
    """The best arbitrage, right after ``victim``, between a pool the victim trades on and the other factory's
    pool of the same pair: sell token T on one, buy it back on the other; None when none profits."""
    swap = decode_swap(victim)
    pools = pools or Pools(world)
    if swap is None or swap.router not in pools.by_router:
        return None
    best: tuple[int, Prediction] | None = None
    for hop in range(len(swap.path) - 1):
        moved = _pool_after_victim(swap, pools, hop)
        if moved is None:
            continue
        pair, a, b, (ra, rb) = moved
        for other in pools.by_router:
            twin = pools.pair(other, a, b) if other != swap.router else None
            if twin is None:
                continue
            state = {pair: {a: ra, b: rb}, twin: dict(zip((a, b), pools.oriented(twin, a), strict=True))}
            routers = {pair: swap.router, twin: other}
            for first, second in ((pair, twin), (twin, pair)):
                for t, u in ((a, b), (b, a)):
                    found = _arb(pools, victim, state, routers, first, second, t, u, max_share)
                    if found is not None and (best is None or found[0] > best[0]):
                        best = found
    return best[1] if best else None


def _arb(pools: Pools, victim: VictimTx, state: dict[str, dict[str, int]], routers: dict[str, str], first: str,
         second: str, t: str, u: str, max_share: float) -> tuple[int, Prediction] | None:
    """Sell ``t`` for ``u`` on ``first``, then ``u`` for ``t`` on ``second``, sized for the most profit."""
    s1, s2 = state[first], state[second]

    def profit(x: int) -> int:
        y = get_amount_out(x, s1[t], s1[u])
        return get_amount_out(y, s2[u], s2[t]) - x

    x = _argmax(profit, 1, max(1, int(s1[t] * max_share)))
    gain = profit(x)
    if gain <= 0:
        return None
    y = get_amount_out(x, s1[t], s1[u])
    legs = (Leg(routers[first], (t, u), x, y), Leg(routers[second], (u, t), y, x + gain))
    return gain, _prediction(pools, victim, "backrun", (first, second), t, (), legs, gain, "two-factory arbitrage")


def read_rpc_pending(world: World) -> list[str]:
    """Hashes of the pending transactions the node holds (``txpool_content``), e.g. to pick victims."""
    [content] = rpc_batch(world.rpc_url, [("txpool_content", [])])
    hashes = []
    for by_nonce in (content or {}).get("pending", {}).values():
        hashes += [str(tx["hash"]).lower() for tx in by_nonce.values()]
    return hashes
