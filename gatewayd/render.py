"""Cache of rendered JSON for immutable records (stored transactions, feature records).

A stored transaction never changes once committed, and the "newest" views overlap heavily from one request
to the next (the newest 25 move by a few transactions at a time), yet mapping one protobuf transaction to
JSON costs tens of microseconds (each field access allocates). So each record is rendered once and reused as
an ``orjson.Fragment`` inside later responses. Keys include the hash as well as the seq_id, so a processd
restarted on a fresh log (seq ids reused for other transactions) can never get a stale rendering served.

Bounded by total bytes (oldest entries out first).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import orjson

from common.pb.v1 import events_pb2, query_pb2
from gatewayd.serializers import event_json, feature_record_json, stored_tx_json

#: Default bound of the cache, bytes of rendered JSON.
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
#: What one entry costs beyond its JSON bytes: the key tuple with its hash bytes, the value tuple, the
#: Fragment, the bytes header and the dict slot (measured with tracemalloc: about 240 bytes).
_ENTRY_OVERHEAD_BYTES = 256
#: Records rendered between two yields to the event loop in :func:`render_yielding`.
RENDER_CHUNK = 200

T = TypeVar("T")


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
    """Rendered JSON of stored transactions and feature records, bounded by ``max_bytes``."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
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

    def tx(self, stored: query_pb2.StoredTx) -> orjson.Fragment:
        """JSON of a stored transaction (see :func:`gatewayd.serializers.stored_tx_json`)."""
        key = (0, stored.seq_id, stored.tx.hash)
        entry = self._entries.get(key)
        if entry is not None:
            self.hits += 1
            return entry[0]
        return self._put(key, orjson.dumps(stored_tx_json(stored)))

    def feature(self, rec: query_pb2.FeatureRecord) -> orjson.Fragment:
        """JSON of a feature record (see :func:`gatewayd.serializers.feature_record_json`)."""
        key = (1, rec.seq_id, rec.tx_hash)
        entry = self._entries.get(key)
        if entry is not None:
            self.hits += 1
            return entry[0]
        return self._put(key, orjson.dumps(feature_record_json(rec)))

    def event(self, e: events_pb2.Event) -> orjson.Fragment:
        """JSON of an event-log record (see :func:`gatewayd.serializers.event_json`)."""
        key = (2, e.seq_id, e.tx_hash)
        entry = self._entries.get(key)
        if entry is not None:
            self.hits += 1
            return entry[0]
        return self._put(key, orjson.dumps(event_json(e)))

    def sse_frame(self, e: events_pb2.Event) -> bytes:
        """One Server-Sent Events message for an event: every stream client shares one rendering."""
        key = (3, e.seq_id, e.tx_hash)
        entry = self._entries.get(key)
        if entry is not None:
            self.hits += 1
            return bytes(entry[0])
        doc = event_json(e)
        frame = b"id: %d\nevent: %s\ndata: %s\n\n" % (e.seq_id, doc["kind"].encode(), orjson.dumps(doc))
        return bytes(self._put(key, frame, fragment=False))

    def txs(self, items: Any) -> list[orjson.Fragment]:
        """Rendered transactions of a repeated StoredTx field."""
        return [self.tx(t) for t in items]

    def features(self, items: Any) -> list[orjson.Fragment]:
        """Rendered feature records of a repeated FeatureRecord field."""
        return [self.feature(f) for f in items]
