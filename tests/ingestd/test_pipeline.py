"""ingestd end to end as a real subprocess: anvil -> (fault proxy) -> ingestd -> real processd, checked via Query."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from common.pb.v1 import query_pb2, query_pb2_grpc
from common.testing.anvil import AnvilNode
from common.testing.faultproxy import FaultProxyThread, Faults
from common.testing.netutil import free_port
from tests.gatewayd.conftest import Gateway, grpc_serving
from tests.ingestd.conftest import ROOT, Daemon, Ingestd, Processd, send_calls, send_txs
from tests.reliability._support import audit_log

pytestmark = pytest.mark.integration


def _settled(ing: Ingestd, chain: str) -> bool:
    """Every seen transaction is delivered or dropped, nothing queued or unacked."""
    m = ing.metrics()

    def get(name: str, **labels: str) -> float:
        return sum(v for (n, lab), v in m.items() if n == name and all((k, x) in lab for k, x in labels.items()))

    losses = sum(v for (n, lab), v in m.items() if n == "mempulse_ingestd_drops_total" and ("chain", chain) in lab
                 and dict(lab).get("reason") != "dedup")
    return (get("mempulse_ingestd_seen_total", chain=chain) > 0
            and get("mempulse_ingestd_delivered_total", chain=chain) + losses
            == get("mempulse_ingestd_seen_total", chain=chain)
            and get("mempulse_ingestd_unacked_batches", chain=chain) == 0
            and get("mempulse_ingestd_queue_depth", chain=chain) == 0)


def _drops(ing: Ingestd, chain: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (n, lab), v in ing.metrics().items():
        d = dict(lab)
        if n == "mempulse_ingestd_drops_total" and d.get("chain") == chain and v:
            out[d["reason"]] = out.get(d["reason"], 0) + v
    return out


def test_two_chains_one_worker_each_tagged_in_processd(tmp_path: Path, processd: Processd,
                                                       daemons: list[Daemon]) -> None:
    with AnvilNode(chain_id=1) as eth, AnvilNode(chain_id=137) as pol:
        ing = Ingestd(["--chain", f"ethereum={eth.ws_url}", "--chain", f"137={pol.ws_url},{pol.http_url}"],
                      processd.addr, tmp_path / "ingestd.log", "--full-tx", "off")
        daemons.append(ing)
        ing.wait_ready(sources=2)
        sent_eth = send_calls(eth.http_url, 0, 40)
        sent_pol_txs = send_txs(pol.http_url, 100, 30)
        sent_pol = [t.tx_hash for t in sent_pol_txs]
        ing.wait_for(lambda: _settled(ing, "ethereum") and _settled(ing, "polygon"), what="both chains settled")
        stored_eth, stored_pol = processd.stored(1), processd.stored(137)
        assert sorted("0x" + s.tx.hash.hex() for s in stored_eth) == sorted(sent_eth)
        assert sorted("0x" + s.tx.hash.hex() for s in stored_pol) == sorted(sent_pol)
        assert {s.tx.chain_id for s in stored_eth} == {1} and {s.tx.chain_id for s in stored_pol} == {137}
        assert {s.tx.source_id for s in stored_pol} == {f"127.0.0.1:{pol.port}"}
        # fields survive the path: compare with the replayed mainnet calls
        calls = {t.tx_hash: t.call for t in sent_pol_txs}
        for s in stored_pol:
            call = calls["0x" + s.tx.hash.hex()]
            assert "0x" + s.tx.input.hex() == call.input.lower()
            assert "0x" + s.tx.sender.hex() == call.sender.lower()
            assert int.from_bytes(s.tx.value, "big") == call.value
            assert ("0x" + s.tx.to.hex() if s.tx.to else None) == (call.to.lower() if call.to else None)
        # one isolated worker per chain: separate counters, the fetch path was used (full-tx off)
        assert ing.metric("mempulse_ingestd_seen_total", chain="ethereum") == 40
        assert ing.metric("mempulse_ingestd_seen_total", chain="polygon") == 30
        assert ing.metric("mempulse_ingestd_fetched_total", chain="polygon") == 30
        assert ing.metric("mempulse_ingestd_fetch_batch_hashes_count", chain="polygon") >= 1
        assert ing.metric("mempulse_ingestd_drops_total") == 0
        # the per-chain counters reach processd's snapshot (forwarded about every second)
        with grpc.insecure_channel(processd.addr) as channel:
            stub = query_pb2_grpc.QueryStub(channel)
            deadline = time.monotonic() + 10
            while True:
                snap = stub.GetSnapshot(query_pb2.GetSnapshotRequest(), timeout=5)
                totals = {c.chain_id: c for c in snap.chains}
                if all(c in totals and totals[c].ingest.delivered == n for c, n in ((1, 40), (137, 30))):
                    break
                assert time.monotonic() < deadline, snap
                time.sleep(0.3)
        assert totals[137].ingest.seen == 30 and totals[137].drop_ratio == 0.0
        assert totals[137].ingest.visibility == 1  # MEMPOOL_VISIBILITY_VISIBLE
        assert ing.stop() == 0
        assert "stopped chain=polygon seen=30 delivered=30" in ing.log_text()


def test_full_tx_mode_skips_the_fetch(tmp_path: Path, processd: Processd, daemons: list[Daemon]) -> None:
    with AnvilNode(chain_id=137) as pol:
        ing = Ingestd(["--chain", f"polygon={pol.ws_url}"], processd.addr, tmp_path / "ingestd.log")
        daemons.append(ing)
        ing.wait_ready(sources=1)
        sent = send_calls(pol.http_url, 0, 30)
        ing.wait_for(lambda: _settled(ing, "polygon"), what="settled")
        assert ing.metric("mempulse_ingestd_full_tx_notifications_total", chain="polygon") == 30
        assert ing.metric("mempulse_ingestd_fetched_total", chain="polygon") == 0
        assert sorted("0x" + s.tx.hash.hex() for s in processd.stored(137)) == sorted(sent)


def test_two_sources_stored_once_first_seen_attributed(tmp_path: Path, processd: Processd,
                                                       daemons: list[Daemon]) -> None:
    with AnvilNode(chain_id=137) as pol, FaultProxyThread(pol.http_url, Faults(latency_ms=200)) as slow:
        # The slow source (proxy, +100 ms per direction) is listed first: attribution follows arrival, not order.
        # Fetches go through the proxy too (+200 ms): the slow source's announcement usually arrives while the
        # envelope is still being fetched, so its sighting waits for the envelope (ingestd.sourcelog).
        ing = Ingestd(["--chain", f"polygon={slow.ws_url},{pol.ws_url},{slow.http_url}"], processd.addr,
                      tmp_path / "ingestd.log", "--full-tx", "off")
        daemons.append(ing)
        ing.wait_ready(sources=2)
        sent = send_calls(pol.http_url, 0, 40)
        fast_id, slow_id = f"127.0.0.1:{pol.port}", f"127.0.0.1:{slow.proxy.port}"
        ing.wait_for(lambda: _settled(ing, "polygon") and ing.metric("mempulse_ingestd_dedup_hits_total") == 40
                     and ing.metric("mempulse_ingestd_sightings_acked_total", result="stored") == 40,
                     what="settled with 40 dedup hits and 40 sightings stored")
        stored = processd.stored(137)
        assert sorted("0x" + s.tx.hash.hex() for s in stored) == sorted(sent)  # each exactly once
        assert {s.tx.source_id for s in stored} == {fast_id}
        assert ing.metric("mempulse_ingestd_notifications_total", source=slow_id) == 40
        assert ing.metric("mempulse_ingestd_dedup_hits_total", source=slow_id) == 40
        assert ing.metric("mempulse_ingestd_seen_total") == 40 and _drops(ing, "polygon") == {"dedup": 40}
        # Every source that announced a transaction, each with its own (later) first-seen time.
        assert ing.metric("mempulse_ingestd_source_first_seen_wins_total", source=fast_id) == 40
        assert ing.metric("mempulse_ingestd_source_sightings_total", source=slow_id, outcome="recorded") == 40
        assert ing.metric("mempulse_ingestd_source_lag_seconds_count", source=slow_id) == 40
        assert ing.metric("mempulse_ingestd_sightings_acked_total", result="ignored") == 0
        sources = _sources(stored)
        assert all([src for src, _ in pairs] == [fast_id, slow_id] for pairs in sources.values())
        assert all(pairs[1][1] > pairs[0][1] for pairs in sources.values())
        standings = _standings(processd.addr)
        assert standings == {fast_id: (40, 40), slow_id: (0, 40)}
        # kill -9: the sightings and the wins are in the log, a restart reads them back (no ingestd resend
        # needed: stop it first).
        ing.stop()
        os.kill(processd.proc.pid, signal.SIGKILL)
        processd.proc.wait()
        audit = audit_log(tmp_path / "lmdb")
        audit.assert_clean()
        assert len(audit.txs) == 40 and audit.events >= 40 * 3  # TX_SEEN, TX_DECODED, TX_SOURCE_SEEN each
    again = Processd(tmp_path / "lmdb", tmp_path / "processd-2.log")
    daemons.append(again)
    deadline = time.monotonic() + 30
    while not grpc_serving(again.addr) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _sources(again.stored(137)) == sources and _standings(again.addr) == standings
    gateway = Gateway(again.addr, tmp_path / "gatewayd.log", ["--rate-limit-rps", "0"]).start()
    try:
        with gateway.client() as http:
            page = http.get("/transactions", params={"chain_id": 137, "limit": 100}).json()["transactions"]
            chains = http.get("/dashboard/snapshot", params={"chain_id": 137}).json()["chains"]
            later = http.get("/events", params={"kinds": "tx_source_seen", "limit": 100}).json()["events"]
    finally:
        gateway.stop()
    assert len(page) == 40
    for tx in page:
        assert [s["source_id"] for s in tx["sources"]] == [fast_id, slow_id]
        assert tx["sources"][0] == {"source_id": tx["source_id"], "first_seen_unix_ms": tx["first_seen_unix_ms"]}
        assert tx["sources"][1]["first_seen_unix_ms"] >= tx["first_seen_unix_ms"]
    assert {s["source_id"]: (s["first_seen_wins"], s["seen"]) for s in chains[0]["source_wins"]} == standings
    by_seq = {tx["seq_id"]: tx for tx in page}
    assert len(later) == 40 and all(e["source_id"] == slow_id == e["sighting"]["source_id"] for e in later)
    for e in later:
        tx = by_seq[e["sighting"]["tx_seq_id"]]
        assert e["sighting"]["first_seen_unix_ms"] == tx["sources"][1]["first_seen_unix_ms"]


def _sources(stored: list[query_pb2.StoredTx]) -> dict[bytes, list[tuple[str, int]]]:
    return {s.tx.hash: [(x.source_id, x.first_seen_unix_ns) for x in s.sources] for s in stored}


def _standings(addr: str) -> dict[str, tuple[int, int]]:
    with grpc.insecure_channel(addr) as channel:
        snap = query_pb2_grpc.QueryStub(channel).GetSnapshot(query_pb2.GetSnapshotRequest(chain_id=137), timeout=10)
    return {s.source_id: (s.first_seen_wins, s.seen) for s in snap.chains[0].sources}


def test_reconnect_after_ws_cut_and_malformed_frames(tmp_path: Path, processd: Processd,
                                                     daemons: list[Daemon]) -> None:
    with AnvilNode(chain_id=137) as pol, FaultProxyThread(pol.http_url) as proxy:
        ing = Ingestd(["--chain", f"polygon={proxy.ws_url}"], processd.addr, tmp_path / "ingestd.log",
                      "--full-tx", "off", env={"MEMPULSE_INGESTD_RECONNECT_MIN_MS": "50",
                                               # (the head subscription's own WS connection would get the
                                               # injected frames and the cut too: this is the pending feed's test)
                                               "MEMPULSE_INGESTD_FOLLOW_BLOCKS": "off"})
        daemons.append(ing)
        ing.wait_ready(sources=1)
        first = send_calls(pol.http_url, 0, 20)
        ing.wait_for(lambda: ing.metric("mempulse_ingestd_delivered_total") == 20, what="first 20 delivered")
        assert proxy.inject_ws(b'{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscr') == 1
        assert proxy.inject_ws(b'{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":"0xdead",'
                               b'"result":"0x' + b"ab" * 32 + b'"}}') == 1
        assert proxy.cut_ws() == 1
        ing.wait_for(lambda: ing.metric("mempulse_ingestd_source_reconnects_total") >= 1
                     and ing.metric("mempulse_ingestd_source_connected") == 1, what="resubscribed")
        second = send_calls(pol.http_url, 20, 20)
        ing.wait_for(lambda: ing.metric("mempulse_ingestd_delivered_total") == 40, what="all 40 delivered")
        assert sorted("0x" + s.tx.hash.hex() for s in processd.stored(137)) == sorted(first + second)
        assert _drops(ing, "polygon") == {"malformed": 1, "unknown_subscription": 1}
        assert ing.metric("mempulse_ingestd_notifications_rejected_total", reason="malformed_json") == 1
        assert ing.metric("mempulse_ingestd_seen_total") == 42  # 40 transactions + 2 rejected messages, all accounted
        assert ing.metric("mempulse_ingestd_source_gap_seconds_total") > 0 and "source_resubscribed" in ing.log_text()


def test_upstream_faults_are_accounted(tmp_path: Path, processd: Processd, daemons: list[Daemon]) -> None:
    faults = Faults(http_429_next=3, rpc_error_next=2, malformed_next=1, reorder=True, partial_error_rate=0.1,
                    drop_item_rate=0.05, null_rate=0.1)
    with AnvilNode(chain_id=137) as pol, FaultProxyThread(pol.http_url, faults, seed=11) as proxy:
        ing = Ingestd(["--chain", f"polygon={pol.ws_url},{proxy.http_url}"], processd.addr, tmp_path / "ingestd.log",
                      "--full-tx", "off", env={"MEMPULSE_INGESTD_FETCH_RETRIES": "8",
                                               "MEMPULSE_INGESTD_FETCH_BATCH_SIZE": "7",
                                               "MEMPULSE_INGESTD_FETCH_MAX_IN_FLIGHT": "2",
                                               "MEMPULSE_INGESTD_FETCH_BACKOFF_MS": "5",
                                               "MEMPULSE_INGESTD_FETCH_ENDPOINT_COOLDOWN_MS": "0"})
        daemons.append(ing)
        ing.wait_ready(sources=1)
        sent = send_calls(pol.http_url, 0, 150)
        ing.wait_for(lambda: _settled(ing, "polygon"), what="settled")
        stored = {"0x" + s.tx.hash.hex() for s in processd.stored(137)}
        drops = _drops(ing, "polygon")
        assert set(drops) <= {"gone_before_fetch"}, drops  # nulls are the only loss; retries absorb the rest
        assert stored <= set(sent) and len(stored) + drops.get("gone_before_fetch", 0) == 150
        assert proxy.proxy.stats["items_nulled"] >= drops.get("gone_before_fetch", 0) > 0
        # batch size and in-flight bounds, as seen by the upstream
        assert proxy.proxy.stats["max_batch_items"] == 7 and proxy.proxy.stats["http_max_concurrent"] <= 2
        assert ing.metric("mempulse_ingestd_fetch_batch_hashes_count") >= 150 / 7
        for code in ("http_429", "-32005", "malformed_response"):
            assert ing.metric("mempulse_ingestd_rpc_errors_total", code=code) >= 1, code


def test_overload_slow_processd_bounded_and_counted(tmp_path: Path, processd: Processd,
                                                    daemons: list[Daemon]) -> None:
    env = {"MEMPULSE_INGESTD_OUTBOUND_QUEUE_SIZE": "60", "MEMPULSE_INGESTD_OUTBOUND_BATCH_SIZE": "20",
           "MEMPULSE_INGESTD_OUTBOUND_MAX_UNACKED_BATCHES": "2", "MEMPULSE_INGESTD_FETCH_QUEUE_SIZE": "100"}
    with AnvilNode(chain_id=137) as pol:
        ing = Ingestd(["--chain", f"polygon={pol.ws_url}"], processd.addr, tmp_path / "ingestd.log",
                      "--full-tx", "off", env=env)
        daemons.append(ing)
        ing.wait_ready(sources=1)
        os.kill(processd.proc.pid, signal.SIGSTOP)
        try:
            sent = send_calls(pol.http_url, 0, 400)
            # The reader keeps reading while processd is frozen: every notification is counted...
            ing.wait_for(lambda: ing.metric("mempulse_ingestd_notifications_total") == 400, what="reader kept reading")
            ing.wait_for(lambda: ing.metric("mempulse_ingestd_queue_depth", queue="outbound") == 60
                         and ing.metric("mempulse_ingestd_queue_depth", queue="fetch") == 0, what="outbound queue full")
            m_unacked = ing.metric("mempulse_ingestd_unacked_batches")
            drops = _drops(ing, "polygon")
        finally:
            os.kill(processd.proc.pid, signal.SIGCONT)
        # ...queues stay at their bounds and the excess is dropped with its reason
        assert m_unacked <= 2
        # The outbound queue overflows; on a loaded machine the fetcher can fall behind the reader as well, and
        # the fetch queue then drops too (counted under its own reason). Nothing else, and nothing uncounted.
        assert "outbound_queue_full" in drops and set(drops) <= {"outbound_queue_full", "fetch_queue_full"}
        assert sum(drops.values()) >= 400 - 60 - 2 * 20 - 20
        ing.wait_for(lambda: _settled(ing, "polygon"), what="settled after processd resumed")
        delivered = ing.metric("mempulse_ingestd_delivered_total")
        stored = {"0x" + s.tx.hash.hex() for s in processd.stored(137)}
        assert len(stored) == delivered and stored <= set(sent)
        assert delivered + sum(_drops(ing, "polygon").values()) == 400


def test_visibility_and_silent_source(tmp_path: Path, processd: Processd, daemons: list[Daemon]) -> None:
    with AnvilNode(chain_id=10) as op:
        ing = Ingestd(["--chain", f"optimism={op.ws_url}"], processd.addr, tmp_path / "ingestd.log",
                      env={"MEMPULSE_INGESTD_SOURCE_SILENT_S": "1"})
        daemons.append(ing)
        ing.wait_ready(sources=1)
        ing.wait_for(lambda: ing.metric("mempulse_ingestd_mempool_visible", chain="optimism") == 0
                     and ing.metric("mempulse_ingestd_source_silent", chain="optimism") == 1,
                     what="not visible + silent")
        assert "mempool_not_visible chain=optimism" in ing.log_text() and "source_silent" in ing.log_text()
        send_calls(op.http_url, 0, 3)
        ing.wait_for(lambda: ing.metric("mempulse_ingestd_mempool_visible", chain="optimism") == 1
                     and ing.metric("mempulse_ingestd_source_silent", chain="optimism") == 0, what="visible again")


def _run_ingestd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ingestd", *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)


def test_oversized_fetch_answers_are_capped_retried_and_accounted(tmp_path: Path, processd: Processd,
                                                                  daemons: list[Daemon]) -> None:
    # Issue 14: a 300 MB answer was read whole (743 MiB RSS) and nothing was logged. Valid JSON padded with
    # whitespace, chunked: ingestd must stop at its cap, retry, then drop with a reason, never silently.
    faults = Faults(oversized_rate=1.0, oversized_bytes=64 << 20, oversized_chunked=True)
    with AnvilNode(chain_id=137) as pol, FaultProxyThread(pol.http_url, faults) as proxy:
        ing = Ingestd(["--chain", f"polygon={pol.ws_url},{proxy.http_url}"], processd.addr, tmp_path / "ingestd.log",
                      "--full-tx", "off",
                      env={"MEMPULSE_INGESTD_FETCH_MAX_RESPONSE_BYTES": str(1 << 20),
                           "MEMPULSE_INGESTD_FETCH_RETRIES": "1", "MEMPULSE_INGESTD_FETCH_BACKOFF_MS": "5",
                           "MEMPULSE_INGESTD_FETCH_ENDPOINT_COOLDOWN_MS": "0"})
        daemons.append(ing)
        ing.wait_ready(sources=1)
        lost = send_calls(pol.http_url, 0, 20)
        ing.wait_for(lambda: _settled(ing, "polygon"), what="settled after oversized answers")
        assert _drops(ing, "polygon") == {"response_too_large": 20}
        # first try and the retry
        assert ing.metric("mempulse_ingestd_rpc_errors_total", code="response_too_large") >= 2
        # Now only the next answer is oversized: the retry fetches the batch.
        faults.oversized_rate, faults.oversized_next = 0.0, 1
        kept = send_calls(pol.http_url, 20, 20)
        ing.wait_for(lambda: ing.metric("mempulse_ingestd_delivered_total", chain="polygon") == 20, what="delivered")
        ing.wait_for(lambda: _settled(ing, "polygon"), what="settled")
        assert _drops(ing, "polygon") == {"response_too_large": 20}
        stored = {"0x" + s.tx.hash.hex() for s in processd.stored(137)}
        assert stored == set(kept) and not stored & set(lost)
        # ingestd stopped reading each answer near the cap (loopback buffers hold a few MB per connection).
        assert proxy.proxy.stats["oversized_bytes_sent"] < proxy.proxy.stats["oversized"] * (24 << 20)
    log_text = ing.log_text()
    assert "fetch_response_too_large" in log_text and "reason=response_too_large" in log_text


def test_chain_id_mismatch_and_unreachable_exit_2() -> None:
    with AnvilNode(chain_id=137) as pol:
        proc = _run_ingestd("--chain", f"ethereum={pol.ws_url}")
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr
        assert f"127.0.0.1:{pol.port}" in lines[0] and "expected chain id 1 " in lines[0]
        assert "actual chain id 137" in lines[0]
        dead = free_port()
        proc = _run_ingestd("--chain", f"polygon={pol.ws_url},http://127.0.0.1:{dead}")
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and f"http://127.0.0.1:{dead}" in lines[0] and "unreachable" in lines[0]
        assert "expected chain id 137" in lines[0]
    proc = _run_ingestd("--chain", "nosuchchain=ws://127.0.0.1:1")
    assert proc.returncode == 2 and "unknown chain" in proc.stderr


@pytest.mark.slow  # the reliability suite's kill -9 loop covers this path by default; this is the focused version
def test_processd_killed_and_restarted_unacked_batches_resent(tmp_path: Path, daemons: list[Daemon]) -> None:
    port = free_port()
    first = Processd(tmp_path / "lmdb", tmp_path / "processd-1.log", port=port)
    daemons.append(first)
    with AnvilNode(chain_id=137) as pol:
        ing = Ingestd(["--chain", f"polygon={pol.ws_url}"], first.addr, tmp_path / "ingestd.log", "--full-tx", "off")
        daemons.append(ing)
        ing.wait_ready(sources=1)
        sent = send_calls(pol.http_url, 0, 50)
        ing.wait_for(lambda: ing.metric("mempulse_ingestd_delivered_total") == 50, what="first 50 acked")
        os.kill(first.proc.pid, signal.SIGSTOP)  # freeze so the next batches stay unacked, then kill
        sent += send_calls(pol.http_url, 50, 50)
        ing.wait_for(lambda: ing.metric("mempulse_ingestd_unacked_batches") >= 1
                     and ing.metric("mempulse_ingestd_seen_total") == 100,
                     what="batches unacked while processd is frozen")
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait()
        second = Processd(tmp_path / "lmdb", tmp_path / "processd-2.log", port=port)
        daemons.append(second)
        ing.wait_for(lambda: _settled(ing, "polygon"), what="settled after the restart")
        assert ing.metric("mempulse_ingestd_batches_resent_total") >= 1
        assert ing.metric("mempulse_ingestd_stream_reconnects_total") >= 1
        stored = ["0x" + s.tx.hash.hex() for s in second.stored(137)]
        assert sorted(stored) == sorted(sent)  # nothing lost, nothing twice
        assert ing.metric("mempulse_ingestd_delivered_total") == 100 and _drops(ing, "polygon") == {}


def test_storage_full_is_retried_not_dropped(tmp_path: Path, daemons: list[Daemon]) -> None:
    port = free_port()
    tiny = Processd(tmp_path / "lmdb", tmp_path / "processd-1.log", port, "--map-size-mb", "1",
                    "--map-max-size-mb", "1")
    daemons.append(tiny)
    with AnvilNode(chain_id=137) as pol:
        ing = Ingestd(["--chain", f"polygon={pol.ws_url}"], tiny.addr, tmp_path / "ingestd.log")
        daemons.append(ing)
        ing.wait_ready(sources=1)
        sent = send_calls(pol.http_url, 0, 1500, batch_size=100)
        ing.wait_for(lambda: ing.metric("mempulse_ingestd_storage_full_retries_total") >= 1,
                     what="storage_full answers")
        assert ing.metric("mempulse_ingestd_delivered_total") < 1500 and _drops(ing, "polygon") == {}
        # make room: restart processd on the same log with a larger map; ingestd resends what was not stored
        assert tiny.stop() == 0
        roomy = Processd(tmp_path / "lmdb", tmp_path / "processd-2.log", port, "--map-size-mb", "64",
                     "--map-max-size-mb", "256")
        daemons.append(roomy)
        ing.wait_for(lambda: _settled(ing, "polygon"), timeout_s=60, what="settled after room was made")
        assert _drops(ing, "polygon") == {} and ing.metric("mempulse_ingestd_delivered_total") == 1500
        assert sorted("0x" + s.tx.hash.hex() for s in roomy.stored(137)) == sorted(sent)
