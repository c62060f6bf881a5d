"""EventStreamer's admission of a processd subscription, with fake gRPC calls (the real path is exercised by
test_sse_integration.py): the admitted header, a trailers-only refusal, headers that come with a first
message, and silence."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from common.pb.v1 import query_pb2
from gatewayd.metrics import GatewayMetrics
from gatewayd.processd_client import UpstreamError
from gatewayd.sse import ADMITTED_HEADER, HEAD_HEADER, EventStreamer


class FakeClient:
    timeout_s = 0.2


class Refused(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.RESOURCE_EXHAUSTED

    def details(self) -> str:
        return "too many subscribers (max 8)"


class FakeCall:
    def __init__(self, metadata: Any = None, first: Any = None, refused: bool = False, done: bool = False) -> None:
        self.metadata, self.first, self.refused, self._done = metadata, first, refused, done

    async def initial_metadata(self) -> Any:
        if self.metadata is None:
            await asyncio.sleep(3600)  # no headers before a first message that never comes
        return self.metadata

    def done(self) -> bool:
        return self._done

    async def read(self) -> Any:
        if self.refused:
            raise Refused()
        return self.first


def streamer() -> EventStreamer:
    return EventStreamer(FakeClient(), GatewayMetrics(), max_clients=1, heartbeat_s=1.0)  # type: ignore[arg-type]


async def test_admitted_header_reports_the_head() -> None:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    head = await streamer()._admitted(FakeCall(metadata=((ADMITTED_HEADER, "admitted"), (HEAD_HEADER, "600"))), queue)
    assert head == 600 and queue.empty()


async def test_trailers_only_refusal_is_a_503_even_before_done_is_set() -> None:
    with pytest.raises(UpstreamError) as info:
        await streamer()._admitted(FakeCall(metadata=(), refused=True, done=False), asyncio.Queue())
    assert info.value.status == 503 and info.value.code == "processd_overloaded"


async def test_headers_with_a_first_message_keep_that_message() -> None:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    first = query_pb2.SubscribeEventsResponse(last_seq_id=42)
    assert await streamer()._admitted(FakeCall(metadata=(), first=first), queue) == 42
    assert queue.get_nowait() is first


async def test_silence_within_the_deadline_is_a_503_not_an_admission() -> None:
    """No headers within the deadline while the call is still open: before, that counted as admitted (the client
    got 200, then processd's refusal as an error event); now it is a retriable 503 processd_unavailable."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    with pytest.raises(UpstreamError) as info:
        await streamer()._admitted(FakeCall(metadata=None), queue)
    assert info.value.status == 503 and info.value.code == "processd_unavailable" and info.value.retriable
    assert queue.empty()
