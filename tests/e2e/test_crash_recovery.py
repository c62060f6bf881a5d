"""End to end through a processd crash: kill -9 processd while replayed traffic flows through ingestd, restart it
on the same data dir and port, and every transaction anvil accepted is served by gatewayd exactly once.

This is the whole-path version of the durability promise: ingestd keeps unacknowledged batches and resends
them after reconnecting, processd deduplicates resends by (chain, hash) and recovers its log after SIGKILL.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from common.testing.replay import SentTx
from common.testing.stack import ChainSpec, Stack, StackConfig

pytestmark = pytest.mark.integration


def _stored(stack: Stack, chain_id: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = 0
    while True:
        body = stack.get_json("/transactions/all", chain_id=chain_id, from_seq_id=cursor, limit=5000)
        rows += body["transactions"]
        cursor = body["next_from_seq_id"]
        if not body["has_more"]:
            return rows


def test_processd_kill_9_mid_stream_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    accepted: list[SentTx] = []
    lock = threading.Lock()

    def record(sent: list[SentTx], _ns: int) -> None:
        with lock:
            accepted.extend(sent)

    config = StackConfig(chains=(ChainSpec(1),), start_traffic=False, data_dir=tmp_path / "data",
                         log_dir=tmp_path / "logs")
    with Stack(config) as stack:
        processd = stack.process("processd")
        stack.start_generators(rate_tx_s=150, on_accepted=record)
        stack.wait_for(lambda: len(accepted) >= 150, 20, "traffic before the crash")
        assert processd.kill(signal.SIGKILL) == -signal.SIGKILL
        time.sleep(1.0)  # ingestd keeps receiving while processd is down; gatewayd answers 503
        assert stack.get("/transactions", chain_id=1).status_code == 503
        processd.start()
        stack.wait_for(lambda: len(accepted) >= 450, 30, "traffic after the restart")
        stack.stop_generators()
        with lock:
            expected = {s.tx_hash.lower(): s for s in accepted}

        def all_stored() -> list[dict[str, Any]] | None:
            rows = _stored(stack, 1)
            return rows if set(expected) <= {r["hash"] for r in rows} else None

        rows = stack.wait_for(all_stored, 45, f"all {len(expected)} accepted transactions after the restart",
                              interval_s=0.5)
        hashes = [r["hash"] for r in rows]
        assert len(hashes) == len(set(hashes)), "a resent transaction was stored twice"
        assert set(hashes) == set(expected)
        for row in rows:
            call = expected[row["hash"]].call
            assert (row["from"], row["input"], row["value"]) == (call.sender.lower(), call.input.lower(),
                                                                 str(call.value))
        # (gatewayd may serve a snapshot cached for a fraction of a second: poll briefly.)
        stack.wait_for(lambda: [c["tx_count"] for c in stack.get_json("/dashboard/snapshot")["chains"]]
                       == [len(expected)], 10, f"snapshot total {len(expected)} after the restart")
        assert processd.starts == 2
