"""/events/stream (Server-Sent Events) against a real processd: catch-up then live, Last-Event-ID resume,
heartbeats, chain/kind filters, client limits and cleanup on disconnect."""

from __future__ import annotations

import asyncio
import collections
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest

from common.pb.v1 import block_pb2, ingest_pb2, pool_pb2
from common.testing.ingest_push import push_batches
from common.testing.netutil import free_port
from common.testing.synth import synthetic_envelopes

from .conftest import CHAINS

pytestmark = pytest.mark.integration


@dataclass
class Message:
    id: int | None = None
    event: str | None = None
    data: Any = None
    comments: list[str] = field(default_factory=list)


class SSEReader:
    """Minimal SSE parser over an httpx streaming response (what an EventSource does)."""

    def __init__(self, resp: httpx.Response) -> None:
        self.lines: Iterator[str] = resp.iter_lines()

    def next(self) -> Message:
        msg = Message()
        for line in self.lines:
            if line == "":
                if msg.id is not None or msg.event is not None or msg.comments:
                    return msg
                continue
            if line.startswith(":"):
                msg.comments.append(line[1:].strip())
            elif line.startswith("id: "):
                msg.id = int(line[4:])
            elif line.startswith("event: "):
                msg.event = line[7:]
            elif line.startswith("data: "):
                msg.data = orjson.loads(line[6:])
        raise EOFError("stream ended")

    def events(self, count: int, timeout_s: float = 20.0) -> tuple[list[Message], int]:
        """The next ``count`` event messages (and how many heartbeats went by meanwhile)."""
        out: list[Message] = []
        heartbeats = 0
        deadline = time.monotonic() + timeout_s
        while len(out) < count:
            assert time.monotonic() < deadline, f"only {len(out)} of {count} events within {timeout_s}s"
            msg = self.next()
            if msg.event == "error":
                raise AssertionError(f"stream error: {msg.data}")
            if msg.id is not None:
                out.append(msg)
            elif "heartbeat" in msg.comments:
                heartbeats += 1
        return out, heartbeats


def stream(http: httpx.Client, **kw: Any) -> Any:
    return http.stream("GET", "/events/stream", **kw)


def test_catch_up_then_live_with_filters_and_heartbeats(processd_factory, gateway_factory) -> None:
    p = processd_factory()
    first = synthetic_envelopes(90, seed=11, chain_ids=CHAINS)
    p.push(first)
    g = gateway_factory(p.addr, "--sse-heartbeat-s", "0.3")
    with g.client() as http, stream(http, params={"from_seq_id": 1, "chain_id": "polygon", "kinds": "tx_seen"}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        reader = SSEReader(resp)
        caught_up, _ = reader.events(30)
        assert [m.data["tx"]["hash"] for m in caught_up] == ["0x" + e.hash.hex() for e in first if e.chain_id == 137]
        assert all(m.event == "tx_seen" and m.data["chain_id"] == 137 and m.data["seq_id"] == m.id for m in caught_up)
        # Idle: heartbeats flow; then new transactions arrive live.
        msg = reader.next()
        assert "heartbeat" in msg.comments
        more = synthetic_envelopes(60, seed=12, chain_ids=CHAINS)
        p.push(more)
        live, _ = reader.events(20)
        assert [m.data["tx"]["hash"] for m in live] == ["0x" + e.hash.hex() for e in more if e.chain_id == 137]
        ids = [m.id for m in caught_up + live]
        assert ids == sorted(set(ids))


def test_resume_with_last_event_id(processd_factory, gateway_factory) -> None:
    p = processd_factory()
    p.push(synthetic_envelopes(40, seed=13, chain_ids=CHAINS))
    g = gateway_factory(p.addr, "--rate-limit-rps", "0")
    with g.client() as http:
        truth = [e["seq_id"] for e in http.get("/events", params={"limit": 1000}).json()["events"]]
        with stream(http, params={"from_seq_id": 1}) as resp:
            got, _ = SSEReader(resp).events(10)
        assert [m.id for m in got] == truth[:10]
        last_id = got[-1].id
        # A reconnecting EventSource sends Last-Event-ID; it wins over from_seq_id.
        with stream(http, params={"from_seq_id": 1}, headers={"last-event-id": str(last_id)}) as resp:
            rest, _ = SSEReader(resp).events(len(truth) - 10)
        assert [m.id for m in rest] == truth[10:], "resumed right after the last seen id: no gap, no duplicate"
        bad = http.get("/events/stream", headers={"last-event-id": "abc"})
        assert bad.status_code == 400 and bad.json()["error"]["parameter"] == "Last-Event-ID"


def test_without_cursor_only_new_events(processd_factory, gateway_factory) -> None:
    p = processd_factory()
    p.push(synthetic_envelopes(30, seed=14, chain_ids=CHAINS))
    g = gateway_factory(p.addr, "--sse-heartbeat-s", "0.3")
    with g.client() as http:
        head = http.get("/events", params={"from_seq_id": 10**9}).json()["last_seq_id"]
        with stream(http, params={"kinds": "tx_seen,tx_decoded"}) as resp:
            reader = SSEReader(resp)
            # The opening comment (the stream is registered) names the head processd reported at admission.
            assert reader.next().comments == [f"stream from seq_id {head + 1}, head {head}"]
            more = synthetic_envelopes(3, seed=15, chain_ids=CHAINS)
            p.push(more)
            live, _ = reader.events(6)
        assert all(m.id > head for m in live)
        assert {m.event for m in live} == {"tx_seen", "tx_decoded"}
        assert {m.data["tx_hash"] for m in live} == {"0x" + e.hash.hex() for e in more}


def test_processd_down_is_a_503_json_answer(gateway_factory) -> None:
    """No processd behind the gateway: the stream is answered 503 JSON with Retry-After (the admission wait
    finds it out; there is no separate head probe any more), never a 200 followed by an error."""
    g = gateway_factory(f"127.0.0.1:{free_port()}", "--grpc-timeout-ms", "500")
    with g.client() as http:
        resp = http.get("/events/stream")
    assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
    assert resp.json()["error"]["code"] == "processd_unavailable"


def metric(http: httpx.Client, name: str) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"metric {name} missing")


def test_client_limit_and_cleanup_on_disconnect(processd_factory, gateway_factory) -> None:
    p = processd_factory()
    g = gateway_factory(p.addr, "--sse-max-clients", "1", "--sse-heartbeat-s", "0.3")
    with g.client() as http:
        with stream(http) as resp:
            reader = SSEReader(resp)  # keep a reference: a collected line iterator closes the response
            reader.next()
            assert metric(http, "mempulse_gatewayd_sse_clients") == 1
            with stream(http) as second:  # a stream, so a wrongly accepted one cannot hang the test
                assert second.status_code == 503
                assert orjson.loads(second.read())["error"]["code"] == "too_many_streams"
            assert "heartbeat" in reader.next().comments
        deadline = time.monotonic() + 10
        while metric(http, "mempulse_gatewayd_sse_clients") != 0:
            assert time.monotonic() < deadline, "stream slot not released after the client went away"
            time.sleep(0.1)
        with stream(http) as resp:  # the slot is free again
            assert resp.status_code == 200


def test_processd_restart_ends_stream_with_error_event(processd_factory, gateway_factory) -> None:
    p = processd_factory()
    p.push(synthetic_envelopes(6, seed=16, chain_ids=CHAINS))
    g = gateway_factory(p.addr, "--sse-heartbeat-s", "0.3")
    with g.client() as http, stream(http, params={"from_seq_id": 1}) as resp:
        reader = SSEReader(resp)
        got, _ = reader.events(12)
        p.stop()
        deadline = time.monotonic() + 20
        while True:
            assert time.monotonic() < deadline
            msg = reader.next()
            if msg.event == "error":
                break
        assert msg.data["error"]["code"] in ("processd_unavailable", "stream_ended")
        assert got[-1].id == 12


def test_sigterm_ends_open_streams_and_exits_promptly(processd_factory, gateway_factory) -> None:
    p = processd_factory()
    g = gateway_factory(p.addr)  # default 15 s heartbeat: an idle stream sends nothing for a while
    with g.client() as http, stream(http) as resp:
        reader = SSEReader(resp)
        reader.next()
        t0 = time.monotonic()
        g.proc.send_signal(signal.SIGTERM)
        msg = reader.next()
        assert msg.event == "error" and msg.data["error"]["code"] == "shutting_down"
        assert g.proc.wait(10) == 0
        assert time.monotonic() - t0 < 10


async def _open_stream(http: httpx.AsyncClient, opened: list[int], done: asyncio.Event,
                       params: dict[str, str] | None = None) -> tuple[int, str, str]:
    """One client: (status, Retry-After, what followed). A 200 stream is read up to its first heartbeat (or error)
    and held open until every client has its answer, so the admitted ones occupy their slots meanwhile."""
    async with http.stream("GET", "/events/stream", params=params) as resp:
        opened.append(resp.status_code)
        if resp.status_code != 200:
            body = orjson.loads(await resp.aread())
            if len(opened) == CLIENTS:
                done.set()
            return resp.status_code, resp.headers.get("retry-after", ""), body["error"]["code"]
        if len(opened) == CLIENTS:
            done.set()
        after = ""
        # The line iterator is held until the end: an abandoned one is finalized whenever the garbage collector
        # gets to it, and httpx then closes the connection, which freed the stream's slot in the middle of the
        # storm (seen in CI as 16 streams admitted against a cap of 8: the gateway was right).
        lines = resp.aiter_lines()
        try:
            async for line in lines:
                if line in (": heartbeat", "event: error"):
                    after = line
                    break
            await done.wait()
        finally:
            await lines.aclose()
        return 200, "", after


async def _storm(url: str, params: dict[str, str] | None = None) -> list[tuple[int, str, str]]:
    limits = httpx.Limits(max_connections=CLIENTS + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=30.0, limits=limits) as http:
        opened: list[int] = []
        done = asyncio.Event()
        return await asyncio.wait_for(
            asyncio.gather(*(_open_stream(http, opened, done, params) for _ in range(CLIENTS))), 90
        )


CLIENTS = 200


def _check_storm(outcomes: list[tuple[int, str, str]], cap: int, refusal_codes: set[str], *procs: Any) -> None:
    admitted = [o for o in outcomes if o[0] == 200]
    refused = [o for o in outcomes if o[0] != 200]
    # Once seen in CI only (16 admitted against 8): say everything that could tell why.
    seen = collections.Counter(outcomes).most_common()
    logs = "\n".join(f"{p.proc.name} log:\n{p.proc.log_tail()}" for p in procs)
    assert len(admitted) == cap, f"{len(admitted)} streams answered 200 against a cap of {cap}: {seen}\n{logs}"
    assert all(after == ": heartbeat" for _, _, after in admitted), "a 200 stream was followed by an error"
    assert {status for status, _, _ in refused} == {503}
    assert all(retry_after == "1" for _, retry_after, _ in refused), "every refusal says when to retry"
    assert {code for _, _, code in refused} <= refusal_codes


def test_concurrent_clients_never_exceed_the_stream_cap(processd_factory, gateway_factory) -> None:
    """Issue 14: gatewayd checked the open-stream count, awaited processd, then registered, so concurrent
    clients overshot sse_max_clients. 200 clients at once against a cap of 8: exactly 8 answered 200, every
    other one a 503 too_many_streams with Retry-After, and the slots come back when the clients leave."""
    p = processd_factory()
    g = gateway_factory(p.addr, "--sse-max-clients", "8", "--sse-heartbeat-s", "0.3", "--rate-limit-rps", "0")
    _check_storm(asyncio.run(_storm(g.url)), 8, {"too_many_streams"}, g, p)
    with g.client() as http:
        deadline = time.monotonic() + 10
        while metric(http, "mempulse_gatewayd_sse_clients") != 0:
            assert time.monotonic() < deadline, "stream slots not released after the clients went away"
            time.sleep(0.1)
        assert metric(http, "mempulse_gatewayd_sse_rejected_total") == CLIENTS - 8


def test_processd_refusal_is_a_503_before_the_stream_starts(processd_factory, gateway_factory) -> None:
    """Issue 14: when gatewayd has a slot but processd refuses the subscription (its own cap), the client got
    200 and then an ``event: error`` (browsers reconnect every 2 s). Now gatewayd waits for processd's admission
    before answering: 200 clients, gateway cap 64, processd cap 8 -> exactly 8 streams, every other client a
    503 with Retry-After and no 200 followed by an error. The clients replay from a cursor, so each needs its own
    subscription (clients from the head share one: tests/gatewayd/test_sse_fanout.py)."""
    p = processd_factory(env={"MEMPULSE_PROCESSD_MAX_SUBSCRIBERS": "8"})
    g = gateway_factory(p.addr, "--sse-max-clients", "64", "--sse-heartbeat-s", "0.3", "--rate-limit-rps", "0")
    _check_storm(asyncio.run(_storm(g.url, {"from_seq_id": "1"})), 8, {"too_many_streams", "processd_overloaded"},
                 g, p)



def _block(number: int, chain_id: int = 137) -> block_pb2.BlockEnvelope:
    return block_pb2.BlockEnvelope(chain_id=chain_id, number=number, hash=bytes([number, chain_id % 256]) * 16,
                                   parent_hash=b"\x01" * 32, timestamp=1_700_000_000 + number, source_id="node",
                                   seen_unix_ns=10**18, tx_count=1,
                                   txs=[block_pb2.IncludedTx(hash=bytes([number]) * 32, sender=b"\x02" * 20, nonce=3,
                                                             status=block_pb2.TX_STATUS_REVERTED, gas_used=5)])


def _push_blocks(addr: str, seq: int, blocks: list[block_pb2.BlockEnvelope]) -> None:
    [ack] = asyncio.run(push_batches(addr, [ingest_pb2.TxBatch(session_id="blocks", batch_seq=seq, blocks=blocks)]))
    assert ack.blocks_stored == len(blocks)


def test_block_events_catch_up_and_live_with_the_kinds_filter(processd_factory, gateway_factory) -> None:
    p = processd_factory()
    p.push(synthetic_envelopes(20, seed=16, chain_ids=CHAINS))
    _push_blocks(p.addr, 1, [_block(1), _block(1, chain_id=1)])
    g = gateway_factory(p.addr)
    with g.client() as http, stream(http, params={"from_seq_id": 1, "kinds": "block", "chain_id": 137}) as resp:
        reader = SSEReader(resp)
        [caught_up], _ = reader.events(1)
        _push_blocks(p.addr, 2, [_block(2, chain_id=1), _block(2)])
        [live], _ = reader.events(1)
    for msg, number in ((caught_up, 1), (live, 2)):
        assert msg.event == "block" and msg.data["chain_id"] == 137 and msg.data["tx_hash"] == "0x"
        block = msg.data["block"]
        assert (block["number"], block["seen_pending"]) == (number, 0)
        assert block["txs"] == [{"hash": "0x" + bytes([number]).hex() * 32, "index": 0, "from": "0x" + "02" * 20,
                                 "nonce": "3", "status": "reverted", "gas_used": "5", "effective_gas_price": "0"}]


def _pool(block: int, chain_id: int = 137) -> pool_pb2.PoolState:
    return pool_pb2.PoolState(chain_id=chain_id, pair=b"\x0a" * 20, factory=b"\x0b" * 20, token0=b"\x0c" * 20,
                              token1=b"\x0d" * 20, reserve0=(2**90 + block).to_bytes(12, "big"), reserve1=b"\x07",
                              block_number=block, block_hash=bytes([block, chain_id % 256]) * 16,
                              source=pool_pb2.POOL_STATE_SOURCE_SYNC_LOG)


def _push_pools(addr: str, seq: int, pools: list[pool_pb2.PoolState]) -> None:
    [ack] = asyncio.run(push_batches(addr, [ingest_pb2.TxBatch(session_id="pools", batch_seq=seq, pools=pools)]))
    assert ack.pools_stored == len(pools)


def test_pool_state_events_catch_up_and_live_with_the_kinds_filter(processd_factory, gateway_factory) -> None:
    p = processd_factory()
    p.push(synthetic_envelopes(20, seed=17, chain_ids=CHAINS))
    _push_pools(p.addr, 1, [_pool(1), _pool(1, chain_id=1)])
    g = gateway_factory(p.addr)
    with g.client() as http, stream(http, params={"from_seq_id": 1, "kinds": "pool_state", "chain_id": 137}) as resp:
        reader = SSEReader(resp)
        [caught_up], _ = reader.events(1)
        _push_pools(p.addr, 2, [_pool(2, chain_id=1), _pool(2)])
        [live], _ = reader.events(1)
    for msg, number in ((caught_up, 1), (live, 2)):
        assert msg.event == "pool_state" and msg.data["chain_id"] == 137 and msg.data["tx_hash"] == "0x"
        assert msg.data["pool_state"] == {
            "chain_id": 137, "pair": "0x" + "0a" * 20, "factory": "0x" + "0b" * 20, "token0": "0x" + "0c" * 20,
            "token1": "0x" + "0d" * 20, "reserve0": str(2**90 + number), "reserve1": "7", "block_number": number,
            "block_hash": "0x" + bytes([number, 137]).hex() * 16, "source": "sync_log"}
