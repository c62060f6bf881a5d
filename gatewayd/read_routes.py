"""The gateway's read routes: the handlers of the routes answered from processd's Query service (snapshot,
transaction lists and lookups, features, opportunities, blocks, the event log and its SSE stream), each through
the single-flight cache where clients repeat the same query, one processd or the owner shard of the chain, or the
merged all-chain answer of several shards (:mod:`gatewayd.sharded`).

Apart from :mod:`gatewayd.app` (the app, its wrapper of every route, the gateway's own routes and its errors)
because these handlers only turn a request's parsed parameters into a Query call and its answer into JSON: they
change with the API, the wrapper with the gateway. :class:`ReadRoutes` is a base of ``gatewayd.app.Gateway``,
which sets the attributes it declares.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from sanic import Request
from sanic.response import HTTPResponse

from common.pb.v1 import query_pb2
from gatewayd import serializers as ser
from gatewayd.params import ParamError, event_filter, parse_hash
from gatewayd.processd_client import ProcessdClient, UpstreamError
from gatewayd.render import RenderCache, render_yielding
from gatewayd.responses import json_response
from gatewayd.sharded import ShardedReads
from gatewayd.shards import ShardSet
from gatewayd.singleflight import SingleFlight
from gatewayd.sse import EventStreamer
from gatewayd.sse_shards import ShardedStreams


def _key(flt: query_pb2.EventFilter | None) -> bytes:
    """A filter's part of a single-flight key (requests with different filters never share an answer)."""
    return flt.SerializeToString(deterministic=True) if flt is not None else b""


class ReadRoutes:
    """The read routes' handlers (see the module's doc); a handler takes the request and its parsed parameters."""

    client: ProcessdClient
    shards: ShardSet | None
    sharded: ShardedReads | None
    flights: SingleFlight[bytes]
    render: RenderCache
    streamer: EventStreamer
    sharded_streams: ShardedStreams | None
    _snapshot_ttl_s: float
    error_response: Callable[..., HTTPResponse]

    def _client(self, chain_id: int) -> Any:
        """The reads of ``chain_id``: the one processd, or the owner shard's (a chain is given when sharded)."""
        return self.client if self.shards is None else self.shards.client_of(chain_id)

    def _merged(self, p: dict[str, Any], seq_param: str | None = None) -> bool:
        """True for an all-chain read of a gateway with several shards (then answered by :attr:`sharded`).
        ``cursor`` belongs to those reads only, and per-shard seq cursors (``seq_param``) do not apply to them."""
        merged = self.sharded is not None and not p["chain_id"]
        if p.get("cursor") is not None and not merged:
            use = f"; page with {seq_param}" if seq_param else ""
            raise ParamError("invalid_cursor", "cursor pages all-chain reads of a gateway in front of several "
                             f"processd shards{use}", "cursor")
        if merged and seq_param and p[seq_param]:
            raise ParamError("invalid_cursor", f"{seq_param}: seq ids are per processd shard; page all-chain reads "
                             "with cursor (next_cursor of the previous page)", seq_param)
        return merged

    async def snapshot(self, request: Request, p: dict[str, Any]) -> HTTPResponse:
        raw = "raw" in p["include"]
        key = ("snapshot", p["chain_id"], p["tx_limit"], p["opp_limit"], p["feature_limit"], p["min_score"], raw,
               p["coverage_top"])
        if self._merged(p):
            assert self.sharded is not None
            sharded = self.sharded
            return json_response(await self.flights.run(key, lambda: sharded.snapshot(p), self._snapshot_ttl_s))

        async def produce() -> bytes:
            resp = await self._client(p["chain_id"]).get_snapshot(
                query_pb2.GetSnapshotRequest(
                    chain_id=p["chain_id"],
                    tx_limit=p["tx_limit"],
                    opp_limit=p["opp_limit"],
                    min_score=p["min_score"],
                    feature_limit=p["feature_limit"],
                    coverage_top=p["coverage_top"],
                )
            )
            render = self.render
            return orjson.dumps(ser.snapshot_json(resp, render.tx_raw if raw else render.tx, render.feature,
                                                  render.opportunity))

        return json_response(await self.flights.run(key, produce, self._snapshot_ttl_s))

    async def transactions(self, request: Request, p: dict[str, Any]) -> HTTPResponse:
        chain_id, limit, before, status = p["chain_id"], p["limit"], p["before_seq_id"], p["status"]
        raw = "raw" in p["include"]
        if self._merged(p, "before_seq_id"):
            assert self.sharded is not None
            sharded = self.sharded
            key = ("mtransactions", limit, p["cursor"], status, raw, _key(event_filter(p, "transactions")))
            return json_response(await self.flights.run(key, lambda: sharded.transactions(p)))
        flt = event_filter(p, "transactions")

        async def produce() -> bytes:
            resp = await self._client(chain_id).list_transactions(
                query_pb2.ListTransactionsRequest(chain_id=chain_id, limit=limit, cursor=before, filter=flt,
                                                  status=status)
            )
            return orjson.dumps(
                {
                    "transactions": self.render.txs(resp.transactions, raw),
                    # processd's descending cursor: an exclusive upper bound, 0 when nothing older is stored.
                    "next_before_seq_id": resp.next_cursor,
                    "truncated": resp.truncated,
                    "last_seq_id": resp.last_seq_id,
                }
            )

        return json_response(await self.flights.run(("transactions", chain_id, limit, before, status, raw, _key(flt)),
                                                    produce))

    async def transactions_all(self, request: Request, p: dict[str, Any]) -> HTTPResponse:
        if self._merged(p, "from_seq_id"):
            assert self.sharded is not None
            return json_response(await self.sharded.transactions_all(p))
        from_seq = p["from_seq_id"]
        resp = await self._client(p["chain_id"]).list_transactions(
            query_pb2.ListTransactionsRequest(chain_id=p["chain_id"], limit=p["limit"], cursor=from_seq, ascending=True,
                                              filter=event_filter(p, "transactions_all"))
        )
        txs = resp.transactions
        if resp.next_cursor:
            next_from, has_more = resp.next_cursor, True
        else:
            # No further page right now: poll again from just past what was returned.
            next_from, has_more = max(from_seq, txs[-1].seq_id + 1 if txs else 0), False
        return json_response(
            {
                "transactions": await render_yielding(txs, self.render.tx_raw if "raw" in p["include"]
                                                      else self.render.tx),
                "next_from_seq_id": next_from,
                "has_more": has_more,
                "truncated": resp.truncated,
                "last_seq_id": resp.last_seq_id,
            }
        )

    async def transaction(self, request: Request, p: dict[str, Any], tx_hash: str) -> HTTPResponse:
        raw = parse_hash("hash", tx_hash)
        chain_id = p["chain_id"]
        # chain_id 0 = any chain: processd resolves the hash itself (the first stored wins when on several).
        found = await self._lookup_tx(chain_id, raw)
        if found is None:
            where = f" on chain {chain_id}" if chain_id else ""
            return self.error_response(404, "tx_not_found", f"transaction 0x{raw.hex()} is not known{where}")
        render = self.render
        return json_response(ser.transaction_detail_json(found, render.tx_raw if "raw" in p["include"] else render.tx,
                                                         render.feature, render.opportunity))

    async def _lookup_tx(self, chain_id: int, raw: bytes) -> query_pb2.GetTransactionResponse | None:
        if self.sharded is not None and not chain_id:
            return await self.sharded.transaction(chain_id, raw)
        try:
            return await self._client(chain_id).get_transaction(
                query_pb2.GetTransactionRequest(chain_id=chain_id, hash=raw))
        except UpstreamError as exc:
            if exc.status == 404:
                return None
            raise

    async def features_recent(self, request: Request, p: dict[str, Any]) -> HTTPResponse:
        chain_id, limit = p["chain_id"], p["limit"]
        flt = event_filter(p, "features_recent")
        if self._merged(p):
            assert self.sharded is not None
            sharded = self.sharded
            return json_response(await self.flights.run(("mfeatures", limit, _key(flt)),
                                                        lambda: sharded.features_recent(p)))

        async def produce() -> bytes:
            resp = await self._client(chain_id).list_features(
                query_pb2.ListFeaturesRequest(chain_id=chain_id, limit=limit, filter=flt))
            return orjson.dumps({"features": self.render.features(resp.features)})

        return json_response(await self.flights.run(("features", chain_id, limit, _key(flt)), produce))

    async def opps_recent(self, request: Request, p: dict[str, Any]) -> HTTPResponse:
        chain_id, limit, min_score = p["chain_id"], p["limit"], p["min_score"]
        flt = event_filter(p, "opps_recent")
        if self._merged(p):
            assert self.sharded is not None
            sharded = self.sharded
            return json_response(await self.flights.run(("mopps", limit, min_score, _key(flt)),
                                                        lambda: sharded.opps_recent(p)))

        async def produce() -> bytes:
            resp = await self._client(chain_id).list_opportunities(
                query_pb2.ListOpportunitiesRequest(chain_id=chain_id, limit=limit, min_score=min_score, filter=flt)
            )
            return orjson.dumps({"opportunities": self.render.opportunities(resp.opportunities)})

        return json_response(await self.flights.run(("opps", chain_id, limit, min_score, _key(flt)), produce))

    async def blocks_recent(self, request: Request, p: dict[str, Any]) -> HTTPResponse:
        if self._merged(p, "before_seq_id"):
            assert self.sharded is not None
            return json_response(await self.sharded.blocks_recent(p))
        resp = await self._client(p["chain_id"]).list_blocks(query_pb2.ListBlocksRequest(
            chain_id=p["chain_id"], limit=p["limit"], cursor=p["before_seq_id"]))
        return json_response({"blocks": [ser.block_json(b) for b in resp.blocks],
                              "next_before_seq_id": resp.next_cursor})

    async def events(self, request: Request, p: dict[str, Any]) -> HTTPResponse:
        if self._merged(p, "from_seq_id"):
            assert self.sharded is not None
            return json_response(await self.sharded.events(p))
        resp = await self._client(p["chain_id"]).scan_events(
            query_pb2.ScanEventsRequest(
                from_seq_id=p["from_seq_id"], limit=p["limit"], chain_id=p["chain_id"], kinds=p["kinds"],
                filter=event_filter(p, "events"),
            )
        )
        return json_response(
            {
                "events": await render_yielding(resp.events, self.render.event_raw if "raw" in p["include"]
                                                else self.render.event),
                "next_from_seq_id": max(resp.next_seq_id, p["from_seq_id"]),
                "truncated": resp.truncated,
                "last_seq_id": resp.last_seq_id,
            }
        )

    async def events_stream(self, request: Request, p: dict[str, Any]) -> None:
        if self.sharded_streams is not None:
            await self.sharded_streams.stream(request, p)
            return
        await self.streamer.stream(request, p)
