"""Server plumbing: health (SERVING only while the log is open), reflection, metrics endpoint."""

from __future__ import annotations

from pathlib import Path

import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from common.testing.ingest_push import channel, push_envelopes
from common.testing.netutil import free_port
from common.testing.synth import synthetic_envelopes
from processd.api.server import ProcessdServer
from tests.processd._helpers import make_config


async def test_health_reflection_and_metrics(tmp_path: Path) -> None:
    mport = free_port()
    srv = ProcessdServer(make_config(tmp_path / "lmdb", metrics_port=mport))
    await srv.start()
    try:
        async with channel(srv.address) as ch:
            health = health_pb2_grpc.HealthStub(ch)
            for service in ("", "mempulse.v1.Ingest", "mempulse.v1.Query"):
                r = await health.Check(health_pb2.HealthCheckRequest(service=service))
                assert r.status == health_pb2.HealthCheckResponse.SERVING
            refl = reflection_pb2_grpc.ServerReflectionStub(ch)
            call = refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
            names = set()
            async for resp in call:
                names = {s.name for s in resp.list_services_response.service}
                break
            assert {"mempulse.v1.Ingest", "mempulse.v1.Query", "grpc.health.v1.Health"} <= names
        await push_envelopes(srv.address, synthetic_envelopes(50, seed=71), batch_size=25)
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{mport}/metrics")).text
        for name in ("mempulse_processd_commit_seconds_bucket", "mempulse_processd_commit_envelopes_bucket",
                     "mempulse_processd_storage_bytes", "mempulse_processd_events_total",
                     "mempulse_processd_subscribers", "mempulse_processd_commit_queue_envelopes",
                     "mempulse_processd_read_model_entries", "mempulse_processd_replay_info",
                     f"mempulse_processd_last_seq {float(srv.models.last_seq)}"):
            assert name in text, name
        assert srv.models.last_seq >= 100
        # Health turns NOT_SERVING as soon as shutdown begins.
        await srv.health.enter_graceful_shutdown()
        async with channel(srv.address) as ch:
            r = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""))
            assert r.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        await srv.stop()
