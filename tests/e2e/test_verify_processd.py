"""processd's own valuations proven by execution on the real stack (issue 17): the Uniswap world on anvil, router
swaps in the traffic, ingestd following the pools (--pool-state), processd valuing the pending swaps, gatewayd
serving them; the verifier's adapter (common/testing/verify_processd.py) turns the REST opportunity JSON into legs
and the executor (common/testing/verify.py) runs each on the chain: realized == processd's predicted profit to the
wei, and the legs are the JSON's amounts.

The run is the short verifier's own, ``scripts/verify_opportunities --short --predictor processd`` (its 30
opportunities, its exit status and its artifact ``artifacts/signal/verify_processd_short.json``), which the test
command used to run on its own after pytest as well: one stack run checks both, here, stricter (every opportunity
executed and exact, not 99 %) and in the parallel phase."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest

from common.testing import verify_cli
from common.testing.verify import Prediction, VictimTx
from common.testing.verify_reference import decode_swap

pytestmark = pytest.mark.integration


class _Recording(verify_cli.ProcessdPredictor):
    """processd's predictor as the CLI builds it, keeping each opportunity's JSON with its prediction (the legs
    are checked against the JSON after the run)."""

    pairs: list[tuple[Mapping[str, Any], Prediction]] = []

    def __call__(self, victim: VictimTx, opp: Mapping[str, Any]) -> list[Prediction]:
        got = super().__call__(victim, opp)
        self.pairs.extend((opp, p) for p in got)
        return got


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


def test_processd_valuations_realize_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """The short verifier with processd's predictor: exit 0, every one of its 30 opportunities executed and exact
    (realized profit == predicted, legs mined in order around the victim, all reverted), both kinds, the
    arbitrage candidates never valued, and each prediction's legs the amounts of its opportunity JSON."""
    pairs: list[tuple[Mapping[str, Any], Prediction]] = []
    monkeypatch.setattr(_Recording, "pairs", pairs)
    monkeypatch.setattr(verify_cli, "ProcessdPredictor", _Recording)
    status = verify_cli.main(["--short", "--predictor", "processd"])
    artifact = json.loads(verify_cli.PROCESSD_SHORT_OUT.read_text())
    summary, rows, seen = artifact["summary"], artifact["opportunities"], artifact["collect"]
    assert status == 0, summary
    assert artifact["mode"] == "short" and len(rows) == len(pairs) == verify_cli._SHORT_COUNT, (seen, summary)
    kinds = Counter(p.kind for _, p in pairs)
    assert kinds["sandwich"] >= 1 and kinds["backrun"] >= 1, kinds
    assert seen.get("arb_candidate seen", 0) == seen.get("arb_candidate not valued", 0), seen
    for (opp, p), row in zip(pairs, rows, strict=True):
        _check_legs(opp, p)
        assert row["victim_hash"] == p.victim.hash and row["status"] == "executed", row  # not skipped: state kept
        assert row["ordering_ok"] and row["victim_status"] == 1 and row["reverted"], row
        assert row["leg_statuses"] == [1] * (len(p.front) + len(p.back)), row
        assert row["exact"] and int(row["realized_profit_wei"]) == p.predicted_profit_wei > 0, row
