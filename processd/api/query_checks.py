"""The request checks every Query RPC shares: page limits, chain ids, event kinds, scores, a list's filter, and
the INVALID_ARGUMENT answer (counted) to a request that fails them.

Apart from :mod:`processd.api.query_service` (the unary RPCs) and :mod:`processd.api.query_streams` (the
streaming ones) because both check their requests the same way: :class:`QueryChecks` is the base of both.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import grpc

from common import limits
from processd.errors import ProcessdError
from processd.metrics import ProcessdMetrics
from processd.views.filter_model import FilterError, TxFilter, compile_filter

#: The shared table (common.limits): gatewayd's REST checks read the same bounds.
VALID_KINDS = frozenset(limits.EVENT_KINDS.values())


class BadRequestError(ProcessdError):
    """A request field is out of range (answered INVALID_ARGUMENT)."""

    retriable = False


class QueryChecks:
    """Checks of Query request fields; a bad field raises :class:`BadRequestError`, which the RPC answers with
    :meth:`_bad`. The Query service sets the attributes below."""

    default_limit: int
    max_limit: int
    _metrics: ProcessdMetrics

    def _limit(self, value: int, default: int | None = None) -> int:
        if value == 0:
            return default if default is not None else self.default_limit
        return min(value, self.max_limit)

    @staticmethod
    def _chain(value: int) -> int:
        if value > limits.MAX_CHAIN_ID:
            raise BadRequestError(f"chain_id {value} out of range")
        return value

    @staticmethod
    def _kinds(values: list[int]) -> frozenset[int]:
        kinds = frozenset(values)
        bad = kinds - VALID_KINDS
        if bad:
            raise BadRequestError(f"unknown event kinds {sorted(bad)}")
        return kinds

    @staticmethod
    def _score(value: int) -> int:
        if value > limits.MAX_SCORE:
            raise BadRequestError(f"min_score must be 0..{limits.MAX_SCORE}, got {value}")
        return value

    @staticmethod
    def _filter(request: Any, chain_id: int = 0) -> TxFilter | None:
        """A list request's compiled ``filter`` (its kinds do not apply: a list holds one kind of record), or
        None when it has none (the request is answered exactly as before filters)."""
        if not request.HasField("filter") or not request.filter.ByteSize():
            return None
        return replace(compile_filter(request.filter, chain_id), kinds=frozenset())

    async def _event_selection(self, request: Any, context: grpc.aio.ServicerContext,
                               rpc: str) -> tuple[int, frozenset[int], TxFilter | None]:
        """An event read's selection (ScanEvents, SubscribeEvents): its chain id, kinds and compiled ``filter`` (None
        without one); a bad one is answered INVALID_ARGUMENT, counted under ``rpc``, and raises."""
        try:
            chain_id = self._chain(request.chain_id)
            kinds = self._kinds(list(request.kinds))
            event_filter = (compile_filter(request.filter, chain_id, kinds)
                            if request.HasField("filter") and request.filter.ByteSize() else None)
        except (BadRequestError, FilterError) as exc:
            await self._bad(context, rpc, BadRequestError(str(exc)))
            raise
        return chain_id, kinds, event_filter

    async def _bad(self, context: grpc.aio.ServicerContext, rpc: str, exc: BadRequestError) -> None:
        self._metrics.bad_requests.labels(rpc).inc()
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
