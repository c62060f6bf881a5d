"""The valuation's fast paths give what the plain ones give: the fused exact-input sandwich (valuation/exact_in.py)
what sandwich.optimal gives, field for field; the back-run with the one-unit-plateau shortcut what the one without
it does; an exact-output victim's slope quartic evaluated from its factors what its coefficients give
(derandomized properties). sandwich.optimal itself is checked against the exhaustive search in
test_valuation_math.py."""

from __future__ import annotations

from math import isqrt

from hypothesis import given, settings
from hypothesis import strategies as st

from processd.analysis.valuation import backrun, exact_in, frontrun, sandwich
from processd.analysis.valuation.amm import min_input_for, one_unit_plateaus, swap_out

FEES = st.sampled_from([30, 30, 25, 0, 100, 9_000])
#: Slippage of the victim's bound, basis points (0: none left; 10,000: amountOutMin 0).
SLACK = st.sampled_from([0, 1, 10, 50, 100, 500, 3_000, 10_000])


def reference_backrun(other_a: int, other_b: int, victim_b: int, victim_a: int, other_fee_bps: int,
                      victim_fee_bps: int) -> backrun.Backrun | None:
    """backrun.optimal before the one-unit-plateau shortcut (its candidates built with min_input_for)."""
    d = 10_000
    if min(other_a, other_b, victim_b, victim_a) <= 0:
        return None
    go, gv = d - other_fee_bps, d - victim_fee_bps
    k, lo = gv * go * other_b * victim_a, d * d * victim_b * other_a
    if k <= lo:
        return None
    centre = (isqrt(k * lo) - lo) // (go * (d * victim_b + gv * other_b))
    mid = swap_out(centre, other_a, other_b, other_fee_bps) if centre > 0 else 0
    edge = min_input_for(mid, other_a, other_b, other_fee_bps) if mid > 0 else 1
    nxt = min_input_for(mid + 1, other_a, other_b, other_fee_bps)
    xs = set(range(max(1, centre - 2), centre + 3)) if nxt == 0 or nxt - edge <= 4 else set()
    for amount in range(max(1, mid - 2), mid + 3):
        x = edge if amount == mid else nxt if amount == mid + 1 else min_input_for(amount, other_a, other_b,
                                                                                 other_fee_bps)
        if x >= 1:
            xs.add(x)
    best: backrun.Backrun | None = None
    for x in sorted(xs):
        b = backrun.run(x, other_a, other_b, victim_b, victim_a, other_fee_bps, victim_fee_bps)
        if b is not None and b.profit > 0 and (best is None or b.profit > best.profit):
            best = b
    return best


def _both(r: int, s: int, amount: int, slack_bps: int, fee: int, cap: int | None) -> None:
    need = swap_out(amount, r, s, fee) * (10_000 - slack_bps) // 10_000
    victim = sandwich.exact_in_victim(amount, need, fee)
    want = sandwich.optimal(r, s, victim, exact_in_amount=amount, min_out=need, fee_bps=fee, max_frontrun_in=cap)
    assert exact_in.optimal_exact_in(r, s, amount, need, fee, cap) == want


@settings(derandomize=True, deadline=None, max_examples=400)
@given(st.integers(1, 3000), st.integers(1, 3000), st.integers(1, 3000), SLACK, FEES,
       st.none() | st.integers(1, 500))
def test_small_pools(r: int, s: int, amount: int, slack_bps: int, fee: int, cap: int | None) -> None:
    """Pools of a few thousand units: wide and narrow plateaus, the boundary walk's edge cases, empty ranges."""
    _both(r, s, amount, slack_bps, fee, cap)


@settings(derandomize=True, deadline=None, max_examples=400)
@given(st.integers(6, 30), st.integers(6, 30), st.integers(1, 255), st.integers(1, 255), st.integers(1, 5000),
       SLACK, FEES, st.booleans())
def test_large_pools_of_any_decimals(r_exp: int, s_exp: int, r_mul: int, s_mul: int, share: int, slack_bps: int,
                                     fee: int, capped: bool) -> None:
    """Reserves of 1e6..1e32 base units (tokens of 6 to 18 decimals either side: one unit of input buys millions
    of units of output, or the reverse), victims of up to half the pool, with and without a capital bound."""
    r, s = r_mul * 10**r_exp, s_mul * 10**s_exp
    amount = r * share // 10_000 + 1
    _both(r, s, amount, slack_bps, fee, amount // 3 + 1 if capped else None)


def test_empty_pools_take_the_general_path() -> None:
    for r, s in ((0, 10**18), (10**18, 0)):
        _both(r, s, 10**17, 500, 30, None)


def test_both_refinements_are_exercised() -> None:
    """The one-unit-plateau shortcut holds on a pool whose output token has more base units (1e6 per unit of
    input), not on the reverse; the refinement's candidates are the reference's either way."""
    centre = 10**18
    for r, s, shortcut in ((10**20, 10**26, True), (10**26, 10**14, False)):
        assert one_unit_plateaus(centre, r * 10_000, s, 9_970) is shortcut
        xs: set[int] = set()
        exact_in._refine(xs, centre, r, s, 9_970, 10**30)
        assert xs == sandwich._refined(centre, r, s, 10**30, 30)
        assert (xs == set(range(centre - 2, centre + 3))) is shortcut


@settings(derandomize=True, deadline=None, max_examples=400)
@given(st.integers(1, 10**6), st.integers(1, 10**6), st.integers(1, 10**6), st.integers(1, 10**6), FEES, FEES)
def test_backrun_small_pools(other_a: int, other_b: int, victim_b: int, victim_a: int, fee_o: int,
                             fee_v: int) -> None:
    assert backrun.optimal(other_a, other_b, victim_b, victim_a, fee_o, fee_v) == reference_backrun(
        other_a, other_b, victim_b, victim_a, fee_o, fee_v)


@settings(derandomize=True, deadline=None, max_examples=400)
@given(st.integers(6, 30), st.integers(6, 30), st.integers(1, 255), st.integers(1, 255), st.integers(-300, 300),
       FEES)
def test_backrun_large_pools(a_exp: int, b_exp: int, a_mul: int, b_mul: int, moved_bps: int, fee: int) -> None:
    """The same pair on two factories, one moved by a victim by up to 3% either way."""
    other_a, other_b = a_mul * 10**a_exp, b_mul * 10**b_exp
    victim_a, victim_b = other_a * (10_000 + moved_bps) // 10_000, other_b * (10_000 - moved_bps) // 10_000
    assert backrun.optimal(other_a, other_b, victim_b, victim_a, 30, fee) == reference_backrun(
        other_a, other_b, victim_b, victim_a, 30, fee)


@settings(derandomize=True, deadline=None, max_examples=400)
@given(st.integers(1, 30), st.integers(1, 30), st.integers(1, 10**9), st.integers(1, 10**9), st.integers(1, 10**6),
       st.integers(0, 40), FEES)
def test_exact_output_slope_from_its_factors(r_exp: int, s_exp: int, r_mul: int, s_mul: int, share: int,
                                             u_exp: int, fee: int) -> None:
    r, s = r_mul * 10**r_exp, s_mul * 10**s_exp
    amount_out = s * share // 10**6 + 1
    g = 10_000 - fee
    for u in (10_000 * r + g, 10_000 * r + g * 10**u_exp, 10**u_exp):
        quartic = frontrun.exact_out_slope(r, s, amount_out, g)
        assert frontrun.exact_out_slope_at(r, s, amount_out, g, u) == (
            frontrun._at(quartic, u), frontrun._at(frontrun._derivative(quartic), u))
