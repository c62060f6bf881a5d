"""Drop reasons and per-chain drop accounting with rate-limited structured logs.

Every transaction ingestd does not deliver is counted under one :class:`DropReason`, per source, so that
``seen == delivered + dropped + in pipeline`` holds at all times. A dedup hit is counted under
``DropReason.DEDUP`` too, but it is not a loss: drop ratios exclude it (see :data:`NOT_A_LOSS`).
"""

from __future__ import annotations

import enum
import logging
import time
from collections import defaultdict

log = logging.getLogger(__name__)


class DropReason(enum.StrEnum):
    """Stable reason codes (they appear in metrics, logs and ChainIngestStats.dropped)."""

    DEDUP = "dedup"  # already announced (by this or another source): not a loss
    FETCH_QUEUE_FULL = "fetch_queue_full"  # the fetch queue was at its bound when the hash arrived
    OUTBOUND_QUEUE_FULL = "outbound_queue_full"  # the outbound queue was at its bound (processd slow)
    MALFORMED = "malformed"  # notification or transaction object could not be parsed / mapped
    UNKNOWN_SUBSCRIPTION = "unknown_subscription"  # notification for a subscription id we do not hold
    GONE_BEFORE_FETCH = "gone_before_fetch"  # eth_getTransactionByHash answered null (mined/evicted)
    RPC_ERROR = "rpc_error"  # fetch failed on every endpoint after retries
    RESPONSE_TOO_LARGE = "response_too_large"  # every fetch attempt answered more than fetch_max_response_bytes
    REJECTED = "rejected"  # processd rejected the envelope (see IngestAck.rejected)
    SHUTDOWN = "shutdown"  # still queued or unacked when ingestd stopped


#: Reasons that do not mean a transaction was lost.
NOT_A_LOSS: frozenset[DropReason] = frozenset({DropReason.DEDUP})

#: Reasons counted for the chain as a whole (source ""), not for the source that announced the transaction.
SOURCELESS_REASONS: tuple[DropReason, ...] = (DropReason.REJECTED, DropReason.SHUTDOWN)


class DropCounter:
    """Cumulative drop counts of one chain, by (source, reason), with rate-limited warning logs.

    Counting is a dict increment (cheap on the hot path); at most one log line per reason per
    ``log_interval_s`` summarises what was dropped since the previous line.
    """

    def __init__(self, chain: str, log_interval_s: float = 5.0) -> None:
        self.chain = chain
        self.log_interval_s = log_interval_s
        self.counts: defaultdict[tuple[str, DropReason], int] = defaultdict(int)
        self._unlogged: defaultdict[DropReason, int] = defaultdict(int)
        self._last_log: dict[DropReason, float] = {}

    def add(self, reason: DropReason, source: str = "", count: int = 1, detail: str = "") -> None:
        """Counts ``count`` drops; logs a structured summary when the reason's log interval has passed."""
        if count <= 0:
            return
        self.counts[(source, reason)] += count
        if reason in NOT_A_LOSS:
            return
        self._unlogged[reason] += count
        now = time.monotonic()
        if now - self._last_log.get(reason, -1e9) >= self.log_interval_s:
            pending, self._unlogged[reason] = self._unlogged[reason], 0
            self._last_log[reason] = now
            log.warning("drop chain=%s reason=%s source=%s count_since_last_log=%d total=%d detail=%s",
                        self.chain, reason.value, source or "-", pending, self.total(reason), detail or "-")

    def total(self, reason: DropReason | None = None) -> int:
        """Total drops for one reason, or all loss drops (excluding :data:`NOT_A_LOSS`) when ``reason`` is None."""
        if reason is not None:
            return sum(n for (_, r), n in self.counts.items() if r == reason)
        return sum(n for (_, r), n in self.counts.items() if r not in NOT_A_LOSS)

    def total_dedup(self) -> int:
        """Dedup hits (not losses)."""
        return self.total(DropReason.DEDUP)

    def by_reason(self) -> dict[str, int]:
        """Cumulative counts by reason code (all reasons, dedup included)."""
        out: dict[str, int] = {}
        for (_, reason), n in self.counts.items():
            out[reason.value] = out.get(reason.value, 0) + n
        return out
