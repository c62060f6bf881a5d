"""Several processd, each owning a set of chains, behind one gateway.

Each :class:`Shard` has its own gRPC channel (a :class:`ProcessdClient`) and a state: up or down, and the last
error. Every call through :meth:`Shard.call` updates it (a failed call that means "unreachable" marks the shard
down, any answer marks it up), so the state follows what requests see, with no extra traffic; ``/healthz``
and the start check also probe it. A call that fails for being unreachable is re-raised as a 503
``shard_unavailable`` that names the shard and its chains, so a client knows which chains are out and that
the others are not.

:class:`ShardSet` routes a chain to its owner and checks, at start and on ``/healthz``, which chains each shard
actually holds (``GetSnapshot``'s per-chain totals): a shard holding transactions of a chain that is not
configured for it is reported (a misrouted ingestd or swapped addresses: reads of that chain would miss them).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from common.pb.v1 import query_pb2
from gatewayd.config import ShardSpec
from gatewayd.merge import layout_fingerprint
from gatewayd.metrics import GatewayMetrics
from gatewayd.processd_client import ProcessdClient, UpstreamError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Upstream error codes that mean the shard cannot answer at all (down, past the deadline, overloaded).
UNREACHABLE = frozenset({"processd_unavailable", "processd_overloaded"})


def shard_error(shard: ShardSpec, message: str) -> UpstreamError:
    """The 503 of a request that needs a shard that does not answer: names the shard and its chains."""
    err = UpstreamError(503, "shard_unavailable", f"processd shard {shard.name} (chains "
                        f"{', '.join(map(str, shard.chains))}) is unavailable: {message}", retriable=True,
                        grpc_code="UNAVAILABLE")
    err.details = {"shard": shard.name, "chains": list(shard.chains)}
    return err


@dataclass(slots=True)
class Shard:
    """One processd shard: its spec, client and observed state."""

    index: int
    spec: ShardSpec
    client: ProcessdClient
    up: bool = True
    last_error: str = ""
    last_change_unix_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    #: Chains this shard holds transactions of that are not configured for it (from the last check).
    unexpected_chains: tuple[int, ...] = ()

    def _mark(self, up: bool, error: str = "") -> None:
        if up != self.up:
            self.last_change_unix_ms = int(time.time() * 1000)
            if up:
                log.warning("processd shard %s (chains %s) is back", self.spec.name, self.spec.chains)
            else:
                log.warning("processd shard %s (chains %s) is down: %s", self.spec.name, self.spec.chains, error)
        self.up = up
        if error:
            self.last_error = error

    async def call(self, method: Callable[[ProcessdClient], Awaitable[T]]) -> T:
        """``method(client)``, updating the state; unreachable -> :func:`shard_error` (503)."""
        try:
            result = await method(self.client)
        except UpstreamError as exc:
            if exc.code in UNREACHABLE:
                self._mark(False, exc.message)
                raise shard_error(self.spec, exc.message) from None
            self._mark(True)
            raise
        self._mark(True)
        return result


def _up_of(shard: Shard) -> Callable[[], float]:
    return lambda: 1.0 if shard.up else 0.0


class ShardClient:
    """The :class:`ProcessdClient` reads of one shard, each through :meth:`Shard.call` (state + named 503)."""

    def __init__(self, shard: Shard) -> None:
        self.shard = shard
        self.timeout_s = shard.client.timeout_s

    async def get_snapshot(self, request: Any) -> Any:
        """Query.GetSnapshot."""
        return await self.shard.call(lambda c: c.get_snapshot(request))

    async def list_transactions(self, request: Any) -> Any:
        """Query.ListTransactions."""
        return await self.shard.call(lambda c: c.list_transactions(request))

    async def get_transaction(self, request: Any) -> Any:
        """Query.GetTransaction."""
        return await self.shard.call(lambda c: c.get_transaction(request))

    async def list_features(self, request: Any) -> Any:
        """Query.ListFeatures."""
        return await self.shard.call(lambda c: c.list_features(request))

    async def list_opportunities(self, request: Any) -> Any:
        """Query.ListOpportunities."""
        return await self.shard.call(lambda c: c.list_opportunities(request))

    async def list_blocks(self, request: Any) -> Any:
        """Query.ListBlocks."""
        return await self.shard.call(lambda c: c.list_blocks(request))

    async def scan_events(self, request: Any) -> Any:
        """Query.ScanEvents."""
        return await self.shard.call(lambda c: c.scan_events(request))


class ShardSet:
    """The shards of one gateway, by chain; ``await start()`` / idempotent ``await stop()``."""

    def __init__(self, specs: Sequence[ShardSpec], timeout_s: float, metrics: GatewayMetrics) -> None:
        self.shards = [Shard(i, spec, ProcessdClient(spec.target, timeout_s, metrics.grpc_error))
                       for i, spec in enumerate(specs)]
        self.proxies = [ShardClient(s) for s in self.shards]
        self.owner = {chain: shard for shard in self.shards for chain in shard.spec.chains}
        self.fingerprint = layout_fingerprint([s.spec.chains for s in self.shards])
        self.metrics = metrics
        up = metrics.shard_up
        for shard in self.shards:
            up.labels(shard.spec.name).set_function(_up_of(shard))

    def __len__(self) -> int:
        return len(self.shards)

    async def start(self) -> None:
        """Opens every channel and checks each shard's chains (a shard that is down is logged, not fatal)."""
        for shard in self.shards:
            await shard.client.start()
        await self.check()

    async def stop(self) -> None:
        """Closes every channel. Safe to call twice."""
        for shard in self.shards:
            await shard.client.stop()

    def client_of(self, chain_id: int) -> ShardClient:
        """The reads of ``chain_id``'s owner (see :meth:`shard_of`)."""
        return self.proxies[self.shard_of(chain_id).index]

    def shard_of(self, chain_id: int) -> Shard:
        """The owner of ``chain_id``; a chain no shard serves is a 404 ``chain_not_served``."""
        shard = self.owner.get(chain_id)
        if shard is None:
            raise UpstreamError(404, "chain_not_served", f"no processd shard serves chain {chain_id}; served: "
                                f"{', '.join(map(str, sorted(self.owner)))}", retriable=False, grpc_code="")
        return shard

    async def check(self) -> list[dict[str, Any]]:
        """Probes every shard (health + the chains it holds) and returns its ``/healthz`` entries."""
        return list(await asyncio.gather(*(self._check_one(s) for s in self.shards)))

    async def _check_one(self, shard: Shard) -> dict[str, Any]:
        status = await shard.client.health()
        held: list[int] = []
        if status in ("serving", "unknown"):
            try:
                snap = await shard.call(lambda c: c.get_snapshot(query_pb2.GetSnapshotRequest(
                    tx_limit=1, opp_limit=1, feature_limit=1)))
                held = sorted(c.chain_id for c in snap.chains if c.tx_count)
            except UpstreamError as exc:
                status = "unavailable" if exc.code == "shard_unavailable" else status
        else:
            shard._mark(False, f"health {status}")
        unexpected = tuple(c for c in held if c not in shard.spec.chains)
        if unexpected and unexpected != shard.unexpected_chains:
            log.error("processd shard %s holds transactions of chains %s that are not configured for it "
                      "(configured: %s): reads of those chains go to %s and miss them; fix --processd or the "
                      "ingestd feeding it", shard.spec.name, unexpected, shard.spec.chains,
                      [self.owner[c].spec.name if c in self.owner else "no shard" for c in unexpected])
        shard.unexpected_chains = unexpected
        return {"shard": shard.spec.name, "chains": list(shard.spec.chains), "status": status,
                "up": shard.up and status in ("serving", "unknown"), "last_error": shard.last_error or None,
                "since_unix_ms": shard.last_change_unix_ms, "chains_held": held,
                "unexpected_chains": list(unexpected)}
