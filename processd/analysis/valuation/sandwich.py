"""The optimal sandwich of a victim's swap on one pair, exactly as the pair contract would execute it.

Front-run: the attacker sells ``x`` of the victim's input token into the pair; the victim's swap runs on the
moved reserves (it must still get its ``amountOutMin``, or pay at most its ``amountInMax``); back-run: the
attacker sells what the front-run bought on the reserves the victim left. Profit = back-run output - x, in the
victim's input token. Every step is :mod:`processd.analysis.valuation.amm`'s integer math, and each swap must
give an output > 0 (``UniswapV2: INSUFFICIENT_OUTPUT_AMOUNT``).

Finding x (docs/valuation.md#sandwich has the derivation):

1. ``x_max``, the largest front-run the victim's bound allows: the victim's output falls (or its input rises)
   monotonically with x, so the feasible front-runs are ``[0, x_max]``. The bound, with the fee and without the
   floors, is a quadratic in x (closed form with ``math.isqrt``); the exact integer boundary is then found by
   galloping and bisection on the exact predicate.
2. For an exact-input victim, the continuous profit is ``P(x) = x (C1 x + C0) / (g^2 x^2 + E x + R^2)`` (the
   output-side reserve cancels), whose derivative vanishes on a quadratic: its roots in ``[1, x_max]`` and
   ``x_max`` itself are the only candidates. For an exact-output victim (its input depends on x) a golden-section
   search over the exact integer profit gives the candidate.
3. Exact local refinement: the integer profit of every x within :data:`REFINE` of the candidate is computed and
   the best taken. The floors put the integer profit within a few units of the continuous one, so the result is
   within a few units of the true integer maximum; tests/processd/test_valuation_sandwich.py checks it against an
   exhaustive search and states the tolerance.

No front-run is ever reported that breaks the victim's bound: the chosen x is checked with the exact predicate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import isqrt

from processd.analysis.valuation.amm import V2_FEE_BPS, get_amount_in, min_input_for, swap_out

_D = 10_000
#: A pair's reserves are uint112: a swap that would leave a balance above this reverts (UniswapV2: OVERFLOW).
UINT112_MAX = (1 << 112) - 1
#: Integers either side of the candidate front-run whose exact profit is computed.
REFINE = 2
#: Golden-section iterations stop when the bracket is this narrow (then the exact refinement scans it).
_GOLDEN_STOP = 2 * REFINE


@dataclass(frozen=True, slots=True)
class Sandwich:
    """The best sandwich found: front-run size and outputs, the victim's amounts, profit in the input token."""

    frontrun_in: int
    frontrun_out: int
    victim_in: int
    victim_out: int
    backrun_out: int
    #: backrun_out - frontrun_in, > 0 (a sandwich that does not gain is not reported).
    profit: int
    #: The largest front-run the victim's bound allowed.
    max_frontrun: int


#: (victim's input, victim's output) on the moved reserves (reserve in, reserve out); None when the victim's swap
#: would revert (its bound broken, or an output of 0).
VictimStep = Callable[[int, int], "tuple[int, int] | None"]


def exact_in_victim(amount_in: int, min_out: int, fee_bps: int = V2_FEE_BPS) -> VictimStep:
    """A victim selling exactly ``amount_in`` that needs at least ``min_out`` from this pair."""
    need = min_out if min_out > 0 else 1

    def step(r_in: int, r_out: int) -> tuple[int, int] | None:
        if r_in + amount_in > UINT112_MAX:
            return None
        out = swap_out(amount_in, r_in, r_out, fee_bps)
        return (amount_in, out) if out >= need else None

    return step


def exact_out_victim(amount_out: int, max_in: int, fee_bps: int = V2_FEE_BPS) -> VictimStep:
    """A victim buying exactly ``amount_out`` from this pair for at most ``max_in``."""

    def step(r_in: int, r_out: int) -> tuple[int, int] | None:
        if amount_out <= 0 or amount_out >= r_out or r_in <= 0:
            return None
        paid = get_amount_in(amount_out, r_in, r_out, fee_bps)
        return (paid, amount_out) if paid <= max_in and r_in + paid <= UINT112_MAX else None

    return step


def run(x: int, r_in: int, r_out: int, victim: VictimStep, fee_bps: int = V2_FEE_BPS) -> Sandwich | None:
    """The sandwich with front-run ``x``, step by step on exact reserves; None when any leg would revert."""
    legs = _legs(x, r_in, r_out, victim, fee_bps)
    return None if legs is None else Sandwich(x, legs[1], legs[2], legs[3], legs[4], legs[0], 0)


def _legs(x: int, r_in: int, r_out: int, victim: VictimStep, fee_bps: int) -> tuple[int, int, int, int, int] | None:
    """:func:`run` as a tuple (profit, bought, victim paid, victim got, back-run output): the searches call it
    hundreds of times, and a frozen dataclass costs more to build than the arithmetic."""
    bought = swap_out(x, r_in, r_out, fee_bps)
    if bought <= 0:
        return None
    r_in += x
    r_out -= bought
    if r_in > UINT112_MAX:
        return None
    step = victim(r_in, r_out)
    if step is None:
        return None
    paid, got = step
    back = swap_out(bought, r_out - got, r_in + paid, fee_bps)
    if back <= 0:
        return None
    return back - x, bought, paid, got, back


def _profit(x: int, r_in: int, r_out: int, victim: VictimStep, fee_bps: int) -> int | None:
    legs = _legs(x, r_in, r_out, victim, fee_bps)
    return None if legs is None else legs[0]


def _feasible(x: int, r_in: int, r_out: int, victim: VictimStep, fee_bps: int) -> bool:
    """Whether the victim's swap still holds after a front-run of ``x`` (monotone: true up to x_max, then false).
    A front-run too small to buy anything is judged on the reserves it would leave (it reverts, so :func:`run`
    never reports it, but the predicate stays monotone)."""
    return r_in + x <= UINT112_MAX and victim(r_in + x, r_out - swap_out(x, r_in, r_out, fee_bps)) is not None


def _exact_in_root(r_in: int, r_out: int, amount_in: int, need: int, g: int) -> int:
    """The largest x (continuous, fee included, no floors) for which the victim still gets ``need``; -1 if none."""
    a2 = need * _D * g
    b = need * (_D * _D * r_in + g * (_D * r_in + g * amount_in))
    c = need * (_D * r_in + g * amount_in) * _D * r_in - g * amount_in * r_out * _D * r_in
    return _root(a2, b, c)


def _exact_out_root(r_in: int, r_out: int, amount_out: int, max_in: int, g: int) -> int:
    """The largest x (continuous) for which the exact-output victim pays at most ``max_in``; -1 if none."""
    a2 = _D * amount_out * g
    b = _D * amount_out * (_D * r_in + g * r_in) + g * g * max_in * amount_out
    c = _D * amount_out * _D * r_in * r_in - g * max_in * (r_out * _D * r_in - amount_out * _D * r_in)
    return _root(a2, b, c)


def _root(a2: int, b: int, c: int) -> int:
    """floor of the positive root of a2 x^2 + b x + c (a2 > 0, b >= 0); -1 when c > 0 (no x >= 0 satisfies <= 0)."""
    if c > 0:
        return -1
    return (isqrt(b * b - 4 * a2 * c) - b) // (2 * a2)


def max_frontrun(r_in: int, r_out: int, victim: VictimStep, start: int, fee_bps: int = V2_FEE_BPS) -> int:
    """The largest x whose sandwich leaves the victim's swap valid (exact: gallop + bisection on the predicate
    from the closed-form ``start``); -1 when even x = 0 breaks the victim's bound."""
    if not _feasible(0, r_in, r_out, victim, fee_bps):
        return -1
    lo = max(0, start)
    # The closed form leaves out the floors, which move the boundary by a few units of the victim's output: about
    # r_in / r_out units of x each (far more than 1 when the output token has fewer decimals), so the gallop
    # starts at that width instead of 1 (any start is exact; this one saves steps).
    first = r_in // r_out if r_out > 0 and r_in > r_out else 1
    if not _feasible(lo, r_in, r_out, victim, fee_bps):
        step = first
        hi = lo
        while True:  # gallop down to a feasible x (0 is)
            lo = max(0, hi - step)
            if _feasible(lo, r_in, r_out, victim, fee_bps):
                break
            hi = lo
            step *= 2
    else:
        step = first
        while True:  # gallop up to an infeasible x (one exists: the victim's output reaches 0)
            hi = lo + step
            if not _feasible(hi, r_in, r_out, victim, fee_bps):
                break
            lo = hi
            step *= 2
    while hi - lo > 1:  # lo feasible, hi not
        mid = (lo + hi) // 2
        if _feasible(mid, r_in, r_out, victim, fee_bps):
            lo = mid
        else:
            hi = mid
    return lo


def _slope_quadratic(r_in: int, amount_in: int, g: int) -> tuple[int, int, int]:
    """(alpha, beta, gamma): P'(x) of an exact-input victim has the sign of alpha x^2 + beta x + gamma.

    With q = g/D: P = x (C1 x + C0) / (q^2 x^2 + E x + R^2); P' = 0 on (C1 E - C0 q^2) x^2 + 2 C1 R^2 x + C0 R^2 = 0.
    Every term is scaled by D^5 to stay in integers.
    """
    r, a, d = r_in, amount_in, _D
    # Scaled by D^3: C0 = q^2 (R + a)(R + q a) - R^2, C1 = q^2 (R + a) - R (scaled by D^2), E = R + q^2 (R + q a).
    c0 = g * g * (r + a) * (d * r + g * a) - d ** 3 * r * r          # * D^3
    c1 = g * g * (r + a) - d * d * r                                  # * D^2
    e = d ** 3 * r + g * g * (d * r + g * a)                          # * D^3
    alpha = c1 * e - c0 * g * g                                       # * D^5
    beta = 2 * c1 * r * r * d ** 3                                    # * D^5
    gamma = c0 * r * r * d * d                                        # * D^5
    return alpha, beta, gamma


def _critical_points(r_in: int, amount_in: int, g: int) -> list[int]:
    """Non-negative roots (floored) of P'(x) = 0 for an exact-input victim (module doc, step 2), in units of x."""
    alpha, beta, gamma = _slope_quadratic(r_in, amount_in, g)
    if alpha == 0:
        return [-gamma // beta] if beta else []
    disc = beta * beta - 4 * alpha * gamma
    if disc < 0:
        return []
    s = isqrt(disc)
    roots = {(-beta + s) // (2 * alpha), (-beta - s) // (2 * alpha)}
    return sorted(x for x in roots if x >= 0)


def _rising_at(x: int, r_in: int, r_out: int, victim: VictimStep, g: int, fee_bps: int) -> bool:
    """Whether an exact-output victim's sandwich profit still rises at ``x`` (then, the profit being unimodal, its
    maximum is at the bound x_max: no search needed). Its derivative is that of an exact-input victim paying the
    same ``a`` plus a positive term (a larger victim input gains more, and the input grows with x), so a
    non-negative exact-input slope at (x, a(x)) is enough."""
    step = victim(r_in + x, r_out - swap_out(x, r_in, r_out, fee_bps))
    if step is None:
        return False
    alpha, beta, gamma = _slope_quadratic(r_in, step[0], g)
    return alpha * x * x + beta * x + gamma >= 0


def _golden(r_in: int, r_out: int, victim: VictimStep, fee_bps: int, hi: int) -> int:
    """Golden-section search of the exact integer profit over [1, hi] (an infeasible leg counts as no profit)."""
    def f(x: int) -> int:
        p = _profit(x, r_in, r_out, victim, fee_bps)
        return -(1 << 512) if p is None else p

    lo = 1
    # 0.618... as a fraction of integers: the bracket shrinks to 61.8% per step.
    m1 = hi - (hi - lo) * 610 // 987
    m2 = lo + (hi - lo) * 610 // 987
    f1, f2 = f(m1), f(m2)
    while hi - lo > _GOLDEN_STOP:
        if f1 < f2:
            lo = m1
            m1, f1 = m2, f2
            m2 = lo + (hi - lo) * 610 // 987
            f2 = f(m2)
        else:
            hi = m2
            m2, f2 = m1, f1
            m1 = hi - (hi - lo) * 610 // 987
            f1 = f(m1)
        if m1 > m2:
            m1, m2, f1, f2 = m2, m1, f2, f1
    return (lo + hi) // 2


def _refined(candidates: list[int], r_in: int, r_out: int, x_max: int, fee_bps: int) -> set[int]:
    """The front-runs the exact search evaluates: every x within :data:`REFINE` of a candidate, and, for every
    front-run output within :data:`REFINE` of a candidate's, the least x that buys it (the integer profit is best
    at the left edge of each plateau of equal outputs, which can be wider than the x window)."""
    xs: set[int] = set()
    for centre in candidates:
        xs.update(range(max(1, centre - REFINE), min(x_max, centre + REFINE) + 1))
        bought = swap_out(centre, r_in, r_out, fee_bps)
        for b in range(max(1, bought - REFINE), bought + REFINE + 1):
            x = min_input_for(b, r_in, r_out, fee_bps)
            if 1 <= x <= x_max:
                xs.add(x)
    return xs


def optimal(r_in: int, r_out: int, victim: VictimStep, *, exact_in_amount: int | None = None, min_out: int = 0,
            exact_out_amount: int | None = None, max_in: int = 0, fee_bps: int = V2_FEE_BPS) -> Sandwich | None:
    """The most profitable sandwich of ``victim`` on the pair (module doc); None when none gains.

    Give ``exact_in_amount`` (and ``min_out``, the least this pair must give the victim) for an exact-input victim
    or ``exact_out_amount`` (and ``max_in``) for an exact-output one: they feed the closed forms; ``victim`` is the
    exact step (:func:`exact_in_victim`, :func:`exact_out_victim`).
    """
    g = _D - fee_bps
    if exact_in_amount is not None:
        start = _exact_in_root(r_in, r_out, exact_in_amount, min_out if min_out > 0 else 1, g)
    elif exact_out_amount is not None:
        start = _exact_out_root(r_in, r_out, exact_out_amount, max_in, g)
    else:
        start = 0
    x_max = max_frontrun(r_in, r_out, victim, start, fee_bps)
    if x_max < 1:
        return None
    if exact_in_amount is not None:
        candidates = [x for x in _critical_points(r_in, exact_in_amount, g) if 1 <= x <= x_max] + [x_max]
    elif _rising_at(x_max, r_in, r_out, victim, g, fee_bps):
        candidates = [x_max]
    else:
        candidates = [_golden(r_in, r_out, victim, fee_bps, x_max), x_max]
    best: tuple[int, int, int, int, int] | None = None
    best_x = 0
    for x in sorted(_refined(candidates, r_in, r_out, x_max, fee_bps)):  # ties: the smallest x
        legs = _legs(x, r_in, r_out, victim, fee_bps)
        if legs is not None and (best is None or legs[0] > best[0]):
            best, best_x = legs, x
    if best is None or best[0] <= 0:
        return None
    return Sandwich(best_x, best[1], best[2], best[3], best[4], best[0], x_max)
