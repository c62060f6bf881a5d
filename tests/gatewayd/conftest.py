"""Fixtures for gatewayd integration tests: a REAL processd (real LMDB in a temp dir, real gRPC) and the real
gatewayd CLI (``python -m gatewayd``), each a subprocess on a free port, stopped in teardown."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from common.pb.v1 import tx_pb2
from common.testing.ingest_push import push_envelopes
from common.testing.netutil import free_port
from common.testing.process import ManagedProcess, child_env, python_module_argv
from common.testing.stack import grpc_serving

#: Chains of the synthetic data set (ethereum, polygon, bsc).
CHAINS = (1, 137, 56)


def http_ok(url: str) -> bool:
    return httpx.get(url, timeout=1.0).status_code == 200


class Processd:
    """A real processd on a free port with its own data dir; ``stop()`` + ``start()`` restarts it in place."""

    def __init__(self, data_dir: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.addr = f"127.0.0.1:{free_port()}"
        self.proc = ManagedProcess(
            "processd",
            python_module_argv("processd", "--data-dir", str(data_dir), "--listen", self.addr),
            log_path,
            env=child_env({"MEMPULSE_LOG_LEVEL": "WARNING", **(env or {})}),
            ready=lambda: grpc_serving(self.addr),
            ready_timeout_s=60,
        )

    def start(self) -> Processd:
        self.proc.start()
        return self

    def stop(self) -> None:
        self.proc.stop()

    def push(self, envelopes: Sequence[tx_pb2.TxEnvelope], batch_size: int = 100, session: str = "test") -> int:
        """Sends envelopes over Ingest.Stream and returns how many were newly stored."""
        acks = asyncio.run(push_envelopes(self.addr, envelopes, batch_size=batch_size, session_id=session))
        return sum(a.accepted for a in acks)


class Gateway:
    """The real ``python -m gatewayd`` on a free port in front of ``processd_addr``."""

    def __init__(self, processd_addr: str, log_path: Path, args: Sequence[str] = (), env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = ManagedProcess(
            "gatewayd",
            python_module_argv("gatewayd", "--listen", f"127.0.0.1:{self.port}", "--processd", processd_addr, *args),
            log_path,
            env=child_env({"MEMPULSE_LOG_LEVEL": "WARNING", **(env or {})}),
            # /healthz is 503 while processd is down, so readiness is "answers HTTP" (openapi is always 200
            # unless auth is on, then 401: both mean the server is up).
            ready=lambda: httpx.get(f"{self.url}/metrics", timeout=1.0).status_code == 200,
            ready_timeout_s=60,
        )

    def start(self) -> Gateway:
        self.proc.start()
        return self

    def stop(self) -> None:
        self.proc.stop()

    def client(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=headers, timeout=10.0)


@pytest.fixture
def processd_factory(tmp_path: Path) -> Iterator[object]:
    """Starts real processd instances on demand (each with its own data dir); all stopped after the test."""
    started: list[Processd] = []

    def start(name: str = "p", env: dict[str, str] | None = None) -> Processd:
        p = Processd(tmp_path / f"data-{name}", tmp_path / f"processd-{name}.log", env).start()
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator[object]:
    """Starts real gatewayd processes on demand; all stopped after the test."""
    started: list[Gateway] = []

    def start(processd_addr: str, *args: str, env: dict[str, str] | None = None) -> Gateway:
        g = Gateway(processd_addr, tmp_path / f"gatewayd-{len(started)}.log", args, env).start()
        started.append(g)
        return g

    yield start
    for g in started:
        g.stop()


@contextlib.contextmanager
def seeded_stack(d: Path, envelopes: Sequence[tx_pb2.TxEnvelope],
                 batch_size: int = 100) -> Iterator[tuple[Processd, Gateway]]:
    """A real processd in ``d`` holding ``envelopes`` (all newly stored, checked) and a real gatewayd in front
    of it without a rate limit; both stopped on exit."""
    p = Processd(d / "data", d / "processd.log").start()
    g = Gateway(p.addr, d / "gatewayd.log", ["--rate-limit-rps", "0"])
    try:
        assert p.push(envelopes, batch_size=batch_size) == len(envelopes)
        yield p, g.start()
    finally:
        g.stop()
        p.stop()
