"""Starts and stops real anvil nodes (Foundry's local EVM node) for the demo, tests and benchmarks.

anvil is installed by ``scripts/_env.sh`` from the npm registry into ``.tools/``; its path comes from
``MEMPULSE_ANVIL_BIN`` or ``PATH``. Nodes run with ``--no-mining`` so sent transactions stay pending and
are announced on ``newPendingTransactions`` (tests mine on demand with ``evm_mine``), unless ``block_time_s`` asks
for interval mining (``--block-time``: a block every that many seconds, with what is pending; the demo), and
``--auto-impersonate`` so any address can send.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from common.errors import MempulseError
from common.testing.netutil import free_port
from common.testing.process import die_with_parent_prefix

log = logging.getLogger(__name__)


class AnvilNotFoundError(MempulseError, RuntimeError):
    """The anvil binary is not installed where we look for it."""


def anvil_binary() -> str:
    """Path of the anvil binary: ``MEMPULSE_ANVIL_BIN``, then ``.tools/``, then ``PATH``."""
    explicit = os.environ.get("MEMPULSE_ANVIL_BIN")
    if explicit and Path(explicit).exists():
        return explicit
    modules = Path(__file__).resolve().parents[2] / ".tools" / "node_modules"
    # The npm package's launcher (.bin/anvil) is a node script that runs the platform package's native
    # binary as its child; starting the native binary directly saves a node process per chain and lets
    # signals reach anvil itself.
    for native in sorted(modules.glob("@foundry-rs/anvil-*/bin/anvil")):
        if os.access(native, os.X_OK):
            return str(native)
    launcher = modules / ".bin" / "anvil"
    if launcher.exists():
        return str(launcher)
    found = shutil.which("anvil")
    if found:
        return found
    raise AnvilNotFoundError("anvil not found: run ./scripts/test or ./scripts/demo once to install it into .tools/")


@dataclass
class AnvilNode:
    """One anvil process. Use as a context manager, or call :meth:`start` and :meth:`stop`."""

    chain_id: int = 31337
    port: int = 0
    host: str = "127.0.0.1"
    extra_args: tuple[str, ...] = ()
    startup_timeout_s: float = 20.0
    #: > 0: mine a block every this many seconds (``--block-time``); 0: ``--no-mining`` (mine on demand).
    block_time_s: float = 0.0
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> AnvilNode:
        """Starts anvil and waits until it answers ``eth_chainId``; raises RuntimeError otherwise."""
        if self.running:
            return self
        if not self.port:
            self.port = free_port(self.host)
        mining = ("--block-time", f"{self.block_time_s:g}") if self.block_time_s > 0 else ("--no-mining",)
        args = [
            *die_with_parent_prefix(),  # no orphaned anvil when the process that started it is killed
            anvil_binary(), *mining, "--auto-impersonate", "--silent",
            "--chain-id", str(self.chain_id), "--host", self.host, "--port", str(self.port),
            *self.extra_args,
        ]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise RuntimeError(f"anvil exited at start (port {self.port}): {err.strip()[:300]}")
            try:
                resp = httpx.post(self.http_url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId",
                                                       "params": []}, timeout=1.0)
                if resp.status_code == 200 and int(resp.json()["result"], 16) == self.chain_id:
                    log.debug("anvil chain %s ready on %s", self.chain_id, self.http_url)
                    return self
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"anvil did not become ready on port {self.port} within {self.startup_timeout_s}s")

    def stop(self) -> None:
        """Stops anvil (SIGTERM, then SIGKILL after 5 s). Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr:
            proc.stderr.close()

    def __enter__(self) -> AnvilNode:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
