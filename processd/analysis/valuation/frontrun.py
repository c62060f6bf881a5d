"""Closed forms of a sandwich's front-run: how large it may be, and where its profit peaks (docs/valuation.md).

Notation: the victim's first pair holds ``r`` of the input token and ``s`` of the output token; the fee leaves
``g / D`` of an input (``g = D - fee_bps``, ``D = 10,000``); a front-run of ``x`` buys ``f = out(x)``.

**The victim's bound per front-run output.** Whether the victim's swap still holds after a front-run depends on
``x`` only through the reserves it leaves, ``(r + x, s - f)``. For a fixed ``f`` the pair's own integer
arithmetic turns the victim's condition into one bound on ``x``:

- exact input ``a``, at least ``n`` out: ``floor(a g (s - f) / ((r + x) D + a g)) >= n`` holds exactly when
  ``n ((r + x) D + a g) <= a g (s - f)``, i.e. ``x <= floor(a g (s - f - n) / (n D)) - r``;
- exact output ``m``, at most ``M`` in: ``floor((r + x) m D / ((s - f - m) g)) + 1 <= M`` holds exactly when
  ``(r + x) m D < M (s - f - m) g``, i.e. ``x <= floor((M g (s - f - m) - 1) / (m D)) - r``.

The limit falls as ``f`` grows and ``f`` grows with ``x``, so the feasible front-runs are ``[0, x_max]``; within
a plateau of equal outputs (the ``x`` that buy the same ``f``) the limit is constant. :func:`boundary` walks the
plateaus from the continuous root (``floor`` of it is always feasible), each step one exact ``min_input_for``:
the floors move the boundary by less than one output unit, so one to three steps end it, however wide a plateau
is (an output token with fewer decimals: one unit of output is millions of units of input).

**Where an exact-output victim's profit peaks.** With ``U = D r + g x`` the continuous profit is
``(U - D r) / g * (A(U) - B(U)) / B(U)`` with the quadratics ``A = s (U - c r)(g r s D + m c U)`` and
``B = (r s D - m U)(r s D c + U (g s - m D))`` (``c = D - g``); its slope has the sign of the quartic
``Q = (A - B) B + (U - D r)((A - B)' B - (A - B) B')``. :func:`exact_out_peak` finds the sign change of ``Q``
by safeguarded Newton steps on integers (a handful of steps instead of the golden-section search's hundred exact
profits). Exact-input victims have the older closed form (:func:`exact_in_peaks`, a quadratic).
"""

from __future__ import annotations

from collections.abc import Callable
from math import isqrt

from processd.analysis.valuation.amm import min_input_for, swap_out

_D = 10_000
#: A pair's reserves are uint112: a swap that would leave a balance above this reverts (UniswapV2: OVERFLOW).
UINT112_MAX = (1 << 112) - 1
#: Plateau steps :func:`boundary` takes before it gives up (the caller then searches; never seen past 3).
MAX_STEPS = 8
#: Newton / bisection steps :func:`exact_out_peak` takes at most (bisection alone needs ~log2 of the range).
MAX_NEWTON = 160

#: The largest front-run the victim allows for a front-run output ``f`` (``-1`` or less: none).
Limit = Callable[[int], int]


def exact_in_limit(r: int, s: int, amount_in: int, need: int, g: int) -> Limit:
    """The victim's bound per front-run output of an exact-input victim (module doc), with the uint112 cap of the
    pair's balance after the victim's input."""
    ag = amount_in * g
    nd = need * _D
    cap = UINT112_MAX - r - amount_in

    def limit(f: int) -> int:
        x = ag * (s - f - need) // nd - r
        return x if x < cap else cap

    return limit


def exact_out_limit(r: int, s: int, amount_out: int, max_in: int, g: int) -> Limit:
    """The victim's bound per front-run output of an exact-output victim (module doc). It leaves out the uint112
    cap of the balance after the victim's payment, which depends on the payment: :func:`boundary`'s caller checks
    its answer with the exact predicate when that cap can matter."""
    mg = max_in * g
    md = amount_out * _D

    def limit(f: int) -> int:
        left = s - f - amount_out
        return (mg * left - 1) // md - r if left > 0 else -1

    return limit


def boundary(r: int, s: int, limit: Limit, start: int, fee_bps: int) -> int | None:
    """The largest front-run ``x`` with ``x <= limit(out(x))``, walking plateaus from ``start`` (module doc); -1 when
    not even 0 is feasible; None when ``start`` is not feasible or the walk takes more than :data:`MAX_STEPS`
    steps (the caller searches instead)."""
    x = start if start > 0 else 0
    f = swap_out(x, r, s, fee_bps)  # the plateau of x: its output and the victim's bound there
    lim = limit(f)
    if x > lim:
        return -1 if x == 0 else None
    for _ in range(MAX_STEPS):
        nxt = min_input_for(f + 1, r, s, fee_bps)  # the first x of the next plateau; 0: none (f + 1 >= s)
        if nxt == 0 or lim < nxt:
            return lim
        f = swap_out(nxt, r, s, fee_bps)
        lim_next = limit(f)
        if nxt > lim_next:
            return nxt - 1
        lim = lim_next  # the next step starts from nxt's plateau, already evaluated
    return None


def exact_in_root(r: int, s: int, amount_in: int, need: int, g: int) -> int:
    """The largest x (continuous, fee included, no floors) for which the victim still gets ``need``; -1 if none."""
    a2 = need * _D * g
    b = need * (_D * _D * r + g * (_D * r + g * amount_in))
    c = need * (_D * r + g * amount_in) * _D * r - g * amount_in * s * _D * r
    return _root(a2, b, c)


def exact_out_root(r: int, s: int, amount_out: int, max_in: int, g: int) -> int:
    """The largest x (continuous) for which the exact-output victim pays at most ``max_in``; -1 if none."""
    a2 = _D * amount_out * g
    b = _D * amount_out * (_D * r + g * r) + g * g * max_in * amount_out
    c = _D * amount_out * _D * r * r - g * max_in * (s * _D * r - amount_out * _D * r)
    return _root(a2, b, c)


def _root(a2: int, b: int, c: int) -> int:
    """floor of the positive root of a2 x^2 + b x + c (a2 > 0, b >= 0); -1 when c > 0 (no x >= 0 satisfies <= 0)."""
    if c > 0:
        return -1
    return (isqrt(b * b - 4 * a2 * c) - b) // (2 * a2)


def slope_quadratic(r: int, amount_in: int, g: int) -> tuple[int, int, int]:
    """(alpha, beta, gamma): P'(x) of an exact-input victim has the sign of alpha x^2 + beta x + gamma.

    With q = g/D: P = x (C1 x + C0) / (q^2 x^2 + E x + R^2); P' = 0 on (C1 E - C0 q^2) x^2 + 2 C1 R^2 x + C0 R^2 = 0.
    Every term is scaled by D^5 to stay in integers.
    """
    a, d = amount_in, _D
    # Scaled by D^3: C0 = q^2 (R + a)(R + q a) - R^2, C1 = q^2 (R + a) - R (scaled by D^2), E = R + q^2 (R + q a).
    c0 = g * g * (r + a) * (d * r + g * a) - d ** 3 * r * r          # * D^3
    c1 = g * g * (r + a) - d * d * r                                  # * D^2
    e = d ** 3 * r + g * g * (d * r + g * a)                          # * D^3
    alpha = c1 * e - c0 * g * g                                       # * D^5
    beta = 2 * c1 * r * r * d ** 3                                    # * D^5
    gamma = c0 * r * r * d * d                                        # * D^5
    return alpha, beta, gamma


def can_gain(r: int, amount_in: int, g: int) -> bool:
    """Whether a sandwich of a victim paying at most ``amount_in`` can gain at all: the continuous profit of an
    exact-input victim is ``x (C1 x + C0) / (...)`` with a positive denominator, so it is positive for some x > 0
    only when C0 > 0 or C1 > 0 (the victim's trade outweighs two fees). Both grow with the victim's input, and an
    exact-output victim's sandwich is the exact-input one of what it pays (at most its ``amountInMax``), so this
    rules out most small swaps before any search (the floors only take from the attacker)."""
    d = _D
    c0 = g * g * (r + amount_in) * (d * r + g * amount_in) - d ** 3 * r * r
    return c0 > 0 or g * g * (r + amount_in) - d * d * r > 0


def exact_in_peaks(r: int, amount_in: int, g: int, slope: tuple[int, int, int] | None = None) -> list[int]:
    """Non-negative roots (floored) of P'(x) = 0 for an exact-input victim, in units of x (``slope``: its
    :func:`slope_quadratic`, when computed already)."""
    alpha, beta, gamma = slope if slope is not None else slope_quadratic(r, amount_in, g)
    if alpha == 0:
        return [-gamma // beta] if beta else []
    disc = beta * beta - 4 * alpha * gamma
    if disc < 0:
        return []
    root = isqrt(disc)
    roots = {(-beta + root) // (2 * alpha), (-beta - root) // (2 * alpha)}
    return sorted(x for x in roots if x >= 0)


def _mul(p: list[int], q: list[int]) -> list[int]:
    out = [0] * (len(p) + len(q) - 1)
    for i, pi in enumerate(p):
        for j, qj in enumerate(q):
            out[i + j] += pi * qj
    return out


def _sub(p: list[int], q: list[int]) -> list[int]:
    n = max(len(p), len(q))
    return [(p[i] if i < len(p) else 0) - (q[i] if i < len(q) else 0) for i in range(n)]


def _derivative(p: list[int]) -> list[int]:
    return [i * p[i] for i in range(1, len(p))]


def _at(p: list[int], u: int) -> int:
    acc = 0
    for coefficient in reversed(p):
        acc = acc * u + coefficient
    return acc


def exact_out_slope(r: int, s: int, amount_out: int, g: int) -> list[int]:
    """The coefficients (lowest degree first) of the quartic ``Q(U)`` whose sign is the slope of an exact-output
    victim's continuous sandwich profit at ``U = D r + g x`` (module doc)."""
    c = _D - g
    rsd = r * s * _D
    a = _mul([-c * r * s, s], [g * rsd, amount_out * c])
    b = _mul([rsd, -amount_out], [rsd * c, g * s - amount_out * _D])
    e = _sub(a, b)
    wronskian = _sub(_mul(_derivative(e), b), _mul(e, _derivative(b)))
    q = _mul(e, b)
    tail = _mul([-_D * r, 1], wronskian)
    return [q[i] + (tail[i] if i < len(tail) else 0) for i in range(max(len(q), len(tail)))]


def exact_out_slope_at(r: int, s: int, amount_out: int, g: int, u: int) -> tuple[int, int]:
    """``(Q(u), Q'(u))``: the quartic of :func:`exact_out_slope` and its derivative at ``u``, evaluated from their
    factors instead of from the coefficients (the same integers: exact arithmetic of the same polynomials; about
    30 products instead of the coefficients' hundred). With ``E = A - B``: ``Q = E B + (U - D r)(E' B - E B')``
    and ``Q' = 2 E' B + (U - D r)(E'' B - E B'')``, ``A`` and ``B`` products of two linear factors."""
    c = _D - g
    m = amount_out
    rsd = r * s * _D
    a1, a2 = s * u - c * r * s, g * rsd + m * c * u  # A = a1 a2
    k = g * s - m * _D
    b1, b2 = rsd - m * u, rsd * c + k * u  # B = b1 b2
    b = b1 * b2
    e = a1 * a2 - b
    e1 = s * a2 + a1 * m * c + m * b2 - b1 * k  # A' - B'
    e2 = 2 * s * m * c + 2 * m * k  # A'' - B''
    b_1 = b1 * k - m * b2  # B'
    shift = u - _D * r
    return e * b + shift * (e1 * b - e * b_1), 2 * e1 * b + shift * (e2 * b + e * 2 * m * k)


def exact_out_peak(r: int, s: int, amount_out: int, x_max: int, g: int, guess: int) -> int:
    """Where an exact-output victim's continuous sandwich profit peaks in ``[1, x_max]`` (floored): ``x_max`` when
    it still rises there, 1 when it already falls at 1, else the sign change of the slope quartic found by Newton
    steps kept inside the bracket (bisection when a step leaves it). The quartic and its slope are evaluated from
    their factors (:func:`exact_out_slope_at`)."""
    base = _D * r
    lo, hi = base + g, base + g * x_max
    if exact_out_slope_at(r, s, amount_out, g, hi)[0] >= 0:
        return x_max
    if exact_out_slope_at(r, s, amount_out, g, lo)[0] <= 0:
        return 1
    u = base + g * guess
    if not lo < u < hi:
        u = (lo + hi) // 2
    for _ in range(MAX_NEWTON):
        value, d = exact_out_slope_at(r, s, amount_out, g, u)
        if value > 0:
            lo = u
        else:
            hi = u
        if hi - lo <= g:
            break
        step = value // d if d else 0
        if d and -g < step < g:  # converged to within one unit of x
            lo = hi = u - step
            break
        u = u - step if d and lo < u - step < hi else (lo + hi) // 2
    return max(1, min(x_max, (lo - base) // g))
