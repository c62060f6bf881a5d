"""The valuation of one decoded V2 router swap on known reserves: its sandwich and its back-run, net of gas.

Inputs are the decoded call, the router it was sent to, the victim's gas price and the :data:`Reserves`
mapping sent with the batch; output is a :class:`SwapValuation` (figures in Python ints) or the reason it could
not be valued. Assumptions (docs/valuation.md): the state is the latest block's reserves the pipeline had; the
attacker's transactions pay the victim's gas price (its bid: max fee per gas, or the legacy gas price); the gas
per transaction and per swap are the constants below; the profit token is the victim's input token, converted to
native currency by selling it on its WETH pair of the same factory.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from processd.analysis.decoding.model import UNISWAP_V2, DecodedCall
from processd.analysis.valuation import backrun, sandwich
from processd.analysis.valuation.amm import (
    V2_FEE_BPS,
    AmmError,
    get_amounts_in,
    min_input_for,
)
from processd.analysis.valuation.calldata import MAX_PATH, PATH_HEAD, v2_path
from processd.analysis.valuation.exact_in import optimal_exact_in
from processd.analysis.valuation.pairs import PairKey, RoutePlan, Venues, route_plan, words_plan
from processd.analysis.valuation.state import PoolReserves, Reserves, ReserveSource
from processd.errors import ProcessdError

#: Gas of a transaction's intrinsic cost (21,000) and of one V2 pair swap called by a searcher contract (token
#: transfer in, ``swap``, its transfer out, reserve update; cold storage): documented estimates, not measured per
#: transaction. A sandwich is two transactions of one swap; a back-run one transaction of two swaps.
TX_BASE_GAS = 21_000
V2_SWAP_GAS = 90_000
SANDWICH_GAS = 2 * (TX_BASE_GAS + V2_SWAP_GAS)
BACKRUN_GAS = TX_BASE_GAS + 2 * V2_SWAP_GAS
#: amm.swap_out's terms at the default fee, for the profit's sale on its WETH pair (priced at that fee).
_BPS = 10_000
_WITH_FEE = _BPS - V2_FEE_BPS
#: An exact-input victim's closed-form inputs (none: read-only, shared).
_NO_KW: dict[str, int] = {}


class Figures(NamedTuple):
    """One kind's valuation. ``profit`` is in ``profit_token`` base units; ``native_profit`` its value in native
    wei (None when the token has no known WETH pair); ``net`` = native_profit - gas_cost (None likewise)."""

    profit: int
    amount_in: int
    profit_token: bytes
    native_profit: int | None
    gas_cost: int
    net: int | None
    #: The block of the reserves this kind read (the oldest of its pools).
    block_number: int


class SwapValuation(NamedTuple):
    """A swap valued on reserves: each kind's figures or the reason it has none."""

    #: The block of the victim's pools' reserves (the oldest of them).
    block_number: int
    price_impact_bps: int
    sandwich: Figures | None
    sandwich_note: str
    backrun: Figures | None
    backrun_note: str


#: ``Figures(...)`` / ``SwapValuation(...)`` without the Python-level ``__new__`` a NamedTuple adds (a tuple built
#: in C: a slots dataclass's ``__init__`` cost ~0.3 µs per object, and a valued swap builds three).
_new = tuple.__new__


class NotValued(ProcessdError):
    """The swap cannot be valued; the message says why (it becomes the opportunity's reason)."""

    retriable = False


def pairs_needed(chain_id: int, router: bytes, data: bytes, venues: Venues) -> tuple[bytes, ...]:
    """Pair addresses a V2 router call's valuation reads: its hops on the router's factory, the input token's WETH
    pair, and the first hop's pair on the chain's other factories (empty when the call is not valued)."""
    path = v2_path(data)
    return () if path is None else route_needs(chain_id, router, path, venues)


def route_needs(chain_id: int, router: bytes, path: tuple[bytes, ...], venues: Venues) -> tuple[bytes, ...]:
    """:func:`pairs_needed` of a call's path (the route's cached :class:`~.pairs.RoutePlan`)."""
    plan = route_plan(venues, chain_id, router, path)
    return () if plan is None else plan.needs


def gather(calls: Iterable[tuple[int, bytes, bytes]], source: ReserveSource,
           venues: Venues) -> tuple[list[PoolReserves], int]:
    """The reserves the valuation of ``(chain id, to, calldata)`` calls needs, as ``source`` knows them now (in no
    particular order), and the number of pairs it did not know. Runs on processd's event loop for every batch:
    each distinct route of the batch is resolved once (a batch's swaps share few routes), from the process's route
    plans, found by the call's path words (``calldata.path_words``, one slice: no address is read out of a known
    route's call); the routes' pairs are collected in one set (C-level updates) and each is looked up once."""
    routes: set[tuple[int, bytes, bytes]] = set()
    keys: set[PairKey] = set()
    add_route = routes.add
    add_keys = keys.update
    heads = PATH_HEAD
    for chain_id, to, data in calls:
        # calldata.path_words, inline (a call less per router call on the event loop; the same tests, in its
        # order: tests/processd/test_valuation_decode.py checks gather's routes against path_words')
        head = heads.get(data[:4])
        if head is None:
            continue
        n = len(data)
        if n < head + 32:
            continue
        start = 4 + int.from_bytes(data[head:head + 32], "big")
        if start - 4 > n or n < start + 32:
            continue
        count = int.from_bytes(data[start:start + 32], "big")
        start += 32
        if not 2 <= count <= MAX_PATH or n < start + 32 * count:
            continue
        words = data[start:start + 32 * count]
        route = (chain_id, to, words)
        if route in routes:
            continue
        add_route(route)
        plan = words_plan(venues, chain_id, to, words)
        if plan is not None:
            add_keys(plan.need_keys)
    lookup = source.lookup
    found = [r for key in keys if (r := lookup(*key)) is not None]
    return found, len(keys) - len(found)


def _oriented(reserves: Reserves, key: PairKey, token_in: bytes,
              token_out: bytes) -> tuple[int, int, PoolReserves] | None:
    """(reserve of token_in, reserve of token_out, the pool) of the pair at ``key``, None when its state is unknown
    (or names other tokens)."""
    r = reserves.get(key)
    if r is None:
        return None
    if r.token0 == token_in and r.token1 == token_out:
        return r.reserve0, r.reserve1, r
    if r.token1 == token_in and r.token0 == token_out:
        return r.reserve1, r.reserve0, r
    return None


class Valuer:
    """Values decoded V2 router swaps against a batch's reserves (read-only; one per analyzer)."""

    __slots__ = ("venues",)

    def __init__(self, venues: Venues | None = None) -> None:
        self.venues = venues or Venues()

    def value(self, chain_id: int, router: bytes, call: DecodedCall, value_wei: int, gas_price: int,
              reserves: Reserves) -> SwapValuation | str:
        """The swap's valuation, or why it has none. The common reasons for no valuation are returned, not raised
        (a raise costs more than the whole early exit, and half the swaps stop here on their own bound); the
        steps of an exact-input victim are inline (one frame: the victim's first-hop step and, on a one-hop path,
        its least output, before any object is built)."""
        try:
            plan = route_plan(self.venues, chain_id, router, call.path) if call.family == UNISWAP_V2 else None
            if plan is None:
                return "not valued: not a swap through a known Uniswap V2-style router (V3 is not valued yet)"
            if call.fee_on_transfer:
                return "not valued: fee-on-transfer token (the transfer tax is unknown)"
            if plan.repeated:
                return "not valued: the path crosses a pair twice"
            path = call.path
            r = reserves.get(plan.hops[0])  # the first hop's pair (_oriented, inline: every valuation reads it)
            token_in, token_out = path[0], path[1]
            if r is not None and r.token0 == token_in and r.token1 == token_out:
                r_in, r_out = r.reserve0, r.reserve1
            elif r is not None and r.token1 == token_in and r.token0 == token_out:
                r_in, r_out = r.reserve1, r.reserve0
            else:
                return (f"not valued: pool state unknown ({plan.factory.name} pair of 0x{token_in.hex()}/"
                        f"0x{token_out.hex()})")
            hops = [(r_in, r_out, r)]
            block = r.block_number
            if len(plan.hops) > 1:
                later = self._later_hops(plan, path, reserves, hops)
                if isinstance(later, str):
                    return later
                block = min(block, later)
            fee = plan.factory.fee_bps
            victim: sandwich.VictimStep | int  # exact input: the least first-hop output it takes (no object built)
            out_min = call.amount_out_min
            if out_min is not None:  # exact input (most swaps): _exact_in, inline
                amount_in = value_wei if call.native_in else call.amount_in
                if not amount_in:
                    return "not valued: the swap's input amount is unknown"
                victim = out_min if out_min > 0 else 1
                if len(hops) > 1:
                    victim = self._first_hop_need(victim, hops, fee)
                    if not victim:
                        return "not valued: the victim's bound already fails on the current reserves"
                kw: dict[str, int] = _NO_KW
                # exact_in_victim's step, inline (first: no search for a swap that would revert as it is; half the
                # swaps stop here); amm.swap_out, inline
                if r_in + amount_in <= sandwich.UINT112_MAX and r_in > 0 and r_out > 0:
                    w = amount_in * (_BPS - fee)
                    bought = w * r_out // (r_in * _BPS + w)
                else:
                    bought = 0
                victim_step = (amount_in, bought) if bought >= victim else None
            else:
                victim, kw, amount_in = self._exact_out(call, value_wei, hops, fee)
                victim_step = victim(r_in, r_out)
            if victim_step is None:
                return "not valued: the victim's bound already fails on the current reserves (it would revert)"
            pools_block = block
            weth_side = self._weth_quote(plan, path[0], reserves)
            if type(weth_side) is tuple and weth_side[2] < block:
                block = weth_side[2]
            sw_fig, sw_note = self._sandwich(r_in, r_out, victim, kw, fee, path[0], weth_side, gas_price, block,
                                             amount_in)
            br_fig, br_note = self._backrun(plan, path, reserves, (r_out - victim_step[1], r_in + victim_step[0]),
                                            weth_side, gas_price, block)
            # amm.price_impact_bps, inline (amount_in > 0; r_in > 0: the victim's step would have failed)
            w = amount_in * (_BPS - fee)
            return _new(SwapValuation, (pools_block, _BPS * w // (r_in * _BPS + w), sw_fig, sw_note, br_fig, br_note))
        except NotValued as exc:
            return str(exc)
        except AmmError as exc:
            return f"not valued: the swap would revert on the current reserves ({exc})"

    def _sandwich(self, r_in: int, r_out: int, victim: sandwich.VictimStep | int, kw: dict[str, int], fee: int,
                  token: bytes, weth_side: tuple[int, int, int] | bool | None, gas_price: int,
                  block: int, amount_in: int) -> tuple[Figures | None, str]:
        """The best sandwich's figures, or why there are none (``victim``: an exact-input victim's least output,
        ``amount_in`` its input; or an exact-output victim's step and ``kw`` its closed form's inputs)."""
        capital = self._capital(weth_side) if self.venues.max_capital_wei else None
        if capital is not None and capital < 0:
            return None, ("not valued: the capital bound (max_capital_wei) cannot be priced in the victim's input "
                          "token (no known pair of it with the wrapped native token)")
        if isinstance(victim, int):  # exact input, most swaps: the fused steps (sandwich.optimal's result)
            s = optimal_exact_in(r_in, r_out, amount_in, victim, fee, capital)
        elif kw["max_in"] > sandwich.UINT112_MAX:
            # An exact-output victim with no real limit: what it pays is bounded only by its balance and allowance,
            # which processd does not see (a sandwich "within its bound" would report a victim paying up to the
            # pair's uint112 limit).
            return None, ("not valued: the victim set no limit on its input (amountInMax above 2**112), so only its "
                          "balance, which processd does not see, bounds a sandwich")
        else:
            s = sandwich.optimal(r_in, r_out, victim, fee_bps=fee, max_frontrun_in=capital, **kw)
        if s is None:
            return None, "valued: no profitable sandwich within the victim's slippage bound" + (
                " and the capital bound" if capital is not None else "")
        return self._figures(s.profit, s.frontrun_in, token, weth_side, SANDWICH_GAS * gas_price, block), ""

    @staticmethod
    def _later_hops(plan: RoutePlan, path: tuple[bytes, ...], reserves: Reserves,
                    hops: list[tuple[int, int, PoolReserves]]) -> int | str:
        """Appends the reserves of a multi-hop path's hops after the first to ``hops`` (reserve in, reserve out, the
        pool); the oldest block among them, or why the swap is not valued (a pair's state unknown)."""
        block = -1
        get = reserves.get
        for i in range(1, len(plan.hops)):  # _oriented, inline
            r = get(plan.hops[i])
            token_in, token_out = path[i], path[i + 1]
            if r is not None and r.token0 == token_in and r.token1 == token_out:
                hops.append((r.reserve0, r.reserve1, r))
            elif r is not None and r.token1 == token_in and r.token0 == token_out:
                hops.append((r.reserve1, r.reserve0, r))
            else:
                return (f"not valued: pool state unknown ({plan.factory.name} pair of 0x{token_in.hex()}/"
                        f"0x{token_out.hex()})")
            if block < 0 or r.block_number < block:
                block = r.block_number
        return block

    @staticmethod
    def _first_hop_need(need: int, hops: list[tuple[int, int, PoolReserves]], fee: int) -> int:
        """The least first-hop output the rest of a multi-hop path, at current reserves, turns into ``need`` (the
        victim's ``amountOutMin``, at least 1); 0 when no output can (its bound already fails)."""
        for i in range(len(hops) - 1, 0, -1):
            need = min_input_for(need, hops[i][0], hops[i][1], fee)
            if need == 0:
                return 0
        return need

    @staticmethod
    def _exact_out(call: DecodedCall, value_wei: int, hops: list[tuple[int, int, PoolReserves]],
                   fee: int) -> tuple[sandwich.VictimStep, dict[str, int], int]:
        """An exact-output victim's step on the first pair, the closed form's inputs, and its input amount now."""
        if call.amount_out is not None:
            max_in = value_wei if call.native_in else call.amount_in_max
            if max_in is None:
                raise NotValued("not valued: the swap's maximum input is unknown")
            amounts = get_amounts_in(call.amount_out, [(h[0], h[1]) for h in hops], fee)
            return (sandwich.exact_out_victim(amounts[1], max_in, fee),
                    {"exact_out_amount": amounts[1], "max_in": max_in}, amounts[0])
        raise NotValued("not valued: the swap's amounts are unknown")

    def _weth_quote(self, plan: RoutePlan, token: bytes, reserves: Reserves) -> tuple[int, int, int] | bool | None:
        """True when ``token`` (the path's input) is the wrapped native token, its (token, WETH) reserves and their
        block, or None when unknown."""
        if plan.input_is_weth:
            return True
        if plan.weth is None:
            return None
        r = reserves.get(plan.weth)  # _oriented, inline: the pair of (token, the wrapped native token)
        if r is None:
            return None
        if r.token0 == token:
            return (r.reserve0, r.reserve1, r.block_number) if r.token1 == plan.weth_token else None
        if r.token1 == token:
            return (r.reserve1, r.reserve0, r.block_number) if r.token0 == plan.weth_token else None
        return None

    def _capital(self, weth_side: tuple[int, int, int] | bool | None) -> int | None:
        """The largest front-run in the victim's input token: None without a capital bound; the bound itself for
        WETH; for another token the amount worth it at its WETH pair's reserves (spot, floor); 0 when that pair's
        state is unknown (-1: the bound cannot be priced)."""
        cap = self.venues.max_capital_wei
        if not cap:
            return None
        if weth_side is True:
            return cap
        if isinstance(weth_side, tuple):
            return cap * weth_side[0] // weth_side[1] if weth_side[1] > 0 else -1
        return -1

    @staticmethod
    def _figures(profit: int, amount_in: int, token: bytes, weth_side: tuple[int, int, int] | bool | None,
                 gas_cost: int, block: int) -> Figures:
        if weth_side is True:
            native: int | None = profit
        elif isinstance(weth_side, tuple):  # what selling the profit for WETH gives (swap_out, inline)
            reserve_in, reserve_out = weth_side[0], weth_side[1]
            if profit <= 0 or reserve_in <= 0 or reserve_out <= 0:
                native = 0
            else:
                w = profit * _WITH_FEE
                native = w * reserve_out // (reserve_in * _BPS + w)
        else:
            native = None
        return _new(Figures, (profit, amount_in, token, native, gas_cost,
                              None if native is None else native - gas_cost, block))

    def _backrun(self, plan: RoutePlan, path: tuple[bytes, ...], reserves: Reserves, after: tuple[int, int],
                 weth_side: tuple[int, int, int] | bool | None, gas_price: int,
                 block: int) -> tuple[Figures | None, str]:
        """The best back-run of the first hop through the same pair on another factory of the chain (``after``: the
        victim's pair's reserves of its output and input token after the victim)."""
        best: backrun.Backrun | None = None
        best_block = block
        others = 0
        fee = plan.factory.fee_bps
        token_a, token_b = path[0], path[1]
        get = reserves.get
        for other, key in plan.others:
            r = get(key)  # _oriented, inline
            if r is None:
                continue
            if r.token0 == token_a and r.token1 == token_b:
                other_a, other_b = r.reserve0, r.reserve1
            elif r.token1 == token_a and r.token0 == token_b:
                other_a, other_b = r.reserve1, r.reserve0
            else:
                continue
            others += 1
            b = backrun.optimal(other_a, other_b, after[0], after[1], other.fee_bps, fee)
            if b is not None and (best is None or b.profit > best.profit):
                best, best_block = b, min(block, r.block_number)
        if best is None:
            return None, ("valued: no profitable back-run through the other pools of the pair" if others
                          else "not valued: no other pool of the pair with known state")
        return self._figures(best.profit, best.amount_in, path[0], weth_side, BACKRUN_GAS * gas_price, best_block), ""
