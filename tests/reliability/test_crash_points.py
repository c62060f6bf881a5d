"""Crash points: processd's TEST-ONLY switch exits abruptly (``os._exit``, like SIGKILL) at one point of the
ingest path; a record must survive exactly when it was acked (or was resent), and exactly once.

Serial runs (one batch in flight, so one batch per group commit) pin the exact outcome of each point:

=============  ====================================  ======================
point          crashing batch stored?                crashing batch acked?
=============  ====================================  ======================
before_put     no (nothing written)                  no
after_put      no (transaction never committed)      no
after_commit   yes                                   no  -> resend = duplicate
after_ack      yes                                   maybe (ack written, process gone)
=============  ====================================  ======================

Concurrent runs (8 batches in flight, groups of several batches) check the general law: acked is a subset of
stored, stored is a subset of sent, no duplicates. After a clean restart the client resends every unacked
batch and the log ends with every envelope exactly once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from common.testing.synth import synthetic_envelopes
from tests.reliability._support import ProcessdProc, ResendingPusher, audit_log, keys_of

pytestmark = pytest.mark.integration

BATCH = 20
CRASH_AT = 5


def _batch_keys(envelopes: list, first: int, last: int) -> set[tuple[int, bytes]]:
    """Keys of batches ``first``..``last`` (1-based, inclusive)."""
    return keys_of(envelopes[(first - 1) * BATCH:last * BATCH])


@pytest.mark.parametrize("inflight", [1, 8], ids=["serial", "concurrent"])
@pytest.mark.parametrize("point", ["before_put", "after_put", "after_commit", "after_ack"])
def test_record_survives_exactly_when_acked(tmp_path: Path, point: str, inflight: int) -> None:
    envelopes = synthetic_envelopes(BATCH * 12, seed=100 * len(point) + inflight, chain_ids=(1, 137))
    everything = keys_of(envelopes)
    env = {"MEMPULSE_TEST_CRASH_POINT": point, "MEMPULSE_TEST_CRASH_AFTER_BATCHES": str(CRASH_AT)}
    crashing = ProcessdProc(tmp_path / "lmdb", tmp_path / "processd.log", "--flush-interval-ms", "0", env=env)
    pusher = ResendingPusher(crashing.addr, envelopes, batch_size=BATCH, max_inflight=inflight)
    clean: ProcessdProc | None = None
    try:
        crashing.start()
        pusher.start()
        status = crashing.wait(timeout_s=60)
        assert status == 137, f"processd did not crash at {point}: {status}\n{crashing.log_tail()}"
        assert f"TEST crash point {point}" in crashing.output()
        pusher.wait_stream_failure(0, timeout_s=30)  # acks received before the crash are all counted
        acked = pusher.acked_snapshot()
        audit = audit_log(crashing.data_dir)
        audit.assert_clean()
        stored = set(audit.txs)
        assert acked <= stored, f"{len(acked - stored)} acked envelopes lost at {point}"
        assert stored <= everything
        if inflight == 1:
            before = _batch_keys(envelopes, 1, CRASH_AT - 1)
            crashing_batch = _batch_keys(envelopes, CRASH_AT, CRASH_AT)
            if point in ("before_put", "after_put"):
                assert stored == before and acked == before
            elif point == "after_commit":
                assert stored == before | crashing_batch and acked == before
            else:  # after_ack: the ack was written; whether it reached us before the exit is a race
                assert stored == before | crashing_batch and before <= acked <= stored
        # Restart without the switch on the same port and data: the client resends what was not acked.
        clean = ProcessdProc(crashing.data_dir, tmp_path / "processd2.log", "--flush-interval-ms", "0")
        clean.port, clean.addr = crashing.port, crashing.addr
        clean.argv[clean.argv.index("--listen") + 1] = crashing.addr
        clean.start()
        pusher.wait_done(timeout_s=60)
        clean.stop()
        final = audit_log(crashing.data_dir)
        final.assert_clean()
        assert set(final.txs) == everything
        # Stored-but-unacked envelopes come back as duplicates on resend, never as new records.
        assert pusher.duplicates == len(stored - acked)
        assert pusher.accepted == len(everything) - len(stored - acked)
    finally:
        pusher.stop()
        crashing.stop()
        if clean is not None:
            clean.stop()
