"""One WebSocket pending-transaction source: connect, subscribe, read, reconnect with backoff and jitter.

The read loop only parses and hands each message to a synchronous, non-blocking handler (the chain
worker's ``try_enqueue`` path), so a slow fetch or a slow processd can never stall the reader.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.frames import CloseCode

from ingestd.config import Source, redact_url
from ingestd.errors import IngestdError
from ingestd.metrics import SourceStats
from ingestd.notifications import (
    NotificationError,
    PendingHash,
    PendingTx,
    SubscribeFailure,
    SubscribeResult,
    parse_message,
    subscribe_request,
)

log = logging.getLogger(__name__)

#: handler(source_id, notification, first_seen_unix_ns); must not block.
NotificationHandler = Callable[[str, PendingHash | PendingTx, int], None]
#: rejected(source_id, reason); called for messages that are not a valid notification of our subscription.
RejectHandler = Callable[[str, str], None]


class SubscribeError(IngestdError):
    """The node refused or did not answer the subscription; retried with backoff."""

    retriable = True


def _too_big(exc: BaseException) -> bool:
    """True when the connection ended because the node sent a message over our ``max_size``."""
    return (isinstance(exc, websockets.ConnectionClosed) and exc.sent is not None
            and exc.sent.code == CloseCode.MESSAGE_TOO_BIG)


class WsSource:
    """Reads one ``newPendingTransactions`` subscription forever (until cancelled), reconnecting as needed."""

    def __init__(self, source: Source, chain_label: str, full_tx: str, stats: SourceStats,
                 on_notification: NotificationHandler, on_reject: RejectHandler, *,
                 max_message_bytes: int = 4 * 1024 * 1024, reconnect_min_s: float = 0.1,
                 reconnect_max_s: float = 10.0, subscribe_timeout_s: float = 10.0,
                 on_subscribed: Callable[[str, bool], None] | None = None) -> None:
        self.source = source
        self.chain_label = chain_label
        self.full_tx = full_tx
        self.stats = stats
        self._on_notification = on_notification
        self._on_reject = on_reject
        self._on_subscribed = on_subscribed or (lambda source_id, full: None)
        self.max_message_bytes = max_message_bytes
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.subscribe_timeout_s = subscribe_timeout_s
        self.subscription_id: str | None = None
        self._full_tx_refused = False
        self._request_ids = 0

    async def run(self) -> None:
        """Connects, subscribes and reads until cancelled; every failure leads to a jittered reconnect."""
        delay = self.reconnect_min_s
        lost_at: float | None = None  # when a live subscription was lost (a gap in what we saw)
        warned = False  # one warning per outage; repeated failures while down log at debug level
        while True:
            try:
                async with connect(self.source.url, max_size=self.max_message_bytes, compression=None,
                                   open_timeout=self.subscribe_timeout_s, ping_interval=20, ping_timeout=20,
                                   max_queue=256) as ws:
                    await self._subscribe(ws)
                    if lost_at is not None:
                        self.stats.gaps += 1
                        self.stats.gap_seconds += time.monotonic() - lost_at
                        log.info("source_resubscribed chain=%s source=%s gap_s=%.2f", self.chain_label,
                                 self.source.source_id, time.monotonic() - lost_at)
                        lost_at = None
                    delay = self.reconnect_min_s
                    warned = False
                    await self._read(ws)
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, websockets.WebSocketException, SubscribeError) as exc:
                if _too_big(exc):
                    # A frame over ws_max_message_bytes is never read (websockets closes with 1009): it is
                    # counted as one rejected message (a malformed drop), not lost silently.
                    self._on_reject(self.source.source_id, "too_large")
                    log.warning("source_message_too_large chain=%s source=%s max_bytes=%d: message not read, "
                                "counted as a malformed drop; reconnecting", self.chain_label,
                                self.source.source_id, self.max_message_bytes)
                log.log(logging.DEBUG if warned else logging.WARNING,
                        "source_disconnected chain=%s source=%s url=%s error=%s", self.chain_label,
                        self.source.source_id, redact_url(self.source.url), type(exc).__name__ + ": " + str(exc)[:200])
                warned = True
            finally:
                if self.stats.connected:
                    lost_at = time.monotonic()
                self.stats.connected = False
                self.subscription_id = None
            self.stats.reconnects += 1
            await asyncio.sleep(delay * (0.5 + random.random()))  # full jitter around the current step
            delay = min(self.reconnect_max_s, delay * 2)

    def _next_id(self) -> int:
        self._request_ids += 1
        return self._request_ids

    async def _subscribe(self, ws: ClientConnection) -> None:
        want_full = self.full_tx == "on" or (self.full_tx == "auto" and not self._full_tx_refused)
        request_id = self._next_id()
        await ws.send(subscribe_request(request_id, want_full), text=True)
        deadline = time.monotonic() + self.subscribe_timeout_s
        while True:
            msg = await self._subscribe_answer(ws, request_id, deadline, "eth_subscribe")
            if isinstance(msg, SubscribeResult):
                break
            if want_full and self.full_tx == "auto":
                log.info("source chain=%s source=%s refused full transactions (%s); using hashes",
                         self.chain_label, self.source.source_id, msg.message)
                self._full_tx_refused = True
                want_full = False
                request_id = self._next_id()
                await ws.send(subscribe_request(request_id, False), text=True)
                continue
            raise SubscribeError(f"eth_subscribe failed: {msg.code} {msg.message}")
        self.subscription_id = msg.subscription_id
        now = time.monotonic()
        self.stats.connected = True
        self.stats.silent = False
        self.stats.full_tx = want_full
        self.stats.subscribed_since_mono = now
        self._on_subscribed(self.source.source_id, want_full)

    async def _subscribe_answer(self, ws: ClientConnection, request_id: int, deadline: float,
                                what: str) -> SubscribeResult | SubscribeFailure:
        """The node's answer to subscription request ``request_id`` (``what`` names it in the timeout error):
        frames before it are counted as rejects. Raises SubscribeError once ``deadline`` (monotonic) passes."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SubscribeError(f"no answer to {what}")
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns the result when a cancel arrives just as
            # the frame does, swallowing the cancel, and the reconnect loop then never stops.
            async with asyncio.timeout(remaining):
                raw = await ws.recv(decode=False)
            try:
                msg = parse_message(raw)
            except NotificationError as exc:
                self._on_reject(self.source.source_id, exc.reason)
                continue
            if isinstance(msg, SubscribeResult) and msg.request_id == request_id:
                return msg
            if isinstance(msg, SubscribeFailure) and msg.request_id in (request_id, None):
                return msg
            self._on_reject(self.source.source_id, "unknown_subscription")

    async def _read(self, ws: ClientConnection) -> None:
        on_notification, on_reject = self._on_notification, self._on_reject
        source_id = self.source.source_id
        while True:
            raw = await ws.recv(decode=False)
            first_seen_ns = time.time_ns()
            try:
                msg = parse_message(raw)
            except NotificationError as exc:
                on_reject(source_id, exc.reason)
                continue
            if isinstance(msg, PendingHash | PendingTx):
                if msg.subscription_id != self.subscription_id:
                    on_reject(source_id, "unknown_subscription")
                    continue
                on_notification(source_id, msg, first_seen_ns)
            else:
                on_reject(source_id, "unexpected_reply")
