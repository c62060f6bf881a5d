"""Issue 16's long run (scripts/reliability; ``--lifecycle-txs N``, default 20,000): the end-to-end lifecycle run of
common/testing/lifecycle_run.py sized up: at least N transactions over two mining chains with >= 5 % speed-ups and
cancels, evictions, a kill -9 of processd and one of ingestd, and a reorg; zero mismatches between the node's truth
and what gatewayd reports, inclusion latency within one block time. Writes artifacts/reliability/lifecycle_e2e.json
(counts by outcome, mismatches with examples, the latency error distribution). The short run, in every test run,
is tests/e2e/test_lifecycle_e2e.py; this one only runs in long mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.testing.lifecycle_run import RunConfig, run
from common.testing.stack import ChainSpec
from tests.reliability._support import knob, long_mode, write_artifact

pytestmark = pytest.mark.integration

RATE_TX_S = 40.0  # per chain: what two anvils mining every second take on this shared machine, with room


@pytest.mark.skipif(not long_mode(), reason="long mode only (scripts/reliability); the short run is "
                                             "tests/e2e/test_lifecycle_e2e.py")
def test_lifecycle_long_run(tmp_path: Path) -> None:
    txs = knob("lifecycle_txs", 2_000, 20_000)
    traffic_s = txs / (2 * RATE_TX_S * 1.05)  # ~11 % of the records are replacements; the rest is headroom
    chains = (ChainSpec(1, rate_tx_s=RATE_TX_S, block_time_s=1, replace_share=0.1),
              ChainSpec(137, rate_tx_s=RATE_TX_S, block_time_s=1, replace_share=0.1))
    cfg = RunConfig(chains=chains, traffic_s=traffic_s, min_records=txs, evict_at_s=0.1 * traffic_s,
                    evictions_per_chain=25, kill_processd_at_s=0.3 * traffic_s, kill_ingestd_at_s=0.55 * traffic_s,
                    reorg_at_s=0.75 * traffic_s, settle_timeout_s=120.0, log_dir=tmp_path / "logs")
    result = run(cfg)
    doc = result.as_json()
    doc.update(target_txs=txs, rate_tx_s_per_chain=RATE_TX_S, traffic_s=round(traffic_s, 1),
               evicted_reported=sorted(set(result.evicted_reported.values())))
    write_artifact("lifecycle_e2e", doc)
    assert not result.mismatches, json.dumps({k: doc[k] for k in ("mismatches", "mismatch_fields",
                                                                  "mismatch_examples")}, indent=1)
    assert result.records >= txs and result.replacements / result.records >= 0.05, doc
    assert [k["name"] for k in result.kills] == ["processd", "ingestd"] and len(result.reorgs) == 1
    assert set(result.evicted_reported.values()) == {"dropped:evicted"}, result.evicted_reported
    latency = doc["latency"]  # within one block time at p99 and for all but 1 % (tests/e2e/test_lifecycle_e2e.py)
    assert result.latency_checked > 0 and abs(latency["error_ms_p99"]) <= 1000, latency
    assert result.latency_over_block_time <= result.latency_checked // 100, latency
