"""End to end with processd split by chain: two anvil chains, one ingestd + processd per chain (each its own
LMDB), one gatewayd in front. kill -9 the polygon shard while traffic flows: ethereum's REST reads and the merged
SSE stream never stop (checked continuously), polygon's reads are a 503 naming the shard, all-chain reads are
flagged partial; after the restart all-chain reads and the same SSE stream include polygon again."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import httpx
import orjson
import pytest

from common.testing.stack import ChainSpec, Stack, StackConfig

pytestmark = pytest.mark.integration


class StreamWatch(threading.Thread):
    """Reads the merged /events/stream (tx_seen) and records (arrival time, chain, composite id) per event."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.events: list[tuple[float, int, str]] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            with httpx.stream("GET", f"{self.url}/events/stream", params={"kinds": "tx_seen"},
                              timeout=httpx.Timeout(10.0)) as resp:
                if resp.status_code != 200:
                    self.errors.append(f"status {resp.status_code}")
                    return
                msg_id = ""
                for line in resp.iter_lines():
                    if self.stop.is_set():
                        return
                    if line.startswith("id: "):
                        msg_id = line[4:]
                    elif line.startswith("event: error"):
                        self.errors.append("error event")
                    elif line.startswith("data: "):
                        self.events.append((time.monotonic(), orjson.loads(line[6:])["chain_id"], msg_id))
        except Exception as exc:  # recorded: the test fails on it
            self.errors.append(repr(exc))

    def chain_times(self, chain: int, since: float = 0.0) -> list[float]:
        return [t for t, c, _ in list(self.events) if c == chain and t >= since]


class Poller(threading.Thread):
    """GETs /transactions?chain_id=1 continuously and records every status."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.statuses: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5.0) as http:
            while not self.stop.is_set():
                self.statuses.append(http.get("/transactions", params={"chain_id": 1, "limit": 5}).status_code)
                time.sleep(0.05)


def _max_gap(times: list[float], start: float, end: float) -> float:
    points = [start, *[t for t in times if start <= t <= end], end]
    return max(b - a for a, b in itertools.pairwise(points))


def test_one_shard_killed_the_other_keeps_serving(tmp_path: Any) -> None:
    config = StackConfig(chains=(ChainSpec(1, rate_tx_s=20), ChainSpec(137, rate_tx_s=20)),
                         processd_shards=((1,), (137,)), log_dir=tmp_path / "logs", data_dir=tmp_path / "data",
                         gatewayd_args=("--rate-limit-rps", "0", "--sse-heartbeat-s", "0.5", "--cache-ttl-ms", "0"))
    with Stack(config) as stack:
        watch, poller = StreamWatch(stack.gateway_url), Poller(stack.gateway_url)
        watch.start()
        poller.start()
        stack.wait_for(lambda: watch.chain_times(1) and watch.chain_times(137), 20, "both chains on the stream")

        polygon = stack.process("processd-1")
        polygon.kill()
        polygon.wait()
        killed = time.monotonic()
        down = stack.get("/transactions", chain_id=137)
        assert down.status_code == 503
        assert down.json()["error"]["code"] == "shard_unavailable" and down.json()["error"]["chains"] == [137]
        partial = stack.get_json("/transactions")
        assert partial["partial"] is True and partial["missing_chains"] == [137]
        time.sleep(3.0)  # the outage: ethereum goes on
        polygon.start()
        restarted = time.monotonic()
        stack.wait_for(lambda: not stack.get_json("/transactions")["partial"], 20, "all-chain reads whole again")
        stack.wait_for(lambda: watch.chain_times(137, since=restarted), 20, "polygon back on the same stream")
        time.sleep(0.5)
        watch.stop.set()
        poller.stop.set()
        poller.join(10)

        assert not watch.errors, watch.errors
        assert poller.statuses and set(poller.statuses) == {200}, "ethereum's reads stopped"
        # Ethereum's events flowed through the outage (20 tx/s: a 2 s silence would be a stop).
        assert _max_gap(watch.chain_times(1), killed, restarted) < 2.0
        # The merged ids never repeat an event, and each shard's position only moves forward.
        ids = [i for _, _, i in watch.events]
        assert len(ids) == len(set(ids))
        positions = [[-1 if p == "x" else int(p) for p in i.split(".")[3:]] for i in ids]
        for shard in (0, 1):
            seen = [p[shard] for p in positions if p[shard] >= 0]
            assert seen == sorted(seen)
        health = stack.get_json("/healthz")
        assert [s["up"] for s in health["shards"]] == [True, True]
