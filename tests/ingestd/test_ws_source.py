"""WsSource subscription handling.

anvil, geth and reth accept ``["newPendingTransactions", true]``; some nodes (e.g. Nethermind, Erigon
versions) refuse the extra parameter. We cannot run those here, so a minimal WebSocket server plays such a
node for these tests: it refuses full transactions, then announces hashes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve

from common.testing.anvil import AnvilNode
from common.testing.faultproxy import FaultProxy
from ingestd.config import Source
from ingestd.metrics import SourceStats
from ingestd.notifications import PendingHash, PendingTx
from ingestd.ws_source import WsSource

HASHES = [bytes([i]) * 32 for i in range(1, 4)]


async def _refusing_node(ws: ServerConnection) -> None:
    async for raw in ws:
        req = orjson.loads(raw)
        if req["params"] != ["newPendingTransactions"]:
            await ws.send(orjson.dumps({"jsonrpc": "2.0", "id": req["id"],
                                        "error": {"code": -32602, "message": "invalid params"}}).decode())
            continue
        await ws.send(orjson.dumps({"jsonrpc": "2.0", "id": req["id"], "result": "0xsub"}).decode())
        for h in HASHES:
            await ws.send(orjson.dumps({"jsonrpc": "2.0", "method": "eth_subscription",
                                        "params": {"subscription": "0xsub", "result": "0x" + h.hex()}}).decode())
        await ws.send(orjson.dumps({"jsonrpc": "2.0", "method": "eth_subscription",
                                    "params": {"subscription": "0xother", "result": "0x" + "ee" * 32}}).decode())
        await ws.send(b"\xff not json")


@pytest.fixture
async def node_url() -> AsyncIterator[str]:
    async with serve(_refusing_node, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


async def _run(url: str, mode: str, until: int, seconds: float) -> tuple[SourceStats, list, dict[str, int]]:
    got: list[PendingHash | PendingTx] = []
    rejected: dict[str, int] = {}
    enough = asyncio.Event()

    def on_notification(sid: str, msg: PendingHash | PendingTx, ns: int) -> None:
        got.append(msg)
        if len(got) >= until:
            enough.set()

    stats = SourceStats("fake")
    source = WsSource(Source("fake", url), "test", mode, stats, on_notification,
                      lambda sid, reason: rejected.__setitem__(reason, rejected.get(reason, 0) + 1),
                      reconnect_min_s=0.01, reconnect_max_s=0.05)
    task = asyncio.create_task(source.run())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(enough.wait(), seconds)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return stats, got, rejected


async def test_auto_falls_back_to_hashes_when_full_tx_is_refused(node_url: str) -> None:
    stats, got, rejected = await _run(node_url, "auto", until=3, seconds=5)
    assert [m.tx_hash for m in got] == HASHES and all(isinstance(m, PendingHash) for m in got)
    assert stats.full_tx is False and stats.reconnects == 0
    await asyncio.sleep(0)  # the remaining frames may still be in flight; what arrived is counted
    assert set(rejected) <= {"unknown_subscription", "malformed_json"}


async def test_off_subscribes_for_hashes_and_counts_bad_messages(node_url: str) -> None:
    _, got, rejected = await _run(node_url, "off", until=10, seconds=0.5)
    assert [m.tx_hash for m in got] == HASHES
    assert rejected == {"unknown_subscription": 1, "malformed_json": 1}


async def test_on_insists_and_keeps_retrying(node_url: str) -> None:
    stats, got, _ = await _run(node_url, "on", until=1, seconds=0.5)
    assert got == [] and stats.reconnects >= 2 and not stats.connected


async def test_a_cancel_that_arrives_with_the_subscribe_answer_is_not_swallowed() -> None:
    """The race behind a hung ``stop()``: the source is cancelled in the same loop iteration as the node's answer
    arrives. ``asyncio.wait_for`` (Python 3.11) returned the answer and dropped the cancel, so the reconnect loop
    ran forever (1 run in ~130 of ``test_on_insists_and_keeps_retrying`` hung); the cancel must win."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[bytes] = loop.create_future()

    class Node:  # the two methods _subscribe uses of a websockets connection
        async def send(self, message: str, text: bool = False) -> None:
            return None

        def recv(self, decode: bool = False) -> asyncio.Future[bytes]:
            return answer

    source = WsSource(Source("fake", "ws://unused"), "test", "on", SourceStats("fake"),
                      lambda *a: None, lambda *a: None)
    task = asyncio.create_task(source._subscribe(Node()))  # type: ignore[arg-type]
    await asyncio.sleep(0)  # the task now waits for the answer
    answer.set_result(orjson.dumps({"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "no"}}))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_oversized_frame_is_counted_and_the_source_reconnects(anvil: AnvilNode) -> None:
    # Issue 14: a frame over ws_max_message_bytes ends the connection (websockets answers 1009) unread; it
    # must be counted, not only show up as a reconnect.
    rejected: dict[str, int] = {}
    stats = SourceStats("proxy")
    async with FaultProxy(anvil.http_url) as proxy:
        source = WsSource(Source("proxy", proxy.ws_url), "test", "auto", stats, lambda sid, msg, ns: None,
                          lambda sid, reason: rejected.__setitem__(reason, rejected.get(reason, 0) + 1),
                          max_message_bytes=1 << 20, reconnect_min_s=0.01, reconnect_max_s=0.05)
        task = asyncio.create_task(source.run())
        try:
            for _ in range(200):
                if stats.connected:
                    break
                await asyncio.sleep(0.05)
            assert await proxy.inject_ws(b'{"pad":"' + b"x" * (2 << 20) + b'"}') == 1
            for _ in range(200):
                if stats.reconnects and stats.connected:
                    break
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert rejected == {"too_large": 1} and stats.reconnects >= 1
