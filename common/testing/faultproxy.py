"""Fault-injecting HTTP + WebSocket proxy in front of a real JSON-RPC node (anvil), for tests and benchmarks.

One TCP port serves both protocols, like a node: plain HTTP POSTs are JSON-RPC requests forwarded to the
upstream over a pooled client; ``Upgrade: websocket`` requests are bridged to the upstream's WebSocket (the
server -> client direction is parsed frame by frame so faults can be injected between messages).

Faults (all off by default, changeable at any time through :attr:`FaultProxy.faults`):

* ``latency_ms``: added round trip on every HTTP request and, split half/half, on WebSocket frames each way
  (a hosted provider's round trip; benchmarks use 30 ms).
* ``http_429_next`` / ``http_429_rate``: answer HTTP 429 (with ``Retry-After: 0``) without forwarding.
* ``rpc_error_next`` / ``rpc_error_rate``: answer every item with JSON-RPC error ``rpc_error_code``
  (default -32005, "limit exceeded") without forwarding.
* ``malformed_next`` / ``malformed_rate``: forward, then return a truncated (invalid JSON) body.
* ``slow_ms``: extra delay before answering (e.g. longer than the client's timeout).
* ``oversized_next`` / ``oversized_rate``: forward, then pad the answer with ``oversized_bytes`` of leading
  whitespace (still valid JSON, so only a size cap stops a client), written in 1 MiB pieces so the proxy holds
  no copy; with ``oversized_chunked`` the body is chunked, without ``content-length`` (a node need not send one).
  With ``drip_ms`` the padding goes out in 64-byte pieces, one every ``drip_ms``: a slow-drip answer whose every
  read arrives in time, so only a deadline on the whole request stops it.
* ``null_rate``: replace ``eth_getTransactionByHash`` results by ``null`` (transaction gone).
* ``reorder``: shuffle the items of batch responses (legal JSON-RPC, clients must match by id).
* ``partial_error_rate``: replace batch items by per-item errors (code ``rpc_error_code``).
* ``drop_item_rate``: remove batch items from the response entirely.
* ``ws_cut_every_s``: abort every WebSocket connection periodically; :meth:`FaultProxy.cut_ws` does it now.
* :meth:`FaultProxy.inject_ws` sends a raw text frame (e.g. malformed JSON) to every WebSocket client.

Request-level faults (429, rpc errors, malformed, slow) only hit requests that contain a method of
``fault_methods`` (default ``eth_getTransactionByHash``), so a traffic generator sending through the same
proxy is not disturbed. Counters of what was injected are in :attr:`FaultProxy.stats` (plus
``http_requests``, ``http_max_concurrent``, ``max_batch_items``, ``ws_connections``, ``ws_frames``).

Use it in a running event loop::

    async with FaultProxy("http://127.0.0.1:8545", faults=Faults(latency_ms=30)) as proxy:
        proxy.http_url, proxy.ws_url; proxy.faults.http_429_next = 3; await proxy.cut_ws()

or in a background thread (``with FaultProxyThread(upstream) as proxy: ...``), or as a process::

    python -m common.testing.faultproxy --upstream http://127.0.0.1:8545 --latency-ms 30 [--listen 127.0.0.1:0]
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

_MAX_HEAD_BYTES = 64 * 1024
_MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclass
class Faults:
    """What the proxy does to traffic; mutate fields at any time (each request reads them afresh)."""

    latency_ms: float = 0.0
    slow_ms: float = 0.0
    http_429_next: int = 0
    http_429_rate: float = 0.0
    rpc_error_next: int = 0
    rpc_error_rate: float = 0.0
    rpc_error_code: int = -32005
    malformed_next: int = 0
    malformed_rate: float = 0.0
    oversized_next: int = 0
    oversized_rate: float = 0.0
    oversized_bytes: int = 64 * 1024 * 1024
    oversized_chunked: bool = False
    drip_ms: float = 0.0
    null_rate: float = 0.0
    reorder: bool = False
    partial_error_rate: float = 0.0
    drop_item_rate: float = 0.0
    ws_cut_every_s: float = 0.0
    fault_methods: frozenset[str] = field(default_factory=lambda: frozenset({"eth_getTransactionByHash"}))


class FaultProxy:
    """The proxy (see the module docstring). ``start()``/``stop()`` or ``async with``."""

    def __init__(self, upstream_http: str, faults: Faults | None = None, host: str = "127.0.0.1", port: int = 0,
                 seed: int | None = None) -> None:
        self.upstream_http = upstream_http.rstrip("/")
        parts = urlsplit(self.upstream_http)
        self._up_host = parts.hostname or "127.0.0.1"
        self._up_port = parts.port or 80
        self.faults = faults or Faults()
        self.host = host
        self.port = port
        self.stats: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._client: httpx.AsyncClient | None = None
        self._ws_conns: set[_WsBridge] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._cutter: asyncio.Task[None] | None = None
        self._active_http = 0

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    async def start(self) -> FaultProxy:
        """Starts listening (on a free port when ``port`` is 0)."""
        if self._server is not None:
            return self
        self._client = httpx.AsyncClient(timeout=60.0, limits=httpx.Limits(max_connections=200,
                                                                             max_keepalive_connections=100))
        self._server = await asyncio.start_server(self._handle, self.host, self.port, limit=_MAX_HEAD_BYTES)
        self.port = self._server.sockets[0].getsockname()[1]
        self._cutter = asyncio.create_task(self._cut_loop())
        return self

    async def stop(self) -> None:
        """Stops listening and closes every connection. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        if self._cutter:
            self._cutter.cancel()
        for conn in list(self._ws_conns):
            conn.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2.0)
        if self._client:
            await self._client.aclose()

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def ws_connections(self) -> int:
        """Number of currently bridged WebSocket connections."""
        return len(self._ws_conns)

    async def cut_ws(self) -> int:
        """Aborts every WebSocket connection now (no close frame, like a network failure); returns how many."""
        conns = list(self._ws_conns)
        for conn in conns:
            conn.abort()
        self.stats["ws_cuts"] += len(conns)
        return len(conns)

    async def inject_ws(self, payload: bytes) -> int:
        """Sends ``payload`` as a text frame to every WebSocket client (between real messages)."""
        conns = list(self._ws_conns)
        for conn in conns:
            await conn.inject(payload)
        self.stats["ws_injected"] += len(conns)
        return len(conns)

    # -- internals ---------------------------------------------------------------------------------------

    async def _cut_loop(self) -> None:
        while True:
            every = self.faults.ws_cut_every_s
            await asyncio.sleep(every if every > 0 else 0.2)
            if self.faults.ws_cut_every_s > 0 and self._ws_conns:
                await self.cut_ws()

    def _take(self, next_attr: str, rate_attr: str) -> bool:
        remaining = getattr(self.faults, next_attr)
        if remaining > 0:
            setattr(self.faults, next_attr, remaining - 1)
            return True
        rate = getattr(self.faults, rate_attr)
        return rate > 0 and self._rng.random() < rate

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                _, headers = _parse_head(head)
                if headers.get("upgrade", "").lower() == "websocket":
                    await self._bridge_ws(head, reader, writer)
                    return
                length = int(headers.get("content-length", "0") or 0)
                if length > _MAX_BODY_BYTES:
                    return
                body = await reader.readexactly(length) if length else b""
                status, payload, extra, pad = await self._exchange(body)
                keep = headers.get("connection", "").lower() != "close"
                chunked = pad > 0 and self.faults.oversized_chunked
                framing = "transfer-encoding: chunked" if chunked else f"content-length: {pad + len(payload)}"
                lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", "content-type: application/json",
                         framing, *extra, "connection: keep-alive" if keep else "connection: close"]
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
                if pad:
                    await self._write_padding(writer, pad, chunked)
                writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload) if chunked else payload)
                await writer.drain()
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:
            # Top level of a connection handler, cancelled by stop(): finishing quietly avoids asyncio's
            # "exception in callback" noise for cancelled stream-handler tasks (Python 3.11).
            return
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    async def _write_padding(self, writer: asyncio.StreamWriter, pad: int, chunked: bool) -> None:
        """Writes ``pad`` bytes of spaces; ``stats["oversized_bytes_sent"]`` counts what the client took."""
        drip_s = self.faults.drip_ms / 1000
        piece = b" " * (64 if drip_s else 1 << 20)
        while pad > 0:
            data = piece[:pad]
            writer.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            await writer.drain()  # raises ConnectionError once the client stopped reading and closed
            if drip_s:
                await asyncio.sleep(drip_s)
            self.stats["oversized_bytes_sent"] += len(data)
            pad -= len(data)

    async def _exchange(self, body: bytes) -> tuple[int, bytes, list[str], int]:
        self._active_http += 1
        self.stats["http_max_concurrent"] = max(self.stats["http_max_concurrent"], self._active_http)
        try:
            return await self._exchange_inner(body)
        finally:
            self._active_http -= 1

    async def _exchange_inner(self, body: bytes) -> tuple[int, bytes, list[str], int]:
        f = self.faults
        self.stats["http_requests"] += 1
        if f.latency_ms > 0:
            await asyncio.sleep(f.latency_ms / 1000)
        try:
            request = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            request = None
        items = request if isinstance(request, list) else [request] if isinstance(request, dict) else []
        methods = {it.get("method") for it in items if isinstance(it, dict)}
        self.stats["max_batch_items"] = max(self.stats["max_batch_items"], len(items))
        targeted = bool(methods & f.fault_methods)
        if targeted and f.slow_ms > 0:
            self.stats["slow"] += 1
            await asyncio.sleep(f.slow_ms / 1000)
        if targeted and self._take("http_429_next", "http_429_rate"):
            self.stats["http_429"] += 1
            return 429, b'{"error":"too many requests"}', ["retry-after: 0"], 0
        if targeted and self._take("rpc_error_next", "rpc_error_rate"):
            self.stats["rpc_error"] += 1
            errors = [_error_item(it.get("id") if isinstance(it, dict) else None, f.rpc_error_code) for it in items]
            return 200, orjson.dumps(errors if isinstance(request, list) else errors[0]), [], 0
        assert self._client is not None
        try:
            resp = await self._client.post(self.upstream_http, content=body,
                                           headers={"content-type": "application/json"})
        except httpx.HTTPError:
            self.stats["upstream_errors"] += 1
            return 502, b'{"error":"upstream unreachable"}', [], 0
        payload = resp.content
        if targeted and self._take("malformed_next", "malformed_rate"):
            self.stats["malformed"] += 1
            return 200, payload[: max(1, len(payload) // 2)] + b"\x00garbage", [], 0
        if targeted and resp.status_code == 200:
            payload = self._mangle(payload)
        if targeted and self._take("oversized_next", "oversized_rate"):
            self.stats["oversized"] += 1
            return resp.status_code, payload, [], max(0, f.oversized_bytes - len(payload))
        return resp.status_code, payload, [], 0

    def _mangle(self, payload: bytes) -> bytes:
        f = self.faults
        if not (f.null_rate or f.reorder or f.partial_error_rate or f.drop_item_rate):
            return payload
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return payload
        batch = doc if isinstance(doc, list) else [doc]
        out: list[Any] = []
        for item in batch:
            if not isinstance(item, dict):
                out.append(item)
                continue
            if f.drop_item_rate and self._rng.random() < f.drop_item_rate and isinstance(doc, list):
                self.stats["items_dropped"] += 1
                continue
            if f.partial_error_rate and self._rng.random() < f.partial_error_rate:
                self.stats["items_errored"] += 1
                out.append(_error_item(item.get("id"), f.rpc_error_code))
                continue
            if f.null_rate and "result" in item and self._rng.random() < f.null_rate:
                self.stats["items_nulled"] += 1
                item = {**item, "result": None}
            out.append(item)
        if f.reorder and len(out) > 1:
            self._rng.shuffle(out)
            self.stats["batches_reordered"] += 1
        return orjson.dumps(out if isinstance(doc, list) else out[0] if out else doc)

    async def _bridge_ws(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self._up_host, self._up_port, limit=2**20)
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            return
        # No compression: frames must stay readable so faults can be injected between messages.
        lines = [ln for ln in head.decode("latin-1").split("\r\n")
                 if ln and not ln.lower().startswith("sec-websocket-extensions")]
        up_writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        bridge = _WsBridge(self, reader, writer, up_reader, up_writer)
        self._ws_conns.add(bridge)
        self.stats["ws_connections"] += 1
        try:
            await bridge.run()
        finally:
            self._ws_conns.discard(bridge)


class _WsBridge:
    """One bridged WebSocket connection: client bytes pass through; server frames are parsed and forwarded."""

    def __init__(self, proxy: FaultProxy, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter,
                 u_reader: asyncio.StreamReader, u_writer: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.c_reader, self.c_writer = c_reader, c_writer
        self.u_reader, self.u_writer = u_reader, u_writer
        self._lock = asyncio.Lock()  # one writer at a time towards the client, whole frames only

    def abort(self) -> None:
        for w in (self.c_writer, self.u_writer):
            with contextlib.suppress(Exception):
                w.transport.abort()

    async def inject(self, payload: bytes) -> None:
        async with self._lock:
            self.c_writer.write(_text_frame(payload))
            with contextlib.suppress(ConnectionError):
                await self.c_writer.drain()

    def _due(self) -> float:
        return time.monotonic() + self.proxy.faults.latency_ms / 2000

    async def _deliver(self, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter,
                       locked: bool) -> None:
        """Writes queued chunks in order, each once its due time has come: a constant added delay that
        pipelines (a 15 ms delay still lets thousands of frames per second through)."""
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if locked:
                async with self._lock:
                    writer.write(data)
                    await writer.drain()
            else:
                writer.write(data)
                await writer.drain()

    async def _client_to_upstream(self, queue: asyncio.Queue[tuple[float, bytes]]) -> None:
        while True:
            data = await self.c_reader.read(65536)
            if not data:
                return
            await queue.put((self._due(), data))

    async def _upstream_to_client(self, queue: asyncio.Queue[tuple[float, bytes]]) -> None:
        head = await self.u_reader.readuntil(b"\r\n\r\n")
        await queue.put((self._due(), head))
        while True:
            b01 = await self.u_reader.readexactly(2)
            length = b01[1] & 0x7F
            ext = b""
            if length == 126:
                ext = await self.u_reader.readexactly(2)
                length = int.from_bytes(ext, "big")
            elif length == 127:
                ext = await self.u_reader.readexactly(8)
                length = int.from_bytes(ext, "big")
            mask = await self.u_reader.readexactly(4) if b01[1] & 0x80 else b""
            payload = await self.u_reader.readexactly(length)
            await queue.put((self._due(), b01 + ext + mask + payload))  # whole frames: injection stays safe
            self.proxy.stats["ws_frames"] += 1

    async def run(self) -> None:
        # Bounded queues: a slow reader on one side back-pressures the other side instead of growing memory.
        up: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(maxsize=4096)
        down: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(maxsize=4096)
        tasks = [asyncio.create_task(self._client_to_upstream(up)), asyncio.create_task(self._upstream_to_client(down)),
                 asyncio.create_task(self._deliver(up, self.u_writer, False)),
                 asyncio.create_task(self._deliver(down, self.c_writer, True))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.abort()


def _text_frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        header = bytes([0x81, n])
    elif n < 65536:
        header = bytes([0x81, 126]) + n.to_bytes(2, "big")
    else:
        header = bytes([0x81, 127]) + n.to_bytes(8, "big")
    return header + payload


def _error_item(request_id: Any, code: int) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": "injected by faultproxy"}}


def _parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return lines[0], headers


_REASONS = {200: "OK", 429: "Too Many Requests", 502: "Bad Gateway", 500: "Internal Server Error"}


class FaultProxyThread:
    """Runs a :class:`FaultProxy` in its own event loop on a background thread (for sync code).

    ``faults`` can be mutated from the calling thread; :meth:`cut_ws` and :meth:`inject_ws` are thread-safe.
    """

    def __init__(self, upstream_http: str, faults: Faults | None = None, **kwargs: Any) -> None:
        self.proxy = FaultProxy(upstream_http, faults, **kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faultproxy", daemon=True)

    @property
    def faults(self) -> Faults:
        return self.proxy.faults

    @property
    def http_url(self) -> str:
        return self.proxy.http_url

    @property
    def ws_url(self) -> str:
        return self.proxy.ws_url

    def start(self) -> FaultProxyThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.proxy.start(), self._loop).result(10)
        return self

    def cut_ws(self) -> int:
        return asyncio.run_coroutine_threadsafe(self.proxy.cut_ws(), self._loop).result(10)

    def inject_ws(self, payload: bytes) -> int:
        return asyncio.run_coroutine_threadsafe(self.proxy.inject_ws(payload), self._loop).result(10)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.proxy.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> FaultProxyThread:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m common.testing.faultproxy --upstream URL [--listen HOST:PORT] [fault flags]``."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m common.testing.faultproxy",
                                     description="Fault-injecting HTTP+WebSocket JSON-RPC proxy (see module doc).")
    parser.add_argument("--upstream", required=True, help="upstream node http URL (ws is the same host:port)")
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to listen on (port 0 = free port)")
    parser.add_argument("--seed", type=int, default=None)
    defaults = Faults()
    for name, value in vars(defaults).items():
        if isinstance(value, bool):
            parser.add_argument("--" + name.replace("_", "-"), action="store_true")
        elif isinstance(value, int | float):
            parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    args = parser.parse_args(argv)
    faults = Faults(**{k: getattr(args, k) for k in vars(defaults) if k != "fault_methods"})
    host, _, port = args.listen.rpartition(":")

    async def run() -> None:
        proxy = FaultProxy(args.upstream, faults, host=host or "127.0.0.1", port=int(port), seed=args.seed)
        await proxy.start()
        print(f"faultproxy listening on {proxy.http_url} (ws {proxy.ws_url}) -> {proxy.upstream_http}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        started = time.monotonic()
        await stop.wait()
        await proxy.stop()
        print(f"faultproxy stopped after {time.monotonic() - started:.1f}s: {dict(proxy.stats)}", flush=True)

    asyncio.run(run())


if __name__ == "__main__":
    main()
