"""ingestd's per-chain health counters (``TxBatch.chain_stats``) as processd holds them: bounded in bytes.

The counters come from any client of ``Ingest.Stream``, so every field is bounded (string lengths, list
sizes), each entry, each message and each chain are bounded in bytes, and the whole store is bounded in
entries and bytes. Before these bounds, 30 messages of 10 MB took processd from 401 MiB to 1.5 GiB and the
snapshots that embed the counters answered 503 (issue 14).

An entry is kept as a fresh copy of its known fields only: a sub-message of the parsed batch would keep the
whole batch (envelopes included) alive, and unknown fields would be kept byte for byte. An entry that breaks
a bound is rejected whole (a truncated drop reason or source list would be a wrong counter); entries pushed
out to make room are evicted oldest first. Every rejection and eviction is counted by reason
(``mempulse_processd_ingest_stats_rejected_total{reason}``) and logged at most once per reason per interval; none of
this touches the batch's transactions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from common.logthrottle import LogThrottle
from common.pb.v1 import ingest_pb2

log = logging.getLogger(__name__)

#: Reason labels of ``mempulse_processd_ingest_stats_rejected_total``.
BAD_STRING = "bad_string"  # a drop reason or source id too long, or not printable ASCII
TOO_MANY_ITEMS = "too_many_items"  # more drop reasons or sources than an entry may hold
ENTRY_TOO_LARGE = "entry_too_large"  # the entry's copy is larger than max_entry_bytes
MESSAGE_TOO_MANY = "message_too_many_entries"  # beyond max_entries_per_message in one TxBatch
MESSAGE_TOO_LARGE = "message_too_large"  # beyond max_message_bytes of stats in one TxBatch
EVICTED_CHAIN = "evicted_chain_bytes"  # an older session's entry of the chain, pushed out by max_chain_bytes
EVICTED_TOTAL = "evicted_total"  # the oldest entry, pushed out by max_entries or max_total_bytes
# (processd.pipeline adds bad_session_id and too_many_sessions for entries it does not hand over.)
REASONS = (BAD_STRING, TOO_MANY_ITEMS, ENTRY_TOO_LARGE, MESSAGE_TOO_MANY, MESSAGE_TOO_LARGE, EVICTED_CHAIN,
           EVICTED_TOTAL)


@dataclass(frozen=True)
class StatsLimits:
    """Bounds of the held ingest stats. ingestd sends one entry per message of about 200 bytes plus 60 per
    source, with about ten drop reasons: the defaults leave ample room for it and none for an attacker."""

    max_string_chars: int = 300  # drop reason codes and source ids (host:port#n; a DNS name may be 253 chars)
    max_drop_reasons: int = 64
    max_sources: int = 64
    max_entry_bytes: int = 16 * 1024
    max_entries_per_message: int = 64
    max_message_bytes: int = 256 * 1024
    max_chain_bytes: int = 64 * 1024  # summed over the sessions of one chain
    max_entries: int = 1024
    max_total_bytes: int = 4 * 1024 * 1024


def _good_string(value: str, limit: int) -> bool:
    return len(value) <= limit and value.isascii() and value.isprintable()


def bounded_copy(s: ingest_pb2.ChainIngestStats, limits: StatsLimits) -> tuple[ingest_pb2.ChainIngestStats | None, str]:
    """A fresh copy of ``s``'s known fields, or ``(None, reason)`` when a bound is broken."""
    # Counts first: they are O(1), and they bound the per-item work below.
    if len(s.dropped) > limits.max_drop_reasons or len(s.sources) > limits.max_sources:
        return None, TOO_MANY_ITEMS
    chars = limits.max_string_chars
    out = ingest_pb2.ChainIngestStats(chain_id=s.chain_id, seen=s.seen, delivered=s.delivered,
                                      visibility=s.visibility, as_of_unix_ms=s.as_of_unix_ms)
    for d in s.dropped:
        if not _good_string(d.reason, chars):
            return None, BAD_STRING
        out.dropped.add(reason=d.reason, count=d.count)
    for src in s.sources:
        if not _good_string(src.source_id, chars):
            return None, BAD_STRING
        out.sources.add(source_id=src.source_id, connected=src.connected, silent=src.silent,
                        notifications=src.notifications, reconnects=src.reconnects,
                        last_notification_unix_ms=src.last_notification_unix_ms)
    if out.ByteSize() > limits.max_entry_bytes:
        return None, ENTRY_TOO_LARGE
    return out, ""


class IngestStatsStore:
    """The latest bounded ``ChainIngestStats`` per (session id, chain id), oldest update first.

    ``on_reject(reason, count, detail)`` is called for every rejected or evicted entry (metrics and logs).
    """

    def __init__(self, limits: StatsLimits | None = None,
                 on_reject: Callable[[str, int, str], None] | None = None) -> None:
        self.limits = limits or StatsLimits()
        self.entries: dict[tuple[str, int], ingest_pb2.ChainIngestStats] = {}
        self._sizes: dict[tuple[str, int], int] = {}
        self.chain_bytes: dict[int, int] = {}
        self.total_bytes = 0
        self.rejected: dict[str, int] = dict.fromkeys(REASONS, 0)
        self.on_reject = on_reject or (lambda reason, count, detail: None)

    def __len__(self) -> int:
        return len(self.entries)

    def _reject(self, reason: str, detail: str, count: int = 1) -> None:
        self.rejected[reason] += count
        self.on_reject(reason, count, detail)

    def update(self, session_id: str, stats: Iterable[ingest_pb2.ChainIngestStats]) -> None:
        """Stores one message's entries (each replaces its (session, chain) entry); never raises on content."""
        limits = self.limits
        # (processd.pipeline refuses session ids over 128 characters before they get here.)
        if len(session_id) > limits.max_string_chars:
            session_id = session_id[:limits.max_string_chars]  # a key only: a long id must not be held in full
        entries = list(stats)  # references only; a message holds at most max_message_bytes of gRPC anyway
        if len(entries) > limits.max_entries_per_message:
            self._reject(MESSAGE_TOO_MANY, f"session={session_id!r} {len(entries)} entries in one message "
                         f"(at most {limits.max_entries_per_message} are read)",
                         len(entries) - limits.max_entries_per_message)
            del entries[limits.max_entries_per_message:]
        message_bytes = 0
        for s in entries:
            copy, reason = bounded_copy(s, limits)
            if copy is None:
                self._reject(reason, f"session={session_id!r} chain={s.chain_id} bytes={s.ByteSize()}")
                continue
            size = copy.ByteSize()
            message_bytes += size
            if message_bytes > limits.max_message_bytes:
                self._reject(MESSAGE_TOO_LARGE, f"session={session_id!r} chain={s.chain_id} stats bytes in one "
                             f"message over {limits.max_message_bytes}")
                continue
            self._put((session_id, s.chain_id), copy, size)

    def _put(self, key: tuple[str, int], copy: ingest_pb2.ChainIngestStats, size: int) -> None:
        limits = self.limits
        chain_id = key[1]
        self._remove(key)
        # Make room in the chain first (an older session of the chain goes), then in the whole store.
        while self.chain_bytes.get(chain_id, 0) and self.chain_bytes[chain_id] + size > limits.max_chain_bytes:
            oldest = next(k for k in self.entries if k[1] == chain_id)
            self._remove(oldest)
            self._reject(EVICTED_CHAIN, f"session={oldest[0]!r} chain={chain_id} (chain over "
                         f"{limits.max_chain_bytes} bytes)")
        while self.entries and (len(self.entries) >= limits.max_entries
                                or self.total_bytes + size > limits.max_total_bytes):
            oldest = next(iter(self.entries))
            self._remove(oldest)
            self._reject(EVICTED_TOTAL, f"session={oldest[0]!r} chain={oldest[1]}")
        self.entries[key] = copy
        self._sizes[key] = size
        self.chain_bytes[chain_id] = self.chain_bytes.get(chain_id, 0) + size
        self.total_bytes += size

    def _remove(self, key: tuple[str, int]) -> None:
        if self.entries.pop(key, None) is None:
            return
        size = self._sizes.pop(key)
        self.total_bytes -= size
        left = self.chain_bytes[key[1]] - size
        if left:
            self.chain_bytes[key[1]] = left
        else:
            del self.chain_bytes[key[1]]

    def end_session(self, session_id: str) -> None:
        """Forgets a session's entries (its last stream closed)."""
        session_id = session_id[:self.limits.max_string_chars]
        for key in [k for k in self.entries if k[0] == session_id]:
            self._remove(key)

    def for_chain(self, chain_id: int) -> list[ingest_pb2.ChainIngestStats]:
        """The entries of one chain, oldest update first."""
        return [s for (_sid, c), s in self.entries.items() if c == chain_id]


class RateLimitedLog:
    """One warning per reason per ``interval_s``, saying how many were suppressed since the previous one."""

    def __init__(self, interval_s: float = 5.0) -> None:
        self._throttle = LogThrottle(interval_s)

    def warn(self, reason: str, count: int, detail: str) -> None:
        """Logs ``ingest_stats_rejected`` for ``reason`` unless one was logged within the interval."""
        suppressed = self._throttle.allow(reason, count)
        if suppressed is None:
            return
        log.warning("ingest_stats_rejected reason=%s count=%d suppressed_since_last_log=%d %s "
                    "(the batch's transactions are unaffected)", reason, count, suppressed, detail)
