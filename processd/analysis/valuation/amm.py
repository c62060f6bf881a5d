"""UniswapV2Library in Python ints, exactly as the Solidity computes (floor division, the same reverts).

The fee is in basis points (30 for Uniswap V2 and Sushiswap: ``* 9970 / 10000`` floors exactly as the library's
``* 997 / 1000``, both terms being scaled by 10); forks with another fee pass theirs. A call the contract would
revert is an :class:`AmmError` naming the library's message.
"""

from __future__ import annotations

from processd.errors import ProcessdError

#: Uniswap V2's swap fee, basis points (0.3%).
V2_FEE_BPS = 30
_BPS = 10_000


class AmmError(ProcessdError):
    """The pair or the library would revert (``UniswapV2Library: INSUFFICIENT_LIQUIDITY`` ...)."""

    retriable = False


def get_amount_out(amount_in: int, reserve_in: int, reserve_out: int, fee_bps: int = V2_FEE_BPS) -> int:
    """``UniswapV2Library.getAmountOut``: the output of selling ``amount_in`` into the pair."""
    if amount_in <= 0:
        raise AmmError("UniswapV2Library: INSUFFICIENT_INPUT_AMOUNT")
    if reserve_in <= 0 or reserve_out <= 0:
        raise AmmError("UniswapV2Library: INSUFFICIENT_LIQUIDITY")
    with_fee = amount_in * (_BPS - fee_bps)
    return with_fee * reserve_out // (reserve_in * _BPS + with_fee)


def get_amount_in(amount_out: int, reserve_in: int, reserve_out: int, fee_bps: int = V2_FEE_BPS) -> int:
    """``UniswapV2Library.getAmountIn``: the input that buys ``amount_out`` (rounded up by the library's + 1)."""
    if amount_out <= 0:
        raise AmmError("UniswapV2Library: INSUFFICIENT_OUTPUT_AMOUNT")
    if reserve_in <= 0 or reserve_out <= 0:
        raise AmmError("UniswapV2Library: INSUFFICIENT_LIQUIDITY")
    if amount_out >= reserve_out:  # SafeMath's ds-math-sub-underflow, or a division by zero at equality
        raise AmmError("ds-math-sub-underflow")
    return reserve_in * amount_out * _BPS // ((reserve_out - amount_out) * (_BPS - fee_bps)) + 1


def get_amounts_out(amount_in: int, hops: list[tuple[int, int]], fee_bps: int = V2_FEE_BPS) -> list[int]:
    """``getAmountsOut``: amounts along a path, ``hops`` = (reserve in, reserve out) of each pair in order."""
    amounts = [amount_in]
    for reserve_in, reserve_out in hops:
        amounts.append(get_amount_out(amounts[-1], reserve_in, reserve_out, fee_bps))
    return amounts


def get_amounts_in(amount_out: int, hops: list[tuple[int, int]], fee_bps: int = V2_FEE_BPS) -> list[int]:
    """``getAmountsIn``: amounts along a path computed backwards from the final ``amount_out``."""
    amounts = [amount_out]
    for reserve_in, reserve_out in reversed(hops):
        amounts.append(get_amount_in(amounts[-1], reserve_in, reserve_out, fee_bps))
    amounts.reverse()
    return amounts


def swap_out(amount_in: int, reserve_in: int, reserve_out: int, fee_bps: int = V2_FEE_BPS) -> int:
    """The output of a swap the pair accepts; 0 when it would revert (no input, no liquidity, or an output of 0:
    ``UniswapV2: INSUFFICIENT_OUTPUT_AMOUNT``)."""
    if amount_in <= 0 or reserve_in <= 0 or reserve_out <= 0:
        return 0
    with_fee = amount_in * (_BPS - fee_bps)
    return with_fee * reserve_out // (reserve_in * _BPS + with_fee)


def min_input_for(amount_out: int, reserve_in: int, reserve_out: int, fee_bps: int = V2_FEE_BPS) -> int:
    """The least input whose :func:`swap_out` is at least ``amount_out`` (``getAmountIn`` rounds up by one more
    than needed when the division is exact); 0 when no input can buy it (``amount_out >= reserve_out``).

    Closed form, one division: ``floor(x g S / (R D + x g)) >= a`` holds exactly when ``x g S >= a (R D + x g)``
    (the denominator is positive), i.e. ``x g (S - a) >= a R D``, so the least x is ``ceil(a R D / (g (S - a)))``
    (at least 1 since ``a R D > 0``). Called several times per valued swap."""
    if amount_out <= 0:
        return 0
    if amount_out >= reserve_out or reserve_in <= 0:
        return 0
    return -(-(reserve_in * amount_out * _BPS) // ((reserve_out - amount_out) * (_BPS - fee_bps)))


def one_unit_plateaus(x: int, scaled_reserve_in: int, reserve_out: int, g: int) -> bool:
    """Whether each input from ``x - 3`` to ``x + 2`` buys at least one unit of output more than the input one
    less (every plateau of equal outputs there is one input wide); ``scaled_reserve_in`` is ``reserve_in * 10,000``
    and ``g`` is ``10,000 - fee_bps``. Exact: the continuous output ``F(x) = x g S / (R D + x g)`` is concave, so
    its steps shrink as x grows, and the last one, ``F(x + 2) - F(x + 1) = g S R D / ((R D + (x + 1) g)(R D +
    (x + 2) g))``, at least 1 makes each floor at least one above the one before.

    The refinements (sandwich front-run, back-run) use it to skip the ``min_input_for`` of the outputs near a
    candidate: there the least input buying ``out(x) + k`` (k in -2..2) is within ``[x - 2, x + 2]``."""
    return x >= 3 and g * reserve_out * scaled_reserve_in >= ((scaled_reserve_in + (x + 1) * g)
                                                              * (scaled_reserve_in + (x + 2) * g))


def price_impact_bps(amount_in: int, reserve_in: int, fee_bps: int = V2_FEE_BPS) -> int:
    """How far below the pool's spot price (fee excluded) a sale of ``amount_in`` executes, basis points (floor):
    ``1 - out / (amount_in_after_fee * reserve_out / reserve_in)`` = ``x / (reserve_in + x)``, x after fee."""
    if amount_in <= 0 or reserve_in <= 0:
        return 0
    with_fee = amount_in * (_BPS - fee_bps)
    return _BPS * with_fee // (reserve_in * _BPS + with_fee)


def sort_tokens(a: bytes, b: bytes) -> tuple[bytes, bytes]:
    """``UniswapV2Library.sortTokens``: (token0, token1), the lower address first."""
    return (a, b) if a < b else (b, a)
