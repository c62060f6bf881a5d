"""A processd of an older release (its Query service answers SubscribeMany with UNIMPLEMENTED) behind the real
gatewayd: streams from the head fall back to their own SubscribeEvents subscription (counted, logged once)
instead of a 501, and every client still gets exactly its matching events.

The older processd is our real processd server in this process, its servicer subclassed so that SubscribeMany
answers UNIMPLEMENTED through the real gRPC server, as a release without the method does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson
import pytest

from common.pb.v1 import query_pb2
from common.testing.ingest_push import push_envelopes
from common.testing.sseclient import Tally, expected_ids, expected_tally, run_client
from common.testing.synth import synthetic_envelopes
from processd.api.query_service import QueryService
from processd.api.server import ProcessdServer
from tests.gatewayd._sse import metric, stream_path, wait_until
from tests.gatewayd.conftest import Gateway
from tests.processd._helpers import make_config

pytestmark = pytest.mark.integration

#: (chain_id, kinds) of the clients, two of each; '' = no filter.
FILTERS = (("", ""), ("1", ""), ("137", "tx_seen"))
TX = 600


class _OlderQuery(QueryService):
    """processd's Query service as a release before SubscribeMany: the method is not implemented."""

    async def SubscribeMany(self, request_iterator: AsyncIterator[query_pb2.SubscribeManyRequest],
                            context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")





async def _run(tmp_path: Path) -> list[Tally]:
    server = ProcessdServer(make_config(tmp_path / "lmdb", analysis_workers=0))
    server.query.__class__ = _OlderQuery  # before start(): the grpc server binds its methods then
    await server.start()
    addr = server.address
    # The real gatewayd CLI; its readiness is polled off the loop, which serves processd meanwhile.
    gateway = Gateway(addr, tmp_path / "gatewayd.log", ["--max-connections-per-address", "0", "--rate-limit-rps", "0"])
    await asyncio.to_thread(gateway.start)
    port = gateway.port
    tallies = [Tally(f"c{i}", stream_path(*FILTERS[i % len(FILTERS)])) for i in range(2 * len(FILTERS))]
    tasks = [asyncio.create_task(run_client("127.0.0.1", port, t)) for t in tallies]
    try:
        await wait_until(lambda: all(t.status for t in tallies), "clients answered")
        assert [t.status for t in tallies] == [200] * len(tallies), [(t.status, t.error_code) for t in tallies]
        await wait_until(lambda: all(t.head is not None for t in tallies), "clients open")
        await push_envelopes(addr, synthetic_envelopes(TX, seed=31), batch_size=100, session_id="older")
        expected = {}
        for i, t in enumerate(tallies):
            chain, kinds = FILTERS[i % len(FILTERS)]
            ids = await asyncio.to_thread(expected_ids, addr, int(chain or 0), kinds.split(",") if kinds else [],
                                          t.head or 0)
            expected[t.name] = expected_tally([seq for seq, _ in ids])
        await wait_until(lambda: all(t.last >= expected[t.name][2] or t.closed for t in tallies), "clients caught up")
        for t in tallies:
            assert (t.count, t.first, t.last, t.digest) == expected[t.name] and t.count > 0 and t.in_order, (
                f"{t.name} {t.path}: {t.count} events {t.first}..{t.last} (closed {t.closed}, error "
                f"{t.error_code!r}), expected {expected[t.name][:3]}")
        # Every client took its own subscription from the head (the fallback), none a shared one.
        streams = 'mempulse_gatewayd_sse_streams_total{path="%s"}'
        assert await asyncio.to_thread(metric, gateway.url, streams % "fallback") == len(tallies)
        assert await asyncio.to_thread(metric, gateway.url, streams % "shared") == 0
        # The refusals are counted under the method processd refused, not under the fallback's SubscribeEvents.
        errors = 'mempulse_gatewayd_grpc_errors_total{grpc_code="UNIMPLEMENTED",method="%s"}'
        assert await asyncio.to_thread(metric, gateway.url, errors % "SubscribeMany") >= 1
        assert await asyncio.to_thread(metric, gateway.url, errors % "SubscribeEvents") == 0
        return tallies
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(gateway.stop)
        await server.stop()


def test_streams_from_the_head_fall_back_to_subscribe_events_without_subscribe_many(tmp_path: Path) -> None:
    tallies = asyncio.run(_run(tmp_path))
    assert len(tallies) == 2 * len(FILTERS)
    # Logged once at WARNING, not once per client.
    log_text = (tmp_path / "gatewayd.log").read_text()
    assert log_text.count("does not implement SubscribeMany") == 1, log_text[-2000:]


async def _hashes_of(client: httpx.AsyncClient, params: dict[str, Any], count: int, started: asyncio.Event,
                     out: list[str]) -> None:
    """Reads ``count`` events of a stream into ``out`` (their tx hashes); ``started`` once its 200 came."""
    async with client.stream("GET", "/events/stream", params=params) as resp:
        assert resp.status_code == 200, await resp.aread()
        started.set()
        async for line in resp.aiter_lines():
            assert not line.startswith("event: error"), line
            if line.startswith("data: "):
                out.append(orjson.loads(line[6:])["tx_hash"])
                if len(out) == count:
                    return


async def _run_sharded(tmp_path: Path) -> None:
    older = ProcessdServer(make_config(tmp_path / "older", analysis_workers=0))
    older.query.__class__ = _OlderQuery
    newer = ProcessdServer(make_config(tmp_path / "newer", analysis_workers=0))
    await older.start()
    await newer.start()
    gateway = Gateway(f"1={older.address}", tmp_path / "gatewayd-sharded.log",
                      ["--processd", f"56,polygon={newer.address}", "--rate-limit-rps", "0"])
    await asyncio.to_thread(gateway.start)
    on_older = synthetic_envelopes(4, seed=41, chain_ids=(1,))
    on_newer = synthetic_envelopes(3, seed=42, chain_ids=(137,))
    streams = {"older": ({"kinds": "tx_seen", "chain_id": 1}, len(on_older)),
               "newer": ({"kinds": "tx_seen", "chain_id": 137}, len(on_newer)),
               "all": ({"kinds": "tx_seen"}, len(on_older) + len(on_newer))}
    got: dict[str, list[str]] = {name: [] for name in streams}
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
            started = {name: asyncio.Event() for name in streams}
            tasks = [asyncio.create_task(_hashes_of(client, params, count, started[name], got[name]))
                     for name, (params, count) in streams.items()]
            await asyncio.wait_for(asyncio.gather(*(s.wait() for s in started.values())), 30)
            await push_envelopes(older.address, on_older, batch_size=100, session_id="older")
            await push_envelopes(newer.address, on_newer, batch_size=100, session_id="newer")
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
            streams_total = 'mempulse_gatewayd_sse_streams_total{path="%s"}'
            # The older shard's subscriptions (its chain's stream, the all-chain stream's) fell back; the newer's
            # are filters of its SubscribeMany stream.
            assert await asyncio.to_thread(metric, gateway.url, streams_total % "fallback") == 2
            assert await asyncio.to_thread(metric, gateway.url, streams_total % "shared") == 2
    finally:
        await asyncio.to_thread(gateway.stop)
        await older.stop()
        await newer.stop()
    hashes = {name: ["0x" + e.hash.hex() for e in envs] for name, envs in (("older", on_older), ("newer", on_newer))}
    assert got["older"] == hashes["older"] and got["newer"] == hashes["newer"]
    assert [h for h in got["all"] if h in hashes["older"]] == hashes["older"]
    assert sorted(got["all"]) == sorted(hashes["older"] + hashes["newer"])


def test_a_shard_without_subscribe_many_falls_back_the_others_share(tmp_path: Path) -> None:
    asyncio.run(_run_sharded(tmp_path))
    log_text = (tmp_path / "gatewayd-sharded.log").read_text()
    assert log_text.count("does not implement SubscribeMany") == 1, log_text[-2000:]
