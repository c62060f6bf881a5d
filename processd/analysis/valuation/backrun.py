"""The optimal back-run of a victim's swap: an arbitrage between the pool the victim moved and another pool of the
same pair (another factory), in one transaction after the victim's.

The victim sold token A for token B on pool V, so B is dearer on V than before. The back-run sells ``x`` of A on
the other pool O for B, and that B on V for A: profit = output - x, in token A. The two swaps compose into
``z = K x / (L + M x)`` (fees included, floors left out), maximal at ``x* = (sqrt(K L) - L) / M`` (integer square
root), profitable only when K > L. The exact integer profit is then computed at the left edges of the plateaus
of equal middle amounts within :data:`REFINE` of x*'s (and, when they are narrow, at every x within :data:`REFINE`
of x*) and the best taken (docs/valuation.md#the-math).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import isqrt

from processd.analysis.valuation.amm import V2_FEE_BPS, swap_out

_D = 10_000
#: Integers either side of the closed-form optimum whose exact profit is computed.
REFINE = 2


@dataclass(slots=True)  # not frozen: a frozen dataclass costs ~6x to build, and one is built per swap
class Backrun:
    """The best back-run: amount of token A sold on the other pool, B bought there, A received on the victim's."""

    amount_in: int
    middle: int
    amount_out: int
    #: amount_out - amount_in, > 0.
    profit: int


def run(x: int, other_a: int, other_b: int, victim_b: int, victim_a: int, other_fee_bps: int = V2_FEE_BPS,
        victim_fee_bps: int = V2_FEE_BPS) -> Backrun | None:
    """The two swaps with input ``x`` on exact reserves; None when either would revert (an output of 0)."""
    mid = swap_out(x, other_a, other_b, other_fee_bps)
    if mid <= 0:
        return None
    out = swap_out(mid, victim_b, victim_a, victim_fee_bps)
    if out <= 0:
        return None
    return Backrun(x, mid, out, out - x)


def optimal(other_a: int, other_b: int, victim_b: int, victim_a: int, other_fee_bps: int = V2_FEE_BPS,
            victim_fee_bps: int = V2_FEE_BPS) -> Backrun | None:
    """The most profitable back-run through the other pool (reserves ``other_a``, ``other_b``) and the victim's
    pool after the victim (``victim_b``, ``victim_a``); None when no x gains."""
    if other_a <= 0 or other_b <= 0 or victim_b <= 0 or victim_a <= 0:
        return None
    go, gv = _D - other_fee_bps, _D - victim_fee_bps
    k = gv * go * other_b * victim_a
    lo = _D * _D * victim_b * other_a
    if k <= lo:
        return None  # the marginal rate at x = 0 is below 1: no back-run gains (most swaps: nothing else computed)
    m = go * (_D * victim_b + gv * other_b)
    centre = (isqrt(k * lo) - lo) // m
    oa, vb = other_a * _D, victim_b * _D
    # amm.one_unit_plateaus(centre, oa, other_b, go), inline (one call less per back-run searched)
    xs = range(centre - REFINE, centre + REFINE + 1) if centre >= 3 and go * other_b * oa >= (
        (oa + (centre + 1) * go) * (oa + (centre + 2) * go)) else _refined(centre, oa, other_b, go)
    best_x, best, best_middle = 0, 0, 0
    for x in xs:  # swap_out twice, inline; ties: the smallest x
        w = x * go
        middle = w * other_b // (oa + w)
        if middle <= 0:
            continue
        w = middle * gv
        profit = w * victim_a // (vb + w) - x
        if profit > best:
            best_x, best, best_middle = x, profit, middle
    # The best's legs as :func:`run` gives them (profit > 0: both outputs are positive).
    return Backrun(best_x, best_middle, best + best_x, best) if best > 0 else None


def _refined(centre: int, oa: int, other_b: int, go: int) -> list[int]:
    """The back-runs whose exact profit is computed around ``centre`` (``oa``: the other pool's input reserve times
    10,000, ``go``: 10,000 minus its fee), ascending: every x within :data:`REFINE` of it when a middle amount
    costs few units of A (narrow plateaus), and the least x buying each middle amount within :data:`REFINE` of
    the centre's: within a plateau of equal middle amounts the output is the same and the input grows, so the
    profit is best at its left edge. (Where every plateau is one x wide, :func:`one_unit_plateaus`, those edges
    are the x within :data:`REFINE`: :func:`optimal` takes that range without this.)"""
    mid = centre * go * other_b // (oa + centre * go) if centre > 0 else 0  # swap_out
    edge = -(-(oa * mid) // ((other_b - mid) * go)) if mid > 0 else 1  # min_input_for (mid < other_b)
    nxt = -(-(oa * (mid + 1)) // ((other_b - mid - 1) * go)) if mid + 1 < other_b else 0
    xs = set(range(max(1, centre - REFINE), centre + REFINE + 1)) if nxt == 0 or nxt - edge <= 2 * REFINE else set()
    for amount in range(max(1, mid - REFINE), mid + REFINE + 1):
        if amount == mid:
            x = edge
        elif amount == mid + 1:
            x = nxt
        else:
            x = -(-(oa * amount) // ((other_b - amount) * go)) if amount < other_b else 0
        if x >= 1:
            xs.add(x)
    return sorted(xs)
