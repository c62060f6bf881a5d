"""The node's word on pending transactions it dropped: a bounded set of the hashes ingestd delivered as pending and
has not seen in a followed block, re-checked with the node every ``pending_recheck_interval_ms``; those the node no
longer knows are reported to processd as ``TxGone`` (reason ``GONE_REASON_EVICTED``) on the outbound queue, kept
until acked like envelopes.

The re-check is one JSON-RPC batch of ``eth_getTransactionByHash`` per ``fetch_batch_size`` tracked hashes (the
chain's :class:`~ingestd.fetcher.BatchFetcher`: retries, fallbacks, byte cap). Per hash:

- an object with a ``blockNumber``: mined. The block path reports it (``ingestd.blocks``); no longer tracked.
- an object without one: still pending.
- ``null``: the node does not know it. Not reported at once (see the race rule below): it becomes a suspect.
- a failed item (error, 429 past the retries, missing from a partial batch): counted, checked again next round.

**Race rule** (a transaction mined between the check and the report must never be reported gone): a hash is
reported only when (1) two re-check rounds (one interval apart) both answered ``null``, (2) no block the follower
delivered meanwhile included it (:meth:`PendingTracker.mined` forgets it at once), and (3) the block follower has
no height queued or in fetch at the second answer (a head announced before it has been fetched and applied). A
suspect whose report is held back by (3) stays a suspect for the next round. A transaction mined in a block
ingestd did not fetch (a dropped height) answers with its ``blockNumber``, not ``null``, so it is never reported.
A transaction that comes back to the pool after a reorg is not tracked again (it is announced again, deduplicated).

**Replacements**: a delivered transaction with the (sender, nonce) of a tracked one (a speed-up or a cancel) takes
its place, and so does one of a followed block (a replacement mined before ingestd delivered it as pending): the
older one is no longer tracked (``superseded``) and is never reported gone, although the node forgets it: it was
replaced, not dropped, and its fate follows the replacement's (processd pairs them by sender and nonce; if the
replacement is included, the original was replaced; if the replacement is dropped, it is reported gone itself).

Bounded: at most ``pending_track_size`` hashes (the oldest leaves first: ``overflow``); suspects are a subset.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from common.pb.v1 import ingest_pb2
from ingestd.fetcher import TX_METHOD, BatchFetcher

log = logging.getLogger(__name__)


class RecheckOutcome:
    """Labels of ``mempulse_ingestd_pending_rechecks_total{outcome}``: one per hash and re-check."""

    PENDING = "pending"  # the node still has it pending
    MINED = "mined"  # the node has it in a block (reported by the block path): no longer tracked
    NULL = "null"  # the node does not know it (a suspect; reported gone on the second null, see the rule)
    FAILED = "failed"  # no usable answer (error, 429 past the retries, missing from a partial batch)
    HELD = "held"  # a second null held back because the block follower was busy (re-checked next round)


#: Every re-check outcome (exported at zero from start).
RECHECK_OUTCOMES = tuple(v for k, v in vars(RecheckOutcome).items() if k.isupper())


@dataclass
class PendingStats:
    """Counters of one chain's pending tracker."""

    capacity: int = 0
    tracked: Callable[[], int] = lambda: 0
    #: Hashes no longer tracked because the set was full (the oldest left: never reported gone).
    overflow: int = 0
    #: Hashes forgotten because a followed block included them, or a delivered replacement (same sender and nonce)
    #: took their place.
    included: int = 0
    superseded: int = 0
    #: JSON-RPC batch requests made by re-checks (attempts included), and re-check rounds.
    requests: int = 0
    rounds: int = 0
    checks: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    #: TxGone queued for processd; not queued (outbound queue full: retried next round); acked stored / ignored;
    #: unacked at shutdown.
    gone_sent: int = 0
    gone_queue_full: int = 0
    gone_stored: int = 0
    gone_ignored: int = 0
    gone_shutdown: int = 0


class PendingTracker:
    """Tracks one chain's delivered pending hashes and reports those the node dropped. ``add`` and ``mined`` are
    synchronous and O(1) per hash; ``run()`` re-checks every interval; ``recheck()`` is one round."""

    def __init__(self, chain_id: int, fetcher: BatchFetcher, stats: PendingStats, *, capacity: int, interval_s: float,
                 batch_size: int, send: Callable[[ingest_pb2.TxGone], bool], blocks_busy: Callable[[], bool]) -> None:
        self.chain_id = chain_id
        self.fetcher = fetcher
        self.stats = stats
        self.capacity = capacity
        self.interval_s = interval_s
        self.batch_size = batch_size
        self._send = send
        self._blocks_busy = blocks_busy
        #: hash -> (source id, monotonic time it was delivered, (sender, nonce)), oldest first.
        self._tracked: OrderedDict[bytes, tuple[str, float, tuple[bytes, int]]] = OrderedDict()
        #: (sender, nonce) -> the tracked hash that holds it (the newest delivered).
        self._by_key: dict[tuple[bytes, int], bytes] = {}
        #: hash -> the round of its first null answer (a subset of the tracked hashes).
        self._suspects: dict[bytes, int] = {}
        self._round = 0
        stats.capacity = capacity
        stats.tracked = lambda: len(self._tracked)

    def __len__(self) -> int:
        return len(self._tracked)

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._tracked

    def add(self, tx_hash: bytes, source_id: str, sender: bytes = b"", nonce: int = -1) -> None:
        """A transaction delivered as pending (on the outbound queue); the oldest leaves when the set is full. One
        that holds the (``sender``, ``nonce``) of a tracked transaction supersedes it (module docstring)."""
        if tx_hash in self._tracked:
            return
        key = (sender, nonce)
        if sender:
            older = self._by_key.get(key)
            if older is not None and self._untrack(older):
                self.stats.superseded += 1
            self._by_key[key] = tx_hash
        self._tracked[tx_hash] = (source_id, time.monotonic(), key)
        if len(self._tracked) > self.capacity:
            self._untrack(next(iter(self._tracked)))
            self.stats.overflow += 1

    def _untrack(self, tx_hash: bytes) -> bool:
        """Forgets ``tx_hash`` (True when it was tracked)."""
        entry = self._tracked.pop(tx_hash, None)
        if entry is None:
            return False
        self._suspects.pop(tx_hash, None)
        if self._by_key.get(entry[2]) == tx_hash:
            del self._by_key[entry[2]]
        return True

    def mined(self, txs: Iterable[tuple[bytes, bytes, int]]) -> None:
        """The (hash, sender, nonce) of a block's transactions the follower delivered: the block path reports them,
        they are forgotten; so is a tracked transaction whose (sender, nonce) the block used under another hash (a
        replacement ingestd saw only in the block: the tracked one was replaced, not dropped, and processd settles
        it from the block)."""
        by_key = self._by_key
        for tx_hash, sender, nonce in txs:
            if self._untrack(tx_hash):
                self.stats.included += 1
            elif sender and (older := by_key.get((sender, nonce))) is not None and self._untrack(older):
                self.stats.superseded += 1

    async def run(self) -> None:
        """Re-checks every ``interval_s`` until cancelled; an unexpected error is logged, never fatal."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.recheck()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not stop the tracker (nor the chain)
                log.exception("pending recheck failed unexpectedly chain=%d", self.chain_id)

    async def recheck(self, min_age_s: float | None = None) -> int:
        """One round: every hash tracked for at least ``min_age_s`` (default: one interval) is asked about;
        returns how many TxGone were queued."""
        min_age = self.interval_s if min_age_s is None else min_age_s
        now = time.monotonic()
        due = [h for h, (_, since, _) in self._tracked.items() if now - since >= min_age]
        self.stats.rounds += 1
        self._round += 1
        reported = 0
        for start in range(0, len(due), self.batch_size):
            chunk = due[start:start + self.batch_size]
            outcome = await self.fetcher.fetch(chunk, TX_METHOD)  # (one request per attempt, one slot at a time)
            self.stats.requests += outcome.attempts
            checks = self.stats.checks
            for tx_hash, tx in outcome.found:
                if isinstance(tx, dict) and tx.get("blockNumber") is not None:
                    checks[RecheckOutcome.MINED] += 1
                    self._untrack(tx_hash)
                else:
                    checks[RecheckOutcome.PENDING] += 1
                    self._suspects.pop(tx_hash, None)
            checks[RecheckOutcome.FAILED] += len(outcome.failed)
            for tx_hash in outcome.gone:
                reported += self._on_null(tx_hash)
        return reported

    def _on_null(self, tx_hash: bytes) -> int:
        """A null answer: a new suspect, or (the rule in the module docstring) the report. 1 when reported."""
        checks = self.stats.checks
        checks[RecheckOutcome.NULL] += 1
        entry = self._tracked.get(tx_hash)
        if entry is None:
            return 0  # a followed block included it while the request was in flight
        first = self._suspects.get(tx_hash)
        if first is None or first >= self._round:
            self._suspects.setdefault(tx_hash, self._round)
            return 0
        if self._blocks_busy():
            checks[RecheckOutcome.HELD] += 1
            return 0
        gone = ingest_pb2.TxGone(chain_id=self.chain_id, hash=tx_hash, reason=ingest_pb2.GONE_REASON_EVICTED,
                                 source_id=entry[0], seen_unix_ns=time.time_ns())
        if not self._send(gone):
            self.stats.gone_queue_full += 1  # still tracked and suspected: reported again next round
            return 0
        self._untrack(tx_hash)
        self.stats.gone_sent += 1
        log.debug("tx_gone chain=%d hash=0x%s", self.chain_id, tx_hash.hex())
        return 1
