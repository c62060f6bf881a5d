"""The real pipeline under faults: anvil -> faultproxy -> ingestd -> processd, all real processes.

1. processd is SIGKILLed at random moments while ingestd streams real anvil traffic: ingestd's resends
   complete the log; every delivered transaction is stored exactly once; every announced transaction is
   delivered or dropped with a counted reason.
2. An upstream fault storm through :mod:`common.testing.faultproxy`: WS cut every round, a node restart, 429 and
   -32005 bursts, malformed JSON bodies and frames, null results, reordered / partially failed / truncated
   batch responses, slow responses. ingestd stays up, resubscribes, and
   ``delivered + dropped-by-reason == announced`` with ``delivered == stored in processd``.

Short mode: 3 kills, 4 fault rounds. Long mode: ``MEMPULSE_RELIABILITY_INGEST_KILLS`` (20) and
``MEMPULSE_RELIABILITY_FAULT_ROUNDS`` (20).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from common.testing.anvil import AnvilNode
from common.testing.faultproxy import FaultProxyThread, Faults
from tests.reliability._support import (
    IngestdProc,
    ProcessdProc,
    audit_log,
    knob,
    send_calls,
    stored_hashes,
    wait_until,
    write_artifact,
)

pytestmark = pytest.mark.integration

# Blocks off: the head subscription has its own WS connection through the proxy, which would get the injected
# frames and cuts too (these tests account for the pending feed's; blocks under faults: tests/ingestd/test_blocks.py).
FAST_RECONNECT = {"MEMPULSE_INGESTD_RECONNECT_MIN_MS": "50", "MEMPULSE_INGESTD_RECONNECT_MAX_MS": "500",
                  "MEMPULSE_INGESTD_FOLLOW_BLOCKS": "off"}
#: Reasons that may legitimately appear under these faults (anything else is a bug to look at).
#: faultproxy counters that are injected faults (the others count traffic).
FAULT_KINDS = ("http_429", "rpc_error", "malformed", "items_nulled", "batches_reordered", "items_errored",
               "items_dropped", "slow", "ws_cuts")
ALLOWED_LOSSES = {"gone_before_fetch", "rpc_error", "malformed", "unknown_subscription", "outbound_queue_full"}


@pytest.mark.timeout(1800)
def test_processd_kill9_while_ingestd_streams(tmp_path: Path) -> None:
    kills = knob("ingest_kills", 3, 20)
    rng = random.Random(knob("seed", 3, int(time.time())))
    proc = ProcessdProc(tmp_path / "lmdb", tmp_path / "processd.log", "--flush-interval-ms", "1")
    ingestd: IngestdProc | None = None
    sent: list[str] = []
    with AnvilNode(chain_id=137) as node:
        try:
            proc.start()
            ingestd = IngestdProc(["--chain", f"polygon={node.ws_url},{node.http_url}"], proc.addr,
                                  tmp_path / "ingestd.log", "--full-tx", "off", env=FAST_RECONNECT)
            ingestd.start()
            offset = 0
            for _ in range(kills):
                sent += send_calls(node.http_url, offset, 60)
                offset += 60
                time.sleep(rng.uniform(0.0, 0.3))  # a random moment: some batches acked, some in flight
                assert proc.kill() == -9
                audit_log(proc.data_dir).assert_clean()
                sent += send_calls(node.http_url, offset, 30)  # announced while processd is down
                offset += 30
                proc.start()
            sent += send_calls(node.http_url, offset, 60)
            wait_until(lambda: ingestd.settled("polygon"), 60, "ingestd settled", alive=[proc, ingestd])
            delivered = ingestd.metric("mempulse_ingestd_delivered_total", chain="polygon")
            drops = ingestd.drops("polygon")
            stored = stored_hashes(proc.addr, 137)
            assert len(stored) == len(set(stored)), "a transaction stored twice"
            assert set(stored) <= set(sent)
            assert len(stored) == delivered, (len(stored), delivered, drops)
            losses = {r: n for r, n in drops.items() if r != "dedup"}
            assert set(losses) <= {"outbound_queue_full"}, losses
            assert delivered + sum(losses.values()) == len(sent) == ingestd.metric("mempulse_ingestd_seen_total")
            # (a kill that hits a stream still waiting for processd to come back is absorbed by that same stream)
            assert ingestd.metric("mempulse_ingestd_stream_reconnects_total") >= 1
            assert ingestd.alive
            proc.stop()
            audit_log(proc.data_dir).assert_clean()
            write_artifact("ingest_kill_loop", {"kills_survived": kills, "announced": len(sent),
                                                "stored": len(stored), "dropped_by_reason": losses,
                                                "batches_resent": ingestd_resent(ingestd),
                                                "acked_records_lost": 0, "duplicates": 0})
        finally:
            if ingestd is not None:
                ingestd.stop()
            proc.stop()


def ingestd_resent(ingestd: IngestdProc) -> float:
    return ingestd.metric("mempulse_ingestd_batches_resent_total") if ingestd.alive else -1


@pytest.mark.timeout(1800)
def test_upstream_fault_storm_is_fully_accounted(tmp_path: Path) -> None:
    rounds = knob("fault_rounds", 4, 20)
    per_round = 60
    faults = Faults(http_429_rate=0.05, rpc_error_rate=0.05, malformed_rate=0.03, null_rate=0.05, reorder=True,
                    partial_error_rate=0.05, drop_item_rate=0.03)
    proc = ProcessdProc(tmp_path / "lmdb", tmp_path / "processd.log")
    ingestd: IngestdProc | None = None
    sent: list[str] = []
    injected_ws = 0
    node_restarts = 0
    with AnvilNode(chain_id=137) as node, FaultProxyThread(node.http_url, faults, seed=5) as proxy:
        try:
            proc.start()
            env = {**FAST_RECONNECT, "MEMPULSE_INGESTD_FETCH_RETRIES": "6", "MEMPULSE_INGESTD_FETCH_BACKOFF_MS": "5",
                   "MEMPULSE_INGESTD_FETCH_ENDPOINT_COOLDOWN_MS": "0", "MEMPULSE_INGESTD_FETCH_TIMEOUT_MS": "400"}
            ingestd = IngestdProc(["--chain", f"polygon={proxy.ws_url},{proxy.http_url}"], proc.addr,
                                  tmp_path / "ingestd.log", "--full-tx", "off", env=env)
            ingestd.start()
            ing = ingestd
            offset = 0
            for r in range(rounds):
                faults.slow_ms = 600.0 if r % 3 == 2 else 0.0  # slower than the fetch timeout: retried
                # bursts on the next fetches (the rates above add random ones)
                faults.http_429_next, faults.rpc_error_next, faults.malformed_next = 2, 2, 1
                faults.rpc_error_code = -32005 if r % 2 == 0 else -32007
                if r % 4 == 3:
                    # Node restart: the pending pool is wiped; what was announced but not fetched is gone.
                    node.stop()
                    node.start()
                    node_restarts += 1
                    wait_until(lambda: ing.metric("mempulse_ingestd_source_connected") == 1, 30,
                               "resubscribed after restart", alive=[ing, proc])
                before = ing.metric("mempulse_ingestd_notifications_total")
                batch = send_calls(node.http_url, offset, per_round)
                offset += per_round
                sent += batch
                target = before + len(batch)
                wait_until(lambda t=target: ing.metric("mempulse_ingestd_notifications_total") >= t, 30,
                           f"round {r}: every announcement read", alive=[ing, proc])
                injected_ws += proxy.inject_ws(b'{"jsonrpc":"2.0","method":"eth_subscription","params":{"subsc')
                injected_ws += proxy.inject_ws(b'{"jsonrpc":"2.0","method":"eth_subscription","params":'
                                               b'{"subscription":"0xfeed","result":"0x' + b"cd" * 32 + b'"}}')
                reconnects = ing.metric("mempulse_ingestd_source_reconnects_total")
                assert proxy.cut_ws() == 1, "ingestd must be connected at the end of every round"
                wait_until(lambda rc=reconnects: ing.metric("mempulse_ingestd_source_reconnects_total") > rc
                           and ing.metric("mempulse_ingestd_source_connected") == 1, 30, f"round {r}: resubscribed",
                           alive=[ing, proc])
            faults.slow_ms = 0
            wait_until(lambda: ing.settled("polygon"), 90, "ingestd settled", alive=[ing, proc])
            seen = ing.metric("mempulse_ingestd_seen_total", chain="polygon")
            delivered = ing.metric("mempulse_ingestd_delivered_total", chain="polygon")
            drops = ing.drops("polygon")
            losses = {r: n for r, n in drops.items() if r != "dedup"}
            stored = stored_hashes(proc.addr, 137)
            # announced = every transaction the node accepted + every frame injected into the WS, + what the
            # backfill after each reconnect took from the node's pool that dedup did not hold (those whose fetch
            # failed were forgotten by dedup: the backfill gives them a second chance)
            backfilled = sum(ing.metric("mempulse_ingestd_backfill_txs_total", chain="polygon", outcome=o)
                             for o in ("delivered", "not_delivered", "malformed"))
            assert seen == len(sent) + injected_ws + backfilled, (seen, len(sent), injected_ws, backfilled)
            assert delivered + sum(losses.values()) == seen, (delivered, losses, seen)
            assert len(stored) == len(set(stored)) == delivered
            assert set(stored) <= set(sent)
            assert set(losses) <= ALLOWED_LOSSES, losses
            assert losses.get("malformed", 0) == losses.get("unknown_subscription", 0) == rounds
            stats = dict(proxy.proxy.stats)
            for injected in ("http_429", "rpc_error", "malformed", "items_nulled", "batches_reordered",
                             "items_errored", "ws_cuts"):
                assert stats.get(injected, 0) > 0, f"no {injected} fault was injected: {stats}"
            assert losses.get("gone_before_fetch", 0) >= 1
            assert ing.alive and proc.alive
            write_artifact("upstream_faults", {
                "rounds": rounds, "announced": int(seen), "stored": len(stored), "dropped_by_reason": losses,
                "node_restarts": node_restarts, "faults_injected": {**stats, "ws_frames_injected": injected_ws},
                "faults_injected_total": sum(stats.get(k, 0) for k in FAULT_KINDS) + injected_ws + node_restarts,
                "rpc_errors_by_code": {dict(lab)["code"]: v for (n, lab), v in ing.metrics().items()
                                       if n == "mempulse_ingestd_rpc_errors_total" and v},
            })
        finally:
            if ingestd is not None:
                ingestd.stop()
            proc.stop()
