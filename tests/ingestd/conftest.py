"""Fixtures of the ingestd tests: anvil with pending transactions, processd and ingestd subprocesses."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from common.pb.v1 import query_pb2, query_pb2_grpc
from common.testing.anvil import AnvilNode
from common.testing.fixtures import load_mainnet_calls
from common.testing.netutil import free_port, wait_for_port
from common.testing.replay import Replayer, SentTx

ROOT = Path(__file__).resolve().parents[2]


def send_txs(http_url: str, start: int, count: int, batch_size: int = 50) -> list[SentTx]:
    """Sends ``count`` fixture calls (from index ``start``) into anvil; returns what anvil accepted."""
    calls = load_mainnet_calls()[start:start + count]

    async def go() -> list[SentTx]:
        async with Replayer(http_url, batch_size=batch_size) as replayer:
            return await replayer.send(calls)

    return asyncio.run(go())


def send_calls(http_url: str, start: int, count: int, batch_size: int = 50) -> list[str]:
    """Like :func:`send_txs`, returning the accepted hashes."""
    return [s.tx_hash for s in send_txs(http_url, start, count, batch_size)]


class Daemon:
    """A daemon subprocess with its log file; stopped (SIGTERM, then SIGKILL) by the fixture."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen([sys.executable, *args], stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=ROOT, env={**os.environ, **(env or {})})

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 15.0) -> int:
        if self.proc.poll() is None:
            with _suppress():
                os.kill(self.proc.pid, signal.SIGCONT)  # in case a test left it stopped
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


class Processd(Daemon):
    """A real processd on a free port with its LMDB in a temp dir."""

    def __init__(self, data_dir: Path, log_path: Path, port: int = 0, *extra: str) -> None:
        self.port = port or free_port()
        self.addr = f"127.0.0.1:{self.port}"
        super().__init__(["-m", "processd", "--data-dir", str(data_dir), "--listen", self.addr, *extra], log_path)
        if not wait_for_port("127.0.0.1", self.port, 30):
            self.stop()
            raise RuntimeError(f"processd did not start: {log_path.read_text()[-2000:]}")

    def stored(self, chain_id: int) -> list[query_pb2.StoredTx]:
        """Every stored transaction of a chain, oldest first (pages through ListTransactions)."""
        out: list[query_pb2.StoredTx] = []
        with grpc.insecure_channel(self.addr) as channel:
            stub = query_pb2_grpc.QueryStub(channel)
            cursor = 0
            for _ in range(10_000):
                page = stub.ListTransactions(query_pb2.ListTransactionsRequest(
                    chain_id=chain_id, limit=500, cursor=cursor, ascending=True), timeout=10)
                out.extend(page.transactions)
                if not page.next_cursor or not page.transactions:
                    break
                cursor = page.next_cursor
        return out


class Ingestd(Daemon):
    """A real ingestd subprocess with a metrics port."""

    def __init__(self, chain_args: list[str], processd_addr: str, log_path: Path, *extra: str,
                 env: dict[str, str] | None = None) -> None:
        self.metrics_port = free_port()
        args = ["-m", "ingestd", *chain_args, "--processd", processd_addr, "--metrics-port", str(self.metrics_port),
                *extra]
        super().__init__(args, log_path, env=env)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        return sum(v for (n, lab), v in self.metrics().items()
                   if n == name and all((k, val) in lab for k, val in labels.items()))

    def wait_ready(self, sources: int, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ingestd exited {self.proc.returncode}: {self.log_text()[-2000:]}")
            try:
                if self.metric("mempulse_ingestd_source_connected") >= sources:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"ingestd not ready: {self.log_text()[-2000:]}")

    def wait_for(self, predicate: object, timeout_s: float = 30.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():  # type: ignore[operator]
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; log tail: {self.log_text()[-1500:]}")


@pytest.fixture
def processd(tmp_path: Path) -> Iterator[Processd]:
    p = Processd(tmp_path / "lmdb", tmp_path / "processd.log")
    yield p
    p.stop()


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[Daemon]]:
    """Collects daemons a test starts; all are stopped at teardown."""
    started: list[Daemon] = []
    yield started
    for d in started:
        d.stop()


@pytest.fixture(scope="module")
def pending_anvil() -> Iterator[tuple[AnvilNode, list[str]]]:
    """One anvil (chain 137) holding 60 pending replayed transactions, shared by a module."""
    with AnvilNode(chain_id=137) as node:
        yield node, send_calls(node.http_url, 0, 60)
