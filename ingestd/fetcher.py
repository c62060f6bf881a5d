"""Batch fetching of pending transactions: JSON-RPC batches of ``eth_getTransactionByHash`` over pooled HTTP
(and of ``eth_getRawTransactionByHash``, the signed bytes, through the same requests path: :data:`RAW_METHOD`).
Requests go over :mod:`ingestd.rpchttp`'s kept-alive connections (httpx cost ~1 ms of CPU per request, issue 20),
or through httpx for an endpoint behind a proxy from the environment and when a client is passed in.

Responses are matched by ``id`` (nodes may reorder batch items). A per-chain semaphore caps requests in
flight. Whole-request failures (transport errors, timeouts, HTTP 429/5xx, malformed bodies, a single error
object) and retriable per-item errors (-32005 limit exceeded, -32007 rate limited, -32603 internal) are
retried with jittered exponential backoff, rotating to fallback endpoints; the failing endpoint cools down
so later batches start elsewhere. ``null`` results mean the transaction is gone (mined or evicted); other
per-item errors fail only their item.

A response body is read as a stream and abandoned once it passes ``max_response_bytes`` (a node or proxy
answering 300 MB took ingestd to 743 MiB, issue 14): the request fails as ``response_too_large``, is retried
like other whole-request failures, and its hashes end as failed with that code if every attempt is too large.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from common.logthrottle import LogThrottle
from ingestd.config import redact_url
from ingestd.errors import IngestdError
from ingestd.rpchttp import BodyTooLargeError, RpcHttpPool, RpcTransportError, proxied

log = logging.getLogger(__name__)

RETRIABLE_RPC_CODES = frozenset({-32005, -32007, -32603})
TX_METHOD = "eth_getTransactionByHash"
#: The signed EIP-2718 bytes of a transaction by hash (geth, reth, erigon, nethermind, anvil): a 0x string.
RAW_METHOD = "eth_getRawTransactionByHash"
MAX_BACKOFF_S = 2.0
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
TOO_LARGE = "response_too_large"
_TOO_LARGE_LOG_INTERVAL_S = 5.0
#: Headers of every JSON-RPC POST to a node. identity: the body cap counts the bytes that arrive; a compressed
#: answer could inflate far past it inside one chunk before the count sees it.
RPC_HEADERS = {"content-type": "application/json", "accept-encoding": "identity"}


class ResponseTooLargeError(IngestdError):
    """A node's answer passed the byte cap and the rest was not read; the message says how it was seen."""


async def read_capped(resp: httpx.Response, cap: int) -> bytes:
    """``resp``'s body, read piece by piece; :class:`ResponseTooLargeError` as soon as it passes ``cap`` bytes
    (a declared content-length over the cap is refused unread). Leaving the stream context closes the
    connection, so the rest is never read."""
    declared = resp.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise ResponseTooLargeError(f"content-length {declared}")
    parts: list[bytes] = []
    size = 0
    async for chunk in resp.aiter_bytes():
        size += len(chunk)
        if size > cap:
            raise ResponseTooLargeError(f"more than {size} bytes")
        parts.append(chunk)
    return b"".join(parts)


class FetchError(IngestdError):
    """A whole batch request failed; ``code`` is a stable label (``timeout``, ``http_429``, ...)."""

    def __init__(self, code: str, detail: str = "", retriable: bool = True, retry_after_s: float | None = None):
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.retriable = retriable
        self.retry_after_s = retry_after_s


@dataclass
class FetchOutcome:
    """Per-hash result of one :meth:`BatchFetcher.fetch`: every requested hash is in exactly one list."""

    found: list[tuple[bytes, dict[str, Any]]] = field(default_factory=list)
    gone: list[bytes] = field(default_factory=list)
    failed: list[tuple[bytes, str]] = field(default_factory=list)
    attempts: int = 0


@dataclass
class _Endpoint:
    url: str
    label: str
    cooldown_until: float = 0.0
    #: Requests go over ingestd.rpchttp's kept-alive connections (else through the httpx client).
    direct: bool = False


ErrorHook = Callable[[str, str], None]  # (endpoint label, code)
LatencyHook = Callable[[str, float, int], None]  # (endpoint label, seconds, batch size)


class BatchFetcher:
    """Fetches transactions by hash from a primary endpoint and fallbacks. ``async with`` or ``aclose()``."""

    def __init__(self, urls: Sequence[str], *, max_in_flight: int = 8, timeout_s: float = 5.0, retries: int = 3,
                 backoff_s: float = 0.05, cooldown_s: float = 5.0, on_error: ErrorHook | None = None,
                 on_latency: LatencyHook | None = None, client: httpx.AsyncClient | None = None,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> None:
        if not urls:
            raise ValueError("at least one fetch endpoint is needed")
        self.endpoints = [_Endpoint(u, redact_url(u)) for u in urls]
        self.retries = retries
        self.backoff_s = backoff_s
        self.cooldown_s = cooldown_s
        self.max_in_flight = max_in_flight
        self.max_response_bytes = max_response_bytes
        # httpx's timeout bounds each phase (connect, every read), so a body dripped a few bytes at a time
        # would hold a fetch slot for ever; this deadline bounds the whole request, answer included.
        self.timeout_s = timeout_s
        # At most one line per endpoint per interval: a node that always answers too much would flood the log.
        self._too_large_log = LogThrottle(_TOO_LARGE_LOG_INTERVAL_S)
        self._sem = asyncio.Semaphore(max_in_flight)
        self._in_flight = 0
        self.peak_in_flight = 0
        self.requests = 0
        self._on_error = on_error or (lambda endpoint, code: None)
        self._on_latency = on_latency or (lambda endpoint, seconds, size: None)
        self._ids = itertools.count(1)
        self._own_client = client is None
        # Our own client's requests go over rpchttp (a tenth of httpx's CPU per request), except to endpoints the
        # environment sends through a proxy; an injected client (tests, embedders) gets every request.
        self._pool = RpcHttpPool(max_idle_per_url=max_in_flight * 2, connect_timeout_s=timeout_s)
        for ep in self.endpoints:
            ep.direct = self._own_client and not proxied(ep.url)
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=max_in_flight * 2, max_keepalive_connections=max_in_flight * 2),
            headers=RPC_HEADERS)

    @property
    def in_flight(self) -> int:
        """Requests currently in flight."""
        return self._in_flight

    async def aclose(self) -> None:
        await self._pool.aclose()
        if self._own_client:
            await self._client.aclose()

    async def __aenter__(self) -> BatchFetcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _pick(self, now: float) -> _Endpoint:
        """The first endpoint (primary first) not cooling down; else the one whose cooldown ends first."""
        for ep in self.endpoints:
            if ep.cooldown_until <= now:
                return ep
        return min(self.endpoints, key=lambda ep: ep.cooldown_until)

    async def fetch(self, hashes: Sequence[bytes], method: str = TX_METHOD) -> FetchOutcome:
        """Fetches ``hashes`` (one JSON-RPC batch per attempt); never raises for upstream faults.

        ``method`` is :data:`TX_METHOD` (found values are transaction objects) or :data:`RAW_METHOD` (found
        values are the ``0x`` hex strings of the signed bytes)."""
        outcome = FetchOutcome()
        pending: dict[bytes, str] = {h: "" for h in dict.fromkeys(hashes)}  # hash -> last error code
        attempt = 0
        while pending:
            outcome.attempts += 1
            endpoint = self._pick(time.monotonic())
            retry_after: float | None = None
            try:
                items = await self._request(endpoint, list(pending), method)
            except FetchError as exc:
                self._on_error(endpoint.label, exc.code)
                endpoint.cooldown_until = time.monotonic() + self.cooldown_s
                for h in pending:
                    pending[h] = exc.code
                retry_after = exc.retry_after_s
                log.debug("batch of %d to %s failed: %s", len(pending), endpoint.label, exc)
            else:
                cool = False
                for h, kind, value in items:
                    if kind == "tx":
                        outcome.found.append((h, value))
                        del pending[h]
                    elif kind == "null":
                        outcome.gone.append(h)
                        del pending[h]
                    else:  # per-item error: value is the code label
                        self._on_error(endpoint.label, value)
                        if kind == "error_retriable":
                            pending[h] = value
                            cool = True
                        else:
                            outcome.failed.append((h, value))
                            del pending[h]
                missing = [h for h, code in pending.items() if code == ""]
                if missing:
                    self._on_error(endpoint.label, "missing_item")
                    for h in missing:
                        pending[h] = "missing_item"
                if cool:
                    endpoint.cooldown_until = time.monotonic() + self.cooldown_s
            if not pending:
                break
            if attempt >= self.retries:
                outcome.failed.extend(pending.items())
                break
            attempt += 1
            for h in pending:
                pending[h] = ""
            delay = min(MAX_BACKOFF_S, self.backoff_s * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            if retry_after is not None:
                delay = max(delay, min(retry_after, MAX_BACKOFF_S))
            await asyncio.sleep(delay)
        return outcome

    async def call(self, method: str, params: list[Any]) -> Any:
        """One JSON-RPC call (not batched) with the fetcher's retries, backoff and endpoint rotation; its result
        (``None`` for a null result). Raises :class:`FetchError` once every attempt failed: ``code`` is the last
        failure's label (``http_429``, ``timeout``, a JSON-RPC error code such as ``-32601``, ...); a JSON-RPC
        error that is not retriable (method not found, invalid params) is raised at once, not retried."""
        body = orjson.dumps({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params})
        attempt = 0
        while True:
            endpoint = self._pick(time.monotonic())
            try:
                content = await self._post(endpoint, body, 1)
                return _single_result(content)
            except FetchError as exc:
                self._on_error(endpoint.label, exc.code)
                if not exc.retriable or attempt >= self.retries:
                    raise
                endpoint.cooldown_until = time.monotonic() + self.cooldown_s
                attempt += 1
                delay = min(MAX_BACKOFF_S, self.backoff_s * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
                if exc.retry_after_s is not None:
                    delay = max(delay, min(exc.retry_after_s, MAX_BACKOFF_S))
                await asyncio.sleep(delay)

    async def call_batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """One JSON-RPC batch of ``calls``, one attempt on the first usable endpoint: per call its result, or a
        :class:`FetchError` (a JSON-RPC error, or no answer for it). Raises :class:`FetchError` when the whole
        request failed (transport, status, a body that is not a JSON array). The caller retries later (the pool
        state path reads again at the next block) instead of waiting here."""
        if not calls:
            return []
        first = next(self._ids)
        for _ in range(len(calls) - 1):
            next(self._ids)
        body = orjson.dumps([{"jsonrpc": "2.0", "id": first + i, "method": m, "params": p}
                             for i, (m, p) in enumerate(calls)])
        endpoint = self._pick(time.monotonic())
        try:
            content = await self._post(endpoint, body, len(calls))
            doc = orjson.loads(content)
        except FetchError as exc:
            self._on_error(endpoint.label, exc.code)
            raise
        except orjson.JSONDecodeError:
            raise FetchError("malformed_response", f"{len(content)} bytes") from None
        if not isinstance(doc, list):
            raise FetchError("malformed_response", type(doc).__name__)
        out: list[Any] = [FetchError("missing_item")] * len(calls)
        for item in doc:
            index = item.get("id", -1) - first if isinstance(item, dict) and type(item.get("id")) is int else -1
            if 0 <= index < len(calls):
                err = item.get("error")
                out[index] = (FetchError(str(err.get("code") if isinstance(err, dict) else "bad_error"))
                              if err is not None else item.get("result"))
        return out

    async def _request(self, endpoint: _Endpoint, hashes: list[bytes], method: str = TX_METHOD) -> list[ItemResult]:
        """One batch request; returns (hash, kind, value) for every answered item (kind: tx, null, error_*)."""
        by_id: dict[int, bytes] = {}
        parts: list[bytes] = []
        for h in hashes:
            rid = next(self._ids)
            by_id[rid] = h
            # Hand-built request: cheaper than building dicts for orjson, and the shape is fixed.
            parts.append(b'{"jsonrpc":"2.0","id":%d,"method":"%s","params":["0x%s"]}'
                         % (rid, method.encode(), h.hex().encode()))
        body = b"[" + b",".join(parts) + b"]"
        content = await self._post(endpoint, body, len(hashes))
        return parse_batch_response(content, by_id, str if method == RAW_METHOD else dict)

    async def _post(self, endpoint: _Endpoint, body: bytes, size: int) -> bytes:
        """POSTs one request body under the in-flight cap and the whole-request deadline; the 200 answer's body,
        else FetchError (status, transport, timeout)."""
        async with self._sem:
            self._in_flight += 1
            self.requests += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self.timeout_s):
                    if endpoint.direct:
                        status, headers, content = await self._post_direct(endpoint, body, size)
                    else:
                        status, headers, content = await self._post_httpx(endpoint, body, size)
            except TimeoutError:
                raise FetchError("timeout", f"whole request over {self.timeout_s} s") from None
            except httpx.TimeoutException as exc:
                raise FetchError("timeout", str(exc)) from None
            except httpx.HTTPError as exc:
                raise FetchError("transport", type(exc).__name__) from None
            except RpcTransportError as exc:
                raise FetchError("transport", exc.code) from None
            finally:
                self._in_flight -= 1
            self._on_latency(endpoint.label, time.perf_counter() - started, size)
        if status != 200:
            retry_after = None
            if status == 429:
                try:
                    retry_after = float(headers.get("retry-after", ""))
                except ValueError:
                    retry_after = None
            raise FetchError(f"http_{status}", retriable=status in (408, 429) or status >= 500,
                             retry_after_s=retry_after)
        return content

    async def _post_httpx(self, endpoint: _Endpoint, body: bytes, batch: int) -> tuple[int, Mapping[str, str], bytes]:
        async with self._client.stream("POST", endpoint.url, content=body) as resp:
            # An error status's body is never read: only the status and headers matter.
            content = await self._read_capped(resp, endpoint, batch) if resp.status_code == 200 else b""
            return resp.status_code, resp.headers, content

    async def _post_direct(self, endpoint: _Endpoint, body: bytes, batch: int) -> tuple[int, Mapping[str, str], bytes]:
        try:
            return await self._pool.post(endpoint.url, body, self.max_response_bytes)
        except BodyTooLargeError as exc:
            self._log_too_large(endpoint, str(exc), batch)
            raise FetchError(TOO_LARGE, f"{exc}, cap {self.max_response_bytes} bytes") from None

    async def _read_capped(self, resp: httpx.Response, endpoint: _Endpoint, batch: int) -> bytes:
        """The body up to the cap; FetchError(response_too_large) as soon as it passes it."""
        try:
            return await read_capped(resp, self.max_response_bytes)
        except ResponseTooLargeError as exc:
            self._log_too_large(endpoint, str(exc), batch)
            raise FetchError(TOO_LARGE, f"{exc}, cap {self.max_response_bytes} bytes") from None

    def _log_too_large(self, endpoint: _Endpoint, what: str, batch: int) -> None:
        if self._too_large_log.allow(endpoint.label) is None:
            return
        log.warning("fetch_response_too_large endpoint=%s body=%s cap_bytes=%d hashes=%d: stopped reading; the "
                    "batch is retried (fallbacks first), then its hashes are dropped as %s", endpoint.label, what,
                    self.max_response_bytes, batch, TOO_LARGE)


ItemResult = tuple[bytes, str, Any]


def _single_result(content: bytes) -> Any:
    """The ``result`` of a single JSON-RPC answer; FetchError for a malformed body or an error object (retriable
    only for :data:`RETRIABLE_RPC_CODES`)."""
    try:
        doc = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise FetchError("malformed_response", f"{len(content)} bytes") from None
    if not isinstance(doc, dict):
        raise FetchError("malformed_response", type(doc).__name__)
    if "error" in doc:
        err = doc["error"]
        code = err.get("code") if isinstance(err, dict) else None
        if not isinstance(code, int) or isinstance(code, bool):
            raise FetchError("bad_error", "error object without an integer code")
        raise FetchError(str(code), str(err.get("message", ""))[:200], retriable=code in RETRIABLE_RPC_CODES)
    if "result" not in doc:
        raise FetchError("malformed_response", "neither result nor error")
    return doc["result"]


def parse_batch_response(content: bytes, by_id: dict[int, bytes], result_type: type = dict) -> list[ItemResult]:
    """Parses a JSON-RPC batch response of ``eth_getTransactionByHash``; ``by_id`` maps request ids to hashes
    (``result_type`` str: of ``eth_getRawTransactionByHash``, whose results are hex strings).

    Returns ``(hash, kind, value)`` for every answered item, matched by id (order is irrelevant): kind
    ``tx`` (value = the transaction object), ``null`` (gone), ``error_retriable`` / ``error`` (value = code
    label). Unknown, duplicated and non-integer ids are ignored; unanswered hashes are simply absent.
    Raises FetchError (retriable) when the body is not a JSON array.
    """
    by_id = dict(by_id)
    try:
        doc = orjson.loads(content)
    except orjson.JSONDecodeError:
        raise FetchError("malformed_response", f"{len(content)} bytes") from None
    if isinstance(doc, dict):  # one error object for the whole batch (rate limits look like this)
        err = doc.get("error")
        code = err.get("code") if isinstance(err, dict) else None
        raise FetchError(str(code) if isinstance(code, int) and not isinstance(code, bool) else "malformed_response",
                         "batch-level error")
    if not isinstance(doc, list):
        raise FetchError("malformed_response", type(doc).__name__)
    out: list[ItemResult] = []
    for item in doc:
        if not isinstance(item, dict):
            continue
        item_id = item.get("id")
        if not isinstance(item_id, int) or isinstance(item_id, bool) or item_id not in by_id:
            continue  # unknown or duplicated id: ignored; an unanswered hash stays pending
        h = by_id.pop(item_id)
        if "error" in item:
            err = item["error"]
            code = err.get("code") if isinstance(err, dict) else None
            label = str(code) if isinstance(code, int) and not isinstance(code, bool) else "bad_error"
            out.append((h, "error_retriable" if label.lstrip("-").isdigit() and int(label) in RETRIABLE_RPC_CODES
                        else "error", label))
        elif "result" in item:
            result = item["result"]
            if result is None:
                out.append((h, "null", None))
            elif isinstance(result, result_type):
                out.append((h, "tx", result))
            else:
                out.append((h, "error", "bad_result"))
        # neither result nor error: left out, so the caller keeps it pending (counted as missing_item)
    return out
