"""Shared event streams (gatewayd/fanout.py) against a real processd and gatewayd: ~50 clients from the head with
mixed filters, while envelopes stream in. Every client gets exactly its matching events in order (checked
against ScanEvents), processd serves them all with one SubscribeMany stream carrying every filter (its cap is one
subscriber), and clients that stop reading are cut with a counted reason while the others keep up."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from common.testing.ingest_push import push_envelopes
from common.testing.sseclient import Tally, expected_ids, expected_tally, run_client
from common.testing.synth import synthetic_envelopes
from tests.gatewayd._sse import metric, stream_path, wait_until

pytestmark = pytest.mark.integration

#: (chain_id, kinds) of the good clients; '' = no filter. More filter parameters slot in as more columns.
FILTERS = (("", ""), ("1", ""), ("137", "tx_seen"), ("", "opp_detected"), ("56", "tx_decoded,opp_detected"),
           ("1", "tx_seen"))
PER_FILTER = 8
SLOW = 3
TX = 3000





async def _run(p: Any, g: Any) -> list[Tally]:
    port = int(g.url.rsplit(":", 1)[1])
    good = [Tally(f"c{i}", stream_path(*FILTERS[i % len(FILTERS)])) for i in range(len(FILTERS) * PER_FILTER)]
    slow = [Tally(f"slow{i}", stream_path("", "", raw=True)) for i in range(SLOW)]
    tasks = [asyncio.create_task(run_client("127.0.0.1", port, t)) for t in good]
    tasks += [asyncio.create_task(run_client("127.0.0.1", port, t, slow=True)) for t in slow]
    try:
        await wait_until(lambda: all(t.head is not None for t in good) and all(t.status for t in slow), "clients open")
        envelopes = synthetic_envelopes(TX, seed=7)
        # Paced (a batch every 0.1 s, ~3x the demo's rate): pushed at once, the burst reached 10 MB per unfiltered
        # client within a second, and on a loaded machine this process, which also reads the 50 streams, fell
        # behind and its clients were rightly cut as slow. The slow clients still get far more than their bounds.
        for i in range(0, TX, 100):
            await push_envelopes(p.addr, envelopes[i:i + 100], batch_size=100, session_id="fanout",
                                 first_batch_seq=i // 100 + 1)
            await asyncio.sleep(0.1)
        expected = {}
        for t in good:
            chain, kinds = FILTERS[int(t.name[1:]) % len(FILTERS)]
            ids = [seq for seq, _ in expected_ids(p.addr, int(chain or 0), kinds.split(",") if kinds else [], t.head)]
            expected[t.name] = expected_tally(ids)
        await wait_until(lambda: all(t.last >= expected[t.name][2] or t.closed for t in good), "every client caught up")
        await wait_until(lambda: metric(g.url, 'mempulse_gatewayd_sse_cuts_total{reason="slow_client"}') >= SLOW,
                    "the slow clients cut")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for t in good:
        assert (t.count, t.first, t.last, t.digest) == expected[t.name] and t.in_order, (
            f"{t.name} {t.path}: got {t.count} events {t.first}..{t.last} (in order: {t.in_order}, closed: "
            f"{t.closed}, error: {t.error_code!r}), expected {expected[t.name][:3]}")
    return good


def test_shared_streams_deliver_every_matching_event_and_cut_slow_clients(processd_factory, gateway_factory) -> None:
    # One subscriber slot: every filter (and rendering) rides on the gateway's one SubscribeMany stream.
    p = processd_factory(env={"MEMPULSE_PROCESSD_MAX_SUBSCRIBERS": "1"})
    g = gateway_factory(p.addr, "--sse-max-clients", "100", "--max-connections-per-address", "0",
                        "--rate-limit-rps", "0")
    good = asyncio.run(_run(p, g))
    assert all(t.count > 0 for t in good), "every filter matched some of the pushed events"
    # Exactly the slow clients were cut: one more would be a good client that starved.
    assert metric(g.url, 'mempulse_gatewayd_sse_cuts_total{reason="slow_client"}') == SLOW
    # One filter of the shared stream per distinct filter (and one for the raw renderings), not one per client.
    assert metric(g.url, "mempulse_gatewayd_sse_upstreams") <= len(FILTERS) + 1
    # Every client was served by the shared stream: none took its own subscription.
    assert metric(g.url, 'mempulse_gatewayd_sse_streams_total{path="shared"}') == len(good) + SLOW
    assert metric(g.url, 'mempulse_gatewayd_sse_streams_total{path="fallback"}') == 0


async def _clients(port: int, paths: list[str]) -> tuple[list[Tally], list[asyncio.Task[Tally]]]:
    tallies = [Tally(f"c{i}", path) for i, path in enumerate(paths)]
    tasks = [asyncio.create_task(run_client("127.0.0.1", port, t)) for t in tallies]
    await wait_until(lambda: all(t.head is not None for t in tallies), "clients open")
    return tallies, tasks


async def _stop(tasks: list[asyncio.Task[Tally]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _exact(p: Any, tallies: list[Tally], chain: str) -> None:
    expected = {t.name: expected_tally([s for s, _ in expected_ids(p.addr, int(chain), [], t.head)]) for t in tallies}
    await wait_until(lambda: all(t.last >= expected[t.name][2] for t in tallies), "clients caught up")
    for t in tallies:
        assert (t.count, t.first, t.last, t.digest) == expected[t.name] and t.count > 0, t.name


async def _filters_come_and_go(p: Any, g: Any) -> None:
    port = int(g.url.rsplit(":", 1)[1])
    ones, ones_tasks = await _clients(port, [stream_path("1", "")] * 2)
    _others, others_tasks = await _clients(port, [stream_path("137", "")] * 2)
    assert metric(g.url, "mempulse_gatewayd_sse_upstreams") == 2
    await _stop(others_tasks)  # the last clients of chain 137 leave: its filter leaves the shared stream
    await wait_until(lambda: metric(g.url, "mempulse_gatewayd_sse_upstreams") == 1, "chain 137's filter removed")
    await push_envelopes(p.addr, synthetic_envelopes(400, seed=21), batch_size=100, session_id="a")
    await _exact(p, ones, "1")
    await _stop(ones_tasks)
    await wait_until(lambda: metric(g.url, "mempulse_gatewayd_sse_upstreams") == 0, "every filter removed")
    # A filter added again later (processd's one subscriber slot is still the gateway's shared stream).
    again, again_tasks = await _clients(port, [stream_path("137", "")])
    await push_envelopes(p.addr, synthetic_envelopes(400, seed=22), batch_size=100, session_id="b")
    await _exact(p, again, "137")
    await _stop(again_tasks)


def test_filters_leave_the_shared_stream_with_their_last_client_and_come_back(processd_factory,
                                                                              gateway_factory) -> None:
    p = processd_factory(env={"MEMPULSE_PROCESSD_MAX_SUBSCRIBERS": "1"})
    g = gateway_factory(p.addr, "--max-connections-per-address", "0", "--rate-limit-rps", "0")
    asyncio.run(_filters_come_and_go(p, g))
