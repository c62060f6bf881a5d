"""A processd of an older release (its Query service answers SubscribeMany with UNIMPLEMENTED) behind the real
gatewayd: streams from the head fall back to their own SubscribeEvents subscription (counted, logged once)
instead of a 501, and every client still gets exactly its matching events.

The older processd is our real processd server in this process, its servicer subclassed so that SubscribeMany
answers UNIMPLEMENTED through the real gRPC server, as a release without the method does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from common.pb.v1 import query_pb2
from common.testing.ingest_push import push_envelopes
from common.testing.sseclient import Tally, expected_ids, expected_tally, run_client
from common.testing.synth import synthetic_envelopes
from processd.api.query_service import QueryService
from processd.api.server import ProcessdServer
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


def _path(chain: str, kinds: str) -> str:
    params = ([f"chain_id={chain}"] if chain else []) + ([f"kinds={kinds}"] if kinds else [])
    return "/events/stream" + ("?" + "&".join(params) if params else "")


def _metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def _wait(check: Any, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"not within {timeout_s:.0f} s: {what}"
        await asyncio.sleep(0.1)


async def _run(tmp_path: Path) -> list[Tally]:
    server = ProcessdServer(make_config(tmp_path / "lmdb", analysis_workers=0))
    server.query.__class__ = _OlderQuery  # before start(): the grpc server binds its methods then
    await server.start()
    addr = server.address
    # The real gatewayd CLI; its readiness is polled off the loop, which serves processd meanwhile.
    gateway = Gateway(addr, tmp_path / "gatewayd.log", ["--max-connections-per-address", "0", "--rate-limit-rps", "0"])
    await asyncio.to_thread(gateway.start)
    port = gateway.port
    tallies = [Tally(f"c{i}", _path(*FILTERS[i % len(FILTERS)])) for i in range(2 * len(FILTERS))]
    tasks = [asyncio.create_task(run_client("127.0.0.1", port, t)) for t in tallies]
    try:
        await _wait(lambda: all(t.status for t in tallies), "clients answered")
        assert [t.status for t in tallies] == [200] * len(tallies), [(t.status, t.error_code) for t in tallies]
        await _wait(lambda: all(t.head is not None for t in tallies), "clients open")
        await push_envelopes(addr, synthetic_envelopes(TX, seed=31), batch_size=100, session_id="older")
        expected = {}
        for i, t in enumerate(tallies):
            chain, kinds = FILTERS[i % len(FILTERS)]
            ids = await asyncio.to_thread(expected_ids, addr, int(chain or 0), kinds.split(",") if kinds else [],
                                          t.head or 0)
            expected[t.name] = expected_tally([seq for seq, _ in ids])
        await _wait(lambda: all(t.last >= expected[t.name][2] or t.closed for t in tallies), "clients caught up")
        for t in tallies:
            assert (t.count, t.first, t.last, t.digest) == expected[t.name] and t.count > 0 and t.in_order, (
                f"{t.name} {t.path}: {t.count} events {t.first}..{t.last} (closed {t.closed}, error "
                f"{t.error_code!r}), expected {expected[t.name][:3]}")
        # Every client took its own subscription from the head (the fallback), none a shared one.
        streams = 'mempulse_gatewayd_sse_streams_total{path="%s"}'
        assert await asyncio.to_thread(_metric, gateway.url, streams % "fallback") == len(tallies)
        assert await asyncio.to_thread(_metric, gateway.url, streams % "shared") == 0
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
