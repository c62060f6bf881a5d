"""End to end on real processes: anvil chains -> ingestd -> processd (LMDB) -> gatewayd REST.

Every transaction is sent with the real replayer into anvil's pending pool (``--no-mining``); the tests then
read it back through gatewayd and compare what anvil accepted with what the REST API returns, field by field.
One stack (chains 1 and 137, no background traffic) is shared by the tests of this module; they run in file
order, and a test asserting an exact set of stored transactions runs before any later test adds to that chain.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from common.testing.fixtures import MainnetCall, load_mainnet_calls
from common.testing.netutil import free_port
from common.testing.replay import Replayer, SentTx
from common.testing.stack import ChainSpec, Stack, StackConfig

_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration

N_CHAIN_1 = 200
N_CHAIN_137 = 120


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("e2e")
    config = StackConfig(chains=(ChainSpec(1), ChainSpec(137)), data_dir=root / "data", log_dir=root / "logs")
    with Stack(config) as running:
        yield running


def _send(url: str, calls: list[MainnetCall]) -> list[SentTx]:
    async def go() -> list[SentTx]:
        async with Replayer(url, batch_size=50) as replayer:
            sent = await replayer.send(calls)
            assert replayer.stats.rejected == 0, replayer.stats.errors_by_message
            return sent

    return asyncio.run(go())


def _all_transactions(stack: Stack, chain_id: int | None, page: int = 97) -> list[dict[str, Any]]:
    """Walks /transactions/all from the start with a small page size (so pagination is exercised)."""
    out: list[dict[str, Any]] = []
    cursor = 0
    for _ in range(1000):
        body = stack.get_json("/transactions/all", chain_id=chain_id, from_seq_id=cursor, limit=page)
        out += body["transactions"]
        assert body["next_from_seq_id"] >= cursor
        cursor = body["next_from_seq_id"]
        if not body["has_more"]:
            return out
    raise AssertionError("pagination did not end")


def _wait_for_hashes(stack: Stack, chain_id: int, hashes: set[str], timeout_s: float = 45) -> list[dict[str, Any]]:
    def ready() -> list[dict[str, Any]] | None:
        rows = _all_transactions(stack, chain_id)
        return rows if hashes <= {r["hash"] for r in rows} else None

    return stack.wait_for(ready, timeout_s, f"{len(hashes)} transactions on chain {chain_id} via REST",
                          interval_s=0.5)


def _assert_same_as_sent(row: dict[str, Any], sent: SentTx, chain_id: int) -> None:
    call = sent.call
    assert row["chain_id"] == chain_id
    assert row["hash"] == sent.tx_hash.lower()
    assert row["from"] == call.sender.lower()
    assert row["to"] == (call.to.lower() if call.to else None)
    assert row["value"] == str(call.value)
    assert row["input"] == call.input.lower()


def test_every_sent_transaction_comes_back_through_rest(stack: Stack) -> None:
    calls = load_mainnet_calls()[:N_CHAIN_1]
    sent = _send(stack.anvils[1].http_url, calls)
    assert len(sent) == N_CHAIN_1
    by_hash = {s.tx_hash.lower(): s for s in sent}
    rows = _wait_for_hashes(stack, 1, set(by_hash))
    ours = [r for r in rows if r["hash"] in by_hash]
    assert len(ours) == N_CHAIN_1, "a transaction came back more than once"
    for row in ours:
        _assert_same_as_sent(row, by_hash[row["hash"]], 1)
    # Pagination returns seq ids in ascending order with no duplicate.
    seqs = [r["seq_id"] for r in rows]
    assert seqs == sorted(set(seqs))
    # The newest-first route (max limit 200 = N): on this fresh chain it holds exactly the N sent, each equal.
    latest = stack.get_json("/transactions", chain_id=1, limit=N_CHAIN_1)["transactions"]
    assert {r["hash"] for r in latest} == set(by_hash)
    assert [r["seq_id"] for r in latest] == sorted((r["seq_id"] for r in ours), reverse=True)
    for row in latest:
        _assert_same_as_sent(row, by_hash[row["hash"]], 1)
    assert len(stack.get_json("/transactions", chain_id=1)["transactions"]) == 25  # the default page
    # One transaction by hash, under its chain name too.
    one = sent[7]
    detail = stack.get_json(f"/transactions/{one.tx_hash}", chain_id="ethereum")
    _assert_same_as_sent(detail["transaction"], one, 1)


def test_each_chain_records_come_back_only_under_their_chain(stack: Stack) -> None:
    calls = load_mainnet_calls()[1000:1000 + N_CHAIN_137]
    sent_137 = {s.tx_hash.lower() for s in _send(stack.anvils[137].http_url, calls)}
    sent_1 = {s.tx_hash.lower() for s in _send(stack.anvils[1].http_url, load_mainnet_calls()[500:540])}
    rows_137 = _wait_for_hashes(stack, 137, sent_137)
    rows_1 = _wait_for_hashes(stack, 1, sent_1)
    assert {r["chain_id"] for r in rows_137} == {137}
    assert {r["chain_id"] for r in rows_1} == {1}
    # Only chain 137's anvil got these calls: chain 137 holds exactly them, chain 1 none of them.
    assert {r["hash"] for r in rows_137} == sent_137
    assert not sent_137 & {r["hash"] for r in rows_1}
    latest_137 = stack.get_json("/transactions", chain_id="polygon", limit=200)["transactions"]
    assert latest_137 and {r["chain_id"] for r in latest_137} == {137}
    # The unfiltered view has both chains, and the snapshot counts both.
    everything = _all_transactions(stack, None, page=500)
    assert {r["chain_id"] for r in everything} == {1, 137}
    assert len(everything) == len(rows_1) + len(rows_137)
    # (gatewayd may serve a snapshot cached for a fraction of a second: poll briefly.)
    want = {1: len(rows_1), 137: len(rows_137)}
    stack.wait_for(lambda: {c["chain_id"]: c["tx_count"] for c in stack.get_json("/dashboard/snapshot")["chains"]}
                   == want, 10, f"snapshot totals {want}")


def test_live_stream_delivers_new_transactions(stack: Stack) -> None:
    """SSE /events/stream: connected first, then transactions sent to anvil arrive live as tx_seen events."""
    seen: set[str] = set()
    connected, done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def read() -> None:
        try:
            with httpx.stream("GET", f"{stack.gateway_url}/events/stream", params={"chain_id": 137},
                              timeout=httpx.Timeout(5.0, read=60.0)) as resp:
                assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
                connected.set()
                for line in resp.iter_lines():
                    if line.startswith("data:"):
                        event = orjson.loads(line[5:])
                        assert event["chain_id"] == 137
                        if event["kind"] == "tx_seen":
                            seen.add(event["tx"]["hash"])
                    if done.is_set():
                        return
        except BaseException as exc:
            errors.append(exc)
        finally:
            connected.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert connected.wait(15) and not errors, errors
        sent = {s.tx_hash.lower() for s in _send(stack.anvils[137].http_url, load_mainnet_calls()[1500:1530])}
        stack.wait_for(lambda: sent <= seen or errors, 30, "the sent transactions on the SSE stream")
        assert not errors, errors
    finally:
        done.set()
    assert sent <= seen


def _run_ingestd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ingestd", *args], capture_output=True, text=True, timeout=60)


def _last_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    assert lines, "ingestd printed nothing"
    return lines[-1]


def test_ingestd_exits_2_on_unreachable_node(stack: Stack) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    proc = _run_ingestd("--chain", f"1={dead.replace('http', 'ws')},{dead}", "--processd", stack.processd_addr)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    line = _last_line(proc)
    assert dead.removeprefix("http://") in line, line


def test_ingestd_exits_2_on_chain_id_mismatch(stack: Stack) -> None:
    node = stack.anvils[137]
    proc = _run_ingestd("--chain", f"ethereum={node.ws_url},{node.http_url}", "--processd", stack.processd_addr)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    line = _last_line(proc)
    assert f"127.0.0.1:{node.port}" in line, line
    rest = re.sub(r"\S*127\.0\.0\.1:\d+\S*", "", line)  # the ids, not digits of the endpoint
    assert re.search(r"\b137\b", rest) and re.search(r"\b1\b", rest), line


def test_every_daemon_stops_cleanly_on_sigterm(stack: Stack) -> None:
    """Runs last in this module: stops the shared stack (the fixture's stop is then a no-op)."""
    stack.stop()
    assert stack.exit_statuses == {"processd": 0, "gatewayd": 0, "ingestd": 0}
    stack.stop()  # idempotent


def test_demo_shows_both_chains(tmp_path: Path) -> None:
    script = _ROOT / "scripts" / "demo"
    proc = subprocess.run([str(script), "--duration-s", "5", "--rate-tx-s", "40", "--gateway-port", "0",
                           "--processd-port", "0", "--data-dir", str(tmp_path / "demo"), "--interval-s", "0.5"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "curl '127.0.0.1:" in proc.stdout and "/transactions?chain_id=137'" in proc.stdout
    summary_line = next(line for line in proc.stdout.splitlines() if "demo summary: " in line)
    summary = orjson.loads(summary_line.split("demo summary: ", 1)[1])
    for cid in ("1", "137"):
        chain = summary["chains"][cid]
        assert chain["generated"] > 0 and chain["stored"] > 0, summary
        assert chain["stored"] >= 0.9 * chain["generated"], summary
    assert summary["exit_statuses"] == {"processd": 0, "gatewayd": 0, "ingestd": 0}
    assert "stored" in proc.stdout and "tx/s" in proc.stdout
