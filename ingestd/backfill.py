"""Backfill: the node's current pending pool (``txpool_content``) delivered as ordinary envelopes when a chain's
pending subscription starts, at ingestd's start and after a source reconnects, so that what was announced while
ingestd was down or disconnected is not missed.

It runs after the subscription is up (anything announced from then on comes live), and each transaction goes
through the chain's dedup like an announcement: one already seen live is not sent twice (processd dedups by
(chain, hash) anyway, so a resend after a restart is harmless). Only ``pending`` is delivered: ``queued``
transactions (a nonce gap) are not announced by ``newPendingTransactions`` either and are counted ``queued``.

What cannot be backfilled is counted by reason: per run (``mempulse_ingestd_backfill_runs_total{outcome}``:
``ok``, ``unsupported`` for a node without ``txpool_content``, ``response_too_large``, ``rpc_error``,
``malformed``) and per transaction (``mempulse_ingestd_backfill_txs_total{outcome}``: ``delivered``,
``already_seen``, ``over_limit`` past ``backfill_max_txs``, ``queued``, ``malformed``, ``not_delivered`` when the
outbound or fetch queue was full). Every one of them but ``already_seen``, ``over_limit`` and ``queued`` counts in
the chain's ``seen`` (and so as delivered or as a loss by reason). Requests while a run is going are coalesced into
one more run after it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ingestd.fetcher import TOO_LARGE, BatchFetcher, FetchError

log = logging.getLogger(__name__)

#: JSON-RPC codes meaning "this node has no such method".
_UNSUPPORTED = frozenset({"-32601", "-32600", "-32602"})

RUN_OUTCOMES = ("ok", "unsupported", "response_too_large", "rpc_error", "malformed")
TX_OUTCOMES = ("delivered", "already_seen", "over_limit", "queued", "malformed", "not_delivered")

#: deliver(tx object, seen unix ns) -> one of TX_OUTCOMES.
Deliver = Callable[[Any, int], str]


@dataclass
class BackfillStats:
    """Counters of one chain's backfill."""

    runs: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    txs: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    #: Seconds the last run took (request, parse, mapping, queueing).
    last_duration_s: float = 0.0


class Backfill:
    """One chain's backfill. ``request()`` (synchronous) starts a run or queues one more; ``stop()`` cancels."""

    def __init__(self, chain_name: str, fetcher: BatchFetcher, stats: BackfillStats, max_txs: int,
                 deliver: Deliver) -> None:
        self.chain_name = chain_name
        self.fetcher = fetcher
        self.stats = stats
        self.max_txs = max_txs
        self._deliver = deliver
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def request(self) -> None:
        """Backfill soon: now, or once more after the run in progress."""
        if self.max_txs <= 0:
            return
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._loop(), name=f"backfill-{self.chain_name}")

    async def stop(self) -> None:
        """Cancels a run in progress. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            self._again = False
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not take the chain down
                log.exception("backfill failed unexpectedly chain=%s", self.chain_name)
            if not self._again:
                return

    async def run_once(self) -> str:
        """One ``txpool_content`` request and its pending transactions delivered; returns the run's outcome."""
        started = time.perf_counter()
        try:
            content = await self.fetcher.call("txpool_content", [])
        except FetchError as exc:
            outcome = ("unsupported" if exc.code in _UNSUPPORTED else TOO_LARGE if exc.code == TOO_LARGE
                       else "rpc_error")
            self.stats.runs[outcome] += 1
            log.warning("backfill_%s chain=%s code=%s: transactions announced while not subscribed may be missed",
                        outcome, self.chain_name, exc.code)
            return outcome
        pending = content.get("pending") if isinstance(content, dict) else None
        if not isinstance(pending, dict):
            self.stats.runs["malformed"] += 1
            log.warning("backfill_malformed chain=%s: txpool_content has no pending object", self.chain_name)
            return "malformed"
        txs: defaultdict[str, int] = defaultdict(int)  # this run's, added to the stats at the end
        txs["queued"] += _count(content.get("queued"))
        seen_ns = time.time_ns()
        delivered = 0
        for by_nonce in pending.values():
            if not isinstance(by_nonce, dict):
                txs["malformed"] += 1
                continue
            for tx in _by_nonce(by_nonce):
                if delivered >= self.max_txs:
                    txs["over_limit"] += 1
                    continue
                result = self._deliver(tx, seen_ns)
                txs[result] += 1
                delivered += result != "already_seen"
        for outcome, n in txs.items():
            self.stats.txs[outcome] += n
        self.stats.runs["ok"] += 1
        self.stats.last_duration_s = time.perf_counter() - started
        log.info("backfill chain=%s pending=%d delivered=%d already_seen=%d over_limit=%d took_s=%.3f",
                 self.chain_name, _count(pending), txs["delivered"], txs["already_seen"], txs["over_limit"],
                 self.stats.last_duration_s)
        return "ok"


def _by_nonce(by_nonce: dict[str, Any]) -> list[Any]:
    """A sender's transactions in nonce order (keys are decimal nonces in geth and anvil)."""
    def key(item: tuple[str, Any]) -> tuple[int, str]:
        return (int(item[0]), "") if str(item[0]).isdigit() else (1 << 64, str(item[0]))
    return [tx for _, tx in sorted(by_nonce.items(), key=key)]


def _count(section: object) -> int:
    """Transactions in a ``txpool_content`` section (sender -> nonce -> tx)."""
    if not isinstance(section, dict):
        return 0
    return sum(len(v) for v in section.values() if isinstance(v, dict))
