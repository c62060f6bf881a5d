"""gatewayd in front of two REAL processd shards (each its own LMDB): chain routing, merged all-chain pages with
cursors, per-shard health, a shard killed (-9) and restarted (its chains 503, the others and the merged stream
go on, partial answers flagged), and the merged SSE stream's composite Last-Event-ID."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from jsonschema import Draft202012Validator

from common.testing.ingest_push import push_envelopes
from common.testing.sseclient import Tally, expected_ids, expected_tally, run_client
from common.testing.synth import synthetic_envelopes
from gatewayd.shard_fanout import SINK_MAX_EVENTS
from tests.gatewayd._sse import metric, wait_until

pytestmark = pytest.mark.integration

#: Shard A owns ethereum, shard B polygon and bsc.
A_CHAINS, B_CHAINS = (1,), (56, 137)


def shard_stack(processd_factory: Any, gateway_factory: Any, *args: str) -> tuple[Any, Any, Any]:
    a, b = processd_factory("a"), processd_factory("b")
    g = gateway_factory(f"1={a.addr}", "--processd", f"56,polygon={b.addr}", "--rate-limit-rps", "0",
                        "--cache-ttl-ms", "0", "--snapshot-cache-ttl-ms", "0", *args)
    return a, b, g


def seed(a: Any, b: Any, count: int, seed_: int) -> tuple[list[Any], list[Any]]:
    on_a = synthetic_envelopes(count, seed=seed_, chain_ids=A_CHAINS)
    on_b = synthetic_envelopes(count * 2, seed=seed_ + 1000, chain_ids=B_CHAINS)
    assert a.push(on_a) == len(on_a) and b.push(on_b) == len(on_b)
    return on_a, on_b


def walk(http: httpx.Client, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
    """Every record of a merged paged route, following next_cursor."""
    out: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        resp = http.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["partial"] is False
        out.extend(body[key])
        cursor = body["next_cursor"]
        if cursor is None or (path != "/transactions" and not body[key]):
            return out
    raise AssertionError("the walk did not end")


def test_routing_merged_pages_and_health(processd_factory, gateway_factory) -> None:
    a, b, g = shard_stack(processd_factory, gateway_factory)
    on_a, on_b = seed(a, b, 40, 1)
    hashes = {"0x" + e.hash.hex() for e in on_a + on_b}
    with g.client() as http:
        health = http.get("/healthz").json()
        assert health["status"] == "ok"
        assert [(s["shard"], s["chains"], s["up"], s["chains_held"]) for s in health["shards"]] == [
            (a.addr, [1], True, [1]), (b.addr, [56, 137], True, [56, 137])]
        # Chain reads go to the owner, with its own seq cursors as with one processd.
        polygon = http.get("/transactions", params={"chain_id": "polygon", "limit": 100}).json()
        assert {t["hash"] for t in polygon["transactions"]} == {"0x" + e.hash.hex() for e in on_b
                                                               if e.chain_id == 137}
        assert isinstance(polygon["next_before_seq_id"], int)
        # All chains: merged newest first by first-seen time, every transaction once over the cursor walk.
        txs = walk(http, "/transactions", "transactions", limit=7)
        assert sorted(t["hash"] for t in txs) == sorted(hashes)
        times = [t["first_seen_unix_ms"] for t in txs]
        assert times == sorted(times, reverse=True)
        oldest_first = walk(http, "/transactions/all", "transactions", limit=9)
        assert sorted(t["hash"] for t in oldest_first) == sorted(hashes)
        events = walk(http, "/events", "events", limit=50, kinds="tx_seen")
        assert sorted(e["tx_hash"] for e in events) == sorted(hashes)
        # The merged stream from every shard's oldest replays each transaction once, each shard in seq order.
        with http.stream("GET", "/events/stream", params={"from_seq_id": 0, "kinds": "tx_seen"}) as resp:
            replay = Reader(resp).events(len(hashes))
        assert sorted(d["tx_hash"] for _, d in replay) == sorted(hashes)
        for chains in (A_CHAINS, B_CHAINS):
            seqs = [d["seq_id"] for _, d in replay if d["chain_id"] in chains]
            assert seqs == sorted(seqs)
        # A transaction by hash on any chain is found on its shard.
        for env in (on_a[3], on_b[5]):
            got = http.get(f"/transactions/0x{env.hash.hex()}")
            assert got.status_code == 200 and got.json()["transaction"]["chain_id"] == env.chain_id
        snap = http.get("/dashboard/snapshot", params={"tx_limit": 10}).json()
        assert [c["chain_id"] for c in snap["chains"]] == [1, 56, 137]
        assert [s["shard"] for s in snap["shards"]] == [a.addr, b.addr] and snap["partial"] is False
        assert len(snap["recent_transactions"]) == 10
        assert http.get("/opps/recent").json()["partial"] is False
        assert http.get("/features/recent", params={"limit": 6}).status_code == 200
        # Cursors: seq ids are per shard, so an all-chain read takes only the merged cursor; a bad one is a 400.
        for params in ({"before_seq_id": 5}, {"cursor": "m1.tx.00000000.1.2"}, {"cursor": "m1.ev.0.1"},
                       {"chain_id": 1, "cursor": "m1.tx.00000000.1.2"}):
            bad = http.get("/transactions", params=params)
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cursor", params
        unserved = http.get("/transactions", params={"chain_id": 10})
        assert unserved.status_code == 404 and unserved.json()["error"]["code"] == "chain_not_served"
        check_schemas(http, {"TransactionList": http.get("/transactions").json(),
                             "TransactionPage": http.get("/transactions/all").json(),
                             "EventPage": http.get("/events").json(), "BlockList": http.get("/blocks/recent").json(),
                             "FeatureList": http.get("/features/recent").json(),
                             "OpportunityList": http.get("/opps/recent").json(), "Snapshot": snap, "Health": health,
                             "Error": unserved.json()})
        # A shard holding a chain configured for another (a misrouted ingestd) is reported, not hidden.
        stray = synthetic_envelopes(1, seed=99, chain_ids=(56,))
        assert a.push(stray) == 1
        # (/healthz answers are shared and cached for 0.25 s, app.Gateway.health_flights: the one before the push may
        # still be served; on a fast machine every step above fits in that time)
        deadline = time.monotonic() + 5
        misrouted = http.get("/healthz")
        while misrouted.status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
            misrouted = http.get("/healthz")
        assert misrouted.status_code == 503
        assert [s["unexpected_chains"] for s in misrouted.json()["shards"]] == [[56], []]


def check_schemas(http: httpx.Client, answers: dict[str, Any]) -> None:
    """Each answer matches the schema /openapi.json (the sharded gateway's own document) gives its route."""
    doc = http.get("/openapi.json").json()
    for name, body in answers.items():
        validator = Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": doc["components"]})
        errors = [e.message for e in validator.iter_errors(body)]
        assert not errors, (name, errors[:3])


class Reader:
    """SSE messages with string ids (composite ids are not numbers)."""

    def __init__(self, resp: httpx.Response) -> None:
        self.lines: Iterator[str] = resp.iter_lines()

    def event(self) -> tuple[str, dict[str, Any]]:
        msg_id, data = "", None
        for line in self.lines:
            if line.startswith("id: "):
                msg_id = line[4:]
            elif line.startswith("data: "):
                data = orjson.loads(line[6:])
            elif line.startswith("event: error"):
                raise AssertionError("stream error")
            elif line == "" and data is not None:
                return msg_id, data
        raise EOFError

    def events(self, count: int) -> list[tuple[str, dict[str, Any]]]:
        return [self.event() for _ in range(count)]


def test_a_shard_killed_and_restarted(processd_factory, gateway_factory) -> None:
    a, b, g = shard_stack(processd_factory, gateway_factory, "--sse-heartbeat-s", "0.5")
    seed(a, b, 10, 2)
    with g.client() as http, http.stream("GET", "/events/stream", params={"kinds": "tx_seen"}) as resp:
        assert resp.status_code == 200
        reader = Reader(resp)
        live_a = synthetic_envelopes(3, seed=3, chain_ids=A_CHAINS)
        a.push(live_a)
        got = reader.events(3)
        assert [d["tx_hash"] for _, d in got] == ["0x" + e.hash.hex() for e in live_a]
        assert all(i.startswith("m1.sse.") for i, _ in got)

        b.proc.kill()  # kill -9: shard B's chains are out, shard A's are not
        b.proc.wait()
        down = http.get("/transactions", params={"chain_id": 137})
        assert down.status_code == 503 and down.headers["retry-after"] == "1"
        assert down.json()["error"] == {**down.json()["error"], "code": "shard_unavailable", "shard": b.addr,
                                        "chains": [56, 137]}
        assert http.get("/transactions", params={"chain_id": 1}).status_code == 200
        stream_down = http.get("/events/stream", params={"chain_id": 137})
        assert stream_down.status_code == 503 and stream_down.json()["error"]["shard"] == b.addr
        partial = http.get("/transactions").json()
        assert partial["partial"] is True and partial["missing_chains"] == [56, 137]
        assert {t["chain_id"] for t in partial["transactions"]} == {1}
        health = http.get("/healthz")
        assert health.status_code == 503 and [s["up"] for s in health.json()["shards"]] == [True, False]
        check_schemas(http, {"TransactionList": partial, "Error": down.json(), "Health": health.json(),
                             "Snapshot": http.get("/dashboard/snapshot").json()})
        more_a = synthetic_envelopes(2, seed=4, chain_ids=A_CHAINS)
        a.push(more_a)
        assert [d["tx_hash"] for _, d in reader.events(2)] == ["0x" + e.hash.hex() for e in more_a]

        b.start()  # same data dir and address: the stream picks shard B up again
        live_b = synthetic_envelopes(4, seed=5, chain_ids=B_CHAINS)
        b.push(live_b)
        got_b = reader.events(4)
        assert [d["tx_hash"] for _, d in got_b] == ["0x" + e.hash.hex() for e in live_b]
        last_id = got_b[1][0]
        deadline = time.monotonic() + 10
        while http.get("/transactions").json()["partial"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert http.get("/transactions").json()["partial"] is False

    # Resuming with the composite Last-Event-ID replays exactly what came after it on every shard.
    with g.client() as http, http.stream("GET", "/events/stream", params={"kinds": "tx_seen"},
                                         headers={"last-event-id": last_id}) as resp:
        rest = Reader(resp).events(2)
        assert [d["tx_hash"] for _, d in rest] == ["0x" + e.hash.hex() for e in live_b[2:]]
        bad = http.get("/events/stream", headers={"last-event-id": "12"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cursor"



def _hashes(envelopes: list[Any]) -> list[str]:
    return ["0x" + e.hash.hex() for e in envelopes]


def test_streams_share_one_subscribe_many_per_shard_and_rejoin_it(processd_factory, gateway_factory) -> None:
    # One subscriber slot per shard: four streams with different filters (six shard subscriptions) can only all
    # be admitted as filters of each shard's one SubscribeMany stream, and so can their return after a restart.
    env = {"MEMPULSE_PROCESSD_MAX_SUBSCRIBERS": "1"}
    a, b = processd_factory("a", env=env), processd_factory("b", env=env)
    g = gateway_factory(f"1={a.addr}", "--processd", f"56,polygon={b.addr}", "--rate-limit-rps", "0",
                        "--max-connections-per-address", "0", "--sse-heartbeat-s", "0.5")
    paths = {"all": {"kinds": "tx_seen"}, "raw": {"kinds": "tx_seen", "include": "raw"},
             "eth": {"kinds": "tx_seen", "chain_id": 1}, "polygon": {"kinds": "tx_seen", "chain_id": 137}}
    streams = 'mempulse_gatewayd_sse_streams_total{path="%s"}'
    with contextlib.ExitStack() as stack:
        http = stack.enter_context(g.client())
        readers = {}
        for name, params in paths.items():
            resp = stack.enter_context(http.stream("GET", "/events/stream", params=params))
            assert resp.status_code == 200, (name, resp.read())
            readers[name] = Reader(resp)
        assert metric(g.url, streams % "shared") == 6 and metric(g.url, streams % "own") == 0
        assert metric(g.url, "mempulse_gatewayd_sse_upstreams") == 6  # 3 filters on each shard's stream
        live_a = synthetic_envelopes(3, seed=3, chain_ids=A_CHAINS)
        a.push(live_a)
        for name in ("all", "raw", "eth"):
            assert [d["tx_hash"] for _, d in readers[name].events(3)] == _hashes(live_a), name

        b.proc.kill()  # kill -9: shard B's shared stream is gone, shard A's flows on
        b.proc.wait()
        more_a = synthetic_envelopes(2, seed=4, chain_ids=A_CHAINS)
        a.push(more_a)
        for name in ("all", "raw", "eth"):
            assert [d["tx_hash"] for _, d in readers[name].events(2)] == _hashes(more_a), name

        b.start()  # pushed at once: what B commits before the streams are back is caught up, no gap
        live_b = synthetic_envelopes(3, seed=5, chain_ids=(137,)) + synthetic_envelopes(2, seed=6, chain_ids=(56,))
        b.push(live_b)
        for name in ("all", "raw"):
            assert [d["tx_hash"] for _, d in readers[name].events(5)] == _hashes(live_b), name
        assert [d["tx_hash"] for _, d in readers["polygon"].events(3)] == _hashes(live_b[:3])
        # Back on B's one SubscribeMany stream (its one slot), never on an own SubscribeEvents.
        assert metric(g.url, streams % "own") == 0 and metric(g.url, streams % "shared") >= 9


#: The gauge of events waiting in the sharded streams' shard sinks.
SHARD_QUEUED = "mempulse_gatewayd_sse_shard_queued_events"


async def _slow_and_good(a: Any, g: Any) -> list[Any]:
    port = int(g.url.rsplit(":", 1)[1])
    good = [Tally(f"good{i}", "/events/stream?chain_id=1") for i in range(2)]
    slow = [Tally(f"slow{i}", "/events/stream?chain_id=1&include=raw") for i in range(2)]
    tasks = [asyncio.create_task(run_client("127.0.0.1", port, t)) for t in good]
    tasks += [asyncio.create_task(run_client("127.0.0.1", port, t, slow=True)) for t in slow]
    deadline = time.monotonic() + 60
    try:
        while not all(t.status for t in good + slow):
            assert time.monotonic() < deadline, "clients open"
            await asyncio.sleep(0.1)
        # Enough to pass what a stopped client can hold: kernel buffers, 16 queued messages, SINK_MAX_EVENTS.
        envelopes = synthetic_envelopes(8000, seed=17, chain_ids=A_CHAINS)
        queued: list[float] = []  # the shard sinks' gauge while the slow ones fill theirs
        for i in range(0, len(envelopes), 100):  # paced, as in test_sse_fanout
            await push_envelopes(a.addr, envelopes[i:i + 100], batch_size=100, session_id="slow",
                                 first_batch_seq=i // 100 + 1)
            queued.append(await asyncio.to_thread(metric, g.url, SHARD_QUEUED))
            await asyncio.sleep(0.05)
        expected = expected_tally([s for s, _ in await asyncio.to_thread(expected_ids, a.addr, 1, [], 0)])
        cuts = 'mempulse_gatewayd_sse_cuts_total{reason="slow_client"}'
        while not (all(t.last >= expected[2] for t in good) and await asyncio.to_thread(metric, g.url, cuts) >= 2):
            assert time.monotonic() < deadline + 60, (
                [(t.name, t.count, t.last, t.closed, t.error_code) for t in good + slow], expected)
            queued.append(await asyncio.to_thread(metric, g.url, SHARD_QUEUED))
            await asyncio.sleep(0.2)
        assert await asyncio.to_thread(metric, g.url, cuts) == 2  # the slow ones, not a good one
        # Four sinks on shard A's stream, each bounded (a batch may take one over its bound before the cut).
        assert max(queued) > 0 and all(0 <= v <= 4 * 2 * SINK_MAX_EVENTS for v in queued), queued
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    # The streams ended: their sinks left the shard's stream and nothing stays counted as queued.
    await wait_until(lambda: metric(g.url, SHARD_QUEUED) == 0, "shard sinks emptied", 30)
    for t in good:
        assert (t.count, t.first, t.last, t.digest) == expected and t.in_order, (t.summary(), expected)
    return good


def test_a_slow_sharded_stream_is_cut_the_others_get_every_event(processd_factory, gateway_factory) -> None:
    a, _b, g = shard_stack(processd_factory, gateway_factory, "--max-connections-per-address", "0")
    good = asyncio.run(_slow_and_good(a, g))
    assert all(t.count > 0 for t in good)
