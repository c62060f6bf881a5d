"""The channel's retry policy and deadlines, observed on the server side.

A real processd answers UNAVAILABLE only while it opens its log, which a test cannot line a call up with; so
here a stand-in Query server (a few lines of grpc.aio, not mempulse code) answers UNAVAILABLE a set number of
times and counts the attempts that reach it, the way processd would be seen during a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from common.client import Client, DeadlineExceededError, InvalidArgumentError, UnavailableError
from common.pb.v1 import query_pb2, query_pb2_grpc
from common.testing.netutil import free_port


class StandIn(query_pb2_grpc.QueryServicer):
    """Fails the first ``failures`` GetSnapshot calls with UNAVAILABLE; GetTransaction is always a bad request;
    ListFeatures never answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.snapshot_calls = 0
        self.transaction_calls = 0
        self.never = asyncio.Event()

    async def GetSnapshot(self, request: Any, context: Any) -> query_pb2.GetSnapshotResponse:
        self.snapshot_calls += 1
        if self.snapshot_calls <= self.failures:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "opening the log")
        return query_pb2.GetSnapshotResponse(last_seq_id=42)

    async def GetTransaction(self, request: Any, context: Any) -> query_pb2.GetTransactionResponse:
        self.transaction_calls += 1
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "hash must be 32 bytes")
        raise AssertionError("abort returned")

    async def ListFeatures(self, request: Any, context: Any) -> query_pb2.ListFeaturesResponse:
        await self.never.wait()
        return query_pb2.ListFeaturesResponse()


async def _serve(failures: int) -> AsyncIterator[tuple[str, StandIn]]:
    servicer = StandIn(failures)
    server = grpc.aio.server()
    query_pb2_grpc.add_QueryServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"127.0.0.1:{free_port()}")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        servicer.never.set()
        await server.stop(grace=None)


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[str, StandIn]]:
    async for pair in _serve(failures=2):
        yield pair


@pytest.fixture
async def down() -> AsyncIterator[tuple[str, StandIn]]:
    async for pair in _serve(failures=100):
        yield pair


async def test_unavailable_is_retried_by_the_channel(flaky: tuple[str, StandIn]) -> None:
    address, servicer = flaky
    async with Client(address, retry_attempts=4) as c:
        snap = await c.snapshot()
    assert snap.last_seq_id == 42
    assert servicer.snapshot_calls == 3  # two refusals, then the answer, within one client call


async def test_retries_are_bounded_and_the_error_is_retriable(down: tuple[str, StandIn]) -> None:
    address, servicer = down
    async with Client(address, retry_attempts=3) as c:
        with pytest.raises(UnavailableError) as info:
            await c.snapshot()
    assert servicer.snapshot_calls == 3
    assert info.value.retriable and info.value.code == "UNAVAILABLE"


async def test_other_errors_are_not_retried(flaky: tuple[str, StandIn]) -> None:
    address, servicer = flaky
    async with Client(address) as c:
        with pytest.raises(InvalidArgumentError) as info:
            await c.transaction("0x" + "00" * 32)
    assert servicer.transaction_calls == 1 and not info.value.retriable


async def test_every_call_has_a_deadline(flaky: tuple[str, StandIn]) -> None:
    address, _ = flaky
    async with Client(address, timeout_s=30.0) as c:
        with pytest.raises(DeadlineExceededError) as info:
            await c.features(timeout_s=0.2)  # the per-call deadline overrides the client's
    assert info.value.retriable and isinstance(info.value, TimeoutError)
