"""A many-filter subscription across kill -9 of processd: every event of the final log that a filter takes is
delivered exactly once, in seq order, with the ids of exactly the filters that take it.

processd runs as a real subprocess on a data dir that survives it; it is killed with SIGKILL twice while the
client streams (once in the middle of the replay, once after live traffic, each time with the consumer behind so
that events processd had sent were never queued) and restarted on the same data dir and port. SubscribeMany has
no resume point, so what the client missed is read back from the log (ScanEvents with each filter) and merged
with the new stream. Expected events and ids come from a ScanEvents walk of the final log over raw gRPC.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from common.client import Backoff, Client, TaggedEvent
from common.testing.ingest_push import push_envelopes
from common.testing.synth import synthetic_envelopes
from tests.client._helpers import FILTERS, RULES, pairs, raw_log, restart, tagged, take
from tests.reliability._support import ProcessdProc

pytestmark = pytest.mark.integration


async def test_kill9_mid_stream_loses_and_repeats_nothing(tmp_path: Path) -> None:
    proc = ProcessdProc(tmp_path / "lmdb", tmp_path / "processd.log", "--flush-interval-ms", "1",
                        "--analysis-workers", "0")
    await restart(proc)
    try:
        await push_envelopes(proc.addr, synthetic_envelopes(300, seed=11), batch_size=50)
        got: list[TaggedEvent] = []
        async with Client(proc.addr, queue_events=16, reconnect=Backoff(initial_s=0.05, max_s=0.5)) as c:
            first = tagged(await raw_log(proc.addr), RULES)
            sub = c.subscribe_many(FILTERS, from_seq=1)
            # 1. In the middle of the replay: the consumer stops after 100 events, the task is blocked on the full
            # queue with more read, and processd dies.
            await take(sub, 100, got)
            proc.kill()
            await restart(proc)
            # 2. Live traffic after the restart (some of it while the client waits to reconnect), then a kill
            # after the consumer is past the first backlog.
            await push_envelopes(proc.addr, synthetic_envelopes(200, seed=12), batch_size=20, session_id="b")
            await take(sub, len(first) + 100, got)
            proc.kill()
            await restart(proc)
            await push_envelopes(proc.addr, synthetic_envelopes(100, seed=13), batch_size=20, session_id="c")
            want = tagged(await raw_log(proc.addr), RULES)
            await take(sub, len(want), got)
            assert sub.reconnects >= 2
            await sub.aclose()
    finally:
        proc.stop()
    assert len(want) > len(first) + 100
    assert pairs(got) == want
