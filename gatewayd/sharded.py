"""All-chain reads over several processd shards: every shard is asked at once, and the answers are merged.

Orders (docs/gatewayd.md#several-processd-shards-by-chain): transactions by first-seen time (newest first on
``/transactions``, oldest first on ``/transactions/all``), events and blocks by the time processd received them,
opportunities as processd ranks them (valued ones by net profit, then the rest by score), feature records by
recency rank; within one shard the shard's own seq order is always kept (:mod:`gatewayd.merge`). Paged routes
return ``next_cursor``, a position per shard.

A shard that does not answer leaves its chains out of the answer instead of failing it: the answer says
``"partial": true`` with ``missing_shards`` and ``missing_chains``, and its cursor keeps that shard's position,
so the next page picks it up where it stopped once it is back (nothing of it is skipped). Any other failure
(a 400 from a shard, ...) fails the request as with one processd. When every shard is down, the answer is the
503 of the first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import orjson

from common.pb.v1 import query_pb2
from gatewayd import serializers as ser
from gatewayd.merge import EXHAUSTED, ShardPage, decode_cursor, encode_cursor, merge_page, next_positions
from gatewayd.metrics import GatewayMetrics
from gatewayd.params import event_filter
from gatewayd.processd_client import ProcessdClient, UpstreamError
from gatewayd.render import RenderCache, render_yielding
from gatewayd.shards import Shard, ShardSet, shard_error

T = TypeVar("T")


class Gathered:
    """Per-shard answers of one all-chain read (None for a shard left out) and the shards that were down."""

    def __init__(self, answers: list[Any], missing: list[Shard]) -> None:
        self.answers = answers
        self.missing = missing

    def flags(self) -> dict[str, Any]:
        """The ``partial`` / ``missing_shards`` / ``missing_chains`` fields of a merged answer."""
        return {"partial": bool(self.missing), "missing_shards": [s.spec.name for s in self.missing],
                "missing_chains": sorted(c for s in self.missing for c in s.spec.chains)}


class ShardedReads:
    """The all-chain (``chain_id`` omitted) forms of the read routes for a gateway with several shards."""

    def __init__(self, shards: ShardSet, render: RenderCache, metrics: GatewayMetrics) -> None:
        self.shards = shards
        self.render = render
        self.metrics = metrics

    async def gather(self, call: Callable[[ProcessdClient, int], Awaitable[T]],
                     skip: Sequence[bool] = ()) -> Gathered:
        """``call(client, index)`` on every shard at once (not those ``skip`` marks); unreachable shards are
        left out (``missing``), any other error is raised; all shards down raises the first one's 503."""
        shards = self.shards.shards

        async def one(shard: Shard) -> Any:
            if skip and skip[shard.index]:
                return None
            return await shard.call(lambda c: call(c, shard.index))

        results = await asyncio.gather(*(one(s) for s in shards), return_exceptions=True)
        answers: list[Any] = []
        missing: list[Shard] = []
        first_down: UpstreamError | None = None
        for shard, result in zip(shards, results, strict=True):
            if isinstance(result, UpstreamError) and result.code == "shard_unavailable":
                missing.append(shard)
                first_down = first_down or result
                answers.append(None)
            elif isinstance(result, BaseException):
                raise result
            else:
                answers.append(result)
        if first_down is not None:
            if len(missing) == len(shards):
                raise first_down
            self.metrics.partial_answers.inc()
        return Gathered(answers, missing)

    def positions(self, p: dict[str, Any], route: str, start: int) -> list[int]:
        """The per-shard positions of the request's ``cursor`` (all ``start`` without one)."""
        if p["cursor"] is None:
            return [start] * len(self.shards)
        return decode_cursor("cursor", p["cursor"], route, self.shards.fingerprint, len(self.shards))

    def cursor(self, route: str, positions: Sequence[int]) -> str:
        """The ``next_cursor`` of a page ending at ``positions``."""
        return encode_cursor(route, self.shards.fingerprint, positions)

    # -- routes -----------------------------------------------------------------------------------------------

    async def transactions(self, p: dict[str, Any]) -> bytes:
        """``/transactions`` over every shard: newest first by first-seen time."""
        limit, raw = p["limit"], "raw" in p["include"]
        flt = event_filter(p, "transactions")
        start = self.positions(p, "tx", 0)
        got = await self.gather(lambda c, i: c.list_transactions(query_pb2.ListTransactionsRequest(
            limit=limit, cursor=start[i], filter=flt, status=p["status"])), [pos == EXHAUSTED for pos in start])
        pages = [None if r is None else ShardPage(r.transactions, bool(r.next_cursor), r.next_cursor)
                 for r in got.answers]
        merged = merge_page(pages, _tx_time, limit)
        positions = next_positions(pages, merged, start, _seq, descending=True)
        done = all(pos == EXHAUSTED for pos in positions)
        truncated = merged.cut or any(r is not None and r.truncated for r in got.answers)
        return orjson.dumps({
            "transactions": await render_yielding([tx for _, tx in merged.items],
                                                  self.render.tx_raw if raw else self.render.tx),
            "next_before_seq_id": None, "next_cursor": None if done else self.cursor("tx", positions),
            "truncated": truncated, "last_seq_id": None, **got.flags()})

    async def transactions_all(self, p: dict[str, Any]) -> bytes:
        """``/transactions/all`` over every shard: oldest first by first-seen time; the cursor always goes on
        (poll it for new transactions)."""
        limit = p["limit"]
        start = self.positions(p, "txa", 0)
        flt = event_filter(p, "transactions_all")
        got = await self.gather(lambda c, i: c.list_transactions(query_pb2.ListTransactionsRequest(
            limit=limit, cursor=start[i], ascending=True, filter=flt)))
        pages = [None if r is None else ShardPage(r.transactions, bool(r.next_cursor), r.next_cursor)
                 for r in got.answers]
        merged = merge_page(pages, _tx_time, limit, descending=False)
        positions = next_positions(pages, merged, start, _seq, descending=False)
        has_more = merged.cut or any(pg is not None and (pg.more or merged.taken[i] < len(pg.items))
                                     for i, pg in enumerate(pages))
        return orjson.dumps({
            "transactions": await render_yielding([tx for _, tx in merged.items], self.render.tx_raw
                                                  if "raw" in p["include"] else self.render.tx),
            "next_from_seq_id": None, "next_cursor": self.cursor("txa", positions), "has_more": has_more,
            "truncated": merged.cut or any(r is not None and r.truncated for r in got.answers),
            "last_seq_id": None, **got.flags()})

    async def events(self, p: dict[str, Any]) -> bytes:
        """``/events`` over every shard: by the time processd received each event, each shard's seq order kept."""
        limit = p["limit"]
        start = self.positions(p, "ev", 0)
        flt = event_filter(p, "events")
        got = await self.gather(lambda c, i: c.scan_events(query_pb2.ScanEventsRequest(
            from_seq_id=start[i], limit=limit, kinds=p["kinds"], filter=flt)))
        pages = [None if r is None else ShardPage(r.events, r.truncated or r.next_seq_id <= r.last_seq_id,
                                                  max(r.next_seq_id, start[i]))
                 for i, r in enumerate(got.answers)]
        merged = merge_page(pages, _event_time, limit, descending=False)
        positions = next_positions(pages, merged, start, _seq, descending=False)
        return orjson.dumps({
            "events": await render_yielding([e for _, e in merged.items], self.render.event_raw
                                            if "raw" in p["include"] else self.render.event),
            "next_from_seq_id": None, "next_cursor": self.cursor("ev", positions),
            "truncated": merged.cut or any(r is not None and r.truncated for r in got.answers),
            "last_seq_id": None, **got.flags()})

    async def blocks_recent(self, p: dict[str, Any]) -> bytes:
        """``/blocks/recent`` over every shard: newest first by the time processd received each block."""
        limit = p["limit"]
        start = self.positions(p, "bl", 0)
        got = await self.gather(lambda c, i: c.list_blocks(query_pb2.ListBlocksRequest(
            limit=limit, cursor=start[i])), [pos == EXHAUSTED for pos in start])
        pages = [None if r is None else ShardPage(r.blocks, bool(r.next_cursor), r.next_cursor)
                 for r in got.answers]
        merged = merge_page(pages, _block_time, limit)
        positions = next_positions(pages, merged, start, _seq, descending=True)
        done = all(pos == EXHAUSTED for pos in positions)
        return orjson.dumps({"blocks": [ser.block_json(b) for _, b in merged.items], "next_before_seq_id": None,
                             "next_cursor": None if done else self.cursor("bl", positions), **got.flags()})

    async def features_recent(self, p: dict[str, Any]) -> bytes:
        """``/features/recent`` over every shard: feature records carry no time, so shards are interleaved by
        recency rank (each shard's newest first)."""
        flt = event_filter(p, "features_recent")
        got = await self.gather(lambda c, i: c.list_features(query_pb2.ListFeaturesRequest(
            limit=p["limit"], filter=flt)))
        merged = _by_rank([[] if r is None else r.features for r in got.answers], p["limit"])
        return orjson.dumps({"features": self.render.features(merged), **got.flags()})

    async def opps_recent(self, p: dict[str, Any]) -> bytes:
        """``/opps/recent`` over every shard: by the read model's ranking (net profit, then score; each shard's
        order kept for equal keys)."""
        flt = event_filter(p, "opps_recent")
        got = await self.gather(lambda c, i: c.list_opportunities(query_pb2.ListOpportunitiesRequest(
            limit=p["limit"], min_score=p["min_score"], filter=flt)))
        pages = [None if r is None else ShardPage(r.opportunities, False) for r in got.answers]
        merged = merge_page(pages, _rank, p["limit"])
        return orjson.dumps({"opportunities": self.render.opportunities([o for _, o in merged.items]),
                             **got.flags()})

    async def snapshot(self, p: dict[str, Any]) -> bytes:
        """``/dashboard/snapshot`` over every shard: per-chain parts side by side, lists merged as above."""
        req = query_pb2.GetSnapshotRequest(tx_limit=p["tx_limit"], opp_limit=p["opp_limit"],
                                           min_score=p["min_score"], feature_limit=p["feature_limit"],
                                           coverage_top=p["coverage_top"])
        got = await self.gather(lambda c, i: c.get_snapshot(req))
        answers = [r for r in got.answers if r is not None]
        out = query_pb2.GetSnapshotResponse()
        for r in answers:
            out.chains.extend(r.chains)
            out.feature_summary.extend(r.feature_summary)
        txs = merge_page([ShardPage(r.recent_transactions, False) for r in answers], _tx_time, p["tx_limit"])
        out.recent_transactions.extend(t for _, t in txs.items)
        opps = merge_page([ShardPage(r.top_opportunities, False) for r in answers], _rank, p["opp_limit"])
        out.top_opportunities.extend(o for _, o in opps.items)
        out.recent_features.extend(_by_rank([r.recent_features for r in answers], p["feature_limit"]))
        out.recent_transactions_truncated = any(r.recent_transactions_truncated for r in answers)
        render = self.render
        body = ser.snapshot_json(out, render.tx_raw if "raw" in p["include"] else render.tx, render.feature,
                                 render.opportunity)
        # seq ids and replay points are per log: per shard, not summed.
        body["chains"].sort(key=lambda c: c["chain_id"])
        body["last_seq_id"] = None
        body["replay"] = None
        body["shards"] = [{"shard": s.spec.name, "last_seq_id": r.last_seq_id if r is not None else None,
                           "replay": ser.replay_json(r.replay) if r is not None else None}
                          for s, r in zip(self.shards.shards, got.answers, strict=True)]
        body.update(got.flags())
        return orjson.dumps(body)

    async def transaction(self, chain_id: int, tx_hash: bytes) -> query_pb2.GetTransactionResponse | None:
        """A transaction by hash on any chain: every shard is asked; the first (in shard order) that has it
        wins. Not found while a shard is down is that shard's 503 (it may be there)."""

        async def lookup(c: ProcessdClient, i: int) -> query_pb2.GetTransactionResponse | None:
            try:
                return await c.get_transaction(query_pb2.GetTransactionRequest(chain_id=chain_id, hash=tx_hash))
            except UpstreamError as exc:
                if exc.status == 404:
                    return None
                raise

        got = await self.gather(lookup)
        for r in got.answers:
            if r is not None:
                return r
        if got.missing:
            raise shard_error(got.missing[0].spec, got.missing[0].last_error or "unreachable")
        return None


def _by_rank(lists: Sequence[Sequence[T]], limit: int) -> list[T]:
    """Round-robin over ``lists`` (each newest first): the newest of each, then the second of each, ..."""
    out: list[T] = []
    rank = 0
    while len(out) < limit and any(rank < len(items) for items in lists):
        out.extend(items[rank] for items in lists if rank < len(items))
        rank += 1
    return out[:limit]


def _seq(record: Any) -> int:
    return int(record.seq_id)


def _tx_time(stored: query_pb2.StoredTx) -> int:
    return int(stored.tx.first_seen_unix_ns)


def _event_time(event: Any) -> int:
    return int(event.received_unix_ns)


def _block_time(block: query_pb2.ListBlocksBlock) -> int:
    return int(block.received_unix_ns)


def _rank(opportunity: Any) -> tuple[int, int]:
    """The read model's ranking (processd/views/windows.py::rank_key): valued with a net profit first, by net
    profit; then the rest by heuristic score."""
    if opportunity.valued and opportunity.HasField("net_profit_wei"):
        return 1, int.from_bytes(opportunity.net_profit_wei, "big")
    return 0, int(opportunity.score)
