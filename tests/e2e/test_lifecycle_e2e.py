"""Issue 16 end to end, short mode (the long one: scripts/reliability, tests/reliability/test_lifecycle_run.py): two
mining anvil chains with replayed traffic, speed-ups and cancels, evictions (``anvil_dropTransaction``), a kill -9
of processd and one of ingestd, and a reorg of depth 2 (``anvil_reorg``); then, for every transaction the generator
sent, the lifecycle gatewayd reports (``/transactions/{hash}``) equals the node's (receipt, block, index, receipt
status, replacement), and mempulse's inclusion latency is within one block time of block timestamp minus send time.
The run and its semantics (private flow, what no source could see): common/testing/lifecycle_run.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.testing.lifecycle_run import RunConfig, RunResult, run

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    return run(RunConfig(log_dir=Path(tmp_path_factory.mktemp("lifecycle")) / "logs"))


def test_every_sent_transaction_has_the_lifecycle_the_node_says(result: RunResult) -> None:
    doc = result.as_json()
    assert not result.mismatches, json.dumps({k: doc[k] for k in ("mismatches", "mismatch_fields",
                                                                  "mismatch_examples", "truth", "kills")}, indent=1)
    # What the run went through (so that an agreement is not an empty one).
    assert result.records >= 1000 and set(result.by_chain) == {1, 137}
    assert all(c["included"] > 0 and c["replaced"] > 0 for c in result.by_chain.values()), result.by_chain
    assert result.replacements / result.records >= 0.05, doc
    assert [k["name"] for k in result.kills] == ["processd", "ingestd"]
    assert len(result.reorgs) == 1 and result.reorgs[0]["depth"] == 2 and result.reorgs[0]["txs"] > 0
    assert doc["snapshot_lifecycle"]["137"]["reorgs"] >= 1


def test_evicted_transactions_are_reported_dropped_as_evicted(result: RunResult) -> None:
    assert len(result.evicted) == 10
    assert set(result.evicted_reported.values()) == {"dropped:evicted"}, result.evicted_reported


def test_inclusion_latency_is_within_one_block_time_of_the_node(result: RunResult) -> None:
    """Within one block time at the 99th percentile and for all but 1 % (this shared 2-core machine stalls ingestd
    now and then: the long run saw 2 of 17,067 at 2.3 s, one batch; the artifact has the distribution)."""
    latency = result.as_json()["latency"]
    assert result.latency_checked >= result.truth_counts["included"] // 2, latency
    assert abs(latency["error_ms_p99"]) <= 1000, latency
    assert result.latency_over_block_time <= result.latency_checked // 100, latency
