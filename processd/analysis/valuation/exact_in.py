"""The best sandwich of an exact-input victim (most router swaps), with :func:`sandwich.optimal`'s steps fused.

:func:`optimal_exact_in` gives exactly what :func:`~processd.analysis.valuation.sandwich.optimal` gives for an
:func:`~processd.analysis.valuation.sandwich.exact_in_victim` (tests/processd/test_valuation_exact_in.py checks it
equal, field for field, on derandomized pools small and large): the no-gain test, the largest front-run (the
continuous root, then the plateau walk of :func:`frontrun.boundary`), the peaks of the slope quadratic, the
exact refinement and the best of its candidates. It is the same integer arithmetic in one frame, with the terms
the steps share (``C0``, ``C1``, ``D r + g a``) computed once: a valued swap's sandwich is most of the valuation's
CPU, and there the Python calls and the recomputed terms cost as much as the arithmetic itself.

One shortcut, exact: where one unit of input buys at least one unit of output around the candidate (the
output token has more base units per unit of value, or the pool is deep), every plateau of equal outputs is one
front-run wide, so the plateau edges the refinement adds are the front-runs within :data:`~.sandwich.REFINE` of
the candidate, which it adds anyway: their ``min_input_for`` is not computed (module :mod:`.sandwich`, step 3).
"""

from __future__ import annotations

from math import isqrt

from processd.analysis.valuation.amm import V2_FEE_BPS, one_unit_plateaus
from processd.analysis.valuation.frontrun import MAX_STEPS, UINT112_MAX
from processd.analysis.valuation.sandwich import REFINE, Sandwich, exact_in_victim, max_frontrun, optimal

_D = 10_000
_D2 = _D * _D
_D3 = _D * _D * _D


def optimal_exact_in(r: int, s: int, amount_in: int, need: int, fee_bps: int = V2_FEE_BPS,
                     max_frontrun_in: int | None = None) -> Sandwich | None:
    """``sandwich.optimal(r, s, exact_in_victim(amount_in, need, fee_bps), exact_in_amount=amount_in,
    min_out=need, fee_bps=fee_bps, max_frontrun_in=max_frontrun_in)``, computed in one frame (module doc)."""
    if need <= 0:
        need = 1
    if r <= 0 or s <= 0:  # an empty pool (never valued in practice): the general path's own guards
        return optimal(r, s, exact_in_victim(amount_in, need, fee_bps), exact_in_amount=amount_in, min_out=need,
                       fee_bps=fee_bps, max_frontrun_in=max_frontrun_in)
    a = amount_in
    g = _D - fee_bps
    gg = g * g
    dr = _D * r
    drga = dr + g * a
    c0 = gg * (r + a) * drga - _D3 * r * r
    c1 = gg * (r + a) - _D2 * r
    if c0 <= 0 and c1 <= 0:  # frontrun.can_gain
        return None
    x_max = _bound(r, s, a, need, g, drga)
    if x_max is None:
        x_max = max_frontrun(r, s, exact_in_victim(a, need, fee_bps), _root(r, s, a, need, g, drga), fee_bps)
    top = x_max if max_frontrun_in is None or max_frontrun_in >= x_max else max_frontrun_in
    if top < 1:
        return None
    centres = _centres(r, c0, c1, gg, drga, top)
    c = centres[0]
    if len(centres) == 1 and c >= 3 and g * s * dr >= (dr + (c + 1) * g) * (dr + (c + 2) * g):
        # One centre (most swaps) whose plateaus are one front-run wide (amm.one_unit_plateaus, inline): what
        # _refine adds is this range, already sorted, so no set is built (the same candidates in the same order)
        best_x, best = _best(range(c - REFINE, (top if top < c + REFINE else c + REFINE) + 1), r, s, a, need, g)
    else:
        xs: set[int] = set()
        for centre in centres:
            _refine(xs, centre, r, s, g, top)
        best_x, best = _best(sorted(xs), r, s, a, need, g)
    if best is None or best[0] <= 0:
        return None
    return Sandwich(best_x, best[1], best[2], best[3], best[4], best[0], x_max)


def _root(r: int, s: int, a: int, need: int, g: int, drga: int) -> int:
    """``frontrun.exact_in_root``: the floor of the continuous largest front-run; -1 when none."""
    dr = _D * r
    a2 = need * _D * g
    b = need * (_D2 * r + g * drga)
    c = need * drga * dr - g * a * s * dr
    if c > 0:
        return -1
    return (isqrt(b * b - 4 * a2 * c) - b) // (2 * a2)


def _bound(r: int, s: int, a: int, need: int, g: int, drga: int) -> int | None:
    """``frontrun.boundary`` of the exact-input limit from the continuous root, inline; None: the caller searches
    (``sandwich.max_frontrun``), as :func:`sandwich.bound` does. ``r``, ``s`` > 0."""
    rd = r * _D
    nd = need * _D
    c = need * drga * rd - g * a * s * rd  # _root, inline (one call less per valued swap)
    if c > 0:
        start = -1
    else:
        a2 = nd * g
        b = need * (_D2 * r + g * drga)
        start = (isqrt(b * b - 4 * a2 * c) - b) // (2 * a2)
    ag = a * g
    cap = UINT112_MAX - r - a
    x = start if start > 0 else 0
    f = x * g * s // (rd + x * g) if x > 0 else 0  # swap_out
    lim = ag * (s - f - need) // nd - r  # the limit at f
    if lim > cap:
        lim = cap
    if x > lim:
        return -1 if x == 0 else None
    for _ in range(MAX_STEPS):
        f += 1  # min_input_for(f + 1): the first x of the next plateau
        if f >= s:
            return lim
        nxt = -(-(rd * f) // ((s - f) * g))
        if lim < nxt:
            return lim
        w = nxt * g
        f = w * s // (rd + w)
        lim_next = ag * (s - f - need) // nd - r
        if lim_next > cap:
            lim_next = cap
        if nxt > lim_next:
            return nxt - 1
        lim = lim_next
    return None


def _centres(r: int, c0: int, c1: int, gg: int, drga: int, top: int) -> list[int]:
    """``sandwich._centres`` of an exact-input victim (``frontrun.slope_quadratic``'s coefficients from the shared
    ``C0``, ``C1``)."""
    rr = r * r
    alpha = c1 * (_D3 * r + gg * drga) - c0 * gg
    beta = 2 * c1 * rr * _D3
    gamma = c0 * rr * _D2
    # The slope quadratic's values by Horner's rule: (alpha x + beta) x + gamma, the same integers.
    rising = (alpha * top + beta) * top + gamma >= 0
    if rising and alpha + beta + gamma >= 0:
        low = -beta // (2 * alpha) if alpha > 0 else 0
        if alpha <= 0 or not 1 < low < top or ((alpha * low + beta) * low + gamma >= 0
                                                and (alpha * (low + 1) + beta) * (low + 1) + gamma >= 0):
            return [top]
    if alpha == 0:  # frontrun.exact_in_peaks
        peaks = [-gamma // beta] if beta else []
    else:
        disc = beta * beta - 4 * alpha * gamma
        if disc < 0:
            peaks = []
        else:
            root = isqrt(disc)
            peaks = sorted(x for x in {(-beta + root) // (2 * alpha), (-beta - root) // (2 * alpha)} if x >= 0)
    out = [c for c in peaks if 1 <= c < top and (alpha * (c + 1) + beta) * (c + 1) + gamma < 0]
    if rising:
        out.append(top)
    elif not out:
        out += [1, top]
    return out


def _refine(xs: set[int], centre: int, r: int, s: int, g: int, top: int) -> None:
    """Adds ``sandwich._refined(centre, r, s, top, fee)`` to ``xs``.

    Shortcut (module doc): when the plateaus are one front-run wide around the centre (:func:`.amm.one_unit_plateaus`)
    the least x buying ``out(centre) + k`` is within ``[centre - 2, centre + 2]`` for each ``k`` in ``[-2, 2]``
    (``centre`` itself for k = 0, ``centre + 1`` for k = 1) and the refinement adds that whole range, capped at
    ``top``, anyway: the edges add nothing to it."""
    rd = r * _D
    if one_unit_plateaus(centre, rd, s, g):
        xs.update(range(centre - REFINE, (top if top < centre + REFINE else centre + REFINE) + 1))
        return
    bought = centre * g * s // (rd + centre * g) if centre > 0 else 0  # swap_out
    edge = -(-(rd * bought) // ((s - bought) * g)) if bought > 0 else 1  # min_input_for (bought < s)
    nxt = -(-(rd * (bought + 1)) // ((s - bought - 1) * g)) if bought + 1 < s else 0
    if nxt == 0 or nxt - edge <= 2 * REFINE:
        xs.update(range(max(1, centre - REFINE), min(top, centre + REFINE) + 1))
    for b in range(max(1, bought - REFINE), bought + REFINE + 1):
        if b == bought:
            x = edge
        elif b == bought + 1:
            x = nxt
        else:
            x = -(-(rd * b) // ((s - b) * g)) if b < s else 0
        if x > top or (x == 0 and b > bought):  # the edges grow with b (0: no input buys b)
            break
        if x >= 1:
            xs.add(x)


def _best(xs: list[int] | range, r_in: int, r_out: int, paid: int, need: int,
          g: int) -> tuple[int, tuple[int, int, int, int, int] | None]:
    """``sandwich._best_exact_in``: (x, (profit, bought, paid, got, back-run output)) of the most profitable
    front-run of ``xs`` (ascending, each at least 1; ties: the first).

    The pair's guards that cannot fail here are left out (each costs as much as an operation of the arithmetic,
    for 3 to 6 front-runs per valued swap): with ``r_in``, ``r_out`` and ``paid`` positive, a swap's output is
    below the reserve it is taken from (``bought < r_out``, ``got < r_out - bought``), so no reserve it leaves is
    empty; and ``r_in + x + paid`` within uint112 implies ``r_in + x`` within it."""
    if r_in <= 0 or r_out <= 0 or paid <= 0:  # no victim output (got = 0 < need): nothing is feasible
        return 0, None
    best_x = best_p = best_bought = best_got = best_back = 0
    found = False
    vw = paid * g
    scaled = r_in * _D
    cap = UINT112_MAX - paid - r_in
    for x in xs:
        w = x * g
        bought = w * r_out // (scaled + w)
        if bought <= 0 or x > cap:  # cap: the pair's uint112 balances (r_in + x + paid)
            continue
        moved_out = r_out - bought
        moved_in_d = scaled + x * _D
        got = vw * moved_out // (moved_in_d + vw)
        if got < need:
            continue
        w = bought * g
        back = w * (r_in + x + paid) // ((moved_out - got) * _D + w)
        if back > 0 and (not found or back - x > best_p):
            found, best_x, best_p, best_bought, best_got, best_back = True, x, back - x, bought, got, back
    return (best_x, (best_p, best_bought, paid, best_got, best_back)) if found else (0, None)
