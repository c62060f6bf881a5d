"""Opportunities valued on the reserves a batch brings: the figures are the exact math's, the searcher ranks by
net profit, the heuristic is the fallback and says so, and the hand encoder writes what protobuf writes."""

from __future__ import annotations

import eth_abi
import pytest

from common.pb.v1 import events_pb2, ingest_pb2, tx_pb2
from processd.analysis.analyzer import Analyzer
from processd.analysis.prepare import prepare_batch
from processd.analysis.searcher import HEURISTIC_RANK, NO_STATE_SOURCE
from processd.analysis.valuation import backrun, sandwich
from processd.analysis.valuation.amm import swap_out
from processd.analysis.valuation.pairs import Venues
from processd.analysis.valuation.state import PoolReserves, from_wire, to_wire
from processd.analysis.valuation.value import BACKRUN_GAS, SANDWICH_GAS
from tests.processd._reference import reference_analyze
from tests.processd._valuation import SUSHI, UNI, UNI_ROUTER, USDC, WETH, pool

SANDWICH = events_pb2.OPPORTUNITY_KIND_SANDWICH_CANDIDATE
BACKRUN = events_pb2.OPPORTUNITY_KIND_BACKRUN_CANDIDATE
ANALYZER = Analyzer()
GWEI = 10**9
# 1,000 WETH / 2,000,000 USDC on Uniswap V2 and on Sushiswap (the same price before the victim).
UNI_POOL = pool(UNI, WETH, 1000 * 10**18, USDC, 2_000_000 * 10**6, block=120)
SUSHI_POOL = pool(SUSHI, WETH, 1000 * 10**18, USDC, 2_000_000 * 10**6, block=119)


def swap_env(amount_in: int, out_min: int, path: list[bytes], gas_gwei: int = 30) -> tx_pb2.TxEnvelope:
    data = bytes.fromhex("38ed1739") + eth_abi.encode(
        ["uint256", "uint256", "address[]", "address", "uint256"], [amount_in, out_min, path, b"\x09" * 20, 2**40])
    return tx_pb2.TxEnvelope(chain_id=1, hash=b"\x02" * 32, sender=b"\x09" * 20, to=UNI_ROUTER, input=data,
                             gas_price=(gas_gwei * GWEI).to_bytes(8, "big").lstrip(b"\0"))


def reserves(*pools: PoolReserves) -> dict[tuple[int, bytes], PoolReserves]:
    return {(p.chain_id, p.pair): p for p in pools}


State = dict[tuple[int, bytes], PoolReserves]


def analyze(env: tx_pb2.TxEnvelope, state: State | None, analyzer: Analyzer = ANALYZER) -> list[events_pb2.Opportunity]:
    """The opportunities prepare_batch stores for ``env`` valued on ``state``, checked byte for byte against the
    protobuf library's encoding of the same analysis."""
    raw = ingest_pb2.TxBatch(batch_seq=1, envelopes=[env]).SerializeToString()
    columns = prepare_batch(raw, 1, analyzer, frozenset(), 1 << 20, state)
    want = reference_analyze(analyzer, env, state)
    got = [events_pb2.Event.FromString(v[1:]).opp_detected.opportunity for v in columns.values[2:]]
    assert [o.SerializeToString() for o in got] == [o.SerializeToString() for o in want.opportunities]
    return got


def u(b: bytes) -> int:
    return int.from_bytes(b, "big")


def test_a_loose_swap_is_valued_exactly() -> None:
    amount = 10 * 10**18
    quote = swap_out(amount, 1000 * 10**18, 2_000_000 * 10**6)
    out_min = quote * 98 // 100  # 2% slippage tolerance
    opps = analyze(swap_env(amount, out_min, [WETH, USDC]), reserves(UNI_POOL, SUSHI_POOL))
    by_kind = {o.kind: o for o in opps}
    s = by_kind[SANDWICH]
    r_in, r_out = 1000 * 10**18, 2_000_000 * 10**6
    victim = sandwich.exact_in_victim(amount, out_min)
    best = sandwich.optimal(r_in, r_out, victim, exact_in_amount=amount, min_out=out_min)
    assert best is not None
    assert s.valued and s.valuation_note == ""
    assert u(s.frontrun_amount_in) == best.frontrun_in and u(s.sandwich_profit_wei) == best.profit
    assert u(s.gas_cost_wei) == SANDWICH_GAS * 30 * GWEI
    assert u(s.net_profit_wei) == best.profit - SANDWICH_GAS * 30 * GWEI  # WETH profit is native already
    # 10 WETH after fee into 1,000: 9.97 / 1009.97 = 98.7 bps; the sandwich read the Uniswap pool only (block 120)
    assert s.profit_token == WETH and s.state_block_number == 120 and s.price_impact_bps == 98
    assert not s.HasField("backrun_profit_wei")
    # the victim still gets its amountOutMin behind the reported front-run
    replay = sandwich.run(u(s.frontrun_amount_in), r_in, r_out, victim)
    assert replay is not None and replay.victim_out >= out_min and replay.profit == u(s.sandwich_profit_wei)
    b = by_kind[BACKRUN]
    after_usdc, after_weth = r_out - quote, r_in + amount
    arb = backrun.optimal(1000 * 10**18, 2_000_000 * 10**6, after_usdc, after_weth)
    assert arb is not None and b.valued
    assert u(b.backrun_profit_wei) == arb.profit and u(b.backrun_amount_in) == arb.amount_in
    assert u(b.net_profit_wei) == arb.profit - BACKRUN_GAS * 30 * GWEI
    # ranked by net profit
    nets = [u(o.net_profit_wei) for o in opps if o.valued]
    assert nets == sorted(nets, reverse=True) and len(nets) == 2
    assert any(r.startswith("valued on reserves at block 120") for r in s.reasons)
    assert b.state_block_number == 119  # the back-run read the Sushiswap pool too


def test_no_source_falls_back_to_the_heuristic_and_says_so() -> None:
    opps = analyze(swap_env(10 * 10**18, 0, [WETH, USDC]), None)
    assert opps
    for o in opps:
        assert not o.valued and o.valuation_note == NO_STATE_SOURCE
        assert f"{HEURISTIC_RANK} ({NO_STATE_SOURCE})" in o.reasons
        assert not o.HasField("net_profit_wei")


def test_unknown_pool_state_is_named() -> None:
    opps = analyze(swap_env(10 * 10**18, 0, [WETH, USDC]), reserves(SUSHI_POOL))  # the Uniswap pair is unknown
    assert opps and all(not o.valued and "pool state unknown (uniswap_v2 pair of" in o.valuation_note for o in opps)


@pytest.mark.parametrize("path", [[], [WETH]])
def test_a_path_without_a_hop_is_refused_with_its_reason(path: list[bytes]) -> None:
    """A router call whose path has no hop (empty or one token: it still decodes) gets a reason, not an analysis
    error (the route plan of such a path reads nothing)."""
    state = reserves(UNI_POOL, SUSHI_POOL)
    env = swap_env(10 * 10**18, 0, path)
    raw = ingest_pb2.TxBatch(batch_seq=1, envelopes=[env]).SerializeToString()
    assert prepare_batch(raw, 1, ANALYZER, frozenset(), 1 << 20, state).analysis_errors == 0
    call = ANALYZER.decode_call(1, UNI_ROUTER, 0, env.sender, env.input)[0]
    assert call is not None and call.path == tuple(path)
    why = ANALYZER.valuer.value(1, UNI_ROUTER, call, 0, 30 * GWEI, state)
    assert why == "not valued: the path crosses a pair twice"


def test_a_tight_swap_offers_no_sandwich() -> None:
    amount = 10 * 10**18
    quote = swap_out(amount, 1000 * 10**18, 2_000_000 * 10**6)
    opps = analyze(swap_env(amount, quote, [WETH, USDC]), reserves(UNI_POOL, SUSHI_POOL))
    assert SANDWICH not in {o.kind for o in opps}
    assert BACKRUN in {o.kind for o in opps if o.valued}  # the back-run does not need slack


def test_gas_above_profit_emits_nothing_valued() -> None:
    amount = 10**17  # 0.1 WETH, 2% slack: a profit far below 200k gas at 5000 gwei
    quote = swap_out(amount, 1000 * 10**18, 2_000_000 * 10**6)
    opps = analyze(swap_env(amount, quote * 98 // 100, [WETH, USDC], gas_gwei=5000), reserves(UNI_POOL, SUSHI_POOL))
    assert not [o for o in opps if o.kind in (SANDWICH, BACKRUN)]


def test_token_profit_is_converted_through_its_weth_pair() -> None:
    amount = 20_000 * 10**6  # 20,000 USDC -> WETH: the profit is in USDC
    quote = swap_out(amount, 2_000_000 * 10**6, 1000 * 10**18)
    opps = analyze(swap_env(amount, quote * 97 // 100, [USDC, WETH]), reserves(UNI_POOL, SUSHI_POOL))
    s = {o.kind: o for o in opps}[SANDWICH]
    profit = u(s.sandwich_profit_wei)
    assert s.profit_token == USDC
    assert u(s.net_profit_wei) == swap_out(profit, 2_000_000 * 10**6, 1000 * 10**18) - u(s.gas_cost_wei)


def test_a_token_without_weth_pair_has_no_native_value() -> None:
    token_a, token_b = b"\xaa" * 20, b"\xbb" * 20
    state = reserves(pool(UNI, token_a, 10**24, token_b, 10**24))
    opps = analyze(swap_env(10**22, 0, [token_a, token_b]), state)
    valued = [o for o in opps if o.valued]
    assert valued and all(not o.HasField("net_profit_wei") and o.valuation_note.startswith("native value unknown")
                          for o in valued)


def test_the_capital_bound_clips_the_front_run() -> None:
    """--valuation-max-capital-wei: the sandwich's front-run is at most the bound (in WETH as is; in another token
    at its WETH pair's reserves), the best one within it; without a priced bound, no sandwich figure."""
    capped = Analyzer(venues=Venues(max_capital_wei=10**18))
    weth_in = swap_env(50 * 10**18, 0, [WETH, USDC])
    free = {o.kind: o for o in analyze(weth_in, reserves(UNI_POOL, SUSHI_POOL))}[SANDWICH]
    assert u(free.frontrun_amount_in) > 10**18  # the victim alone would allow a larger one
    state = reserves(UNI_POOL, SUSHI_POOL)
    s = {o.kind: o for o in analyze(weth_in, state, capped)}[SANDWICH]
    assert u(s.frontrun_amount_in) <= 10**18 and u(s.sandwich_profit_wei) > 0
    victim = sandwich.exact_in_victim(50 * 10**18, 1)
    r_in, r_out = 1000 * 10**18, 2_000_000 * 10**6
    best = max((sandwich.run(x, r_in, r_out, victim) for x in range(10**18 - 3000, 10**18 + 1)),
               key=lambda r: r.profit if r else -1)
    assert best is not None and u(s.sandwich_profit_wei) >= best.profit  # the bound's end, where it still rises
    again = sandwich.run(u(s.frontrun_amount_in), r_in, r_out, victim)
    assert again is not None and again.profit == u(s.sandwich_profit_wei)
    # USDC in: 1 WETH of capital is 2,000 USDC at the pair's spot price
    usdc_in = swap_env(200_000 * 10**6, 0, [USDC, WETH])
    s = {o.kind: o for o in analyze(usdc_in, state, capped)}[SANDWICH]
    assert 0 < u(s.frontrun_amount_in) <= 2_000 * 10**6
    # a token without a WETH pair: the bound cannot be priced
    token_a, token_b = b"\xaa" * 20, b"\xbb" * 20
    opps = analyze(swap_env(10**22, 0, [token_a, token_b]), reserves(pool(UNI, token_a, 10**24, token_b, 10**24)),
                   capped)
    assert SANDWICH not in {o.kind for o in opps}


def test_multi_hop_values_the_first_hop_within_the_final_bound() -> None:
    dai = bytes.fromhex("6b175474e89094c44da98b954eedeac495271d0f")
    dai_pool = pool(UNI, USDC, 5_000_000 * 10**6, dai, 5_000_000 * 10**18)
    amount = 10 * 10**18
    q1 = swap_out(amount, 1000 * 10**18, 2_000_000 * 10**6)
    q2 = swap_out(q1, 5_000_000 * 10**6, 5_000_000 * 10**18)
    out_min = q2 * 99 // 100
    opps = analyze(swap_env(amount, out_min, [WETH, USDC, dai]), reserves(UNI_POOL, SUSHI_POOL, dai_pool))
    s = {o.kind: o for o in opps}[SANDWICH]
    x = u(s.frontrun_amount_in)
    bought = swap_out(x, 1000 * 10**18, 2_000_000 * 10**6)
    mid = swap_out(amount, 1000 * 10**18 + x, 2_000_000 * 10**6 - bought)
    assert swap_out(mid, 5_000_000 * 10**6, 5_000_000 * 10**18) >= out_min  # the final bound holds


@pytest.mark.parametrize("state", [None, {}])
def test_reserves_travel_as_plain_rows(state: dict | None) -> None:
    rows = to_wire([UNI_POOL, SUSHI_POOL])
    assert from_wire(rows) == reserves(UNI_POOL, SUSHI_POOL)
    assert to_wire([SUSHI_POOL, UNI_POOL]) == rows  # order-free: equal inputs, equal bytes


def exact_out_env(amount_out: int, max_in: int, path: list[bytes]) -> tx_pb2.TxEnvelope:
    data = bytes.fromhex("8803dbee") + eth_abi.encode(
        ["uint256", "uint256", "address[]", "address", "uint256"], [amount_out, max_in, path, b"\x09" * 20, 2**40])
    return tx_pb2.TxEnvelope(chain_id=1, hash=b"\x03" * 32, sender=b"\x09" * 20, to=UNI_ROUTER, input=data,
                             gas_price=(30 * GWEI).to_bytes(8, "big").lstrip(b"\0"))


def test_an_exact_output_swap_without_a_limit_gets_no_sandwich_figure() -> None:
    """amountInMax = 2**256-1 (no slippage limit): only the victim's balance, which processd does not see, would
    bound a sandwich, so none is reported (it used to come out near 10**45 wei); the back-run is still valued."""
    opps = analyze(exact_out_env(20_000 * 10**6, 2**256 - 1, [WETH, USDC]), reserves(UNI_POOL, SUSHI_POOL))
    assert SANDWICH not in {o.kind for o in opps}
    backruns = [o for o in opps if o.kind == BACKRUN and o.valued]
    assert backruns and u(backruns[0].net_profit_wei) < 10**21
    # with a real limit (1% over the quote) the same swap is sandwiched, within that limit
    limited = analyze(exact_out_env(20_000 * 10**6, 10_2 * 10**17, [WETH, USDC]), reserves(UNI_POOL, SUSHI_POOL))
    s = [o for o in limited if o.kind == SANDWICH]
    assert s and s[0].valued and u(s[0].sandwich_profit_wei) < 10**18


def test_no_leg_leaves_a_reserve_above_uint112() -> None:
    """The pair reverts when a balance would pass 2**112-1 (UniswapV2: OVERFLOW): the simulation does too."""
    top = sandwich.UINT112_MAX
    r_in, r_out = top - 10**18, 10**24
    victim = sandwich.exact_in_victim(10**17, 1)
    assert sandwich.run(10**17, r_in, r_out, victim) is not None  # everything stays within uint112
    assert sandwich.run(10**18, r_in, r_out, victim) is None  # the victim's leg would pass it
    assert sandwich.run(2 * 10**18, r_in, r_out, victim) is None  # the front-run itself would
    assert sandwich.exact_out_victim(10**20, 2**256 - 1)(top - 10, 10**24) is None
