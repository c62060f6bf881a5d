"""processd's own valuations proven by execution on the real stack (issue 17): the Uniswap world on anvil, router
swaps in the traffic, ingestd following the pools (--pool-state), processd valuing the pending swaps, gatewayd
serving them; the verifier's adapter (common/testing/verify_processd.py) turns the REST opportunity JSON into legs
and the executor (common/testing/verify.py) runs each on the chain: realized == processd's predicted profit to the
wei, and the legs are the JSON's amounts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.testing.stack import ChainSpec, Stack, StackConfig
from common.testing.verify import Prediction, VictimTx, execute, fund_searcher
from common.testing.verify_cli import ProcessdPredictor, collect, warm_up
from common.testing.verify_processd import StateReader, skip_if_state_moved
from common.testing.verify_reference import decode_swap

pytestmark = pytest.mark.integration

_WANTED = 16


def _check_legs(opp: Mapping[str, Any], p: Prediction) -> None:
    """The legs carry the JSON's amounts: a sandwich's front-run sells frontrun_amount_in on the victim's router and
    the back-run sells all it bought; a back-run sells backrun_amount_in on the other router first."""
    assert opp["valued"] is True and p.state_block_number == opp["state_block_number"]
    swap = decode_swap(p.victim)
    assert swap is not None and p.profit_token == opp["profit_token"] == swap.path[0]
    if opp["kind"] == "sandwich_candidate":
        [front], [back] = p.front, p.back
        assert front.router == back.router == p.victim.to
        assert front.amount_in == int(opp["frontrun_amount_in"]) and back.amount_in == front.expected_out
        assert front.path == tuple(reversed(back.path)) and p.predicted_profit_wei == int(opp["sandwich_profit_wei"])
    else:
        assert p.front == () and len(p.back) == 2
        first, second = p.back
        assert first.router != p.victim.to and second.router == p.victim.to
        assert first.amount_in == int(opp["backrun_amount_in"]) and second.amount_in == first.expected_out
        assert p.predicted_profit_wei == int(opp["backrun_profit_wei"])
    assert p.predicted_gas_cost_wei == int(opp["gas_cost_wei"]) > 0
    if opp["net_profit_wei"] is not None:
        assert p.predicted_net_wei == int(opp["net_profit_wei"])


def test_processd_valuations_realize_exactly(tmp_path: Path) -> None:
    cfg = StackConfig(chains=(ChainSpec(1, rate_tx_s=40),), uniswap=True, pool_state=True, swap_share=0.8,
                      mine_interval_s=0.0, start_traffic=False, anvil_max_pending=0, log_dir=tmp_path / "logs",
                      data_dir=tmp_path / "data")
    with Stack(cfg) as stack, httpx.Client() as client:
        world = stack.worlds[1]
        state = StateReader(world, client)
        searcher = fund_searcher(world)
        stack.start_generators()
        block = warm_up(world, 6.0)
        predictor = ProcessdPredictor(world, state, block)
        pairs: list[tuple[Mapping[str, Any], Prediction]] = []

        def keep(victim: VictimTx, opp: Mapping[str, Any]) -> list[Prediction]:
            got = predictor(victim, opp)
            pairs.extend((opp, p) for p in got)
            return got

        preds, seen = collect(stack.get_json, world, _WANTED, 120.0, client, keep, per_kind=True)
        stack.stop_generators()
        assert len(preds) == _WANTED, (seen, predictor.counts)
        kinds = Counter(p.kind for p in preds)
        assert kinds["sandwich"] >= 1 and kinds["backrun"] >= 1, kinds
        assert predictor.counts["arb_candidate seen"] == predictor.counts["arb_candidate not valued"]
        for opp, p in pairs[:_WANTED]:
            _check_legs(opp, p)
            assert skip_if_state_moved(p, state) is None  # nothing mined after the warm-up block
            out = execute(world, p, searcher, client=client)
            assert out.status == "executed" and out.ordering_ok and out.victim_status == 1, out.explanation
            assert out.leg_statuses == [1] * (len(p.front) + len(p.back)) and out.reverted
            assert out.exact and out.realized_profit_wei == p.predicted_profit_wei > 0, out.explanation
