"""One WebSocket ``newHeads`` subscription: the chain's new blocks as the node announces them.

It is a :class:`~ingestd.ws_source.WsSource` with its own connection (the same reconnect loop: exponential
backoff with full jitter, resubscribe after every reconnect, gaps counted) that subscribes to ``newHeads``
instead of pending transactions. Its own connection, so a pending-transaction flood never delays a head and a
head subscription refused by a node never costs the pending feed. The read loop only parses the header's
number and hash and calls the follower's synchronous, non-blocking :meth:`ingestd.blocks.BlockFollower.on_head`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
from websockets.asyncio.client import ClientConnection

from ingestd.blockmapping import head_number
from ingestd.config import Source
from ingestd.mapping import MappingError
from ingestd.metrics import SourceStats
from ingestd.notifications import (
    NotificationError,
    PendingHash,
    PendingTx,
    SubscribeFailure,
    parse_message,
)
from ingestd.ws_source import RejectHandler, SubscribeError, WsSource

#: on_head(source_id, number, block hash, seen unix ns); must not block.
HeadHandler = Callable[[str, int, bytes, int], None]


def heads_request(request_id: int) -> bytes:
    """The ``eth_subscribe`` request for new block headers."""
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": "eth_subscribe", "params": ["newHeads"]})


class HeadSource(WsSource):
    """Reads one ``newHeads`` subscription forever (until cancelled), reconnecting as :class:`WsSource` does."""

    def __init__(self, source: Source, chain_label: str, stats: SourceStats, on_head: HeadHandler,
                 on_reject: RejectHandler, **kwargs: float | int) -> None:
        super().__init__(source, chain_label, "off", stats, lambda *_: None, on_reject, **kwargs)  # type: ignore[arg-type]
        self._on_head = on_head

    async def _subscribe(self, ws: ClientConnection) -> None:
        request_id = self._next_id()
        await ws.send(heads_request(request_id), text=True)
        deadline = time.monotonic() + self.subscribe_timeout_s
        msg = await self._subscribe_answer(ws, request_id, deadline, "eth_subscribe newHeads")
        if isinstance(msg, SubscribeFailure):
            raise SubscribeError(f"eth_subscribe newHeads failed: {msg.code} {msg.message}")
        self.subscription_id = msg.subscription_id
        self.stats.connected = True
        self.stats.subscribed_since_mono = time.monotonic()

    async def _read(self, ws: ClientConnection) -> None:
        source_id = self.source.source_id
        while True:
            raw = await ws.recv(decode=False)
            seen_ns = time.time_ns()
            try:
                msg = parse_message(raw)  # a header is an object with a "hash": it parses as a PendingTx
            except NotificationError as exc:
                self._on_reject(source_id, exc.reason)
                continue
            if not isinstance(msg, PendingHash | PendingTx) or msg.subscription_id != self.subscription_id:
                self._on_reject(source_id, "unknown_subscription" if isinstance(msg, PendingHash | PendingTx)
                                else "unexpected_reply")
                continue
            if isinstance(msg, PendingHash):
                self._on_reject(source_id, "bad_result")
                continue
            try:
                number, block_hash = head_number(msg.tx)
            except MappingError:
                self._on_reject(source_id, "bad_header")
                continue
            self.stats.notifications += 1
            self._on_head(source_id, number, block_hash, seen_ns)
