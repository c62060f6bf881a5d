"""The gatewayd Sanic application: REST + SSE over processd's gRPC Query service.

``create_app(config)`` builds an app with its own gRPC client, metrics registry, auth and rate limiter.
Every route goes through one wrapper (:meth:`Gateway.endpoint`) that applies, in order: CORS preflight,
API-key auth, the per-key rate limit, strict query-parameter parsing, the handler, error mapping to
``{"error": {"code", "message"}}`` and metrics. The wrapper is a plain function rather than Sanic middleware
because middleware adds a coroutine hop per request and per response on the hot path.

This module holds the app, that wrapper, the gateway's own routes (health, metrics, the OpenAPI document) and
the answers to Sanic's errors; the handlers of the routes that read processd are :mod:`gatewayd.read_routes`'
(``Gateway`` derives from its ``ReadRoutes``), the JSON answers :mod:`gatewayd.responses`'.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from sanic import Request, Sanic
from sanic.exceptions import SanicException
from sanic.response import HTTPResponse

from gatewayd.auth import ApiKeyAuth, AuthError
from gatewayd.config import GatewayConfig
from gatewayd.connguard import ConnectionGuard
from gatewayd.metrics import CONTENT_TYPE_LATEST, GatewayMetrics
from gatewayd.openapi import build_openapi, render_docs_html
from gatewayd.params import ParamError, ParamSpec, parse_params, route_params
from gatewayd.processd_client import ProcessdClient, UpstreamError
from gatewayd.ratelimit import RateLimited, RateLimiter
from gatewayd.read_routes import ReadRoutes
from gatewayd.render import RenderCache
from gatewayd.responses import JSON, error_body, json_response
from gatewayd.sharded import ShardedReads
from gatewayd.shards import ShardSet
from gatewayd.singleflight import SingleFlight
from gatewayd.sse import EventStreamer
from gatewayd.sse_shards import ShardedStreams

log = logging.getLogger(__name__)

_app_ids = itertools.count(1)
#: Bound of the parsed-query cache (cleared when full: a flood of distinct queries just disables it).
PARSED_QUERY_CACHE = 4096
Handler = Callable[..., Coroutine[Any, Any, HTTPResponse | None]]


class Gateway(ReadRoutes):
    """State shared by the routes of one app: config, processd client, auth, limiter, metrics."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        # /metrics itself is not timed (it is not wrapped by endpoint()).
        self.metrics = GatewayMetrics(routes=tuple(route for route, _ in ROUTES if route != "metrics"))
        self.client = ProcessdClient(config.processd_target, config.grpc_timeout_ms / 1000, self.metrics.grpc_error)
        self.auth = ApiKeyAuth(config.api_keys)
        self.limiter = RateLimiter(config.rate_limit_rps, config.rate_limit_burst, config.rate_limit_max_keys)
        # Its own, much lower limit: failed keys are guesses or a misconfigured client, never traffic to serve.
        self.auth_failures = RateLimiter(config.auth_failure_limit_per_min / 60, config.auth_failure_burst,
                                         config.rate_limit_max_keys)
        self.metrics.ratelimit_evictions.set_function(lambda: self.limiter.evictions)
        self.flights: SingleFlight[bytes] = SingleFlight(config.cache_ttl_ms / 1000)
        self.render = RenderCache(on_error=self.metrics.render_error)
        # Several processd by chain (docs/gatewayd.md#several-processd-shards-by-chain); None = one processd.
        self.shards: ShardSet | None = None
        self.sharded: ShardedReads | None = None
        if config.processd_shards:
            self.shards = ShardSet(config.processd_shards, config.grpc_timeout_ms / 1000, self.metrics)
            self.sharded = ShardedReads(self.shards, self.render, self.metrics)
            self.client = self.shards.shards[0].client
        self.health_flights: SingleFlight[str] = SingleFlight(ttl_s=0.25)
        self._snapshot_ttl_s = config.snapshot_cache_ttl_ms / 1000
        self.connguard = ConnectionGuard(self.metrics, config.max_connections_per_address, config.header_timeout_s)
        self.streamer = EventStreamer(
            self.client, self.metrics, config.sse_max_clients, config.sse_heartbeat_s, self.render
        )
        self.sharded_streams = ShardedStreams(self.shards, self.streamer) if self.shards is not None else None
        self.started_at = time.time()
        # The document says what this gateway does: security and 401 only with API keys, 429 only with a limit.
        doc = build_openapi(auth=self.auth.enabled, rate_limit=self.limiter.enabled,
                            auth_failure_limit=self.auth.enabled and self.auth_failures.enabled,
                            sharded=self.shards is not None)
        self.openapi_body = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
        self.docs_html = render_docs_html(doc)
        # Parsed query strings by (route, raw query): clients repeat the same few queries, so parsing is skipped
        # on the hot path. Bounded; only successful parses are kept (values are never mutated by handlers).
        self._parsed: dict[tuple[str, str], dict[str, Any]] = {}
        self._cors_all = "*" in config.cors_origins
        self._cors_origins = frozenset(config.cors_origins)

    # -- cross-cutting ------------------------------------------------------------------------------------

    def cors_headers(self, request: Request) -> dict[str, str] | None:
        """CORS response headers for an allowed Origin, else None (CORS is off by default)."""
        if not self._cors_origins:
            return None
        origin = request.headers.get("origin")
        if not origin:
            return None
        if self._cors_all:
            return {"access-control-allow-origin": "*", "access-control-expose-headers": "retry-after"}
        if origin in self._cors_origins:
            return {
                "access-control-allow-origin": origin,
                "access-control-expose-headers": "retry-after",
                "vary": "origin",
            }
        return None

    def preflight(self, request: Request) -> HTTPResponse:
        """Answer to a CORS preflight (OPTIONS) request."""
        headers = self.cors_headers(request)
        if headers is None:
            return json_response(error_body("cors_origin_denied", "origin not allowed"), 403)
        headers.update(
            {
                "access-control-allow-methods": "GET, OPTIONS",
                "access-control-allow-headers": "x-api-key, authorization, last-event-id, cache-control",
                "access-control-max-age": "600",
            }
        )
        return HTTPResponse(b"", status=204, headers=headers)

    def error_response(
        self, status: int, code: str, message: str, param: str | None = None, **headers: str
    ) -> HTTPResponse:
        """Counts and renders one error answer."""
        self.metrics.error(code)
        return HTTPResponse(error_body(code, message, param), status=status, headers=headers or None, content_type=JSON)

    def upstream_error_response(self, exc: UpstreamError) -> HTTPResponse:
        """The answer to a failed processd call (a 503 says when to retry; a shard's names the shard)."""
        self.metrics.error(exc.code)
        headers = {"retry-after": "1"} if exc.status == 503 else None
        return HTTPResponse(error_body(exc.code, exc.message, None, exc.details), status=exc.status, headers=headers,
                            content_type=JSON)

    def auth_failed(self, request: Request, exc: AuthError) -> HTTPResponse:
        """401, or 429 once a client address keeps failing: failed attempts spend tokens of a per-address
        bucket (``auth_failure_limit_per_min``, ``auth_failure_burst``), and while that bucket is empty every
        request of the address is refused before its key is compared (:meth:`endpoint`), so keys cannot be
        guessed at line rate."""
        if self.auth_failures.enabled:
            try:
                self.auth_failures.acquire(request.ip)
            except RateLimited as limited:
                return self.error_response(
                    429, limited.code, limited.message, **{"retry-after": str(limited.retry_after_s)}
                )
        return self.error_response(401, exc.code, exc.message, **{"www-authenticate": "Bearer"})

    def endpoint(self, route: str, handler: Handler, *, public: bool = False) -> Handler:
        """Wraps ``handler(request, params, **path_args)`` with auth, rate limit, params, errors and metrics."""
        specs: dict[str, ParamSpec] = route_params(self.shards is not None)[route]
        defaults = {name: spec.default for name, spec in specs.items()}
        auth = self.auth
        limiter = self.limiter
        metrics = self.metrics
        cors = bool(self._cors_origins)
        parsed = self._parsed
        auth_failures = self.auth_failures
        guard_auth = auth.enabled and auth_failures.enabled

        async def wrapped(request: Request, **path_args: Any) -> HTTPResponse | None:
            t0 = time.perf_counter()
            response: HTTPResponse | None
            try:
                if cors and request.method == "OPTIONS":
                    response = self.preflight(request)
                else:
                    if not public:
                        if guard_auth:
                            # An address whose failed attempts emptied its bucket is refused BEFORE its key is
                            # compared: otherwise a right guess would still get a 200 while guessing runs at line
                            # rate (only the failures were ever throttled).
                            auth_failures.check(request.ip)
                        key = auth.authenticate(request.headers)
                        if limiter.enabled:
                            limiter.acquire(key if key is not None else f"ip:{request.ip}")
                    query = request.query_string
                    if query:
                        cached = parsed.get((route, query))
                        if cached is None:
                            cached = parse_params(request.get_args(keep_blank_values=True), specs)
                            if len(parsed) >= PARSED_QUERY_CACHE:
                                parsed.clear()
                            parsed[(route, query)] = cached
                        params = cached
                    else:
                        params = defaults
                    response = await handler(request, params, **path_args)
            except ParamError as exc:
                response = self.error_response(400, exc.code, exc.message, exc.param)
            except AuthError as exc:
                response = self.auth_failed(request, exc)
            except RateLimited as exc:
                response = self.error_response(429, exc.code, exc.message, **{"retry-after": str(exc.retry_after_s)})
            except UpstreamError as exc:
                response = self.upstream_error_response(exc)
            if response is None:  # streamed (SSE): counted, but its lifetime is no request latency
                metrics.count(route, 200)
                return None
            if cors:
                extra_headers = self.cors_headers(request)
                if extra_headers:
                    response.headers.update(extra_headers)
            metrics.observe(route, response.status, time.perf_counter() - t0)
            return response

        wrapped.__name__ = f"route_{route}"
        return wrapped

    # -- the gateway's own routes (the read routes are ReadRoutes') ----------------------------------------

    async def healthz(self, request: Request, p: dict[str, Any]) -> HTTPResponse:
        if self.shards is not None:
            return await self._healthz_shards()
        # Unauthenticated, so a flood of probes must not become a flood of gRPC calls: shared and cached briefly.
        status = await self.health_flights.run("processd", self.client.health)
        ok = status == "serving"
        body = {
            "status": "ok" if ok else "degraded",
            "gateway": {"status": "ok", "uptime_s": int(time.time() - self.started_at)},
            "processd": {"target": self.config.processd_target, "status": status},
        }
        return json_response(body, 200 if ok else 503)

    async def _healthz_shards(self) -> HTTPResponse:
        """Per shard: status, chains configured and held, last error. 200 only when every shard is up and holds
        no chain configured elsewhere; else 503 (the gateway still answers the chains of the live shards)."""
        assert self.shards is not None
        shards = await self.health_flights.run("shards", self.shards.check)  # type: ignore[arg-type]
        ok = all(s["up"] and not s["unexpected_chains"] for s in shards)  # type: ignore[index]
        body = {
            "status": "ok" if ok else "degraded",
            "gateway": {"status": "ok", "uptime_s": int(time.time() - self.started_at)},
            "processd": {"target": self.config.processd_target, "status": "serving" if ok else "degraded"},
            "shards": shards,
        }
        return json_response(body, 200 if ok else 503)

    async def metrics_route(self, request: Request) -> HTTPResponse:
        body = self.metrics.render(self._refresh_gauges)
        return HTTPResponse(body, status=200, content_type=CONTENT_TYPE_LATEST)

    def _refresh_gauges(self) -> None:
        self.metrics.ratelimit_keys.set(len(self.limiter))
        self.metrics.connections.set(self.connguard.open_connections)
        self.metrics.auth_failure_addresses.set(len(self.auth_failures))
        shared, hits = self.flights.shared, self.flights.hits
        self.flights.shared = self.flights.hits = 0
        self.metrics.coalesced.inc(shared)
        self.metrics.cache_hits.inc(hits)
        self.metrics.render_cache_bytes.set(self.render.bytes)
        self.metrics.render_cache_entries.set(len(self.render))

    async def openapi(self, request: Request, p: dict[str, Any]) -> HTTPResponse:
        return json_response(self.openapi_body)

    async def docs(self, request: Request, p: dict[str, Any]) -> HTTPResponse:
        return HTTPResponse(self.docs_html, status=200, content_type="text/html; charset=utf-8")

    # -- errors raised by Sanic itself (no route, 405, body/header too large, timeouts) ---------------------

    def sanic_error(self, request: Request, exc: Exception) -> HTTPResponse:
        if isinstance(exc, SanicException):
            status = int(exc.status_code or 500)
            message = str(exc) or "error"
            if status == 413 and "header" in message.lower():
                return self.error_response(
                    431, "header_too_large", f"request headers exceed {self.config.max_header_bytes} bytes"
                )
            codes = {
                400: "bad_request",
                404: "route_not_found",
                405: "method_not_allowed",
                408: "request_timeout",
                413: "payload_too_large",
                503: "service_unavailable",
            }
            code = codes.get(status, "http_error")
            if status == 404:
                message = f"no route {request.path!r}; see /openapi.json"
            elif status == 413:
                message = f"request exceeds {self.config.max_request_bytes} bytes"
            if status >= 500:
                log.warning("request %s failed: %s", request.path, message)
            # A 405 must name the allowed methods (RFC 9110 15.5.6): Sanic puts them in the exception's Allow.
            allow = {"allow": exc.headers["Allow"]} if status == 405 and "Allow" in (exc.headers or {}) else {}
            return self.error_response(status, code, message, **allow)
        log.error("unhandled error on %s", request.path, exc_info=exc)
        return self.error_response(500, "internal_error", "internal error")


#: (route name, URI, methods) of every route; the OpenAPI document is tested against this table.
ROUTES: tuple[tuple[str, str], ...] = (
    ("healthz", "/healthz"),
    ("metrics", "/metrics"),
    ("openapi", "/openapi.json"),
    ("docs", "/docs"),
    ("snapshot", "/dashboard/snapshot"),
    ("transactions", "/transactions"),
    ("transactions_all", "/transactions/all"),
    ("transaction", "/transactions/<tx_hash:str>"),
    ("features_recent", "/features/recent"),
    ("opps_recent", "/opps/recent"),
    ("blocks_recent", "/blocks/recent"),
    ("events", "/events"),
    ("events_stream", "/events/stream"),
)
_PUBLIC = frozenset({"healthz", "metrics"})


def create_app(config: GatewayConfig, name: str | None = None) -> Sanic:
    """Builds the gatewayd Sanic app for ``config``. The gRPC channel opens when the server starts."""
    # configure_logging=False: logging is set up once, in __main__ (Sanic would add its own handlers).
    app = Sanic(name or f"gatewayd_{next(_app_ids)}", dumps=orjson.dumps, configure_logging=False)
    app.config.update(
        {
            "AUTO_EXTEND": False,  # no sanic-ext: OpenAPI is hand-written, and its middleware costs throughput
            "MOTD": False,
            "ACCESS_LOG": config.access_log,
            "REQUEST_MAX_SIZE": config.max_request_bytes,
            "REQUEST_MAX_HEADER_SIZE": config.max_header_bytes,
            "REQUEST_TIMEOUT": 15,
            # A handler running longer is cut; SSE streams stay alive because every heartbeat resets the clock.
            "RESPONSE_TIMEOUT": max(30, int(config.sse_heartbeat_s * 2) + 1),
            "KEEP_ALIVE_TIMEOUT": 30,
            # Requests are bounded by the gRPC deadline and streams end at shutdown: no need to wait 15 s.
            "GRACEFUL_SHUTDOWN_TIMEOUT": 5.0,
            "FALLBACK_ERROR_FORMAT": "json",
            "NOISY_EXCEPTIONS": False,
        }
    )
    gw = Gateway(config)
    app.ctx.gateway = gw
    methods = ["GET", "OPTIONS"] if config.cors_origins else ["GET"]
    for route, uri in ROUTES:
        if route == "metrics":
            app.add_route(gw.metrics_route, uri, methods=["GET"], name=route)
            continue
        handler = getattr(gw, route)
        app.add_route(gw.endpoint(route, handler, public=route in _PUBLIC), uri, methods=methods, name=route)
    app.error_handler.add(Exception, gw.sanic_error)

    async def start_client(_app: Sanic) -> None:
        if gw.shards is not None:
            await gw.shards.start()  # opens every shard's channel and checks the chains each holds
        else:
            await gw.client.start()

    async def end_streams(_app: Sanic) -> None:
        await gw.streamer.close()
        if gw.sharded_streams is not None:
            await gw.sharded_streams.close()

    async def stop_client(_app: Sanic) -> None:
        if gw.shards is not None:
            await gw.shards.stop()
        await gw.client.stop()

    app.register_listener(start_client, "before_server_start")
    # Streams end before Sanic's graceful shutdown starts waiting for open connections.
    app.register_listener(end_streams, "before_server_stop")
    app.register_listener(stop_client, "after_server_stop")
    return app
