"""Opportunity ranking: how exploitable a pending swap is, as sandwich, backrun and arbitrage candidate.

Each kind gets a deterministic integer score 0-100, the sum of capped components (weights below and in
docs/decoding.md), and human-readable reasons. The inputs are only the decoded call, the envelope's value
and tip, and fixed tables (reference prices, venue classes), so the same transaction always gets the same
scores, on any machine, in any order.

Components:
- size: notional of the swap in USD at fixed reference prices (native value for ETH-in swaps, else the
  known input or output token amount); log scale from $100 (0 points) to $1M (full points).
- slippage (sandwich only): tolerance inferred from amountOutMin == 0 / unbounded amountInMax, or from a
  pair of tokens pegged to the same asset (USDC/DAI, WETH/stETH); full points from 3%; unknown = 0.5%.
- venue: constant-product (V2) pools are the textbook sandwich target; forks have thinner pools whose
  prices diverge after a swap (backrun/arb); every extra hop dislocates one more pool.
- urgency: the tip (priority fee, or legacy gas price) on a log scale from 1 gwei to 1000 gwei: a high tip
  lands in the next block, so the opportunity is real and immediate.

Where the pool state of a V2 router swap is known (the batch's reserves, :mod:`processd.analysis.valuation`),
sandwich and backrun candidates are valued exactly instead: a kind is emitted only when its net profit (native
wei, after gas) is positive, and the valued kinds come first, highest net profit first (their score stays the
heuristic one, at least 1, so score filters keep working). Elsewhere the heuristic score is the fallback, and
the opportunity says so (``valued`` false, ``valuation_note`` and a reason).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from common.pb.v1 import events_pb2
from processd.analysis.decoding.model import UNISWAP_V2, UNISWAP_V3, DecodedCall
from processd.analysis.decoding.registry import REF_USD_MICROS, Registry, Token, native_peg
from processd.analysis.features import u256
from processd.analysis.valuation.value import Figures, SwapValuation
from processd.wire.opportunities import OppValue, Scored, encode_opportunities

SANDWICH = events_pb2.OPPORTUNITY_KIND_SANDWICH_CANDIDATE
BACKRUN = events_pb2.OPPORTUNITY_KIND_BACKRUN_CANDIDATE
ARB = events_pb2.OPPORTUNITY_KIND_ARB_CANDIDATE

#: Opportunities scoring below this are not emitted (they remain visible as TxFeatures).
DEFAULT_MIN_SCORE = 10
#: Slippage reported for "no protection at all" (amountOutMin = 0 or unbounded amountInMax).
UNLIMITED_BPS = 10_000
#: Assumed tolerance when nothing can be inferred: the Uniswap interface default.
ASSUMED_BPS = 50
_UNBOUNDED = 1 << 255
_WEI = 10**18
_GWEI = 10**9
_UNKNOWN_SLIPPAGE = f"slippage unknown (assumed {ASSUMED_BPS / 100:.2f}%)"
#: Why a batch's opportunities are not valued when processd has no reserve source (the default today).
NO_STATE_SOURCE = "not valued: no pool state source configured"
_ARB_NOTE = "not valued: arbitrage candidates are valued as back-runs of the victim's pair"
#: The last reason of an opportunity that is not valued: the read model ranks it by this score, after every one
#: valued with a net profit (processd/views/windows.py).
HEURISTIC_RANK = "heuristic score, ranked after the opportunities valued on pool state"
#: What a valuation argument may be: the figures, why there are none, or None (no reserve source).
ValuationInput = SwapValuation | str | None
#: Main venues: labels of the canonical Uniswap deployments (everything else is a secondary venue).
MAIN_VENUES = frozenset({"uniswap_v2", "uniswap_v3"})


@dataclass(slots=True)
class SwapAssessment:
    """The per-transaction facts every kind's score is built from (computed once per swap).

    ``size``, ``slip`` and ``urgency`` are normalised to 0..1; each kind multiplies them by its own caps.
    """

    notional_wei: int | None
    usd: float | None
    slippage_bps: int  # 0 = unknown
    slippage_reason: str
    tip_gwei: float
    hops: int
    v2_style: bool
    main_venue: bool
    cyclic: bool
    size: float
    slip: float
    urgency: float


def _log_fraction(value: float | None, log_low: float, log_span: float) -> float:
    """0 at or below 10**log_low, 1 at or above 10**(log_low + log_span), log-linear in between."""
    if value is None or value <= 0:
        return 0.0
    x = (math.log10(value) - log_low) / log_span
    return 0.0 if x <= 0.0 else (1.0 if x >= 1.0 else x)


def size_points(usd: float | None, cap: float) -> float:
    """Size component: $100 -> 0, $1M -> cap (log-linear)."""
    return cap * _log_fraction(usd, 2.0, 4.0)


def urgency_points(tip_gwei: float, cap: float) -> float:
    """Urgency component: tip 1 gwei -> 0, 1000 gwei -> cap (log-linear)."""
    return cap * _log_fraction(tip_gwei, 0.0, 3.0)


def slippage_points(bps: int, cap: float) -> float:
    """Slippage component: linear up to 3% (300 bps) = cap; unknown counts as the assumed 0.5%."""
    return cap * min(bps if bps else ASSUMED_BPS, 300) / 300


class Searcher:
    """Ranks decoded swaps into opportunities. Stateless apart from its fixed tables."""

    __slots__ = ("min_score", "registry")

    def __init__(self, registry: Registry, min_score: int = DEFAULT_MIN_SCORE) -> None:
        self.registry = registry
        self.min_score = min_score

    # --- facts ---------------------------------------------------------------------------------------

    def notional(self, chain_id: int, call: DecodedCall, value: int, t_in: Token | None,
                 t_out: Token | None) -> tuple[int | None, int | None]:
        """(notional in native wei, in micro-USD) at reference prices; (None, None) when unknowable.

        Native value for ETH-in swaps, else the known input token amount (exact or maximum), else the
        known output token amount (exact or minimum).
        """
        native_micros = REF_USD_MICROS[native_peg(chain_id)]
        if call.native_in and value > 0:
            return value, value * native_micros // _WEI
        usd_micros = None
        amount = call.amount_in if call.amount_in is not None else call.amount_in_max
        if t_in is not None and amount is not None and amount < _UNBOUNDED:
            usd_micros = amount * REF_USD_MICROS[t_in.peg] // 10**t_in.decimals
        elif t_out is not None:
            amount = call.amount_out if call.amount_out is not None else call.amount_out_min
            if amount:
                usd_micros = amount * REF_USD_MICROS[t_out.peg] // 10**t_out.decimals
        if usd_micros is None:
            return None, None
        return usd_micros * _WEI // native_micros, usd_micros

    @staticmethod
    def slippage(call: DecodedCall, value: int, t_in: Token | None, t_out: Token | None) -> tuple[int, str]:
        """(tolerance in bps, 0 = unknown; reason). Inferable only from a missing bound, or from two tokens
        pegged to the same asset (where the expected rate is 1:1 without any price feed)."""
        if call.amount_out_min == 0 and call.amount_out is None:
            return UNLIMITED_BPS, "amountOutMin = 0: no slippage protection"
        if call.amount_in_max is not None and call.amount_in_max >= _UNBOUNDED:
            return UNLIMITED_BPS, "amountInMax unbounded: no slippage protection"
        if t_in is None or t_out is None or t_in.peg != t_out.peg:
            return 0, _UNKNOWN_SLIPPAGE
        if call.amount_out_min is not None:  # exact input: paid vs guaranteed minimum
            paid = call.amount_in if call.amount_in is not None else (value if call.native_in else None)
            if not paid:
                return 0, _UNKNOWN_SLIPPAGE
            paid_n = _scale18(paid, t_in.decimals)
            bps = (paid_n - _scale18(call.amount_out_min, t_out.decimals)) * 10_000 // max(1, paid_n)
        elif call.amount_out and call.amount_in_max is not None:  # exact output: maximum paid vs received
            out_n = _scale18(call.amount_out, t_out.decimals)
            bps = (_scale18(call.amount_in_max, t_in.decimals) - out_n) * 10_000 // max(1, out_n)
        else:
            return 0, _UNKNOWN_SLIPPAGE
        bps = max(1, min(UNLIMITED_BPS, bps))
        return bps, f"slippage tolerance {bps / 100:.2f}% ({t_in.symbol}/{t_out.symbol} pegged to {t_in.peg})"

    def assess(self, chain_id: int, call: DecodedCall, protocol: str, value: int, tip_wei: int) -> SwapAssessment:
        """The facts all scores are built from."""
        t_in = self.registry.token(chain_id, call.token_in)
        t_out = self.registry.token(chain_id, call.token_out)
        notional_wei, usd_micros = self.notional(chain_id, call, value, t_in, t_out)
        bps, slip_reason = self.slippage(call, value, t_in, t_out)
        usd = None if usd_micros is None else usd_micros / 1_000_000
        tip_gwei = tip_wei / _GWEI
        hops = len(call.path) - 1
        slip_bps = bps if bps else ASSUMED_BPS
        return SwapAssessment(
            notional_wei, usd, bps, slip_reason, tip_gwei,
            hops if hops > 1 else 1,
            call.family == UNISWAP_V2,
            protocol in MAIN_VENUES,
            len(call.path) >= 3 and call.token_in == call.token_out,
            _log_fraction(usd, 2.0, 4.0),
            (slip_bps if slip_bps < 300 else 300) / 300,
            _log_fraction(tip_gwei, 0.0, 3.0),
        )

    # --- scores --------------------------------------------------------------------------------------

    def sandwich_score(self, a: SwapAssessment, call: DecodedCall) -> int:
        """size 0-45 + slippage 0-30 + venue 0-15 + urgency 0-10 (- 10 for fee-on-transfer tokens)."""
        venue = (15 if a.main_venue else 12) if a.v2_style else (10 if a.main_venue else 8)
        venue -= 2 * (a.hops - 1)
        if venue < 0:
            venue = 0
        score = 45 * a.size + 30 * a.slip + venue + 10 * a.urgency
        if call.fee_on_transfer:
            score -= 10
        if a.cyclic:
            score = 0.0  # the tx is itself an arbitrage: nothing to sandwich
        return _clamp(score)

    def backrun_score(self, a: SwapAssessment) -> int:
        """size 0-60 + venue 0-25 (thin fork pools and extra hops diverge more) + urgency 0-15."""
        venue = (10 if a.main_venue else 15) if a.v2_style else (8 if a.main_venue else 12)
        extra = 5 * (a.hops - 1)
        venue += extra if extra < 10 else 10
        return _clamp(60 * a.size + venue + 15 * a.urgency)

    def arb_score(self, a: SwapAssessment) -> int:
        """Structural triggers (cyclic 40, secondary venue 20, extra hops 10 each up to 20) + size 0-30
        + urgency 0-10; 0 when no trigger applies."""
        extra = 10 * (a.hops - 1)
        trigger = (40 if a.cyclic else 0) + (0 if a.main_venue else 20) + (extra if extra < 20 else 20)
        if trigger == 0:
            return 0
        return _clamp(trigger + 30 * a.size + 10 * a.urgency)

    # --- opportunities -------------------------------------------------------------------------------

    def rank(self, chain_id: int, tx_hash: bytes, call: DecodedCall, protocol: str, value: int,
             tip_wei: int, valuation: ValuationInput = None) -> tuple[tuple[int, bytes], ...]:
        """Opportunities of a decoded swap, best first, as (score, serialized ``Opportunity``) pairs
        (:func:`processd.wire.opportunities.encode_opportunities`): the valued kinds with a positive net profit
        (``valuation``, module doc), then the heuristic kinds scoring at least ``min_score``."""
        ranked = self.score_kinds(chain_id, call, protocol, value, tip_wei, valuation)
        if ranked is None:
            return ()
        a, scored = ranked
        notional = None if a.notional_wei is None else u256(a.notional_wei)  # presence: a known 0 is set
        return encode_opportunities(chain_id, tx_hash, protocol, call.token_in, call.token_out, notional,
                                    a.slippage_bps, scored)

    def score_kinds(self, chain_id: int, call: DecodedCall, protocol: str, value: int, tip_wei: int,
                    valuation: ValuationInput = None) -> tuple[SwapAssessment, list[Scored]] | None:
        """(assessment, [(score, kind, reasons, valuation fields)] best first), None when no kind qualifies."""
        a = self.assess(chain_id, call, protocol, value, tip_wei)
        if isinstance(valuation, SwapValuation):
            out = self._valued_kinds(chain_id, a, call, protocol, valuation)
            return (a, out) if out else None
        note = NO_STATE_SOURCE if valuation is None else valuation
        floor = self.min_score if self.min_score > 0 else 1
        # (-score, kind): the natural tuple order is highest score first, then kind (no key function to call).
        scored: list[tuple[int, int]] = []
        score = self.sandwich_score(a, call)
        if score >= floor:
            scored.append((-score, SANDWICH))
        score = self.backrun_score(a)
        if score >= floor:
            scored.append((-score, BACKRUN))
        score = self.arb_score(a)
        if score >= floor:
            scored.append((-score, ARB))
        if not scored:
            return None
        scored.sort()
        common = self._reasons(chain_id, a, call, protocol)
        fallback = OppValue(False, note)
        heuristic = f"{HEURISTIC_RANK} ({note})"
        out = []
        for score, kind in scored:
            out.append((-score, kind, [*self._kind_reasons(kind, a, common, protocol), heuristic], fallback))
        return a, out

    def _kind_reasons(self, kind: int, a: SwapAssessment, common: list[str], protocol: str) -> list[str]:
        if kind == SANDWICH:
            return common
        if kind == BACKRUN:
            return common[:1] + common[2:]  # all but the slippage reason
        return [*self._arb_reasons(a, protocol), common[0], common[-1]]

    def _valued_kinds(self, chain_id: int, a: SwapAssessment, call: DecodedCall, protocol: str,
                      v: SwapValuation) -> list[Scored]:
        """The valued sandwich and backrun (positive net profit, or a gross profit of unknown native value and a
        heuristic score over the floor), best net profit first, then the heuristic arb candidate."""
        floor = self.min_score if self.min_score > 0 else 1
        common = self._reasons(chain_id, a, call, protocol)
        ranked: list[tuple[int, int, int, list[str], OppValue]] = []
        for kind, fig, score in ((SANDWICH, v.sandwich, self.sandwich_score(a, call)),
                                 (BACKRUN, v.backrun, self.backrun_score(a))):
            if fig is None or (fig.net is not None and fig.net <= 0) or (fig.net is None and score < floor):
                continue
            value = _opp_value(kind, fig, v)
            reasons = [_valued_reason(kind, fig, v), *self._kind_reasons(kind, a, common, protocol)]
            ranked.append((-(fig.net if fig.net is not None else -1), kind, score if score > 0 else 1, reasons, value))
        ranked.sort(key=lambda r: (r[0], r[1]))
        out: list[Scored] = [(score, kind, reasons, value) for _, kind, score, reasons, value in ranked]
        score = self.arb_score(a)
        if score >= floor:
            out.append((score, ARB, [*self._kind_reasons(ARB, a, common, protocol), f"{HEURISTIC_RANK} ({_ARB_NOTE})"],
                        OppValue(False, _ARB_NOTE)))
        return out

    def _reasons(self, chain_id: int, a: SwapAssessment, call: DecodedCall, protocol: str) -> list[str]:
        """Shared reasons: size first, slippage second (left out for backruns), tip last."""
        peg = native_peg(chain_id)
        if a.notional_wei is None or a.usd is None:
            size = "size unknown (no native value; tokens not in the reference table)"
        else:
            size = f"size ≈ {a.notional_wei / _WEI:,.4g} {peg} ≈ ${a.usd:,.0f} at fixed reference prices"
        kind = "constant-product (V2-style)" if a.v2_style else "concentrated-liquidity (V3-style)"
        plural = "s" if a.hops > 1 else ""
        venue = f"{protocol or 'unknown'} {kind} pool{plural}, {a.hops} hop{plural}"
        reasons = [size, a.slippage_reason, venue]
        if call.fee_on_transfer:
            reasons.append("fee-on-transfer token: the transfer tax eats sandwich profit")
        if call.swap_count > 1:
            reasons.append(f"{call.swap_count} swaps in one transaction")
        reasons.append(f"tip {a.tip_gwei:,.1f} gwei")
        return reasons

    @staticmethod
    def _arb_reasons(a: SwapAssessment, protocol: str) -> list[str]:
        out = []
        if a.cyclic:
            out.append("cyclic path (token in = token out): the tx is itself an arbitrage, a price gap exists now")
        if not a.main_venue:
            out.append(f"secondary venue {protocol or 'unknown'}: its price will diverge from the main pools")
        if a.hops > 1:
            out.append(f"crosses {a.hops} pools: each one is left dislocated")
        return out


def _opp_value(kind: int, fig: Figures, v: SwapValuation) -> OppValue:
    """The Opportunity valuation fields of one valued kind."""
    note = "" if fig.net is not None else "native value unknown: no known pair of the profit token with the " \
        "wrapped native token"
    if kind == SANDWICH:
        return OppValue(True, note, fig.net, fig.profit, fig.amount_in, None, fig.gas_cost, v.price_impact_bps,
                        fig.profit_token, fig.block_number)
    return OppValue(True, note, fig.net, None, None, fig.profit, fig.gas_cost, v.price_impact_bps, fig.profit_token,
                    fig.block_number, fig.amount_in)


def _valued_reason(kind: int, fig: Figures, v: SwapValuation) -> str:
    """The first reason of a valued opportunity: its figures, exact integers (wei and token base units)."""
    what = "sandwich: front-run" if kind == SANDWICH else "back-run through another pool: input"
    net = ("net value unknown (ranked by heuristic score)" if fig.net is None
           else f"net {fig.net} wei after gas {fig.gas_cost} wei (ranked by net profit)")
    return (f"valued on reserves at block {fig.block_number}: {what} {fig.amount_in}, gross profit {fig.profit} of "
            f"0x{fig.profit_token.hex()}, {net}")


def _scale18(amount: int, decimals: int) -> int:
    """A token amount in 18-decimal units, so amounts of tokens with different decimals compare."""
    return amount * 10 ** (18 - decimals) if decimals <= 18 else amount // 10 ** (decimals - 18)


def _clamp(score: float) -> int:
    # Comparisons, not max(0, min(100, ...)): builtin calls cost more than the whole score on the hot path.
    rounded = round(score)
    return 0 if rounded < 0 else (100 if rounded > 100 else rounded)


def is_rankable(call: DecodedCall) -> bool:
    """Only decoded swaps on AMM families are ranked."""
    return call.decoded and call.swap_count > 0 and call.family in (UNISWAP_V2, UNISWAP_V3)
