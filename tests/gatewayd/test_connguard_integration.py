"""Connection-level defences of the real gatewayd (issue 14), over raw sockets: a deadline on request heads,
a cap of open connections per client address, and unparsable request lines answered 400 and logged as one
sanitised, rate-limited line. The knobs are given as environment variables so the same tests run (and fail)
against a gatewayd that does not know them."""

from __future__ import annotations

import socket
import time

import orjson
import pytest

pytestmark = pytest.mark.integration


def read_response(sock: socket.socket, timeout_s: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response (status, headers, body) read from ``sock``; status 0 if the server closed first."""
    sock.settimeout(timeout_s)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, {}, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def get(sock: socket.socket, path: str) -> tuple[int, dict[str, str], bytes]:
    sock.sendall(f"GET {path} HTTP/1.1\r\nhost: test\r\n\r\n".encode())
    return read_response(sock)


def metric(sock: socket.socket, name: str) -> float:
    status, _, body = get(sock, "/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"metric {name} missing")


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5.0)


def trickle(sock: socket.socket, start: bytes, limit_s: float = 6.0) -> tuple[float, bytes]:
    """Sends ``start``, then one header byte every 0.25 s until the server answers or closes (or ``limit_s``);
    returns how long that took and the last bytes received."""
    sock.sendall(start)
    sock.settimeout(0.25)
    t0 = time.monotonic()
    answer = b""
    while time.monotonic() - t0 < limit_s:
        try:
            answer = sock.recv(65536)
            if not answer.startswith(b"HTTP/1.1 200 "):  # a pipelined request's 200 is not the end
                break
        except TimeoutError:
            pass
        try:
            sock.sendall(b"a")
        except OSError:
            break  # closed under our feet
    return time.monotonic() - t0, answer


def test_slow_request_head_is_cut(processd_factory, gateway_factory) -> None:
    """A client sending one header byte every 0.25 s: Sanic's REQUEST_TIMEOUT restarts on every byte, so it
    was never cut (a 3 s trickle was still open after 45 s against REQUEST_TIMEOUT 15). With a 1 s
    header_timeout_s it gets 408 and is closed, also when the slow head follows a complete request in the same
    packet (pipelined); an idle kept-alive connection is not cut by it."""
    p = processd_factory()
    g = gateway_factory(p.addr, "--rate-limit-rps", "0", env={"MEMPULSE_GATEWAYD_HEADER_TIMEOUT_S": "1"})
    slow_head = b"GET /healthz HTTP/1.1\r\nhost: test\r\nx-slow: "
    with connect(g.port) as slow:
        took, answer = trickle(slow, slow_head)
        assert took < 6.0, "a connection trickling its head was not cut"
        assert answer.startswith(b"HTTP/1.1 408 ") or answer == b""
    with connect(g.port) as pipelined:
        took, answer = trickle(pipelined, b"GET /metrics HTTP/1.1\r\nhost: test\r\n\r\n" + slow_head)
        assert took < 6.0, "a pipelined trickling head was not cut"
        assert b"HTTP/1.1 408 " in answer or answer == b""
    with connect(g.port) as kept:
        assert get(kept, "/metrics")[0] == 200
        time.sleep(1.5)  # idle between requests longer than the head deadline: keep-alive rules apply
        assert get(kept, "/metrics")[0] == 200
        assert metric(kept, "mempulse_gatewayd_header_timeouts_total") == 2


def test_connections_per_address_are_capped(processd_factory, gateway_factory) -> None:
    """No cap existed: one address could hold every connection. With 4 allowed, the 5th is answered 503
    too_many_connections with Retry-After at accept and closed; a freed slot is usable again."""
    p = processd_factory()
    g = gateway_factory(p.addr, "--rate-limit-rps", "0", env={"MEMPULSE_GATEWAYD_MAX_CONNECTIONS_PER_ADDRESS": "4"})
    held = [connect(g.port) for _ in range(4)]
    try:
        for sock in held:
            assert get(sock, "/metrics")[0] == 200  # accepted and served
        with connect(g.port) as extra:
            status, headers, body = read_response(extra, timeout_s=3.0)  # nothing sent: answered at accept
            assert status == 503, "a 5th connection from the same address was accepted"
            assert headers["retry-after"] == "1" and headers["connection"] == "close"
            assert orjson.loads(body)["error"]["code"] == "too_many_connections"
            extra.settimeout(3.0)
            assert extra.recv(100) == b"", "the refused connection is closed"
        assert metric(held[0], "mempulse_gatewayd_connections_refused_total") == 1
        assert metric(held[0], "mempulse_gatewayd_connections") == 4
        held.pop().close()
        deadline = time.monotonic() + 10
        while True:  # the slot is released once the server has seen the close
            with connect(g.port) as again:
                status = get(again, "/metrics")[0]
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert status == 200
    finally:
        for sock in held:
            sock.close()


def test_bad_request_lines_get_400_and_one_sanitised_log_line(processd_factory, gateway_factory) -> None:
    """A raw NUL (with terminal escapes) in the request line made Sanic log a 43-line traceback per request,
    raw bytes included, and close without an answer: 300 requests -> 12,900 log lines. Now each gets a 400,
    is counted, and the log has at most one sanitised line per 10 s."""
    p = processd_factory()
    g = gateway_factory(p.addr, "--rate-limit-rps", "0")
    for i in range(300):
        with connect(g.port) as sock:
            sock.sendall(b"GET /tx\x00\x1b[2J\x1b[31m%d HTTP/1.1\r\nhost: test\r\n\r\n" % i)
            status, _, body = read_response(sock)
            assert status == 400, f"request {i}: no 400 answer"
            assert orjson.loads(body)["error"]["code"] == "bad_request"
    with connect(g.port) as sock:
        assert metric(sock, "mempulse_gatewayd_bad_requests_total") == 300
        # Still serving normally.
        assert get(sock, "/metrics")[0] == 200
    log = g.proc.output()
    assert "Traceback" not in log
    assert "\x00" not in log and "\x1b" not in log, "raw control bytes reached the log"
    lines = [line for line in log.splitlines() if "bad request from" in line]
    assert 1 <= len(lines) <= 2, lines
    assert "\\x00\\x1b[2J" in lines[0]
