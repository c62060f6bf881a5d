"""kill -9 loop: processd is SIGKILLed at random moments while a resending client streams into it.

Guarantee: nothing acknowledged is lost. After every kill the LMDB environment opens cleanly, every batch
acked before the kill is readable, seqs are contiguous, no (chain, hash) is stored twice and the indexes agree
with the log; after the last restart the client's resends complete the log (every envelope stored exactly once).

Short mode (default pytest run): 10 kills. Long mode (scripts/reliability): 200 kills, or
``MEMPULSE_RELIABILITY_KILLS``.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from common.testing.synth import synthetic_envelopes
from tests.reliability._support import ProcessdProc, ResendingPusher, audit_log, keys_of, knob, write_artifact

pytestmark = pytest.mark.integration


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("variant", ["default", "growing_map"])
def test_kill9_loop_loses_nothing_acked(tmp_path: Path, variant: str) -> None:
    """``growing_map`` starts with a 1 MiB map, so kills also land around MapFull -> abort -> grow -> retry."""
    kills = knob("kills", 10, 200)
    extra: tuple[str, ...] = ()
    if variant == "growing_map":
        kills = max(1, kills // 2)
        extra = ("--map-size-mb", "1", "--map-max-size-mb", "1024")
    seed = knob("seed", 7, int(time.time()))
    rng = random.Random(seed)
    per_kill = 400
    envelopes = synthetic_envelopes(per_kill * (kills + 1), seed=seed, chain_ids=(1, 137, 56))
    expected = keys_of(envelopes)
    proc = ProcessdProc(tmp_path / "lmdb", tmp_path / "processd.log", "--flush-interval-ms", "1", *extra)
    # Paced so that sending spans every kill (about 0.35 s apart plus a restart): a kill must find a stream
    # to break however fast processd commits.
    batches = len(envelopes) // 50
    pusher = ResendingPusher(proc.addr, envelopes, batch_size=50, max_inflight=8, pace_s=kills * 0.8 / batches)
    figures: dict[str, object] = {"seed": seed, "variant": variant, "kills_planned": kills,
                                  "envelopes": len(envelopes)}
    survived = 0
    max_acked_checked = 0
    try:
        proc.start()
        pusher.start()
        for i in range(kills):
            time.sleep(rng.uniform(0.05, 0.6))
            acked_before = pusher.acked_snapshot()
            status = proc.kill()
            assert status == -9, f"kill {i}: processd exited with {status} before the kill:\n{proc.log_tail()}"
            audit = audit_log(proc.data_dir)
            audit.assert_clean()
            stored = set(audit.txs)
            lost = acked_before - stored
            assert not lost, f"kill {i}: {len(lost)} acked envelopes missing after SIGKILL"
            assert stored <= expected, f"kill {i}: stored envelopes that were never sent"
            max_acked_checked = max(max_acked_checked, len(acked_before))
            proc.start()  # ready = health SERVING: the environment opened and the read models were rebuilt
            survived += 1
        pusher.wait_done(timeout_s=120)
        proc.stop()
        final = audit_log(proc.data_dir)
        final.assert_clean()
        assert set(final.txs) == expected, (f"{len(expected - set(final.txs))} envelopes missing after resends, "
                                            f"{len(set(final.txs) - expected)} unexpected")
        assert final.first_seq == 1
        # An envelope committed by an attempt whose ack was lost comes back as a duplicate on resend: never twice.
        assert pusher.accepted + pusher.duplicates == len(expected)
        assert pusher.stream_failures >= kills, "the client must have seen every kill"
        figures.update(kills_survived=survived, acked_records_lost=0, duplicates=len(final.duplicates),
                       stored=len(final.txs), events=final.events, last_seq=final.last_seq,
                       batches_resent=pusher.resent_batches, duplicates_answered_on_resend=pusher.duplicates,
                       stream_failures=pusher.stream_failures, largest_acked_set_checked=max_acked_checked)
        if variant == "growing_map":  # the log file spans every restart
            figures["map_grows"] = proc.log_path.read_text(errors="replace").count("LMDB map full")
            assert figures["map_grows"], "the map never grew: the variant did not test what it claims"
        write_artifact("kill_loop" if variant == "default" else f"kill_loop_{variant}", figures)
    finally:
        pusher.stop()
        proc.stop()
