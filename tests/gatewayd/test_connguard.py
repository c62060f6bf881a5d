"""Pure tests of gatewayd.connguard: the log-safe rendering of request bytes and the per-address table."""

from __future__ import annotations

import logging

import pytest

from gatewayd.connguard import BAD_REQUEST_LOG_INTERVAL_S, ConnectionGuard, printable
from gatewayd.metrics import GatewayMetrics


def test_printable_escapes_every_control_byte_and_cuts() -> None:
    raw = b"GET /a\x00\x1b[31m\\b\r\n\x7f\xff HTTP/1.1"
    assert printable(raw) == "GET /a\\x00\\x1b[31m\\x5cb\\x0d\\x0a\\x7f\\xff HTTP/1.1"
    assert printable(b"x" * 200, 10) == "x" * 10 + "..."
    assert all(0x20 <= ord(c) < 0x7F for c in printable(bytes(range(256)), 256))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bad_requests_are_counted_each_and_logged_at_most_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    metrics = GatewayMetrics()
    guard = ConnectionGuard(metrics, max_per_address=0, header_timeout_s=10, clock=clock)
    with caplog.at_level(logging.WARNING, logger="gatewayd.connguard"):
        for _ in range(300):
            guard.bad_request("10.0.0.1", b"GET /\x00 HTTP/1.1\r\nhost: x\r\n\r\n", "Bad URL: /\x00")
        clock.now += BAD_REQUEST_LOG_INTERVAL_S
        guard.bad_request("10.0.0.1", b"GET /\x1b HTTP/1.1\r\n\r\n", "Bad URL")
    assert metrics.registry.get_sample_value("mempulse_gatewayd_bad_requests_total") == 301
    assert len(caplog.records) == 2
    assert "299 more since the last such line" in caplog.records[1].getMessage()
    assert all("\x00" not in r.getMessage() and "\x1b" not in r.getMessage() for r in caplog.records)


def test_connections_per_address_table() -> None:
    metrics = GatewayMetrics()
    guard = ConnectionGuard(metrics, max_per_address=2, header_timeout_s=10)
    assert guard.admit("a") and guard.admit("a") and not guard.admit("a")
    assert guard.admit("b")
    guard.release("a")
    assert guard.admit("a")
    for _ in range(2):
        guard.release("a")
    guard.release("b")
    assert guard.open_connections == 0 and not guard._open  # no entry left for closed addresses
    assert metrics.registry.get_sample_value("mempulse_gatewayd_connections_refused_total") == 1
    unlimited = ConnectionGuard(metrics, max_per_address=0, header_timeout_s=10)
    assert all(unlimited.admit("a") for _ in range(1000))
