"""Security properties that cut across daemons (gatewayd's own 401/429/413/431/CORS tests live in
tests/gatewayd; they are not repeated here).

* API keys: every configured key is compared with ``hmac.compare_digest``, with no early exit.
* gRPC: a message over processd's limit is answered RESOURCE_EXHAUSTED, processd stays up and the next
  stream works; the limit is configurable.
* Loopback by default: every daemon's default listen / metrics address is 127.0.0.1, and the real sockets
  (read from /proc/net/tcp) are bound there.
* No secrets in logs: API keys (gatewayd at DEBUG with the access log on) and node URL credentials (ingestd,
  on its fatal startup error path) never reach a log line.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import socket
import subprocess
import sys
from pathlib import Path
from unittest import mock

import grpc
import httpx
import pytest

from common.pb.v1 import ingest_pb2, ingest_pb2_grpc, tx_pb2
from common.testing.ingest_push import push_envelopes
from common.testing.netutil import free_port
from common.testing.process import ManagedProcess, child_env, python_module_argv
from common.testing.synth import synthetic_envelopes
from tests.reliability._support import ROOT, IngestdProc, ProcessdProc, grpc_serving


def test_every_api_key_compared_in_constant_time_without_early_exit() -> None:
    from gatewayd import auth

    keys = [f"key-{i:02d}-{'x' * 20}" for i in range(5)]
    checker = auth.ApiKeyAuth(keys)
    for presented in (keys[0], keys[4], "key-00-" + "x" * 19 + "y", "k"):
        with mock.patch.object(auth.hmac, "compare_digest", wraps=hmac.compare_digest) as spy:
            try:
                checker.authenticate({"x-api-key": presented})
            except auth.AuthError:
                pass
        assert spy.call_count == len(keys), f"{presented!r}: {spy.call_count} comparisons, expected {len(keys)}"


def _listening_addresses(port: int) -> set[str]:
    """Local IPv4/IPv6 addresses of LISTEN sockets on ``port`` (from /proc/net/tcp*)."""
    out: set[str] = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            addr, port_hex = fields[1].split(":")
            if fields[3] == "0A" and int(port_hex, 16) == port:
                if width == 8:
                    out.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr)[::-1]))
                else:
                    raw = b"".join(bytes.fromhex(addr[i:i + 8])[::-1] for i in range(0, 32, 8))
                    out.add(socket.inet_ntop(socket.AF_INET6, raw))
    return out


def test_defaults_bind_loopback_only() -> None:
    from gatewayd import config as gatewayd_config
    from ingestd.config import IngestConfig
    from processd import config as processd_config

    assert processd_config.load_config(["--data-dir", "/tmp/x"], env={}).listen_host == "127.0.0.1"
    assert gatewayd_config.load_config([], env={}).listen_host == "127.0.0.1"
    assert IngestConfig(chains=()).metrics_host == "127.0.0.1"


@pytest.mark.integration
def test_real_sockets_are_on_loopback(tmp_path: Path) -> None:
    from common.testing.anvil import AnvilNode

    proc = ProcessdProc(tmp_path / "lmdb", tmp_path / "processd.log", metrics=True)
    gw_port = free_port()
    gateway = ManagedProcess("gatewayd", python_module_argv("gatewayd", "--processd", proc.addr),
                             tmp_path / "gatewayd.log", cwd=ROOT,
                             env=child_env({"MEMPULSE_GATEWAYD_LISTEN": f"127.0.0.1:{gw_port}"}),
                             ready=lambda: httpx.get(f"http://127.0.0.1:{gw_port}/metrics",
                                                     timeout=1).status_code == 200)
    with AnvilNode(chain_id=137) as node:
        ingestd = IngestdProc(["--chain", f"polygon={node.ws_url}"], proc.addr, tmp_path / "ingestd.log")
        try:
            proc.start()
            gateway.start()
            ingestd.start()  # metrics host left at its default
            for name, port in (("processd grpc", proc.port), ("processd metrics", proc.metrics_port),
                               ("gatewayd", gw_port), ("ingestd metrics", ingestd.metrics_port)):
                addrs = _listening_addresses(port)
                assert addrs, f"{name}: nothing listens on {port}"
                assert addrs <= {"127.0.0.1", "::1", "::ffff:127.0.0.1"}, f"{name} listens on {addrs}"
        finally:
            ingestd.stop()
            gateway.stop()
            proc.stop()


@pytest.mark.integration
def test_grpc_oversized_message_is_resource_exhausted_and_processd_stays_up(tmp_path: Path) -> None:
    limit = 1 << 20
    proc = ProcessdProc(tmp_path / "lmdb", tmp_path / "processd.log",
                        env={"MEMPULSE_PROCESSD_MAX_MESSAGE_BYTES": str(limit),
                             "MEMPULSE_PROCESSD_MAX_INPUT_BYTES": "65536"})
    big = [tx_pb2.TxEnvelope(chain_id=1, hash=bytes([i]) * 32, sender=b"\x01" * 20, input=b"\x00" * 60_000)
           for i in range(40)]  # ~2.4 MB in one TxBatch

    async def send_big() -> grpc.StatusCode:
        async with grpc.aio.insecure_channel(proc.addr, options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
            call = ingest_pb2_grpc.IngestStub(ch).Stream(
                iter([ingest_pb2.TxBatch(session_id="big", batch_seq=1, envelopes=big)]), timeout=20)
            try:
                async for _ack in call:
                    pass
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

    try:
        proc.start()
        assert asyncio.run(send_big()) == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert proc.alive and grpc_serving(proc.addr)
        acks = asyncio.run(push_envelopes(proc.addr, synthetic_envelopes(50, seed=9), batch_size=50))
        assert acks[0].accepted == 50
        # an envelope over the per-envelope input limit (but within the message limit) is rejected, counted
        too_big = tx_pb2.TxEnvelope(chain_id=1, hash=b"\xee" * 32, sender=b"\x01" * 20, input=b"\x00" * 70_000)
        acks = asyncio.run(push_envelopes(proc.addr, [too_big], batch_size=1, session_id="one"))
        assert [(r.reason, r.count) for r in acks[0].rejected] == [(ingest_pb2.REJECT_REASON_TOO_LARGE, 1)]
    finally:
        proc.stop()


SECRET = "SuperSecretKey0123456789abcdef"


@pytest.mark.integration
def test_ingestd_never_logs_node_credentials() -> None:
    port = free_port()
    urls = (f"ws://user:{SECRET}@127.0.0.1:{port}/v3/{SECRET}?apikey={SECRET},"
            f"http://127.0.0.1:{port}/v3/{SECRET}")
    result = subprocess.run([sys.executable, "-m", "ingestd", "--chain", f"polygon={urls}", "--processd",
                             f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=60, cwd=ROOT,
                            env={**os.environ, "MEMPULSE_LOG_LEVEL": "DEBUG"})
    assert result.returncode == 2, result
    text = result.stdout + result.stderr
    assert "127.0.0.1" in text, "the error names the endpoint"
    assert SECRET not in text, text


@pytest.mark.integration
def test_gatewayd_never_logs_api_keys_even_at_debug_with_access_log(tmp_path: Path) -> None:
    proc = ProcessdProc(tmp_path / "lmdb", tmp_path / "processd.log")
    gw_port = free_port()
    gateway = ManagedProcess(
        "gatewayd", python_module_argv("gatewayd", "--listen", f"127.0.0.1:{gw_port}", "--processd", proc.addr,
                                       "--access-log"),
        tmp_path / "gatewayd.log", cwd=ROOT,
        env=child_env({"MEMPULSE_GATEWAYD_API_KEYS": SECRET, "MEMPULSE_LOG_LEVEL": "DEBUG"}),
        ready=lambda: httpx.get(f"http://127.0.0.1:{gw_port}/metrics", timeout=1).status_code == 200)
    wrong = "WrongKey" + SECRET[::-1]
    try:
        proc.start()
        gateway.start()
        with httpx.Client(base_url=f"http://127.0.0.1:{gw_port}", timeout=10) as http:
            assert http.get("/transactions", headers={"x-api-key": SECRET}).status_code == 200
            assert http.get("/transactions", headers={"authorization": f"Bearer {SECRET}"}).status_code == 200
            assert http.get("/transactions", headers={"x-api-key": wrong}).status_code == 401
            assert http.get(f"/transactions?api_key={SECRET}", headers={"x-api-key": SECRET}).status_code == 400
        proc.stop()  # the 503 path logs too
        with httpx.Client(base_url=f"http://127.0.0.1:{gw_port}", timeout=10) as http:
            assert http.get("/transactions", headers={"x-api-key": SECRET}).status_code == 503
        gateway.stop()
        text = gateway.output()
        assert text.count("sanic.access") >= 5, "the access log is on: every request leaves a line"
        assert SECRET not in text and wrong not in text, [ln for ln in text.splitlines() if SECRET in ln][:3]
    finally:
        gateway.stop()
        proc.stop()


@pytest.mark.integration
def test_gatewayd_access_log_lines_say_what_was_requested(tmp_path: Path) -> None:
    proc = ProcessdProc(tmp_path / "lmdb", tmp_path / "processd.log")
    gw_port = free_port()
    gateway = ManagedProcess(
        "gatewayd", python_module_argv("gatewayd", "--listen", f"127.0.0.1:{gw_port}", "--processd", proc.addr,
                                       "--access-log"),
        tmp_path / "gatewayd.log", cwd=ROOT, env=child_env({}),
        ready=lambda: httpx.get(f"http://127.0.0.1:{gw_port}/metrics", timeout=1).status_code == 200)
    try:
        proc.start()
        gateway.start()
        assert httpx.get(f"http://127.0.0.1:{gw_port}/transactions?limit=7", timeout=10).status_code == 200
        gateway.stop()
        lines = [ln for ln in gateway.output().splitlines() if "sanic.access" in ln]
        assert any("/transactions" in ln and "200" in ln for ln in lines), lines
    finally:
        gateway.stop()
        proc.stop()
