"""A minimal HTTP/1.1 keep-alive client for the batch fetcher's JSON-RPC POSTs.

httpx costs ingestd ~0.9-1.5 ms of CPU per request on the benchmark machine whatever the request holds, aiohttp (the
fastest well-kept asyncio client measured) ~0.2 ms; the same POST over a kept-alive asyncio stream costs ~0.06-0.07 ms
(the three side by side against one anvil, 1,500 kept-alive POSTs each, in one run). Issue 20: at light load the
fetcher sends a request every few transactions, and that fixed cost was most of ingestd's CPU with ``--full-tx
off``; with aiohttp mempulse would sit at the web3.py loop's CPU per transaction at 200 tx/s instead of under it.

The fetcher only ever POSTs a small JSON body to a node and reads one answer, so this speaks exactly that:
``http://`` and ``https://`` (TLS with the system's CA store), credentials in the URL as basic auth, answers with a
content-length, chunked or closed-delimited bodies, and a byte cap that stops reading
(:class:`ingestd.errors.IngestdError` subclasses below). Anything unexpected closes the connection and raises
:class:`RpcTransportError`; the fetcher retries.

Not handled, on purpose: redirects, compression (``accept-encoding: identity`` is sent), 1xx answers, HTTP/2.
Endpoints reached through an HTTP proxy from the environment (``HTTP(S)_PROXY``) keep using httpx
(:func:`proxied`), which honours them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from ingestd.errors import IngestdError

#: Longest status line + headers accepted (asyncio's StreamReader limit).
MAX_HEAD_BYTES = 64 * 1024


class RpcTransportError(IngestdError):
    """The request failed below HTTP (connect, TLS, reset, a malformed answer); ``code`` names the kind."""

    retriable = True

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class BodyTooLargeError(IngestdError):
    """The answer passed the byte cap; the message says how it was seen. The connection was closed."""


@dataclass(frozen=True)
class Target:
    """Where one URL's requests go and the fixed part of their head."""

    host: str
    port: int
    tls: bool
    head_prefix: bytes  # request line and headers up to (not including) content-length

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("not an http(s) URL")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        if ":" in parts.hostname:  # an IPv6 literal
            host_header = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port else "")
        lines = [f"POST {path} HTTP/1.1", f"host: {host_header}", "content-type: application/json",
                 "accept-encoding: identity", "user-agent: mempulse-ingestd"]
        if parts.username is not None:
            user = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            lines.append("authorization: Basic " + base64.b64encode(user).decode())
        return cls(parts.hostname, port, tls, ("\r\n".join(lines) + "\r\n").encode("latin-1"))


def proxied(url: str) -> bool:
    """True when the environment routes ``url`` through a proxy (then the fetcher keeps httpx for it)."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


@dataclass
class RpcHttpPool:
    """Kept-alive connections per URL; ``post()`` one body, get ``(status, headers, body)``. ``aclose()`` ends."""

    max_idle_per_url: int = 16
    connect_timeout_s: float = 5.0
    _idle: dict[str, list[_Conn]] = field(default_factory=dict)
    _targets: dict[str, Target] = field(default_factory=dict)
    _ssl: ssl.SSLContext | None = None

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    async def post(self, url: str, body: bytes, cap: int) -> tuple[int, dict[str, str], bytes]:
        """POSTs ``body``; the status, the headers (lower-case names) and, for a 200, the body (else b"").

        A kept-alive connection the server closed while idle fails before any answer byte: that request is sent
        once more on a new connection (JSON-RPC reads are safe to repeat)."""
        target = self._targets.get(url)
        if target is None:
            target = self._targets[url] = Target.parse(url)
        idle = self._idle.setdefault(url, [])
        while idle:
            conn = idle.pop()
            if conn.writer.is_closing() or conn.reader.at_eof():
                conn.close()
                continue
            try:
                return await self._exchange(url, conn, target, body, cap)
            except _StaleConnectionError:
                break
        return await self._exchange(url, await self._connect(target), target, body, cap, fresh=True)

    async def _connect(self, target: Target) -> _Conn:
        if target.tls and self._ssl is None:
            self._ssl = ssl.create_default_context()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                reader, writer = await asyncio.open_connection(
                    target.host, target.port, ssl=self._ssl if target.tls else None, limit=MAX_HEAD_BYTES)
        except TimeoutError:
            raise RpcTransportError("connect_timeout") from None
        except (OSError, ssl.SSLError) as exc:
            raise RpcTransportError(type(exc).__name__) from None
        return _Conn(reader, writer)

    async def _exchange(self, url: str, conn: _Conn, target: Target, body: bytes, cap: int,
                        fresh: bool = False) -> tuple[int, dict[str, str], bytes]:
        keep = False
        try:
            conn.writer.write(b"%scontent-length: %d\r\n\r\n%s" % (target.head_prefix, len(body), body))
            try:
                head = await conn.reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionResetError) as exc:
                if not fresh and not getattr(exc, "partial", b""):
                    raise _StaleConnectionError() from None
                raise
            status, headers = _parse_head(head)
            if status != 200:  # an error status's body is never read: only the status and headers matter
                return status, headers, b""
            content = await _read_body(conn.reader, headers, cap)
            keep = headers.get("connection", "").lower() != "close" and (
                "content-length" in headers or headers.get("transfer-encoding", "").lower() == "chunked")
            return status, headers, content
        except (_StaleConnectionError, BodyTooLargeError, RpcTransportError):
            raise
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError, ssl.SSLError, ValueError) as exc:
            raise RpcTransportError(type(exc).__name__) from None
        finally:
            # Kept only after a complete answer: a timeout, a cancel or an error leaves it half read.
            if keep and len(idle := self._idle.setdefault(url, [])) < self.max_idle_per_url:
                idle.append(conn)
            else:
                conn.close()


class _StaleConnectionError(IngestdError):
    """A reused connection was closed by the server before answering (internal: the request is sent again on a
    fresh connection)."""

    retriable = True


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError("not an HTTP/1.x answer")
    status = int(rest[:3])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError("malformed header line")
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str], cap: int) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts: list[bytes] = []
        size = 0
        while True:
            line = await reader.readuntil(b"\r\n")
            n = int(line.split(b";", 1)[0].strip(), 16)
            if n == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return b"".join(parts)
            size += n
            if size > cap:
                raise BodyTooLargeError(f"more than {size} bytes")
            parts.append(await reader.readexactly(n))
            await reader.readexactly(2)
    declared = headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ValueError("bad content-length")
        if int(declared) > cap:
            raise BodyTooLargeError(f"content-length {declared}")
        return await reader.readexactly(int(declared))
    # delimited by the end of the connection
    chunks: list[bytes] = []
    size = 0
    while chunk := await reader.read(65536):
        size += len(chunk)
        if size > cap:
            raise BodyTooLargeError(f"more than {size} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
