"""Opportunity ranking on real fixture swaps: sensible order, inferred slippage, determinism."""

from __future__ import annotations

import random

import eth_abi

from common.pb.v1 import events_pb2, tx_pb2
from common.testing.fixtures import load_mainnet_calls
from common.testing.samples import envelope_from_call, fixture_envelopes
from processd.analysis.analyzer import Analyzer
from processd.analysis.searcher import SANDWICH, size_points, slippage_points, urgency_points

CALLS = {c.tx_hash: c for c in load_mainnet_calls()}
ANALYZER = Analyzer()

# Real mainnet swaps from the fixture.
LARGE_V3 = "0xdbaa07f706a6e52630ee122295b5e6f67d5e90b08db6eaa3a28b405dbf325727"  # 95 ETH -> USDT, exactInputSingle
SMALL_V3 = "0xc42d38b466869858"  # prefix: a 0.00002 ETH exactInputSingle
LARGE_V2 = "0x708bd389fc5e2cb917f3ccf61e4822d771334fa4a76315d59098aac634c83f5d"  # 20 ETH swapExactETHForTokens

USDC = bytes.fromhex("a0b86991c6218b36c1d19d4a2e9eb0ce3606eb48")
USDT = bytes.fromhex("dac17f958d2ee523a2206206994597c13d831ec7")
DAI = bytes.fromhex("6b175474e89094c44da98b954eedeac495271d0f")
WETH = bytes.fromhex("c02aaa39b223fe8d0a0e5c4f27ead9083c756cc2")
V2_ROUTER = bytes.fromhex("7a250d5630b4cf539739df2c5dacb4c659f2488d")


def call_by_prefix(prefix: str) -> tx_pb2.TxEnvelope:
    (call,) = [c for h, c in CALLS.items() if h.startswith(prefix)]
    return envelope_from_call(call)


def by_kind(env: tx_pb2.TxEnvelope) -> dict[int, events_pb2.Opportunity]:
    return {o.kind: o for o in ANALYZER.analyze(env).opportunities}


def with_word(env: tx_pb2.TxEnvelope, word_index: int, value: int) -> tx_pb2.TxEnvelope:
    """The same real transaction with one ABI head word replaced (e.g. its amountOutMinimum)."""
    out = tx_pb2.TxEnvelope()
    out.CopyFrom(env)
    start = 4 + 32 * word_index
    out.input = env.input[:start] + value.to_bytes(32, "big") + env.input[start + 32 :]
    return out


def v2_swap(amount_in: int, out_min: int, path: list[bytes], gas_gwei: int = 30) -> tx_pb2.TxEnvelope:
    data = bytes.fromhex("38ed1739") + eth_abi.encode(
        ["uint256", "uint256", "address[]", "address", "uint256"], [amount_in, out_min, path, b"\x09" * 20, 2**40])
    return tx_pb2.TxEnvelope(chain_id=1, hash=b"\x02" * 32, sender=b"\x09" * 20, to=V2_ROUTER, input=data,
                             gas_price=(gas_gwei * 10**9).to_bytes(8, "big").lstrip(b"\0"))


def test_component_curves_are_monotonic_and_capped() -> None:
    assert size_points(None, 45) == size_points(50, 45) == 0
    assert size_points(1_000, 45) < size_points(100_000, 45) < size_points(10**6, 45) == size_points(10**9, 45) == 45
    assert urgency_points(1, 10) == 0 < urgency_points(30, 10) < urgency_points(500, 10) < 10
    assert slippage_points(10, 30) < slippage_points(0, 30) == slippage_points(50, 30) < slippage_points(300, 30) == 30


def test_large_real_swap_outranks_small_real_swap() -> None:
    large = by_kind(envelope_from_call(CALLS[LARGE_V3]))
    small = by_kind(call_by_prefix(SMALL_V3))
    assert large[SANDWICH].score > small[SANDWICH].score + 20
    assert int.from_bytes(large[SANDWICH].notional_wei, "big") == 95 * 10**18
    assert any("95 ETH" in r for r in large[SANDWICH].reasons)


def test_large_loose_swap_outranks_small_tight_swap() -> None:
    """The real 95 ETH swap with its amountOutMinimum removed (word 6 of the struct) vs a small stablecoin
    swap whose 0.1% tolerance is inferable (pegged pair) and the real small swap."""
    real_large = envelope_from_call(CALLS[LARGE_V3])
    loose_large = with_word(real_large, 6, 0)
    tight_small = v2_swap(500 * 10**6, 499_500_000, [USDC, USDT])
    loose = by_kind(loose_large)[SANDWICH]
    tight = by_kind(tight_small)[SANDWICH]
    assert loose.slippage_bps == 10_000 and "no slippage protection" in " ".join(loose.reasons)
    assert tight.slippage_bps == 10
    ranked = sorted([loose, tight, by_kind(real_large)[SANDWICH], by_kind(call_by_prefix(SMALL_V3))[SANDWICH]],
                    key=lambda o: -o.score)
    assert ranked[0] is loose and loose.score >= 85
    assert ranked[1].tx_hash == real_large.hash  # large with unknown (assumed 0.5%) tolerance
    assert loose.score > tight.score + 40
    # same small size, no protection: above the tight one
    assert by_kind(v2_swap(500 * 10**6, 0, [USDC, USDT]))[SANDWICH].score > tight.score + 10


def test_looser_minimum_never_lowers_the_sandwich_score() -> None:
    env = envelope_from_call(CALLS[LARGE_V2])
    real_min = int.from_bytes(env.input[4:36], "big")
    scores = [by_kind(with_word(env, 0, m))[SANDWICH].score for m in (real_min, real_min // 2, real_min // 100, 0)]
    assert scores == sorted(scores) and scores[-1] > scores[0]


def test_pegged_pair_slippage_is_inferred() -> None:
    opp = by_kind(v2_swap(10_000 * 10**6, 9_700 * 10**18, [USDC, DAI]))[SANDWICH]
    assert opp.slippage_bps == 300
    assert any("3.00%" in r and "USDC/DAI" in r for r in opp.reasons)
    assert int.from_bytes(opp.notional_wei, "big") == 5 * 10**18  # $10,000 at the $2,000/ETH reference


def test_higher_tip_and_bigger_size_raise_scores() -> None:
    low = by_kind(v2_swap(1_000 * 10**6, 0, [USDC, WETH], gas_gwei=2))
    high = by_kind(v2_swap(1_000 * 10**6, 0, [USDC, WETH], gas_gwei=400))
    big = by_kind(v2_swap(1_000_000 * 10**6, 0, [USDC, WETH], gas_gwei=2))
    for kind in low:
        assert high[kind].score > low[kind].score
        assert big[kind].score > low[kind].score


def test_cyclic_path_is_an_arb_not_a_sandwich() -> None:
    opps = by_kind(v2_swap(50 * 10**18, 51 * 10**18, [WETH, USDC, WETH]))
    assert events_pb2.OPPORTUNITY_KIND_ARB_CANDIDATE in opps and SANDWICH not in opps
    assert any("cyclic" in r for r in opps[events_pb2.OPPORTUNITY_KIND_ARB_CANDIDATE].reasons)


def test_same_swap_is_smaller_in_polygon_terms() -> None:
    """On chain 137 the 20 ETH value is 20 POL (reference $0.50): a far smaller, lower-ranked swap."""
    eth = by_kind(envelope_from_call(CALLS[LARGE_V2], 1))
    pol = by_kind(envelope_from_call(CALLS[LARGE_V2], 137))
    assert eth[SANDWICH].score > pol.get(SANDWICH, events_pb2.Opportunity()).score
    assert any("ETH" in r for r in eth[SANDWICH].reasons)


def test_fixture_opportunities_are_well_formed() -> None:
    envelopes = fixture_envelopes()
    total = 0
    for env in envelopes:
        analysis = ANALYZER.analyze(env)
        opps = analysis.opportunities
        if opps:
            assert analysis.features.category == events_pb2.TX_CATEGORY_SWAP and analysis.features.decoded
        assert [o.score for o in opps] == sorted((o.score for o in opps), reverse=True)
        assert len({o.kind for o in opps}) == len(opps)
        for o in opps:
            total += 1
            assert 10 <= o.score <= 100 and o.reasons and o.tx_hash == env.hash and o.chain_id == 1
            assert o.seq_id == 0 and o.protocol == analysis.features.protocol
    assert total >= 300


def test_ranking_is_deterministic_and_order_independent() -> None:
    envelopes = fixture_envelopes()
    first = {e.hash: [o.SerializeToString() for o in ANALYZER.analyze(e).opportunities] for e in envelopes}
    shuffled = envelopes[:]
    random.Random(7).shuffle(shuffled)
    fresh = Analyzer()
    second = {e.hash: [o.SerializeToString() for o in fresh.analyze(e).opportunities] for e in shuffled}
    assert first == second
    assert sum(len(v) for v in first.values()) > 0


def test_min_score_filters() -> None:
    env = envelope_from_call(CALLS[LARGE_V3])
    assert len(Analyzer(min_score=101).analyze(env).opportunities) == 0
    assert len(Analyzer(min_score=0).analyze(env).opportunities) >= 2
