"""Shared helpers of the processd tests: an in-process server, a processd subprocess, a gRPC query client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from common.pb.v1 import query_pb2_grpc
from common.testing.netutil import free_port, wait_for_port
from processd.config import ProcessdConfig

ROOT = Path(__file__).resolve().parents[2]


def make_config(data_dir: Path, **overrides: Any) -> ProcessdConfig:
    """A config on a free port with small flush interval, overridable per test."""
    base = ProcessdConfig(data_dir=data_dir, listen_port=free_port(), flush_interval_ms=1)
    return replace(base, **overrides)


def query_stub(channel: Any) -> query_pb2_grpc.QueryStub:
    return query_pb2_grpc.QueryStub(channel)


class ProcessdSubprocess:
    """``python -m processd`` in a child process (for kill -9 and crash-switch tests)."""

    def __init__(self, data_dir: Path, log_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        self.args = args
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> ProcessdSubprocess:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "processd", "--data-dir", str(self.data_dir), "--listen", self.address,
                 *self.args], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=self.env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"processd exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}")
            if b"processd listening on" in self.log_path.read_bytes()[offset:]:
                assert wait_for_port("127.0.0.1", self.port, 5)
                return self
            time.sleep(0.05)
        raise RuntimeError("processd did not start in time")

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def wait_exit(self, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill9()
