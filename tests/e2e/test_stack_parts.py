"""Tests of the stack supervisor's building blocks that need no daemon: supervised child processes (log
capture, readiness, SIGTERM then SIGKILL, restart) and anvil chains with replayed traffic."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from common.envconfig import ConfigError
from common.testing.anvil import AnvilNode
from common.testing.demo import lock_demo_dir, main
from common.testing.demo_status import (
    ChainStatus,
    RateMeter,
    ValuedTally,
    ValuedTracker,
    format_status,
    parse_snapshot,
    redraw,
)
from common.testing.fixtures import load_mainnet_calls
from common.testing.process import ManagedProcess, ProcessError, die_with_parent_prefix
from common.testing.stack import ChainSpec, Stack, StackConfig, StackError
from common.testing.traffic import TrafficGenerator, TrafficStats


def _py(code: str) -> list[str]:
    return [sys.executable, "-u", "-c", code]


def test_process_captures_output_and_waits_for_ready_log(tmp_path: Path) -> None:
    proc = ManagedProcess("child", _py("import time; print('booting'); time.sleep(0.3); print('ready on 1');"
                                       "time.sleep(60)"), tmp_path / "child.log", ready_log=r"ready on \d+")
    try:
        proc.start()
        assert proc.alive
        assert "booting" in proc.output() and "ready on 1" in proc.log_tail(2)
    finally:
        assert proc.stop() == -signal.SIGTERM
    assert not proc.alive
    assert proc.stop() == -signal.SIGTERM  # idempotent


def test_process_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up'); time.sleep(60)"
    proc = ManagedProcess("stubborn", _py(code), tmp_path / "s.log", ready_log="up", stop_timeout_s=0.5)
    proc.start()
    assert proc.stop() == -signal.SIGKILL


def test_process_exiting_at_start_reports_status_and_log_tail(tmp_path: Path) -> None:
    proc = ManagedProcess("bad", _py("import sys; print('error: chain id mismatch'); sys.exit(2)"),
                          tmp_path / "bad.log", ready_log="never")
    with pytest.raises(ProcessError, match=r"bad exited with status 2 while starting(.|\n)*chain id mismatch"):
        proc.start()


def test_process_not_ready_in_time(tmp_path: Path) -> None:
    proc = ManagedProcess("slow", _py("import time; time.sleep(60)"), tmp_path / "slow.log",
                          ready=lambda: False, ready_timeout_s=0.3)
    try:
        with pytest.raises(ProcessError, match="slow not ready within"):
            proc.start()
    finally:
        proc.stop()


def test_process_restart_after_kill_appends_to_log(tmp_path: Path) -> None:
    code = "import os, time; print('pid', os.getpid()); time.sleep(60)"
    # Ready on the whole line: unbuffered print() writes "pid", " " and the number separately, and a kill between
    # them left "pid" alone in the log (seen once in CI).
    proc = ManagedProcess("re", _py(code), tmp_path / "re.log", ready_log=r"pid \d+\n")
    try:
        proc.start()
        first = proc.pid
        assert proc.kill() == -signal.SIGKILL
        proc.start()
        assert proc.pid != first and proc.starts == 2
        assert f"pid {proc.pid}" in proc.output() and f"pid {first}" not in proc.output()
        assert f"pid {first}" in (tmp_path / "re.log").read_text()
    finally:
        proc.stop()


def test_parse_snapshot_and_status_line() -> None:
    snap = {"chains": [
        {"chain_id": 1, "tx_count": 120, "ingest": {"seen": 130, "dropped": {"dedup": 9, "fetch_queue_full": 3,
                                                                   "block_gap_too_large": 4}},
         "lifecycle": {"pending": 12, "included": 80, "replaced": "5", "dropped": 3, "reorgs": 1}},
        {"chain_id": 137, "tx_count": "80", "ingest": None, "rejected": {"bad_hash": 2}},
    ]}
    statuses = parse_snapshot(snap)
    assert statuses == {1: ChainStatus(1, 120, 3, 130, (12, 80, 5, 3)), 137: ChainStatus(137, 80, 2, 0)}
    assert parse_snapshot({"chains": {"5": {"tx_count": 2}}}) == {5: ChainStatus(5, 2, 0, 0)}
    assert parse_snapshot("garbage") == {}
    meter = RateMeter()
    meter.add(0.0, {1: ChainStatus(1, 100, 0, 0)})
    rates = meter.add(2.0, {1: ChainStatus(1, 200, 0, 0)})
    assert rates == {1: 50.0}
    traffic = {1: TrafficStats(1, 50.0, 210, 205, 5, 0, 0, 4.0)}
    lines = format_status([1, 137], statuses, rates, traffic, 4.0)
    assert lines == [
        "[    4s] ethereum(1)       50 tx/s     120 stored | 12 pending / 80 included / 5 replaced / 3 dropped",
        "[    4s] polygon(137)       0 tx/s      80 stored | lifecycle off",
        "[    4s] total 200 stored, 5 lost in ingest (3.85%), 205 generated"]
    behind = {1: TrafficStats(1, 900.0, 210, 205, 5, 40, 0, 4.0)}
    assert format_status([1], statuses, rates, behind, 4.0)[-1].endswith(
        "205 generated (40 skipped: anvil cannot take the target rate)")
    # On a terminal the next status rewrites the lines of the last one in place: up to its first line, then each
    # line cleared and cut to the width.
    assert redraw(["a", "bb"], 0, 80) == "\r\x1b[Ka\n\x1b[Kbb"
    assert redraw(["a", "bbbb", "c"], 3, 2) == "\x1b[2F\r\x1b[Ka\n\x1b[Kbb\n\x1b[Kc"


def test_valued_tally_counts_each_opportunity_once_and_keeps_the_best() -> None:
    tracker = ValuedTracker()
    first = [{"seq_id": 10, "valued": True, "net_profit_wei": "2500000000000000"},
             {"seq_id": 12, "valued": True, "net_profit_wei": "31200000000000000"},
             {"seq_id": 11, "valued": False, "net_profit_wei": None}, "garbage"]
    tracker.add(137, first)
    # the next poll returns two of them again and a newer one
    tracker.add(137, [first[1], first[0], {"seq_id": 15, "valued": True, "net_profit_wei": "1000"}])
    tracker.add(1, None)
    assert tracker.tallies == {137: ValuedTally(3, 31_200_000_000_000_000, 15), 1: ValuedTally(0, 0, 0)}
    statuses = {137: ChainStatus(137, 80, 0, 0)}
    eth, polygon, _total = format_status([1, 137], statuses, {}, {}, 4.0, tracker.tallies)
    assert polygon.startswith("[    4s] polygon(137)       0 tx/s      80 stored | ")
    assert polygon.endswith("| 3 valued, best 0.0312 MATIC") and eth.endswith("| 0 valued, best -")
    assert not any("valued" in line for line in format_status([1, 137], statuses, {}, {}, 4.0))


def _pending_count(url: str) -> int:
    resp = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "txpool_status", "params": []}, timeout=5)
    return int(resp.json()["result"]["pending"], 16)


@pytest.mark.integration
def test_stack_of_anvils_with_paced_traffic_only(tmp_path: Path) -> None:
    config = StackConfig(chains=(ChainSpec(1, rate_tx_s=100), ChainSpec(137, rate_tx_s=40)),
                         processd=False, ingestd=False, gatewayd=False, log_dir=tmp_path / "logs")
    stack = Stack(config)
    with stack:
        assert set(stack.anvils) == {1, 137}
        time.sleep(3.0)
        stats = stack.traffic_stats()
        for cid, node in stack.anvils.items():
            assert _pending_count(node.http_url) >= stats[cid].accepted - 50 > 0, cid
        urls = [node.http_url for node in stack.anvils.values()]
    assert all(t.rejected == 0 for t in stats.values()), stats
    # Paced: about rate x elapsed, never a burst beyond the schedule (one batch of slack).
    for cid, rate in ((1, 100), (137, 40)):
        st = stats[cid]
        assert 0.5 * rate * st.elapsed_s <= st.accepted <= rate * st.elapsed_s + 50, st
    # Stopped: generators and anvils are gone, and stop() is idempotent.
    assert not any(gen.running for gen in stack.generators.values())
    for url in urls:
        with pytest.raises(httpx.HTTPError):
            httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=1)
    stack.stop()


@pytest.mark.integration
def test_stack_start_failure_stops_everything_and_says_why(tmp_path: Path) -> None:
    config = StackConfig(chains=(ChainSpec(1),), ingestd=False, gatewayd=False, log_dir=tmp_path / "logs",
                         processd_args=("--no-such-flag",), ready_timeout_s=20)
    stack = Stack(config)
    with pytest.raises(StackError, match="processd exited"):
        stack.start()
    assert not any(node.running for node in stack.anvils.values())
    assert (tmp_path / "logs" / "processd.log").exists()


def _hashes_from_reset_anvil(node: AnvilNode, gas_salt: int) -> set[str]:
    """Hashes of one pass over 40 fixture calls replayed into ``node`` reset to a fresh chain."""
    httpx.post(node.http_url, json={"jsonrpc": "2.0", "id": 1, "method": "anvil_reset", "params": []},
               timeout=10).raise_for_status()
    hashes: list[str] = []
    gen = TrafficGenerator(node.http_url, 200, calls=load_mainnet_calls()[:40], duration_s=0.5, gas_salt=gas_salt,
                           on_accepted=lambda sent, _ns: hashes.extend(s.tx_hash for s in sent))
    gen.start()
    assert gen.wait(20)
    assert len(hashes) >= 40
    return set(hashes[:40])  # the first pass: later passes depend on how far the timed run got


@pytest.mark.integration
def test_gas_salt_makes_runs_on_fresh_anvils_distinct() -> None:
    with AnvilNode(chain_id=137) as node:
        # Without a salt a fresh chain reproduces the same hashes (same senders, nonces and payloads) ...
        first = _hashes_from_reset_anvil(node, 0)
        assert _hashes_from_reset_anvil(node, 0) == first
        # ... which a kept processd log would deduplicate; a salted run is all new transactions.
        assert not first & _hashes_from_reset_anvil(node, 17)


@pytest.mark.integration
def test_generator_keeps_anvils_pool_bounded_with_distinct_hashes() -> None:
    hashes: list[str] = []
    with AnvilNode(chain_id=1) as node:
        gen = TrafficGenerator(node.http_url, 300, calls=load_mainnet_calls()[:60], batch_size=20, max_pending=100,
                               on_accepted=lambda sent, _ns: hashes.extend(s.tx_hash for s in sent))
        gen.start()
        deadline = time.monotonic() + 30
        while gen.stats().accepted < 250 and time.monotonic() < deadline:
            time.sleep(0.1)
        gen.stop()
        stats = gen.stats()
        pending = _pending_count(node.http_url)
    assert gen.error is None
    assert stats.rejected == 0 and stats.accepted == len(hashes) >= 250
    assert stats.pool_resets >= 2
    assert pending < 100 + 20  # never more than the bound plus one batch
    assert len(set(hashes)) == len(hashes)  # the same calls and nonces again, yet new hashes after each reset


@pytest.mark.skipif(not die_with_parent_prefix(), reason="needs Linux with util-linux setpriv")
def test_children_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    supervisor_code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from common.testing.process import ManagedProcess\n"
        f"p = ManagedProcess('child', [sys.executable, '-u', '-c', 'import time; print(1); time.sleep(60)'],"
        f" Path({str(tmp_path / 'child.log')!r}), ready_log='1').start()\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n")
    sup = subprocess.Popen([sys.executable, "-c", supervisor_code], stdout=subprocess.PIPE, text=True,
                           cwd=Path(__file__).resolve().parents[2])
    try:
        assert sup.stdout is not None
        child = int(sup.stdout.readline())
        os.kill(child, 0)  # alive
        sup.kill()
        sup.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(child, signal.SIGKILL)
        pytest.fail("the child outlived its killed supervisor")
    finally:
        sup.kill()


def test_a_second_demo_on_the_same_data_dir_is_refused_before_anything_is_wiped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = tmp_path / "demo"
    (data_dir / "lmdb").mkdir(parents=True)
    (data_dir / "lmdb" / "data.mdb").write_bytes(b"the running demo's log")
    held = lock_demo_dir(data_dir)
    try:
        with pytest.raises(ConfigError, match=f"in use by another demo \\(pid {os.getpid()}\\)"):
            lock_demo_dir(data_dir)
        assert main(["--data-dir", str(data_dir), "--gateway-port", "0", "--processd-port", "0"]) == 2
        assert "in use by another demo" in capsys.readouterr().err
        assert (data_dir / "lmdb" / "data.mdb").read_bytes() == b"the running demo's log"
    finally:
        os.close(held)
    os.close(lock_demo_dir(data_dir))  # free again once the first one is gone

