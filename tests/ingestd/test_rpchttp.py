"""ingestd.rpchttp, the fetcher's HTTP/1.1 client, against a scripted local HTTP server: every body framing, the
byte cap, kept-alive connections (reused, and re-opened when the server closed one while idle), basic auth and the
proxy rule. The fetcher's behaviour against a real node and the fault proxy is in test_fetcher.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from ingestd.rpchttp import BodyTooLargeError, RpcHttpPool, RpcTransportError, Target, proxied

Answer = Callable[[bytes], bytes]  # request head -> raw answer bytes


class Server:
    """Answers each request with ``answer(head)``; ``close_after`` closes every connection after one answer."""

    def __init__(self, answer: Answer, close_after: bool = False) -> None:
        self.answer = answer
        self.close_after = close_after
        self.heads: list[bytes] = []
        self.connections = 0
        self.url = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                await reader.readexactly(length)
                self.heads.append(head)
                writer.write(self.answer(head))
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., asyncio.Future[Server]]]:
    servers: list[asyncio.Server] = []

    async def start(answer: Answer, close_after: bool = False) -> Server:
        s = Server(answer, close_after)
        server = await asyncio.start_server(s.handle, "127.0.0.1", 0)
        servers.append(server)
        s.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/rpc?k=1"
        return s

    yield start  # type: ignore[misc]
    for server in servers:
        server.close()


def _fixed(body: bytes, extra: bytes = b"") -> Answer:
    return lambda head: b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def test_content_length_answers_reuse_one_connection(serve) -> None:
    server = await serve(_fixed(b'[{"id":1}]'))
    pool = RpcHttpPool()
    for _ in range(3):
        assert await pool.post(server.url, b"[]", 1000) == (200, {"content-length": "10"}, b'[{"id":1}]')
    assert server.connections == 1
    assert server.heads[0].startswith(b"POST /rpc?k=1 HTTP/1.1\r\n") and b"accept-encoding: identity" in server.heads[0]
    await pool.aclose()


async def test_chunked_and_connection_delimited_bodies(serve) -> None:
    chunked = await serve(lambda head: b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                                       b"4\r\n[1,2\r\n3;x=y\r\n,3]\r\n0\r\n\r\n")
    closed = await serve(lambda head: b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n[4]", close_after=True)
    pool = RpcHttpPool()
    assert (await pool.post(chunked.url, b"[]", 1000))[2] == b"[1,2,3]"
    assert (await pool.post(chunked.url, b"[]", 1000))[2] == b"[1,2,3]"
    assert chunked.connections == 1
    assert (await pool.post(closed.url, b"[]", 1000))[2] == b"[4]"
    assert (await pool.post(closed.url, b"[]", 1000))[2] == b"[4]"
    assert closed.connections == 2  # not kept: the server closes it
    await pool.aclose()


async def test_the_cap_stops_reading_whatever_the_framing(serve) -> None:
    declared = await serve(_fixed(b"x" * 5000))
    kib = b"400\r\n" + b"y" * 1024 + b"\r\n"
    answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + kib * 2 + b"0\r\n\r\n"
    chunked = await serve(lambda head: answer)
    pool = RpcHttpPool()
    with pytest.raises(BodyTooLargeError, match="content-length 5000"):
        await pool.post(declared.url, b"[]", 1500)
    with pytest.raises(BodyTooLargeError, match="more than 2048"):
        await pool.post(chunked.url, b"[]", 1500)
    await pool.aclose()


async def test_error_status_is_returned_unread_and_the_connection_dropped(serve) -> None:
    server = await serve(lambda head: b"HTTP/1.1 429 Too Many\r\nretry-after: 2\r\ncontent-length: 4\r\n\r\nslow")
    pool = RpcHttpPool()
    assert await pool.post(server.url, b"[]", 1000) == (429, {"retry-after": "2", "content-length": "4"}, b"")
    await pool.post(server.url, b"[]", 1000)
    assert server.connections == 2
    await pool.aclose()


async def test_a_connection_the_server_closed_while_idle_is_replaced(serve) -> None:
    # keep-alive announced, then closed by the server after each answer: the next request finds it dead
    server = await serve(_fixed(b"[]"), close_after=True)
    pool = RpcHttpPool()
    for _ in range(3):
        assert (await pool.post(server.url, b"[]", 1000))[0] == 200
    assert server.connections == 3
    await pool.aclose()


async def test_transport_failures_and_garbage_raise_transport_errors(serve) -> None:
    garbage = await serve(lambda head: b"SMTP ready\r\n\r\n")
    pool = RpcHttpPool(connect_timeout_s=2)
    with pytest.raises(RpcTransportError):
        await pool.post(garbage.url, b"[]", 1000)
    with pytest.raises(RpcTransportError):
        await pool.post("http://127.0.0.1:1/", b"[]", 1000)
    await pool.aclose()


def test_target_head_carries_host_path_and_basic_auth() -> None:
    target = Target.parse("https://user:p%40ss@node.example:8443/v2/KEY")
    assert (target.host, target.port, target.tls) == ("node.example", 8443, True)
    assert target.head_prefix.startswith(b"POST /v2/KEY HTTP/1.1\r\nhost: node.example:8443\r\n")
    assert b"authorization: Basic dXNlcjpwQHNz\r\n" in target.head_prefix  # user:p@ss
    assert Target.parse("http://h").head_prefix.startswith(b"POST / HTTP/1.1\r\nhost: h\r\n")
    with pytest.raises(ValueError):
        Target.parse("ws://h:1")


def test_proxied_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                 "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert not proxied("http://node.example:8545")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert proxied("https://node.example") and not proxied("http://node.example")
    monkeypatch.setenv("NO_PROXY", "node.example")
    assert not proxied("https://node.example")
