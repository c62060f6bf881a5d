"""Connection-level defences of gatewayd: a per-address connection cap, a deadline on request heads, and one
sanitised, rate-limited log line for unparsable requests.

Sanic has none of these. Its ``REQUEST_TIMEOUT`` is measured from the last byte received (every
``data_received`` resets the clock), so a client sending one header byte every 3 s is never cut; it has no
limit of connections per client address; and a raw NUL in the request line makes it build its error request
from the same bad URL, which raises again and is logged as ``protocol.connection_task uncaught`` with a full
traceback carrying the raw bytes (terminal escapes included) and no answer to the client.

Why a protocol subclass: the connection is the unit here. ``connection_made`` is the accept (the only place a
connection can be refused before Sanic spends a task on it), ``data_received`` sees the first byte of each
request, and the ``Http`` object it creates parses the head. Sanic signals (``http.lifecycle.begin``) run
inside the connection task, after the accept, and cannot refuse or time anything; middleware runs only once
the head is parsed. :class:`GuardedHttpProtocol` is passed to ``app.run`` / ``app.prepare`` (``protocol=``)
by ``gatewayd.__main__``; its state lives in the app's :class:`ConnectionGuard`.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import orjson
from sanic.exceptions import BadRequest, RequestTimeout
from sanic.http import Http, Stage
from sanic.server.protocols.http_protocol import HttpProtocol

from common.logthrottle import LogThrottle
from gatewayd.metrics import GatewayMetrics

log = logging.getLogger(__name__)

#: At most one "bad request" line per this many seconds (each line says how many were not logged).
BAD_REQUEST_LOG_INTERVAL_S = 10.0
#: Longest request-line excerpt logged.
BAD_REQUEST_LOG_CHARS = 120
#: A refused connection is kept open this long at most, reading and discarding, so the client can read the 503.
REFUSED_LINGER_S = 1.0

_UNSAFE_URL_CHARS = re.compile(r"[\x00-\x20\x7f]")
_REFUSAL_BODY = orjson.dumps(
    {
        "error": {
            "code": "too_many_connections",
            "message": "too many open connections from this address; close some or retry later",
        }
    }
)
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
    b"retry-after: 1\r\nconnection: close\r\n\r\n%s" % (len(_REFUSAL_BODY), _REFUSAL_BODY)
)


def printable(raw: bytes, limit: int = BAD_REQUEST_LOG_CHARS) -> str:
    """``raw`` cut to ``limit`` bytes with every byte outside printable ASCII as ``\\xNN``: safe for a log line
    and a terminal (no NUL, no escape sequence, no line break)."""
    cut = raw[:limit]
    text = "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in cut)
    return text + ("..." if len(raw) > limit else "")


class ConnectionGuard:
    """Per-app state of the connection defences (one per Sanic worker, like the rate limiter)."""

    def __init__(
        self,
        metrics: GatewayMetrics,
        max_per_address: int,
        header_timeout_s: float,
        clock: Any = time.monotonic,
    ) -> None:
        self.metrics = metrics
        #: 0 = no per-address cap.
        self.max_per_address = max_per_address
        self.header_timeout_s = header_timeout_s
        self._open: dict[str, int] = {}
        self.open_connections = 0
        self._bad_log = LogThrottle(BAD_REQUEST_LOG_INTERVAL_S, clock)

    def admit(self, address: str) -> bool:
        """Counts a new connection from ``address``, or returns False (counted as refused) when it already
        has ``max_per_address`` open."""
        n = self._open.get(address, 0)
        if self.max_per_address and n >= self.max_per_address:
            self.metrics.connections_refused.inc()
            self.metrics.error("too_many_connections")
            return False
        self._open[address] = n + 1
        self.open_connections += 1
        return True

    def release(self, address: str) -> None:
        """Forgets one closed connection of ``address`` (the table holds only addresses with open ones)."""
        n = self._open.get(address, 0) - 1
        if n > 0:
            self._open[address] = n
        else:
            self._open.pop(address, None)
        self.open_connections -= 1

    def header_timeout(self) -> None:
        """Counts one connection cut because its request head did not arrive in time."""
        self.metrics.header_timeouts.inc()

    def bad_request(self, address: str, head: bytes, reason: str) -> None:
        """Counts one unparsable request and logs it as one sanitised line, at most once per
        ``BAD_REQUEST_LOG_INTERVAL_S`` (a flood of them must not become a flood of log lines)."""
        self.metrics.bad_requests.inc()
        unlogged = self._bad_log.allow()
        if unlogged is None:
            return
        line = head.split(b"\r\n", 1)[0]
        log.warning(
            "bad request from %s (%s): %s%s",
            address,
            printable(reason.encode("utf-8", "backslashreplace"), 40),
            printable(line),
            f"; {unlogged} more since the last such line" if unlogged else "",
        )


class GuardedHttp(Http):
    """Sanic's HTTP/1.1 handler with a safe path for unparsable request heads."""

    __slots__ = ()

    async def http1_request_header(self) -> None:
        protocol: Any = self.protocol  # a GuardedHttpProtocol: it made this object (HTTP_CLASS)
        try:
            await super().http1_request_header()
        except BadRequest as exc:
            head = bytes(self.recv_buffer[:1024])
            protocol.guard.bad_request(protocol.peer_address, head, str(exc))
            # Sanic builds the request it answers the error with from this URL; left raw (a NUL, a space) that
            # raises again, out of its error path: a traceback per request and no answer. Percent-encode it.
            if self.url:
                self.url = _UNSAFE_URL_CHARS.sub(lambda m: f"%{ord(m.group()):02X}", self.url)
            raise
        # No await from here to Sanic's switch to the HANDLER stage: no byte of this request is timed after it.
        protocol.head_complete()


class GuardedHttpProtocol(HttpProtocol):
    """Sanic's HTTP protocol with the per-address cap at accept and a deadline on each request head.

    The deadline runs from the accept (first request) or from the first byte of a later request on a kept-alive
    connection, to the end of its head; the idle time between requests stays under ``KEEP_ALIVE_TIMEOUT``.
    """

    # Sanic's metaclass gives every subclass empty __slots__: the new attributes must be declared.
    __slots__ = ("_admitted", "_head_t0", "_head_timer", "guard", "peer_address")
    HTTP_CLASS = GuardedHttp

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard: ConnectionGuard = self.app.ctx.gateway.connguard
        self.peer_address = ""
        self._admitted = False
        #: When the request head being received started (None: no head is being timed).
        self._head_t0: float | None = None
        self._head_timer: Any = None

    def connection_made(self, transport: Any) -> None:
        peer = transport.get_extra_info("peername")
        self.peer_address = str(peer[0]) if peer else ""
        if not self.guard.admit(self.peer_address):
            # Refused at accept, before Sanic starts a task for it: a canned 503, then our side of the connection
            # is shut down while whatever the client sent is read and dropped, so its kernel sees no reset before
            # it has read the answer. A second timer ends it for clients that never close.
            self.transport = transport
            transport.write(REFUSAL)
            if transport.can_write_eof():
                transport.write_eof()
                self.loop.call_later(REFUSED_LINGER_S, transport.abort)
            else:
                transport.close()
            return
        self._admitted = True
        super().connection_made(transport)
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        if not self._admitted:
            return  # a refused connection: dropped
        if self._head_t0 is None:
            http = getattr(self, "_http", None)  # set by the connection task, which may not have run yet
            # Bytes of a request head (IDLE: a new request; REQUEST: a pipelined one already buffered): time it.
            # Bytes in the HANDLER / RESPONSE stages are a body, not a head.
            if http is None or http.stage in (Stage.IDLE, Stage.REQUEST):
                self._arm_head_deadline()
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._admitted:
            return
        self._admitted = False
        self.guard.release(self.peer_address)
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def head_complete(self) -> None:
        """The request head being timed has been parsed (called by :class:`GuardedHttp`)."""
        self._head_t0 = None

    def _arm_head_deadline(self) -> None:
        self._head_t0 = self.loop.time()
        if self._head_timer is None:
            self._head_timer = self.loop.call_at(self._head_t0 + self.guard.header_timeout_s, self._check_head)

    def _check_head(self) -> None:
        self._head_timer = None
        if self._head_t0 is None or not self._admitted or self._task is None:
            return
        http = getattr(self, "_http", None)  # set by the connection task, which may not have run yet
        stage = http.stage if http is not None else Stage.IDLE
        if stage not in (Stage.IDLE, Stage.REQUEST):  # not a head being received (cannot be armed then)
            self._head_t0 = None
            return
        due = self._head_t0 + self.guard.header_timeout_s
        if self.loop.time() < due:  # re-armed since this timer was set
            self._head_timer = self.loop.call_at(due, self._check_head)
            return
        self.guard.header_timeout()
        log.debug(
            "request head from %s not complete after %.1f s: closing", self.peer_address, self.guard.header_timeout_s
        )
        if http is not None and stage is Stage.REQUEST:
            # Sanic's own timeout path: the cancelled task answers 408 (request_timeout) and closes.
            http.exception = RequestTimeout("Request header timeout")
        self._task.cancel()
