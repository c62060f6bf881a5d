"""A subscription across kill -9 of processd (and a frozen one): every event of the final log is delivered exactly
once, in seq order.

processd runs as a real subprocess on a data dir that survives it; it is killed with SIGKILL twice while the
client streams (once in the middle of the catch-up, once after live traffic) and restarted on the same data dir
and port. The delivered events are compared with a ScanEvents walk of the final log over raw gRPC.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from common.client import Backoff, Client, Event, Subscription
from common.testing.ingest_push import push_envelopes
from common.testing.synth import synthetic_envelopes
from tests.client._helpers import raw_log, restart
from tests.reliability._support import ProcessdProc

pytestmark = pytest.mark.integration


async def _take(sub: Subscription, got: list[Event], count: int) -> None:
    async for ev in sub:
        got.append(ev)
        if len(got) >= count:
            return


async def test_kill9_mid_stream_loses_and_repeats_nothing(tmp_path: Path) -> None:
    proc = ProcessdProc(tmp_path / "lmdb", tmp_path / "processd.log", "--flush-interval-ms", "1",
                        "--analysis-workers", "0")
    await restart(proc)
    try:
        await push_envelopes(proc.addr, synthetic_envelopes(300, seed=11), batch_size=50)
        got: list[Event] = []
        async with Client(proc.addr, queue_events=16, reconnect=Backoff(initial_s=0.05, max_s=0.5)) as c:
            first_total = (await c.snapshot()).last_seq_id
            sub = c.subscribe(from_seq=1)
            # 1. In the middle of the catch-up: the consumer stops after 100 events, the stream is blocked on
            # the full queue with more in flight, and processd dies.
            await _take(sub, got, 100)
            proc.kill()
            await restart(proc)
            # 2. Live traffic after the restart, then a kill after the consumer is past the first backlog.
            await push_envelopes(proc.addr, synthetic_envelopes(200, seed=12), batch_size=20, session_id="b")
            await _take(sub, got, first_total + 100)
            proc.kill()
            await restart(proc)
            await push_envelopes(proc.addr, synthetic_envelopes(100, seed=13), batch_size=20, session_id="c")
            final = await raw_log(proc.addr)
            await _take(sub, got, len(final))
            assert sub.reconnects >= 2
            await sub.aclose()
    finally:
        proc.stop()
    assert [e.seq_id for e in got] == [e.seq_id for e in final] == list(range(1, len(final) + 1))
    assert [(e.chain_id, e.tx_hash, e.kind.value) for e in got] == [
        (e.chain_id, "0x" + e.tx_hash.hex(), ("", "tx_seen", "tx_decoded", "opp_detected", "tx_source_seen")[e.kind])
        for e in final]


async def test_a_silent_stream_is_reopened_and_nothing_is_lost(tmp_path: Path) -> None:
    """processd frozen (SIGSTOP) looks like a half-open connection: no error, no heartbeat. After
    ``idle_timeout_s`` without a message the client drops the stream and reconnects; once processd runs again the
    subscription goes on from where it was."""
    proc = ProcessdProc(tmp_path / "lmdb", tmp_path / "processd.log", "--flush-interval-ms", "1",
                        "--analysis-workers", "0")
    await restart(proc)
    try:
        await push_envelopes(proc.addr, synthetic_envelopes(50, seed=21), batch_size=25)
        got: list[Event] = []
        # 6 s: just over processd's 5 s heartbeat, so a live stream is never taken for dead.
        async with Client(proc.addr, idle_timeout_s=6.0, reconnect=Backoff(initial_s=0.05, max_s=0.2)) as c:
            first_total = (await c.snapshot()).last_seq_id
            async with c.subscribe(from_seq=1) as sub:
                await _take(sub, got, first_total)
                assert sub.reconnects == 0
                proc.send_signal(signal.SIGSTOP)
                for _ in range(600):  # until the silent stream has been given up on (at least 6 s)
                    if sub.reconnects:
                        break
                    await asyncio.sleep(0.05)
                proc.send_signal(signal.SIGCONT)
                assert sub.reconnects >= 1, "the silent stream was never reopened"
                await push_envelopes(proc.addr, synthetic_envelopes(50, seed=22), batch_size=25, session_id="b")
                final = await raw_log(proc.addr)
                await _take(sub, got, len(final))
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.stop()
    assert [e.seq_id for e in got] == [e.seq_id for e in final] == list(range(1, len(final) + 1))
