"""The short opportunity verifier with the reference predictor (``scripts/verify_opportunities --short``, issue 17):
a stack with the Uniswap world, 30 of its pending router swaps predicted by the reference's exact V2 math, each
sandwich or back-run executed on anvil around its victim. The test command used to run it on its own after pytest;
here it runs in the parallel phase, with the same exit status and the same artifact
(``artifacts/signal/verify_short.json``). processd's predictor: tests/e2e/test_verify_processd.py."""

from __future__ import annotations

import json

import pytest

from common.testing import verify_cli

pytestmark = pytest.mark.integration


def test_short_reference_verifier_passes() -> None:
    """Exit 0: something executed, at least 99 % of the executed exact, no predicted-profitable one lost (a victim
    mined or gone before its turn is skipped, as in the script)."""
    status = verify_cli.main(["--short", "--predictor", "reference"])
    artifact = json.loads(verify_cli.SHORT_OUT.read_text())
    summary = artifact["summary"]
    assert status == 0, summary
    assert artifact["mode"] == "short" and artifact["predictor"] == "reference", artifact["mode"]
    assert summary["executed"] > 0, summary
