"""Cache of rendered JSON for immutable records (stored transactions, feature records).

A stored transaction never changes once committed (but for its list of sources, which only grows: its length
is part of the key), and the "newest" views overlap heavily from one request
to the next (the newest 25 move by a few transactions at a time), yet mapping one protobuf transaction to
JSON costs tens of microseconds (each field access allocates). So each record is rendered once and reused as
an ``orjson.Fragment`` inside later responses. Keys include the hash as well as the seq_id, so a processd
restarted on a fresh log (seq ids reused for other transactions) can never get a stale rendering served.

Bounded by total bytes (oldest entries out first).

Every record is rendered on its own guard (:func:`dumps_guarded`): a record that cannot be rendered (one that
breaks the protobuf contract) is counted, logged once and rendered as a marker with its identity and a
``render_error``, so it can never take a page, a catch-up or a stream down.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import orjson

from common.pb.v1 import events_pb2, query_pb2
from gatewayd.serializers import (
    EVENT_KIND_NAMES,
    OPPORTUNITY_KIND_NAMES,
    enum_name,
    event_json,
    feature_record_json,
    opportunity_json,
    stored_tx_json,
)

#: Renderings with the signed raw bytes (?include=raw), cached apart from those without.
_stored_tx_raw_json = functools.partial(stored_tx_json, include_raw=True)
_event_raw_json = functools.partial(event_json, include_raw=True)

log = logging.getLogger(__name__)

#: Default bound of the cache, bytes of rendered JSON.
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
#: What one entry costs beyond its JSON bytes: the key tuple with its hash bytes, the value tuple, the
#: Fragment, the bytes header and the dict slot (measured with tracemalloc: about 240 bytes).
_ENTRY_OVERHEAD_BYTES = 256
#: Records rendered between two yields to the event loop in :func:`render_yielding`.
RENDER_CHUNK = 200

T = TypeVar("T")
#: Record kinds as counted in ``mempulse_gatewayd_render_errors_total{record}``.
RECORD_KINDS = ("transaction", "feature", "event", "opportunity")
_ERROR_MESSAGE_CHARS = 200
#: Unrenderable records are logged on the first failure and then every this many (per record kind).
_LOG_EVERY = 1000
_FAILURES: dict[str, int] = {}


def _marker(record: str, msg: Any, exc: Exception) -> dict[str, Any]:
    """What stands in for a record that cannot be rendered: its identity (to find it, and so a cursor or an
    SSE Last-Event-ID moves past it) and the error."""
    out: dict[str, Any] = {}
    if record == "transaction":
        out = {"seq_id": msg.seq_id, "chain_id": msg.tx.chain_id, "hash": "0x" + msg.tx.hash.hex()}
    elif record == "feature":
        out = {"seq_id": msg.seq_id, "chain_id": msg.chain_id, "tx_hash": "0x" + msg.tx_hash.hex()}
    elif record == "event":
        out = {"seq_id": msg.seq_id, "chain_id": msg.chain_id, "kind": enum_name(EVENT_KIND_NAMES, msg.kind),
               "tx_hash": "0x" + msg.tx_hash.hex()}
    elif record == "opportunity":
        out = {"seq_id": msg.seq_id, "chain_id": msg.chain_id, "tx_hash": "0x" + msg.tx_hash.hex(),
               "kind": enum_name(OPPORTUNITY_KIND_NAMES, msg.kind)}
    out["render_error"] = {"code": "unrenderable_record", "message": f"{exc}"[:_ERROR_MESSAGE_CHARS]}
    return out


def dumps_guarded(record: str, msg: Any, render: Callable[[Any], dict[str, Any]],
                  on_error: Callable[[str], None] | None = None) -> bytes:
    """``orjson.dumps(render(msg))``, or the record's error marker (counted through ``on_error``) when rendering
    or encoding raises. Each record is encoded on its own, so what fails, fails on this record alone."""
    try:
        return orjson.dumps(render(msg))
    except Exception as exc:
        failures = _FAILURES[record] = _FAILURES.get(record, 0) + 1
        if failures == 1 or failures % _LOG_EVERY == 0:  # the metric counts them all; the log stays readable
            log.warning("cannot render %s seq_id %s (%d so far): %s", record, getattr(msg, "seq_id", "?"),
                        failures, exc)
        if on_error is not None:
            on_error(record)
        return orjson.dumps(_marker(record, msg, exc))


async def render_yielding(items: Any, render: Callable[[Any], T], chunk: int = RENDER_CHUNK) -> list[T]:
    """``[render(x) for x in items]``, yielding to the event loop every ``chunk`` records.

    A 5,000-transaction page takes tens of milliseconds to render; done in one go it would stall every other
    request on the loop for that long (a p99 spike for everyone), so big pages are rendered in slices.
    """
    out: list[T] = []
    for start in range(0, len(items), chunk):
        if start:
            await asyncio.sleep(0)
        out.extend(render(x) for x in items[start : start + chunk])
    return out


class RenderCache:
    """Rendered JSON of stored transactions and feature records, bounded by ``max_bytes``.

    ``on_error(record_kind)`` is called for every record that could not be rendered (see :func:`dumps_guarded`).
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, on_error: Callable[[str], None] | None = None) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.on_error = on_error
        # key -> (orjson.Fragment, or raw bytes for SSE frames; size in bytes)
        self._entries: dict[tuple[int, int, bytes], tuple[Any, int]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def _put(self, key: tuple[int, int, bytes], raw: bytes, fragment: bool = True) -> Any:
        self.misses += 1
        # orjson.dumps returns a bytes object whose allocation is its whole output buffer (about 8 KiB for a
        # 1 KiB document); kept as is, every cached record would cost ~10x what it is charged. Copy it to an
        # exact-size object before caching.
        raw = bytes(memoryview(raw))
        entries = self._entries
        size = len(raw) + _ENTRY_OVERHEAD_BYTES
        while entries and self.bytes + size > self.max_bytes:
            oldest = next(iter(entries))
            self.bytes -= entries.pop(oldest)[1]
        value = orjson.Fragment(raw) if fragment else raw
        if size <= self.max_bytes:
            entries[key] = (value, size)
            self.bytes += size
        return value

    def tx(self, stored: query_pb2.StoredTx, raw: bool = False) -> orjson.Fragment:
        """JSON of a stored transaction (see :func:`gatewayd.serializers.stored_tx_json`), with its raw bytes
        when ``raw``."""
        # Its sources grow as later ones are recorded (never shrink, at most a few): their count is in the key.
        key = (4 if raw else 0, stored.seq_id, stored.tx.hash + bytes((len(stored.sources) & 0xFF,)))
        entry = self._entries.get(key)
        if entry is not None:
            self.hits += 1
            return entry[0]
        return self._put(key, self._dumps("transaction", stored, _stored_tx_raw_json if raw else stored_tx_json))

    def tx_raw(self, stored: query_pb2.StoredTx) -> orjson.Fragment:
        """:meth:`tx` with the raw bytes."""
        return self.tx(stored, True)

    def feature(self, rec: query_pb2.FeatureRecord) -> orjson.Fragment:
        """JSON of a feature record (see :func:`gatewayd.serializers.feature_record_json`)."""
        key = (1, rec.seq_id, rec.tx_hash)
        entry = self._entries.get(key)
        if entry is not None:
            self.hits += 1
            return entry[0]
        return self._put(key, self._dumps("feature", rec, feature_record_json))

    def event(self, e: events_pb2.Event, raw: bool = False) -> orjson.Fragment:
        """JSON of an event-log record (see :func:`gatewayd.serializers.event_json`), a transaction's raw bytes
        included when ``raw``."""
        key = (5 if raw else 2, e.seq_id, e.tx_hash)
        entry = self._entries.get(key)
        if entry is not None:
            self.hits += 1
            return entry[0]
        return self._put(key, self._dumps("event", e, _event_raw_json if raw else event_json))

    def event_raw(self, e: events_pb2.Event) -> orjson.Fragment:
        """:meth:`event` with a transaction's raw bytes."""
        return self.event(e, True)

    def sse_frame(self, e: events_pb2.Event, raw: bool = False) -> bytes:
        """One Server-Sent Events message for an event: every stream client shares one rendering (one per
        ``raw``: with or without a transaction's raw bytes)."""
        key = (6 if raw else 3, e.seq_id, e.tx_hash)
        entry = self._entries.get(key)
        if entry is not None:
            self.hits += 1
            return bytes(entry[0])
        return bytes(self._put(key, sse_frame(e, self.on_error, raw), fragment=False))

    def opportunity(self, o: Any) -> orjson.Fragment:
        """JSON of an opportunity (not cached: opportunity views are small and their scores' order changes)."""
        return orjson.Fragment(dumps_guarded("opportunity", o, opportunity_json, self.on_error))

    def opportunities(self, items: Any) -> list[orjson.Fragment]:
        """Rendered opportunities of a repeated Opportunity field."""
        return [self.opportunity(o) for o in items]

    def _dumps(self, record: str, msg: Any, render: Callable[[Any], dict[str, Any]]) -> bytes:
        return dumps_guarded(record, msg, render, self.on_error)

    def txs(self, items: Any, raw: bool = False) -> list[orjson.Fragment]:
        """Rendered transactions of a repeated StoredTx field (with their raw bytes when ``raw``)."""
        return [self.tx(t, raw) for t in items]

    def features(self, items: Any) -> list[orjson.Fragment]:
        """Rendered feature records of a repeated FeatureRecord field."""
        return [self.feature(f) for f in items]


def sse_frame(e: events_pb2.Event, on_error: Callable[[str], None] | None = None, raw: bool = False) -> bytes:
    """One Server-Sent Events message for an event: ``id: <seq_id>``, ``event: <kind>``, ``data: <event JSON>``
    (an unrenderable event is sent as its marker, under its id, so the client's Last-Event-ID moves past it;
    a transaction's raw bytes are in it when ``raw``)."""
    kind = enum_name(EVENT_KIND_NAMES, e.kind).encode()
    data = dumps_guarded("event", e, _event_raw_json if raw else event_json, on_error)
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (e.seq_id, kind, data)
