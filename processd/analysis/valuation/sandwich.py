"""The optimal sandwich of a victim's swap on one pair, exactly as the pair contract would execute it.

Front-run: the attacker sells ``x`` of the victim's input token into the pair; the victim's swap runs on the
moved reserves (it must still get its ``amountOutMin``, or pay at most its ``amountInMax``); back-run: the
attacker sells what the front-run bought on the reserves the victim left. Profit = back-run output - x, in the
victim's input token. Every step is :mod:`processd.analysis.valuation.amm`'s integer math, and each swap must
give an output > 0 (``UniswapV2: INSUFFICIENT_OUTPUT_AMOUNT``).

Finding x (docs/valuation.md#the-math has the derivation; the closed forms are in
:mod:`processd.analysis.valuation.frontrun`):

0. No search when the victim's trade cannot outweigh two fees (``frontrun.can_gain``).
1. ``x_max``, the largest front-run the victim's bound allows (:func:`bound`): the feasible front-runs are
   ``[0, x_max]``; for a fixed front-run output the victim's condition is one closed-form bound on x, so the exact
   boundary is 1 to 3 plateau steps from the floor of the continuous root (the gallop-and-bisection search
   :func:`max_frontrun` is the fallback). A capital bound (``max_frontrun_in``) ends the range earlier.
2. Where the continuous profit peaks in ``[1, x_max]`` (:func:`_centres`): for an exact-input victim the roots of
   a quadratic (or ``x_max`` when it still rises there); for an exact-output victim the sign change of a quartic,
   by Newton steps on integers.
3. Exact refinement (:func:`_refined`): the integer profit at the left edges of the plateaus of equal front-run
   outputs within :data:`REFINE` of the peak's (where the integer profit is best), and, when plateaus are narrow,
   at every x within :data:`REFINE` of it; the best is taken. tests/processd/test_valuation_math.py checks it
   against an exhaustive search and states the tolerance (1 base unit).

No front-run is ever reported that breaks the victim's bound: the chosen x is checked with the exact predicate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from processd.analysis.valuation import frontrun
from processd.analysis.valuation.amm import V2_FEE_BPS, get_amount_in, min_input_for, swap_out
from processd.analysis.valuation.frontrun import UINT112_MAX

_D = 10_000
#: Integers either side of the candidate front-run whose exact profit is computed.
REFINE = 2


@dataclass(slots=True)  # not frozen: a frozen dataclass costs ~6x to build, and one is built per swap
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


class ExactInVictim:
    """A victim selling exactly ``amount_in`` that needs at least ``need`` from this pair (a :data:`VictimStep`; a
    class, not a closure, so :func:`optimal` can evaluate its front-runs with the victim's swap inline)."""

    __slots__ = ("amount_in", "fee_bps", "need")

    def __init__(self, amount_in: int, need: int, fee_bps: int) -> None:
        self.amount_in = amount_in
        self.need = need
        self.fee_bps = fee_bps

    def __call__(self, r_in: int, r_out: int) -> tuple[int, int] | None:
        amount_in = self.amount_in
        if r_in + amount_in > UINT112_MAX:
            return None
        out = swap_out(amount_in, r_in, r_out, self.fee_bps)
        return (amount_in, out) if out >= self.need else None


def exact_in_victim(amount_in: int, min_out: int, fee_bps: int = V2_FEE_BPS) -> VictimStep:
    """A victim selling exactly ``amount_in`` that needs at least ``min_out`` from this pair."""
    return ExactInVictim(amount_in, min_out if min_out > 0 else 1, fee_bps)


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
    """:func:`run` as a tuple (profit, bought, victim paid, victim got, back-run output): the refinement calls it
    for each point, and a dataclass costs more to build than the arithmetic (the swaps are ``swap_out`` inline)."""
    if x <= 0 or r_in <= 0 or r_out <= 0:
        return None
    gw = _D - fee_bps
    w = x * gw
    bought = w * r_out // (r_in * _D + w)
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
    left = r_out - got
    if left <= 0:
        return None
    w = bought * gw
    back = w * (r_in + paid) // (left * _D + w)
    if back <= 0:
        return None
    return back - x, bought, paid, got, back


def _feasible(x: int, r_in: int, r_out: int, victim: VictimStep, fee_bps: int) -> bool:
    """Whether the victim's swap still holds after a front-run of ``x`` (monotone: true up to x_max, then false).
    A front-run too small to buy anything is judged on the reserves it would leave (it reverts, so :func:`run`
    never reports it, but the predicate stays monotone)."""
    return r_in + x <= UINT112_MAX and victim(r_in + x, r_out - swap_out(x, r_in, r_out, fee_bps)) is not None


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


def _refined(centre: int, r_in: int, r_out: int, x_max: int, fee_bps: int) -> set[int]:
    """The front-runs the exact search evaluates around ``centre``: the least x that buys each front-run output
    within :data:`REFINE` of the centre's (the integer profit is best at the left edge of a plateau of equal
    outputs: within one, the front-run grows by 1 and the back-run's output by at most 1), and, when the plateaus
    are narrow (an output unit costs few units of input), every x within :data:`REFINE` of the centre."""
    bought = swap_out(centre, r_in, r_out, fee_bps)
    xs: set[int] = set()
    edge = min_input_for(bought, r_in, r_out, fee_bps) if bought > 0 else 1
    nxt = min_input_for(bought + 1, r_in, r_out, fee_bps)
    if nxt == 0 or nxt - edge <= 2 * REFINE:
        xs.update(range(max(1, centre - REFINE), min(x_max, centre + REFINE) + 1))
    for b in range(max(1, bought - REFINE), bought + REFINE + 1):
        x = edge if b == bought else nxt if b == bought + 1 else min_input_for(b, r_in, r_out, fee_bps)
        if x > x_max or (x == 0 and b > bought):  # the edges grow with b (0: no input buys b)
            break
        if x >= 1:
            xs.add(x)
    return xs


def bound(r_in: int, r_out: int, victim: VictimStep, *, exact_in_amount: int | None = None, min_out: int = 0,
          exact_out_amount: int | None = None, max_in: int = 0, fee_bps: int = V2_FEE_BPS) -> int:
    """The largest front-run the victim's bound allows (-1: none, not even 0): the closed form of
    :mod:`~processd.analysis.valuation.frontrun` (continuous root, then exact plateau steps), or, when it gives
    no answer, the exact search :func:`max_frontrun`."""
    g = _D - fee_bps
    x: int | None = None
    if exact_in_amount is not None:
        need = min_out if min_out > 0 else 1
        start = frontrun.exact_in_root(r_in, r_out, exact_in_amount, need, g)
        if r_in > 0 and r_out > 0:
            x = frontrun.boundary(r_in, r_out, frontrun.exact_in_limit(r_in, r_out, exact_in_amount, need, g),
                                  start, fee_bps)
    elif exact_out_amount is not None:
        start = frontrun.exact_out_root(r_in, r_out, exact_out_amount, max_in, g)
        if r_in > 0 and r_out > 0 and exact_out_amount > 0:
            x = frontrun.boundary(r_in, r_out, frontrun.exact_out_limit(r_in, r_out, exact_out_amount, max_in, g),
                                  start, fee_bps)
            # The limit leaves out the uint112 cap of the victim's payment: check the answer where it can matter.
            if x is not None and x >= 0 and r_in + x + max_in > UINT112_MAX and (
                    not _feasible(x, r_in, r_out, victim, fee_bps) or _feasible(x + 1, r_in, r_out, victim, fee_bps)):
                x = None
    else:
        start = 0
    return x if x is not None else max_frontrun(r_in, r_out, victim, start, fee_bps)


def optimal(r_in: int, r_out: int, victim: VictimStep, *, exact_in_amount: int | None = None, min_out: int = 0,
            exact_out_amount: int | None = None, max_in: int = 0, fee_bps: int = V2_FEE_BPS,
            max_frontrun_in: int | None = None) -> Sandwich | None:
    """The most profitable sandwich of ``victim`` on the pair (module doc); None when none gains.

    Give ``exact_in_amount`` (and ``min_out``, the least this pair must give the victim) for an exact-input victim
    or ``exact_out_amount`` (and ``max_in``) for an exact-output one: they feed the closed forms; ``victim`` is the
    exact step (:func:`exact_in_victim`, :func:`exact_out_victim`). ``max_frontrun_in``: the attacker's capital,
    the largest front-run it may use (None: bounded by the victim only); the optimum within it (the profit's
    shape is the same, the range ends earlier).
    """
    largest = exact_in_amount if exact_in_amount is not None else max_in if exact_out_amount is not None else None
    if largest is not None and not frontrun.can_gain(r_in, largest, _D - fee_bps):
        return None
    x_max = bound(r_in, r_out, victim, exact_in_amount=exact_in_amount, min_out=min_out,
                  exact_out_amount=exact_out_amount, max_in=max_in, fee_bps=fee_bps)
    top = x_max if max_frontrun_in is None or max_frontrun_in >= x_max else max_frontrun_in
    if top < 1:
        return None
    best: tuple[int, int, int, int, int] | None = None
    best_x = 0
    xs: set[int] = set()
    for centre in _centres(r_in, r_out, victim, top, exact_in_amount, exact_out_amount, fee_bps):
        xs |= _refined(centre, r_in, r_out, top, fee_bps)
    if type(victim) is ExactInVictim:
        best_x, best = _best_exact_in(sorted(xs), r_in, r_out, victim, fee_bps)
    else:
        for x in sorted(xs):  # ties: the smallest x
            legs = _legs(x, r_in, r_out, victim, fee_bps)
            if legs is not None and (best is None or legs[0] > best[0]):
                best, best_x = legs, x
    if best is None or best[0] <= 0:
        return None
    return Sandwich(best_x, best[1], best[2], best[3], best[4], best[0], x_max)


def _best_exact_in(xs: list[int], r_in: int, r_out: int, victim: ExactInVictim,
                   fee_bps: int) -> tuple[int, tuple[int, int, int, int, int] | None]:
    """(x, :func:`_legs` of x) of the most profitable front-run of ``xs`` (ties: the first) against an exact-input
    victim, its swap inline (the same integer steps as :func:`_legs` with the victim's ``__call__``: this loop is
    most of a valued swap's refinement)."""
    best: tuple[int, int, int, int, int] | None = None
    best_x = 0
    if r_in <= 0 or r_out <= 0:
        return best_x, best
    gw = _D - fee_bps
    paid, need = victim.amount_in, victim.need
    vw = paid * (_D - victim.fee_bps)
    scaled = r_in * _D
    for x in xs:
        if x <= 0:
            continue
        w = x * gw
        bought = w * r_out // (scaled + w)
        if bought <= 0:
            continue
        moved_in, moved_out = r_in + x, r_out - bought
        if moved_in > UINT112_MAX or moved_in + paid > UINT112_MAX:  # the pair's uint112 balances
            continue
        got = vw * moved_out // (moved_in * _D + vw) if paid > 0 and moved_out > 0 else 0
        if got < need:
            continue
        left = moved_out - got
        if left <= 0:
            continue
        w = bought * gw
        back = w * (moved_in + paid) // (left * _D + w)
        if back > 0 and (best is None or back - x > best[0]):
            best, best_x = (back - x, bought, paid, got, back), x
    return best_x, best


def _centres(r_in: int, r_out: int, victim: VictimStep, x_max: int, exact_in_amount: int | None,
             exact_out_amount: int | None, fee_bps: int) -> list[int]:
    """Where the continuous profit peaks in ``[1, x_max]`` (module doc, step 2): an exact-input victim's local
    maxima of the closed form and ``x_max`` when the profit still rises there; an exact-output victim's peak of the
    slope quartic; without either amount, ``x_max``."""
    g = _D - fee_bps
    if exact_in_amount is not None:
        slope = alpha, beta, gamma = frontrun.slope_quadratic(r_in, exact_in_amount, g)
        rising = alpha * x_max * x_max + beta * x_max + gamma >= 0
        if rising and alpha + beta + gamma >= 0:
            # Rising at both ends: no interior peak when the slope quadratic is concave, or convex with its lowest
            # point outside (1, x_max) or not below 0 there (no square root needed).
            low = -beta // (2 * alpha) if alpha > 0 else 0
            if alpha <= 0 or not 1 < low < x_max or (alpha * low * low + beta * low + gamma >= 0
                                                      and alpha * (low + 1) ** 2 + beta * (low + 1) + gamma >= 0):
                return [x_max]
        out = [c for c in frontrun.exact_in_peaks(r_in, exact_in_amount, g, slope)
               if 1 <= c < x_max and alpha * (c + 1) ** 2 + beta * (c + 1) + gamma < 0]  # falls after c: a maximum
        if rising:
            out.append(x_max)
        elif not out:  # falling on the whole range: the least front-run (rarely profitable), and the bound
            out += [1, x_max]
        return out
    if exact_out_amount is not None:
        now = victim(r_in, r_out)
        guesses = frontrun.exact_in_peaks(r_in, now[0], g) if now is not None else []
        guess = guesses[-1] if guesses else x_max // 2
        return [frontrun.exact_out_peak(r_in, r_out, exact_out_amount, x_max, g, guess)]
    return [x_max]
