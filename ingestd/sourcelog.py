"""Which sources announced each recent transaction of one chain, and when (mempool-dumpster's "sourcelog").

The dedup set lets the first announcement of a hash through; every later one is a dedup hit. For a chain with
several sources, :class:`SourceLog` turns the first hit of each *other* source into a sighting (source, its own
first-seen time) that travels to processd as a ``TxSighting``, so a stored transaction lists every source that
announced it, each with its own time.

Ordering: processd can only attach a sighting to a transaction it has stored, and it reads one stream's batches
in order. So a sighting is released only once its transaction's envelope is in the outbound queue (the queue
is FIFO and carries both, so the sighting travels in the envelope's batch or a later one); until then it waits
in the entry (the envelope may still be in the fetch queue or a batch fetch). When the envelope is not sent at
all (fetch failed, queue full, malformed), its waiting sightings are dropped and counted.

Bounded: at most ``capacity`` transactions (the oldest first out) and ``max_sources`` sources per transaction
(extras counted as ``over_limit``). A later announcement of a transaction no longer held (older than the
newest ``capacity``) is sent unchecked (``untracked``): processd ignores a repeat or an unknown transaction.
"""

from __future__ import annotations

import enum
from collections import OrderedDict

from common.pb.v1 import tx_pb2

PENDING, SENT, DROPPED = 0, 1, 2


class SightingOutcome(enum.StrEnum):
    """What became of a later announcement (label of ``mempulse_ingestd_source_sightings_total``)."""

    RECORDED = "recorded"  # queued for processd (at once, or when its envelope is)
    UNTRACKED = "untracked"  # its transaction is no longer held here: sent without the per-transaction checks
    REPEAT = "repeat"  # this source had announced the transaction already
    OVER_LIMIT = "over_limit"  # the transaction already has max_sources sources
    NOT_DELIVERED = "not_delivered"  # its transaction's envelope was not sent (or the outbound queue was full)


class _Entry:
    __slots__ = ("first_seen_ns", "pending", "sources", "state")

    def __init__(self, source_id: str, first_seen_ns: int) -> None:
        self.first_seen_ns = first_seen_ns
        self.sources = [source_id]
        self.state = PENDING
        #: Sightings waiting for the envelope (None until one arrives: most transactions never get one).
        self.pending: list[tx_pb2.TxSighting] | None = None


class SourceLog:
    """The per-chain source log (module doc). Not thread-safe: used from the chain worker's event loop only."""

    def __init__(self, chain_id: int, capacity: int, max_sources: int) -> None:
        if capacity < 1 or max_sources < 1:
            raise ValueError("capacity and max_sources must be >= 1")
        self.chain_id = chain_id
        self.capacity = capacity
        self.max_sources = max_sources
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def first(self, tx_hash: bytes, source_id: str, seen_ns: int) -> int:
        """The announcement that passed dedup: ``source_id`` is the transaction's first source. Returns the
        number of waiting sightings the eviction of the oldest entry discarded (usually 0)."""
        entries = self._entries
        entries.pop(tx_hash, None)  # announced again after a failed fetch (dedup forgot it): start over
        lost = 0
        while len(entries) >= self.capacity:
            _, old = entries.popitem(last=False)
            if old.pending:
                lost += len(old.pending)
        entries[tx_hash] = _Entry(source_id, seen_ns)
        return lost

    def later(self, tx_hash: bytes, source_id: str, seen_ns: int) -> tuple[SightingOutcome, tx_pb2.TxSighting | None,
                                                                           int]:
        """A dedup hit: ``(outcome, sighting to send now or None, lag ns behind the first source or -1)``."""
        entry = self._entries.get(tx_hash)
        if entry is None:
            return SightingOutcome.UNTRACKED, self._sighting(tx_hash, source_id, seen_ns), -1
        if source_id in entry.sources:
            return SightingOutcome.REPEAT, None, -1
        if len(entry.sources) >= self.max_sources:
            return SightingOutcome.OVER_LIMIT, None, -1
        lag = seen_ns - entry.first_seen_ns
        if entry.state == DROPPED:
            return SightingOutcome.NOT_DELIVERED, None, lag
        entry.sources.append(source_id)
        sighting = self._sighting(tx_hash, source_id, seen_ns)
        if entry.state == SENT:
            return SightingOutcome.RECORDED, sighting, lag
        if entry.pending is None:
            entry.pending = []
        entry.pending.append(sighting)
        return SightingOutcome.RECORDED, None, lag

    def sent(self, tx_hash: bytes) -> list[tx_pb2.TxSighting]:
        """The envelope is in the outbound queue: the sightings that waited for it (to queue right after it)."""
        entry = self._entries.get(tx_hash)
        if entry is None:
            return []
        entry.state = SENT
        pending, entry.pending = entry.pending, None
        return pending or []

    def dropped(self, tx_hash: bytes) -> int:
        """The envelope will not be sent: its waiting sightings are discarded (returned: how many), and later
        ones are counted as not delivered."""
        entry = self._entries.get(tx_hash)
        if entry is None:
            return 0
        entry.state = DROPPED
        pending, entry.pending = entry.pending, None
        return len(pending) if pending else 0

    def _sighting(self, tx_hash: bytes, source_id: str, seen_ns: int) -> tx_pb2.TxSighting:
        return tx_pb2.TxSighting(chain_id=self.chain_id, hash=tx_hash, source_id=source_id, seen_unix_ns=seen_ns)
