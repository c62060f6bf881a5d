"""The fault proxy's own contract (used by the ingestd, reliability and benchmark suites)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import httpx
import orjson
import pytest
import websockets

from common.testing.anvil import AnvilNode
from common.testing.faultproxy import FaultProxy, Faults
from common.testing.netutil import free_port, wait_for_port
from tests.ingestd.conftest import ROOT

pytestmark = pytest.mark.integration

GET = {"jsonrpc": "2.0", "id": 1, "method": "eth_getTransactionByHash", "params": ["0x" + "00" * 32]}
CHAIN_ID = {"jsonrpc": "2.0", "id": 2, "method": "eth_chainId", "params": []}


def test_cli_injects_targeted_faults_only_and_stops_cleanly(anvil: AnvilNode) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "common.testing.faultproxy", "--upstream", anvil.http_url,
                             "--listen", f"127.0.0.1:{port}", "--http-429-next", "1", "--rpc-error-next", "1"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_for_port("127.0.0.1", port, 15)
        url = f"http://127.0.0.1:{port}"
        assert httpx.post(url, json=CHAIN_ID).json()["result"] == hex(31337)  # not a targeted method
        assert httpx.post(url, json=GET).status_code == 429
        assert httpx.post(url, json=[GET]).json()[0]["error"]["code"] == -32005
        assert httpx.post(url, json=[GET]).json() == [{"jsonrpc": "2.0", "id": 1, "result": None}]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert f"listening on http://127.0.0.1:{port}" in out and "'http_429': 1" in out and "'rpc_error': 1" in out


async def test_reorder_and_partial_keep_ids_intact(anvil: AnvilNode) -> None:
    batch = [{**GET, "id": i} for i in range(20)]
    async with FaultProxy(anvil.http_url, Faults(reorder=True, partial_error_rate=0.5), seed=1) as proxy, \
            httpx.AsyncClient() as client:
        items = orjson.loads((await client.post(proxy.http_url, content=orjson.dumps(batch))).content)
    assert sorted(it["id"] for it in items) == list(range(20))
    assert [it["id"] for it in items] != list(range(20))
    errors = [it for it in items if "error" in it]
    assert 0 < len(errors) < 20 and proxy.stats["items_errored"] == len(errors)


async def test_periodic_ws_cuts_and_injection(anvil: AnvilNode) -> None:
    async with FaultProxy(anvil.http_url) as proxy:
        async with websockets.connect(proxy.ws_url) as ws:
            await ws.send(orjson.dumps({**CHAIN_ID, "id": 9}).decode())
            assert orjson.loads(await ws.recv())["result"] == hex(31337)  # bridged to the real node
            assert await proxy.inject_ws(b"not json") == 1
            assert await ws.recv() == "not json"
            proxy.faults.ws_cut_every_s = 0.2
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
        assert proxy.stats["ws_cuts"] >= 1 and proxy.stats["ws_injected"] == 1


async def test_oversized_answer_is_valid_padded_json(anvil: AnvilNode) -> None:
    async with FaultProxy(anvil.http_url, Faults(oversized_next=2, oversized_bytes=3 << 20)) as proxy, \
            httpx.AsyncClient() as client:
        plain = await client.post(proxy.http_url, content=orjson.dumps([GET]))
        proxy.faults.oversized_chunked = True
        chunked = await client.post(proxy.http_url, content=orjson.dumps([GET]))
        normal = await client.post(proxy.http_url, content=orjson.dumps([GET]))
    assert int(plain.headers["content-length"]) == len(plain.content) == 3 << 20
    assert "content-length" not in chunked.headers and len(chunked.content) == 3 << 20
    for resp in (plain, chunked, normal):
        assert orjson.loads(resp.content) == [{"jsonrpc": "2.0", "id": 1, "result": None}]
    assert proxy.stats["oversized"] == 2 and len(normal.content) < 100
