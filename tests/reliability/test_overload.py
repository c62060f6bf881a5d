"""Overload: far more offered load than the system can absorb, for a bounded time.

1. processd over gRPC: many streams push at full speed into a small commit queue while commits are slow
   (small groups, fsync). The queue never exceeds its bound, streams that wait too long are answered
   RESOURCE_EXHAUSTED (counted by cause) instead of processd buffering more, RSS plateaus, processd stays up,
   and afterwards the clients' resends complete the log with no loss and no duplicate.
2. The whole ingest path: anvil announces at its full rate while processd is duty-cycled (SIGSTOP most of
   the time, so it absorbs about a tenth of the offered load). ingestd's queues stay within their bounds,
   its RSS plateaus, the excess is dropped with counted reasons, nothing crashes, and the books balance.

Durations: ``MEMPULSE_RELIABILITY_OVERLOAD_S`` (short 6 s, long 120 s).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from common.pb.v1 import ingest_pb2, ingest_pb2_grpc
from common.testing.anvil import AnvilNode
from common.testing.netutil import free_port
from common.testing.procfs import descendants, rss_anon_bytes
from common.testing.synth import synthetic_envelopes
from common.testing.traffic import TrafficGenerator
from tests.reliability._support import (
    IngestdProc,
    ProcessdProc,
    ResendingPusher,
    audit_log,
    keys_of,
    knob,
    metric_sum,
    scrape,
    stored_hashes,
    wait_until,
    write_artifact,
)

# serial: these judge the daemons' RSS plateau under a flood; a parallel test's load stretches the flood and reads as
# growth, so the test command runs them alone after the parallel phase.
pytestmark = [pytest.mark.integration, pytest.mark.serial]


def rss_bytes(pid: int) -> int:
    """Anonymous resident memory of a process and its child processes (processd's analysis workers), from /proc.

    Anonymous, because processd maps its LMDB file: the log pages it touches count in the total RSS and grow with
    the log (the faster processd commits, the faster), while a leak or an unbounded queue grows the anonymous part.
    """
    return sum(rss_anon_bytes(p) or 0 for p in [pid, *descendants(pid)])


def assert_plateau(samples: list[int], what: str, slack_bytes: int = 24 << 20,
                   ceiling_bytes: int = 768 << 20) -> dict[str, int]:
    """RSS plateaus: the median of the last third of the run is not above the middle third's peak (plus
    ``slack_bytes``), and no sample exceeds ``ceiling_bytes``. Medians, because allocator noise under load
    makes single samples jump by tens of MiB both ways; a leak moves the whole distribution up."""
    assert len(samples) >= 9, f"{what}: too few RSS samples ({len(samples)})"
    third = len(samples) // 3
    middle = max(samples[third:2 * third])
    last = sorted(samples[2 * third:])[len(samples[2 * third:]) // 2]
    detail = f"samples (MiB): {[s >> 20 for s in samples]}"
    assert last <= middle + slack_bytes, f"{what}: RSS still growing ({middle >> 20} -> {last >> 20} MiB); {detail}"
    assert max(samples) <= ceiling_bytes, f"{what}: RSS above {ceiling_bytes >> 20} MiB; {detail}"
    return {"rss_start_mib": samples[0] >> 20, "rss_middle_peak_mib": middle >> 20,
            "rss_last_median_mib": last >> 20, "rss_max_mib": max(samples) >> 20}


@dataclass
class Flood:
    """What one gRPC flood of processd observed (shared by the tests below)."""

    duration_s: int
    streams: int
    capacity: int
    batches_offered: int = 0
    resource_exhausted: int = 0
    resource_exhausted_counted: float = 0
    other_errors: list[str] = field(default_factory=list)
    depth_max: int = 0
    depth_over_bound: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    alive_after: bool = False
    resend_lost: int = -1
    audit_problems: list[str] = field(default_factory=list)
    duplicates: int = -1
    stored: int = 0
    processd_log: str = ""


@pytest.fixture(scope="module")
def grpc_flood(tmp_path_factory: pytest.TempPathFactory) -> Flood:
    tmp_path = tmp_path_factory.mktemp("flood")
    flood = Flood(duration_s=knob("overload_s", 6, 120), streams=6, capacity=3000)
    env = {"MEMPULSE_PROCESSD_COMMIT_QUEUE_MAX_ENVELOPES": str(flood.capacity),
           "MEMPULSE_PROCESSD_QUEUE_FULL_TIMEOUT_MS": "100",
           "MEMPULSE_PROCESSD_STREAM_MAX_INFLIGHT_BATCHES": "16"}
    proc = ProcessdProc(tmp_path / "lmdb", tmp_path / "processd.log", "--flush-max-events", "200",
                        "--flush-interval-ms", "0", metrics=True, env=env)
    stop = threading.Event()

    async def flood_one(i: int) -> None:
        envs = synthetic_envelopes(1000, seed=500 + i, chain_ids=(1, 137))
        seq = 0
        while not stop.is_set():
            async with grpc.aio.insecure_channel(proc.addr) as ch:
                stub = ingest_pb2_grpc.IngestStub(ch)

                async def requests():  # type: ignore[no-untyped-def]
                    nonlocal seq
                    while not stop.is_set():
                        seq += 1
                        flood.batches_offered += 1
                        yield ingest_pb2.TxBatch(session_id=f"flood-{i}", batch_seq=seq, envelopes=envs)

                try:
                    async for _ack in stub.Stream(requests(), timeout=flood.duration_s + 30):
                        pass
                except grpc.aio.AioRpcError as exc:
                    if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        flood.resource_exhausted += 1
                    elif exc.code() != grpc.StatusCode.CANCELLED:
                        flood.other_errors.append(f"{exc.code()}: {exc.details()}")

    async def flood_all() -> None:
        await asyncio.gather(*(flood_one(i) for i in range(flood.streams)))

    try:
        proc.start()
        flooder = threading.Thread(target=lambda: asyncio.run(flood_all()), daemon=True)
        flooder.start()
        end = time.monotonic() + flood.duration_s

        def sample_rss() -> None:  # its own thread: scrapes below get slow on a loaded machine
            while time.monotonic() < end and proc.alive:
                try:
                    flood.rss.append(rss_bytes(proc.pid or 0))
                except OSError:  # exited meanwhile: the main loop reports it
                    return
                time.sleep(0.1)

        sampler = threading.Thread(target=sample_rss, daemon=True)
        sampler.start()
        while time.monotonic() < end and proc.alive:
            depth = metric_sum(scrape(proc.metrics_port), "mempulse_processd_commit_queue_envelopes")
            flood.depth_max = max(flood.depth_max, int(depth))
            if depth > flood.capacity:
                flood.depth_over_bound.append(depth)
            time.sleep(0.25)
        stop.set()
        sampler.join(10)
        flooder.join(60)
        flood.alive_after = proc.alive
        if proc.alive:
            flood.resource_exhausted_counted = metric_sum(
                scrape(proc.metrics_port), "mempulse_processd_resource_exhausted_total", cause="commit_queue_full")
            # After the storm: a well-behaved resending client gets everything in, exactly once.
            envelopes = synthetic_envelopes(5000, seed=999, chain_ids=(56,))
            pusher = ResendingPusher(proc.addr, envelopes, batch_size=250).start()
            try:
                pusher.wait_done(120)
            finally:
                pusher.stop()
            proc.stop()
            flood.processd_log = (tmp_path / "processd.log").read_text(errors="replace")
            audit = audit_log(proc.data_dir)
            flood.audit_problems, flood.duplicates = audit.problems, len(audit.duplicates)
            flood.resend_lost = len(keys_of(envelopes) - set(audit.txs))
            flood.stored = len(audit.txs)
        return flood
    finally:
        stop.set()
        proc.stop()


def test_processd_grpc_overload_is_resource_exhausted_bounded_and_lossless(grpc_flood: Flood) -> None:
    f = grpc_flood
    assert f.alive_after, "processd died under the flood"
    assert not f.depth_over_bound, f"commit queue above its bound {f.capacity}: {f.depth_over_bound[:5]}"
    assert f.resource_exhausted > 0, "the flood never got RESOURCE_EXHAUSTED: it did not overload processd"
    assert f.resource_exhausted_counted >= f.resource_exhausted, "every RESOURCE_EXHAUSTED answer is counted"
    plateau = assert_plateau(f.rss, "processd")
    assert f.resend_lost == 0 and f.duplicates == 0 and not f.audit_problems
    write_artifact("overload_processd", {"duration_s": f.duration_s, "streams": f.streams,
                                         "batches_offered": f.batches_offered,
                                         "resource_exhausted": f.resource_exhausted,
                                         "other_stream_errors": len(f.other_errors),
                                         "commit_queue_max_depth": f.depth_max, "commit_queue_capacity": f.capacity,
                                         "stored": f.stored, "acked_records_lost": f.resend_lost,
                                         "duplicates": f.duplicates, **plateau})


def test_processd_ends_overloaded_streams_cleanly_with_resource_exhausted(grpc_flood: Flood) -> None:
    """Every stream processd ends for overload is counted as RESOURCE_EXHAUSTED, and processd never starts a
    second operation on a call it is finishing (grpc core's TOO_MANY_OPERATIONS, logged as ExecuteBatchError;
    that race made about half of the overload answers INTERNAL before the fix).

    Clients see RESOURCE_EXHAUSTED, or INTERNAL when their own request write races the end of the call: that
    part is grpc-python's client (a trivial grpc.aio server that sets RESOURCE_EXHAUSTED and returns mid-stream
    gives the same mix), so INTERNAL is accepted only within the endings processd counted as overload."""
    f = grpc_flood
    unexplained = [e for e in f.other_errors if not e.startswith("StatusCode.INTERNAL")]
    assert not unexplained, f"{len(unexplained)} streams ended with {unexplained[:2]}"
    assert f.resource_exhausted_counted >= f.resource_exhausted + len(f.other_errors), (
        f"processd counted {f.resource_exhausted_counted} overload endings, clients saw {f.resource_exhausted} "
        f"RESOURCE_EXHAUSTED + {len(f.other_errors)} INTERNAL")
    for marker in ("ExecuteBatchError", "TOO_MANY_OPERATIONS"):
        assert marker not in f.processd_log, f"processd log shows grpc call misuse ({marker})"


def test_ingest_path_overload_bounded_counted_and_balanced(tmp_path: Path) -> None:
    duration = knob("overload_s", 6, 120)
    outbound_cap, fetch_cap = 100, 200
    env = {"MEMPULSE_INGESTD_OUTBOUND_QUEUE_SIZE": str(outbound_cap),
           "MEMPULSE_INGESTD_FETCH_QUEUE_SIZE": str(fetch_cap),
           "MEMPULSE_INGESTD_OUTBOUND_BATCH_SIZE": "50", "MEMPULSE_INGESTD_OUTBOUND_MAX_UNACKED_BATCHES": "2",
           "MEMPULSE_INGESTD_RECONNECT_MAX_MS": "500"}
    proc = ProcessdProc(tmp_path / "lmdb", tmp_path / "processd.log")
    ingestd: IngestdProc | None = None
    gen: TrafficGenerator | None = None
    rss: list[int] = []
    max_depth = {"outbound": 0.0, "fetch": 0.0}
    with AnvilNode(chain_id=137) as node:
        try:
            proc.start()
            ingestd = IngestdProc(["--chain", f"polygon={node.ws_url},{node.http_url}"], proc.addr,
                                  tmp_path / "ingestd.log", "--full-tx", "off", env=env)
            ingestd.start()
            ing = ingestd
            gen = TrafficGenerator(node.http_url, 1000.0, chain_id=137, batch_size=100).start()
            end = time.monotonic() + duration
            stopped = False
            while time.monotonic() < end:
                # processd runs ~6% of the time and ingestd may have 2 x 50 unacked: it absorbs ~100 tx per
                # 1.6 s cycle while anvil announces several hundred per second, i.e. 5-10x what it can take
                os.kill(proc.pid or 0, signal.SIGSTOP)
                stopped = True
                for _ in range(15):
                    rss.append(rss_bytes(ing.pid or 0))
                    m = ing.metrics()
                    for q in max_depth:
                        depth = metric_sum(m, "mempulse_ingestd_queue_depth", chain="polygon", queue=q)
                        cap = metric_sum(m, "mempulse_ingestd_queue_capacity", chain="polygon", queue=q)
                        assert depth <= cap, f"{q} queue {depth} above its bound {cap}"
                        max_depth[q] = max(max_depth[q], depth)
                    time.sleep(0.1)
                os.kill(proc.pid or 0, signal.SIGCONT)
                stopped = False
                m = ing.metrics()
                for q in max_depth:
                    depth = metric_sum(m, "mempulse_ingestd_queue_depth", chain="polygon", queue=q)
                    cap = metric_sum(m, "mempulse_ingestd_queue_capacity", chain="polygon", queue=q)
                    assert depth <= cap, f"{q} queue {depth} above its bound {cap}"
                    max_depth[q] = max(max_depth[q], depth)
                assert metric_sum(m, "mempulse_ingestd_unacked_batches") <= 2
                assert ing.alive and proc.alive
                time.sleep(0.1)
            gen.stop()
            stats = gen.stats()
            wait_until(lambda: ing.settled("polygon"), 120, "ingestd settled after the overload", alive=[ing, proc])
            seen = ing.metric("mempulse_ingestd_seen_total", chain="polygon")
            delivered = ing.metric("mempulse_ingestd_delivered_total", chain="polygon")
            drops = {r: n for r, n in ing.drops("polygon").items() if r != "dedup"}
            stored = stored_hashes(proc.addr, 137)
            assert seen == stats.accepted, (seen, stats)
            assert delivered + sum(drops.values()) == seen
            assert len(stored) == len(set(stored)) == delivered
            assert drops and set(drops) <= {"outbound_queue_full", "fetch_queue_full"}, drops
            plateau = assert_plateau(rss, "ingestd")
            write_artifact("overload_ingest", {"duration_s": duration, "announced": int(seen), "stored": len(stored),
                                               "dropped_by_reason": drops, "offered_tx_s": stats.accepted_rate_tx_s,
                                               "queue_max_depth": max_depth,
                                               "queue_capacity": {"outbound": outbound_cap, "fetch": fetch_cap},
                                               **plateau})
        finally:
            if proc.alive and stopped:
                os.kill(proc.pid or 0, signal.SIGCONT)
            if gen is not None:
                gen.stop()
            if ingestd is not None:
                ingestd.stop()
            proc.stop()


def test_gateway_rest_flood_and_stalled_sse_clients_stay_bounded(tmp_path: Path) -> None:
    """3. The read side: while envelopes stream in at full speed, SSE clients that never read their socket
    (stalled subscribers) and a REST flood over one key's rate limit. gatewayd and processd RSS plateau,
    the stalled subscribers are cut off with a counted reason instead of being buffered, the flood gets 429
    with Retry-After (never a 5xx), a second key is not affected, and nothing crashes."""
    import socket

    import httpx

    from common.testing.process import ManagedProcess, child_env, python_module_argv
    from tests.reliability._support import ROOT

    duration = knob("overload_s", 6, 120)
    proc = ProcessdProc(tmp_path / "lmdb", tmp_path / "processd.log", "--durability", "nosync", metrics=True,
                        env={"MEMPULSE_PROCESSD_SUBSCRIBER_QUEUE_EVENTS": "2000"})
    gw_port = free_port()
    gw_url = f"http://127.0.0.1:{gw_port}"
    gateway = ManagedProcess(
        "gatewayd", python_module_argv("gatewayd", "--listen", f"127.0.0.1:{gw_port}", "--processd", proc.addr,
                                       "--rate-limit-rps", "20", "--rate-limit-burst", "20"),
        tmp_path / "gatewayd.log", cwd=ROOT, env=child_env({"MEMPULSE_GATEWAYD_API_KEYS": "flood-key,calm-key"}),
        ready=lambda: httpx.get(f"{gw_url}/metrics", timeout=1).status_code == 200)
    envelopes = synthetic_envelopes(knob("read_flood_envelopes", 60_000, 600_000), seed=31, chain_ids=(1, 137))
    pusher = ResendingPusher(proc.addr, envelopes, batch_size=500, max_inflight=8)
    stalled: list[socket.socket] = []
    statuses: dict[int, int] = {}
    missing_retry_after = 0
    calm_failures: list[int] = []
    rss: dict[str, list[int]] = {"processd": [], "gatewayd": []}
    stop = threading.Event()

    def flood() -> None:
        nonlocal missing_retry_after
        with httpx.Client(base_url=gw_url, headers={"x-api-key": "flood-key"}, timeout=10) as http:
            while not stop.is_set():
                for path in ("/transactions?limit=200", "/dashboard/snapshot"):
                    r = http.get(path)
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                    if r.status_code == 429 and not r.headers.get("retry-after"):
                        missing_retry_after += 1

    try:
        proc.start()
        gateway.start()
        for _ in range(4):  # SSE clients that send the request, then never read a byte
            s = socket.create_connection(("127.0.0.1", gw_port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b"GET /events/stream?from_seq_id=1 HTTP/1.1\r\nHost: x\r\nx-api-key: calm-key\r\n\r\n")
            stalled.append(s)
        pusher.start()
        flooders = [threading.Thread(target=flood, daemon=True) for _ in range(4)]
        for t in flooders:
            t.start()
        end = time.monotonic() + duration
        with httpx.Client(base_url=gw_url, headers={"x-api-key": "calm-key"}, timeout=10) as calm:
            while time.monotonic() < end:
                assert proc.alive and gateway.alive
                rss["processd"].append(rss_bytes(proc.pid or 0))
                rss["gatewayd"].append(rss_bytes(gateway.pid or 0))
                r = calm.get("/transactions", params={"limit": 5})
                if r.status_code != 200:
                    calm_failures.append(r.status_code)
                time.sleep(0.2)
        stop.set()
        for t in flooders:
            t.join(30)
        pusher.wait_done(300)
        cuts = wait_until(lambda: metric_sum(scrape(proc.metrics_port), "mempulse_processd_subscriber_cuts_total"), 30,
                          "stalled subscribers cut off", alive=[proc, gateway])
        assert not [c for c in statuses if c >= 500], statuses
        assert statuses.get(429, 0) > 0 and missing_retry_after == 0, statuses
        assert not calm_failures, f"the calm key was affected by the other key's flood: {calm_failures[:5]}"
        plateaus = {name: assert_plateau(samples, name) for name, samples in rss.items()}
        assert proc.alive and gateway.alive
        write_artifact("overload_read_side", {"duration_s": duration, "envelopes": len(envelopes),
                                              "rest_statuses": statuses, "subscriber_cuts": cuts,
                                              "stalled_sse_clients": len(stalled), **{
                                                  f"{name}_{k}": v for name, p in plateaus.items()
                                                  for k, v in p.items()}})
    finally:
        stop.set()
        for s in stalled:
            s.close()
        pusher.stop()
        gateway.stop()
        proc.stop()


def test_gateway_memory_under_rest_flood_stays_within_its_accounted_cache(tmp_path: Path) -> None:
    """gatewayd's memory growth under a REST flood while the log grows is what its bounded caches account
    for (at most 3x their accounted bytes plus 20 MiB), so the configured bounds really bound RSS."""
    import httpx

    from common.testing.process import ManagedProcess, child_env, python_module_argv
    from tests.reliability._support import ROOT

    proc = ProcessdProc(tmp_path / "lmdb", tmp_path / "processd.log", "--durability", "nosync")
    gw_port = free_port()
    gw_url = f"http://127.0.0.1:{gw_port}"
    gateway = ManagedProcess(
        "gatewayd", python_module_argv("gatewayd", "--listen", f"127.0.0.1:{gw_port}", "--processd", proc.addr,
                                       "--rate-limit-rps", "0"),
        tmp_path / "gatewayd.log", cwd=ROOT, env=child_env({}),
        ready=lambda: httpx.get(f"{gw_url}/metrics", timeout=1).status_code == 200)
    pusher = ResendingPusher(proc.addr, synthetic_envelopes(200_000, seed=32, chain_ids=(1, 137)), batch_size=500)
    stop = threading.Event()

    def flood() -> None:
        with httpx.Client(base_url=gw_url, timeout=10) as http:
            while not stop.is_set():
                http.get("/transactions?limit=200")

    try:
        proc.start()
        gateway.start()
        base = rss_bytes(gateway.pid or 0)
        pusher.start()
        threads = [threading.Thread(target=flood, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        # Measure once the cache holds a few MiB (allocator noise is small against that), at most 60 s.
        deadline = time.monotonic() + 60
        accounted = 0.0
        while time.monotonic() < deadline and accounted < (8 << 20):
            time.sleep(1)
            accounted = metric_sum(scrape_url(f"{gw_url}/metrics"), "mempulse_gatewayd_render_cache_bytes")
        grown = rss_bytes(gateway.pid or 0) - base
        stop.set()
        for t in threads:
            t.join(30)
        assert accounted > 0, "the flood rendered nothing"
        assert grown <= 3 * accounted + (20 << 20), (f"RSS grew {grown >> 20} MiB while the render cache accounts "
                                                      f"{int(accounted) >> 20} MiB")
    finally:
        stop.set()
        pusher.stop()
        gateway.stop()
        proc.stop()


def scrape_url(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus endpoint at ``url``."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=5).text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out
