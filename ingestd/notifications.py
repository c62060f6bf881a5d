"""Typed parsing of WebSocket JSON-RPC messages of a ``newPendingTransactions`` subscription.

The raw frame bytes go straight to orjson; only the few fields a subscription message has are looked at,
and the transaction hash is kept as 32 raw bytes. Anything else raises :class:`NotificationError` with a
stable reason code, which the source counts (never a crash, never a silent drop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from ingestd.errors import IngestdError

HASH_HEX_LEN = 66  # "0x" + 64 hex digits

#: Every reason a source counts a rejected message under: the parser's (NotificationError) and the source's own
#: (ws_source: too_large, unknown_subscription, unexpected_reply). mempulse_ingestd_notifications_rejected_total
#: shows each at zero from start; tests/ingestd/test_units.py checks the list against the code.
REJECT_REASONS = ("malformed_json", "not_an_object", "unexpected_method", "bad_subscription_id", "bad_result",
                  "bad_error", "bad_request_id", "bad_hash", "unexpected_message", "too_large",
                  "unknown_subscription", "unexpected_reply")


class NotificationError(IngestdError, ValueError):
    """A message that is not a valid subscription message; ``reason`` is a stable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class SubscribeResult:
    """Reply to our ``eth_subscribe`` request: the subscription id the node assigned."""

    request_id: int | str
    subscription_id: str


@dataclass(frozen=True, slots=True)
class SubscribeFailure:
    """Error reply to our ``eth_subscribe`` request (e.g. the node does not support full transactions)."""

    request_id: int | str | None
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class PendingHash:
    """A pending transaction announced by hash."""

    subscription_id: str
    tx_hash: bytes


@dataclass(frozen=True, slots=True)
class PendingTx:
    """A pending transaction announced as a full transaction object (``["newPendingTransactions", true]``)."""

    subscription_id: str
    tx_hash: bytes
    tx: dict[str, Any]


Message = SubscribeResult | SubscribeFailure | PendingHash | PendingTx


def parse_hash(value: object) -> bytes:
    """32 raw bytes of a ``0x`` + 64 hex digits hash; raises NotificationError(bad_hash)."""
    if not isinstance(value, str) or len(value) != HASH_HEX_LEN or value[:2] not in ("0x", "0X"):
        raise NotificationError("bad_hash", repr(value)[:80])
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise NotificationError("bad_hash", repr(value)[:80]) from None


def parse_message(raw: bytes | str) -> Message:
    """Parses one WebSocket message of a pending-transaction subscription into a typed record."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise NotificationError("malformed_json", repr(raw[:80])) from None
    if not isinstance(doc, dict):
        raise NotificationError("not_an_object", type(doc).__name__)
    params = doc.get("params")
    if params is not None:
        if doc.get("method") != "eth_subscription" or not isinstance(params, dict):
            raise NotificationError("unexpected_method", str(doc.get("method"))[:80])
        sub_id = params.get("subscription")
        if not isinstance(sub_id, str) or not sub_id:
            raise NotificationError("bad_subscription_id", repr(sub_id)[:80])
        result = params.get("result")
        if isinstance(result, str):
            return PendingHash(sub_id, parse_hash(result))
        if isinstance(result, dict):
            return PendingTx(sub_id, parse_hash(result.get("hash")), result)
        raise NotificationError("bad_result", type(result).__name__)
    request_id = doc.get("id")
    if "error" in doc:
        err = doc["error"]
        if not isinstance(err, dict):
            raise NotificationError("bad_error", repr(err)[:80])
        code = err.get("code")
        return SubscribeFailure(request_id if isinstance(request_id, int | str) else None,
                                code if isinstance(code, int) else 0, str(err.get("message", ""))[:200])
    if "result" in doc:
        result = doc["result"]
        if not isinstance(request_id, int | str) or isinstance(request_id, bool):
            raise NotificationError("bad_request_id", repr(request_id)[:80])
        if not isinstance(result, str) or not result:
            raise NotificationError("bad_subscription_id", repr(result)[:80])
        return SubscribeResult(request_id, result)
    raise NotificationError("unexpected_message", repr(raw[:80]))


def subscribe_request(request_id: int, full_tx: bool) -> bytes:
    """The ``eth_subscribe`` request for pending transactions (full objects when ``full_tx``)."""
    params: list[object] = ["newPendingTransactions", True] if full_tx else ["newPendingTransactions"]
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": "eth_subscribe", "params": params})
