"""The LMDB event log's read paths: point reads of a transaction (its events, later sources, lifecycle, raw
values) and the paged scans (by seq, by chain, by kind) that the queries, the read models and the export use.

The environment (lock, open, schema check, close, read transactions) is :mod:`processd.storage.logenv`'s,
:class:`EventLog`'s base. The layout (databases, keys, value framing) is defined in ``processd.storage.layout``;
every write of it is in ``processd.storage.logwrite`` (hash claims, events and index entries, sightings,
retention, counters, ``last_seq``), used by the single writer (``processd.storage.writer``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import lmdb

from common.pb.v1 import events_pb2
from processd.storage.layout import (
    AGG_CHAIN,
    AGG_COMMITTED_NS,
    AGG_DECODED,
    AGG_FEATURE,
    AGG_HIGH_WATER,
    AGG_OPPS,
    AGG_RETAINED_TX,
    AGG_SOURCE,
    AGG_SOURCE_LATER,
    AGG_SOURCE_WINS,
    AGG_TX,
    CHAIN_SEQ,
    DB_NAMES,
    KIND_DECODED,
    KIND_OPP,
    KIND_SEEN,
    KIND_SOURCE,
    LATER_DB_NAMES,
    LIFE_SEQ,
    META_LAST_SEQ,
    META_SCHEMA,
    SCHEMA_VERSION,
    TX_KEY_HASH_BYTES,
    U32,
    U64,
    agg_chain_key,
    agg_feature_key,
    agg_source_key,
    chain_seq_key,
    decode_event,
    seq_key,
    tx_key,
)
from processd.storage.logenv import DAMAGE_ERRORS, LOCK_FILE, LogEnvironment, StorageError, lock_data_dir

# The layout's and the environment's names are re-exported: a reader of the log imports what it needs from this
# module alone.
__all__ = [
    "AGG_CHAIN", "AGG_COMMITTED_NS", "AGG_DECODED", "AGG_FEATURE", "AGG_HIGH_WATER", "AGG_OPPS", "AGG_RETAINED_TX",
    "AGG_SOURCE", "AGG_SOURCE_LATER", "AGG_SOURCE_WINS", "AGG_TX", "CHAIN_SEQ", "DAMAGE_ERRORS", "DB_NAMES",
    "EVENT_OVERHEAD_BYTES", "KIND_DECODED", "KIND_OPP", "KIND_SEEN", "KIND_SOURCE", "LATER_DB_NAMES", "LOCK_FILE",
    "META_LAST_SEQ", "META_SCHEMA", "SCHEMA_VERSION", "TX_KEY_HASH_BYTES", "U32", "U64", "EventLog", "ScanStats",
    "StorageError", "agg_chain_key", "agg_feature_key", "agg_source_key", "chain_seq_key", "decode_event",
    "lock_data_dir", "seq_key", "tx_key",
]
_T = TypeVar("_T")


@dataclass(slots=True)
class ScanStats:
    """Work done by one scan, counted for tests (cursor steps and point reads, never seconds), and whether the
    scan stopped at its byte budget."""

    cursor_steps: int = 0
    point_reads: int = 0
    #: Upper bound of the encoded size of the events returned (see :data:`EVENT_OVERHEAD_BYTES`).
    page_bytes: int = 0
    #: True when the page ended because the next event would have passed ``max_bytes``.
    truncated: bool = False


#: What one event adds to a response beyond its stored value (kind byte + Event without seq_id): the seq_id
#: field (at most 11 bytes) and the repeated field's tag and length (at most 6). A stored value's length plus
#: this bounds the event's share of a ScanEvents / SubscribeEvents message, and a TX_SEEN's StoredTx (seq_id,
#: envelope, received time) is smaller than its Event.
EVENT_OVERHEAD_BYTES = 24


class EventLog(LogEnvironment):
    """The event log: its environment (:class:`~processd.storage.logenv.LogEnvironment`) and every read of it.
    Reads are synchronous and short; the writer thread uses :attr:`env` directly."""

    # ---- reads -------------------------------------------------------------------------------------------

    def scan_page(self, from_seq: int, limit: int, **filters: Any) -> tuple[list[events_pb2.Event], int, bool, int]:
        """:meth:`scan` in its own read transaction (see :meth:`read`), plus the last committed seq that
        transaction saw: ``(events, next_seq, more, last_seq)``."""
        return self.scan_page_as(decode_event, from_seq, limit, **filters)

    def scan_page_as(self, build: Callable[[Any, int], _T], from_seq: int, limit: int,
                     **filters: Any) -> tuple[list[_T], int, bool, int]:
        """:meth:`scan_page` with each event given as ``build(value, seq)`` of its stored value instead of a
        decoded Event (ScanEvents frames the stored bytes as they are: no decode and re-encode per event)."""
        def page(txn: lmdb.Transaction) -> tuple[list[_T], int, bool, int]:
            return (*self.scan_as(build, txn, from_seq, limit, **filters), self.txn_last_seq(txn))

        return self.read(page)

    def find_tx(self, txn: lmdb.Transaction, chain_id: int, tx_hash: bytes) -> list[events_pb2.Event]:
        """A stored transaction's events (:meth:`tx_events`), or none (also when only the key's hash prefix
        matches: the full hash is checked on the TX_SEEN event, decoded once)."""
        raw = txn.get(tx_key(chain_id, tx_hash), db=self.tx_db)
        if raw is None:
            return []
        events = self.tx_events(txn, U64.unpack(raw)[0])
        return events if events and events[0].tx_hash == tx_hash else []

    def tx_sources(self, txn: lmdb.Transaction, chain_id: int, tx_hash: bytes) -> list[tuple[str, int]]:
        """(source id, first-seen unix ns) of the later sources of a stored transaction, earliest first."""
        prefix = tx_key(chain_id, tx_hash)
        cur = txn.cursor(db=self.sources_db)
        out: list[tuple[str, int]] = []
        positioned = cur.set_range(prefix)
        while positioned:
            key = cur.key()
            if key[:len(prefix)] != prefix:
                break
            out.append((bytes(key[len(prefix):]).decode("utf-8", "replace"), U64.unpack(cur.value())[0]))
            positioned = cur.next()
        out.sort(key=lambda item: (item[1], item[0]))
        return out

    def tx_life(self, txn: lmdb.Transaction, chain_id: int, tx_hash: bytes, tx_seq: int) -> list[events_pb2.Event]:
        """The lifecycle events about the transaction whose TX_SEEN is at ``tx_seq``, oldest first: its
        ``tx_life_seq`` entries, and those a log written before that index holds in ``tx_life`` (by its hash; the
        full hash is checked)."""
        seqs: list[int] = []
        cur = txn.cursor(db=self.life_seq_db)
        head = U64.pack(tx_seq)
        positioned = cur.set_range(head)
        while positioned:
            key = cur.key()
            if key[:8] != head:
                break
            seqs.append(LIFE_SEQ.unpack(key)[1])
            positioned = cur.next()
        prefix = tx_key(chain_id, tx_hash)
        cur = txn.cursor(db=self.life_db)
        positioned = cur.set_range(prefix)
        old = []
        while positioned:
            key = cur.key()
            if key[:len(prefix)] != prefix:
                break
            old.append(U64.unpack(key[len(prefix):])[0])
            positioned = cur.next()
        out: list[events_pb2.Event] = []
        for seq in sorted(old) + seqs if old else seqs:  # (the old index's events precede the new one's)
            value = txn.get(seq_key(seq), db=self.events_db)
            if value is not None:
                event = decode_event(value, seq)
                if event.tx_hash == tx_hash:
                    out.append(event)
        return out

    def values_from(self, txn: lmdb.Transaction, first_seq: int) -> Iterator[tuple[int, bytes | memoryview]]:
        """(seq, value) of every event from ``first_seq`` on, in seq order (values valid while ``txn`` is open)."""
        cur = txn.cursor(db=self.events_db)
        positioned = cur.set_range(seq_key(first_seq))
        while positioned:
            yield U64.unpack(cur.key())[0], cur.value()
            positioned = cur.next()

    def raw_range(self, first_seq: int, last_seq: int) -> list[tuple[int, int, int, bytes]]:
        """(seq, chain_id, kind, value) of events ``first_seq..last_seq`` (a short read transaction)."""
        out: list[tuple[int, int, int, bytes]] = []
        with self._require().begin() as txn:
            cur = txn.cursor(db=self.events_db)
            positioned = cur.set_range(seq_key(first_seq))
            while positioned:
                seq = U64.unpack(cur.key())[0]
                if seq > last_seq:
                    break
                value = cur.value()
                out.append((seq, decode_event(value, seq).chain_id, value[0], value))
                positioned = cur.next()
        return out

    def tx_values(self, txn: lmdb.Transaction, seq: int) -> tuple[int, list[bytes]]:
        """The stored values of the transaction holding the event at ``seq`` (TX_SEEN first, then its TX_DECODED
        and OPP_DETECTED), without parsing, and the seq of its TX_SEEN; ``(0, [])`` for a sighting or a seq not
        stored. A transaction's events are consecutive: at most a few steps back to its TX_SEEN."""
        cur = txn.cursor(db=self.events_db)
        if not cur.set_key(seq_key(seq)):
            return 0, []
        while cur.value()[0] in (KIND_DECODED, KIND_OPP):
            if not cur.prev():
                return 0, []
        if cur.value()[0] != KIND_SEEN:
            return 0, []
        first = U64.unpack(cur.key())[0]
        values = [bytes(cur.value())]
        while cur.next() and cur.value()[0] in (KIND_DECODED, KIND_OPP):
            values.append(bytes(cur.value()))
        return first, values

    def tx_values_by_hash(self, chain_id: int, tx_hash: bytes) -> tuple[int, list[bytes]]:
        """:meth:`tx_values` of a transaction by its ``tx_hash`` index key (a short read transaction); the
        caller checks the full hash (the key holds its first 16 bytes)."""
        def read(txn: lmdb.Transaction) -> tuple[int, list[bytes]]:
            raw = txn.get(tx_key(chain_id, tx_hash), db=self.tx_db)
            return self.tx_values(txn, U64.unpack(raw)[0]) if raw is not None else (0, [])

        return self.read(read)

    def tx_events(self, txn: lmdb.Transaction, seq: int) -> list[events_pb2.Event]:
        """The TX_SEEN event at ``seq`` and the TX_DECODED / OPP_DETECTED events that follow it."""
        cur = txn.cursor(db=self.events_db)
        out: list[events_pb2.Event] = []
        if not cur.set_key(seq_key(seq)):
            return out
        first = decode_event(cur.value(), seq)
        out.append(first)
        while cur.next():
            value = cur.value()
            if value[0] == KIND_SEEN or value[0] == KIND_SOURCE:  # a sighting is read from tx_sources
                break
            event = decode_event(value, U64.unpack(cur.key())[0])
            if event.tx_hash != first.tx_hash or event.chain_id != first.chain_id:
                break
            out.append(event)
        return out

    def scan(self, txn: lmdb.Transaction, from_seq: int, limit: int,
             **filters: Any) -> tuple[list[events_pb2.Event], int, bool]:
        """:meth:`scan_as` with decoded events."""
        return self.scan_as(decode_event, txn, from_seq, limit, **filters)

    def scan_as(
        self,
        build: Callable[[Any, int], _T],
        txn: lmdb.Transaction,
        from_seq: int,
        limit: int,
        chain_id: int = 0,
        kinds: frozenset[int] = frozenset(),
        max_examined: int = 20000,
        stats: ScanStats | None = None,
        descending: bool = False,
        max_bytes: int = 0,
        keep: Callable[[lmdb.Transaction, int], bool] | None = None,
    ) -> tuple[list[_T], int, bool]:
        """Events from ``from_seq`` (inclusive) in seq order, filtered by chain and kinds, each as ``build(value,
        seq)`` of its stored value (the buffer is valid only during the call: ``build`` copies what it keeps).

        Cost O(log N + examined): one positioned cursor and ``examined`` steps (each a point read when a chain
        filter walks the ``chain_seq`` index). Returns the events and the seq to continue from (one past the
        last examined event when ascending; the last examined seq when descending, i.e. exclusive upper bound)
        and whether the walk stopped early (more events may follow) rather than reaching the end.

        ``max_bytes`` (0 = none) also ends the page before an event that would take its encoded size past it
        (``stats.truncated``); that event is not examined, so the cursor returned starts the next page at it.
        The first event is always taken: a page is never empty for want of bytes, so a reader always advances.
        ``keep`` (an ``EventFilter``'s, for ListTransactions) leaves out, as examined, the events it refuses.
        """
        stats = stats if stats is not None else ScanStats()
        if not chain_id and not kinds and keep is None and not descending:
            return self._scan_plain(build, txn, from_seq, limit, max_examined, stats, max_bytes)
        out: list[_T] = []
        if chain_id:
            walker = self._walk_chain(txn, chain_id, from_seq, descending, stats)
        else:
            walker = self._walk_all(txn, from_seq, descending, stats)
        next_seq = from_seq
        examined = 0
        more = False
        events_db = self.events_db
        page_bytes = 0
        value: Any
        for seq, kind, value in walker:
            if (not kinds or kind in kinds) and (keep is None or keep(txn, seq)):
                if value is None:
                    value = txn.get(seq_key(seq), db=events_db)
                    stats.point_reads += 1
                if value is not None:
                    size = len(value) + EVENT_OVERHEAD_BYTES
                    if max_bytes and out and page_bytes + size > max_bytes:
                        # Left for the next page: next_seq still points at (ascending) or just above it.
                        more = stats.truncated = True
                        break
                    page_bytes += size
                    out.append(build(value, seq))
            examined += 1
            next_seq = seq if descending else seq + 1
            if len(out) >= limit or examined >= max_examined:
                more = True
                break
        stats.page_bytes = page_bytes
        return out, next_seq, more

    def _scan_plain(self, build: Callable[[Any, int], _T], txn: lmdb.Transaction, from_seq: int, limit: int,
                    max_examined: int, stats: ScanStats, max_bytes: int) -> tuple[list[_T], int, bool]:
        """:meth:`scan_as` without a filter, ascending (the export's catch-up reads the whole log this way): the
        same page, with the cursor stepped at C level (``iternext``) instead of through :meth:`_walk_all`'s
        generator; about a third of the CPU per event (docs/export.md#benchmark)."""
        out: list[_T] = []
        append = out.append
        cur = txn.cursor(db=self.events_db)
        stats.cursor_steps += 1
        bound = min(limit, max_examined)  # every event examined is taken: the two bounds are one
        next_seq, more, page_bytes = from_seq, False, 0
        if cur.set_range(seq_key(max(from_seq, 1))):
            unpack = U64.unpack
            for key, value in cur.iternext():
                size = len(value) + EVENT_OVERHEAD_BYTES
                if max_bytes and out and page_bytes + size > max_bytes:
                    more = stats.truncated = True
                    break
                page_bytes += size
                seq = unpack(key)[0]
                append(build(value, seq))
                next_seq = seq + 1
                if len(out) >= bound:
                    more = True
                    break
            # as _walk_all counts: a step to each event after the first, and one more unless the page ended at its
            # limit (the step past the end, or to the event left for the next page)
            stats.cursor_steps += len(out) - (1 if more and not stats.truncated else 0)
        stats.page_bytes = page_bytes
        return out, next_seq, more

    def _walk_all(self, txn: lmdb.Transaction, from_seq: int, descending: bool,
                  stats: ScanStats) -> Iterator[tuple[int, int, Any]]:
        # Yields (seq, kind, value); the value buffer is valid until the consumer asks for the next item.
        cur = txn.cursor(db=self.events_db)
        stats.cursor_steps += 1
        if not descending:
            positioned = cur.set_range(seq_key(max(from_seq, 1)))
            step = cur.next
        else:  # from_seq is an exclusive upper bound (0 = from the newest)
            if from_seq == 0:
                positioned = cur.last()
            elif cur.set_range(seq_key(from_seq)):
                positioned = cur.prev()
            else:
                positioned = cur.last()
            step = cur.prev
        while positioned:
            value = cur.value()
            yield U64.unpack(cur.key())[0], value[0], value
            stats.cursor_steps += 1
            positioned = step()

    def _walk_chain(self, txn: lmdb.Transaction, chain_id: int, from_seq: int, descending: bool,
                    stats: ScanStats) -> Iterator[tuple[int, int, Any]]:
        # One chain_seq entry per transaction: its TX_SEEN seq and its events' kinds (contiguous seqs).
        cur = txn.cursor(db=self.chain_db)
        stats.cursor_steps += 1
        prefix = U64.pack(chain_id)
        if not descending:
            start = max(from_seq, 1)
            start_key = chain_seq_key(chain_id, start)
            positioned = cur.set_range(start_key)
            if not positioned or cur.key() != start_key:
                # The transaction holding ``start`` may begin before it: then it is the entry just before.
                if (cur.prev() if positioned else cur.last()) and cur.key()[:8] == prefix \
                        and CHAIN_SEQ.unpack(cur.key())[1] + len(cur.value()) > start:
                    positioned = True
                else:
                    positioned = cur.set_range(start_key)
                stats.cursor_steps += 1
            step = cur.next
        else:  # from_seq is an exclusive upper bound (0 = from the newest)
            start = from_seq or 1 << 64
            upper = chain_seq_key(chain_id, from_seq) if from_seq else U64.pack(chain_id + 1)
            positioned = cur.prev() if cur.set_range(upper) else cur.last()
            step = cur.prev
        while positioned:
            key = cur.key()
            if key[:8] != prefix:
                return
            first = CHAIN_SEQ.unpack(key)[1]
            kinds = bytes(cur.value())
            seqs = range(first, first + len(kinds))
            if not descending:
                for seq, kind in zip(seqs, kinds, strict=True):
                    if seq >= start:
                        yield seq, kind, None
            else:
                for seq, kind in zip(reversed(seqs), reversed(kinds), strict=True):
                    if seq < start:
                        yield seq, kind, None
            stats.cursor_steps += 1
            positioned = step()
