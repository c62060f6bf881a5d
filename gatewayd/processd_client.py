"""gatewayd's gRPC client for processd's Query service: one shared channel, a deadline on every call.

gRPC failures become :class:`UpstreamError` with the HTTP status the gateway answers with (UNAVAILABLE and
DEADLINE_EXCEEDED -> 503, NOT_FOUND -> 404, INVALID_ARGUMENT -> 400, ...), so no gRPC error ever becomes a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.pb.v1 import query_pb2, query_pb2_grpc
from gatewayd.errors import GatewaydError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Largest message accepted from processd (a 5,000-transaction page with big calldata fits).
MAX_RECEIVE_MESSAGE_BYTES = 64 * 1024 * 1024

# Reconnect quickly after processd restarts: gRPC's default backoff grows to 120 s, which would keep
# answering 503 long after processd is back.
_CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_RECEIVE_MESSAGE_BYTES),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 30000),
    ("grpc.keepalive_timeout_ms", 5000),
    ("grpc.enable_retries", 0),
)


class UpstreamError(GatewaydError):
    """A processd call failed; carries the HTTP status, a stable error code and whether a retry may help."""

    def __init__(self, status: int, code: str, message: str, *, retriable: bool, grpc_code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retriable = retriable
        self.grpc_code = grpc_code
        #: Extra fields of the error document (a shard's 503 names the shard and its chains).
        self.details: dict[str, Any] | None = None


def map_rpc_error(method: str, err: grpc.RpcError) -> UpstreamError:
    """Translates a gRPC error of ``method`` into the gateway's HTTP error."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = (err.details() if hasattr(err, "details") else None) or ""
    name = code.name if code is not None else "UNKNOWN"
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return UpstreamError(
            503, "processd_unavailable", f"processd did not answer {method} ({name})", retriable=True, grpc_code=name
        )
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return UpstreamError(
            503, "processd_overloaded", f"processd is overloaded ({details})", retriable=True, grpc_code=name
        )
    if code is grpc.StatusCode.NOT_FOUND:
        return UpstreamError(404, "not_found", details or "not found", retriable=False, grpc_code=name)
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE):
        return UpstreamError(400, "invalid_argument", details or "invalid argument", retriable=False, grpc_code=name)
    if code is grpc.StatusCode.UNIMPLEMENTED:
        return UpstreamError(
            501, "not_implemented", f"processd does not implement {method} yet", retriable=False, grpc_code=name
        )
    return UpstreamError(
        502, "upstream_error", f"processd failed {method} ({name}: {details[:200]})", retriable=True, grpc_code=name
    )


class ProcessdClient:
    """Query-service client. ``await start()`` inside the serving event loop; ``await stop()`` is idempotent.

    ``on_error(method, grpc_code)`` is called for every failed call (metrics hook).
    """

    def __init__(
        self,
        target: str,
        timeout_s: float,
        on_error: Callable[[str, str], None] | None = None,
    ) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self._on_error = on_error
        self._channel: grpc.aio.Channel | None = None
        self._stub: query_pb2_grpc.QueryStub | None = None
        self._health: health_pb2_grpc.HealthStub | None = None

    async def start(self) -> None:
        """Opens the shared channel (connects lazily; a down processd is not an error here)."""
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self.target, options=_CHANNEL_OPTIONS)
            self._stub = query_pb2_grpc.QueryStub(self._channel)
            self._health = health_pb2_grpc.HealthStub(self._channel)

    async def stop(self) -> None:
        """Closes the channel, cancelling calls in flight. Safe to call twice."""
        channel, self._channel = self._channel, None
        self._stub = self._health = None
        if channel is not None:
            await channel.close(grace=None)

    @property
    def stub(self) -> query_pb2_grpc.QueryStub:
        """The Query stub; raises if the client is not started."""
        if self._stub is None:
            raise UpstreamError(503, "processd_unavailable", "gateway is not connected", retriable=True, grpc_code="")
        return self._stub

    async def _call(self, method: str, fn: Callable[..., Awaitable[T]], request: Any) -> T:
        try:
            return await fn(request, timeout=self.timeout_s)
        except grpc.RpcError as err:
            mapped = map_rpc_error(method, err)
            if self._on_error is not None:
                self._on_error(method, mapped.grpc_code)
            raise mapped from None

    async def get_snapshot(self, request: query_pb2.GetSnapshotRequest) -> query_pb2.GetSnapshotResponse:
        """Query.GetSnapshot."""
        return await self._call("GetSnapshot", self.stub.GetSnapshot, request)

    async def list_transactions(self, request: query_pb2.ListTransactionsRequest) -> query_pb2.ListTransactionsResponse:
        """Query.ListTransactions."""
        return await self._call("ListTransactions", self.stub.ListTransactions, request)

    async def get_transaction(self, request: query_pb2.GetTransactionRequest) -> query_pb2.GetTransactionResponse:
        """Query.GetTransaction."""
        return await self._call("GetTransaction", self.stub.GetTransaction, request)

    async def list_features(self, request: query_pb2.ListFeaturesRequest) -> query_pb2.ListFeaturesResponse:
        """Query.ListFeatures."""
        return await self._call("ListFeatures", self.stub.ListFeatures, request)

    async def list_blocks(self, request: query_pb2.ListBlocksRequest) -> query_pb2.ListBlocksResponse:
        """Query.ListBlocks."""
        return await self._call("ListBlocks", self.stub.ListBlocks, request)

    async def list_opportunities(
        self, request: query_pb2.ListOpportunitiesRequest
    ) -> query_pb2.ListOpportunitiesResponse:
        """Query.ListOpportunities."""
        return await self._call("ListOpportunities", self.stub.ListOpportunities, request)

    async def scan_events(self, request: query_pb2.ScanEventsRequest) -> query_pb2.ScanEventsResponse:
        """Query.ScanEvents."""
        return await self._call("ScanEvents", self.stub.ScanEvents, request)

    def subscribe_events(self, request: query_pb2.SubscribeEventsRequest) -> Any:
        """Query.SubscribeEvents: a server-streaming call (no deadline: it lives as long as the SSE client).

        Read it with ``await call.read()``; errors surface as ``grpc.RpcError`` (map with :func:`map_rpc_error`).
        """
        return self.stub.SubscribeEvents(request)

    def subscribe_many(self) -> Any:
        """Query.SubscribeMany: a bidi call carrying many filters (no deadline: it lives as long as its clients).

        Write ``SubscribeManyRequest``s with ``await call.write(...)`` (one at a time), read with
        ``await call.read()``; errors surface as ``grpc.RpcError``.
        """
        return self.stub.SubscribeMany()

    async def health(self) -> str:
        """processd's gRPC health status: "serving", "not_serving", or "unavailable" when unreachable."""
        if self._health is None:
            return "unavailable"
        try:
            resp = await self._health.Check(health_pb2.HealthCheckRequest(service=""), timeout=min(self.timeout_s, 1.0))
        except grpc.RpcError as err:
            code = err.code() if hasattr(err, "code") else None
            if code is grpc.StatusCode.UNIMPLEMENTED:
                return "unknown"
            return "unavailable"
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)).lower()
