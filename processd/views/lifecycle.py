"""The lifecycle read model: per chain, the inclusion latencies of the newest TX_INCLUDED events (bounded), and the
snapshot's ``LifecycleTotals`` from them and the ``agg`` counters.

Fed by each commit's inclusion latencies (``CommitResult.life_latencies``); rebuilt at start by one backward walk of
each chain's ``chain_seq`` entries, reading only the TX_INCLUDED events until the window is full or
``max_examined`` entries were looked at (so the cost is the window's, bounded, not the log's).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import lmdb

from common.pb.v1 import query_pb2
from processd.storage.eventlog import EventLog, decode_event, seq_key
from processd.storage.layout import (
    AGG_BLOCK_TXS,
    AGG_DROPPED,
    AGG_INCLUDED,
    AGG_PRIVATE,
    AGG_REORGS,
    AGG_REORGS_DEEP,
    AGG_REPLACED,
    CHAIN_SEQ,
    KIND_INCLUDED,
    U64,
)


class LatencyWindow:
    """The newest ``size`` inclusion latencies (ms) per chain, at most ``max_chains`` chains (more: counted in
    ``refused``, not kept)."""

    def __init__(self, size: int = 4096, max_chains: int = 1024) -> None:
        self.size = size
        self.max_chains = max_chains
        self.chains: dict[int, deque[int]] = {}
        self.refused = 0

    def __len__(self) -> int:
        return sum(len(w) for w in self.chains.values())

    def _window(self, chain_id: int) -> deque[int] | None:
        window = self.chains.get(chain_id)
        if window is None:
            if len(self.chains) >= self.max_chains:
                self.refused += 1
                return None
            window = self.chains[chain_id] = deque(maxlen=self.size)
        return window

    def add(self, latencies: dict[int, list[int]]) -> None:
        """Takes a commit's inclusion latencies (ms) per chain, in seq order (``CommitResult.life_latencies``)."""
        for chain_id, values in latencies.items():
            window = self._window(chain_id)
            if window is not None:
                window.extend(values)

    def percentiles(self, chain_id: int) -> tuple[int, int]:
        """(p50, p99) of the chain's window, ms (0, 0 when empty)."""
        window = self.chains.get(chain_id)
        if not window:
            return 0, 0
        ordered = sorted(window)
        n = len(ordered)
        return ordered[(n - 1) // 2], ordered[min(n - 1, n * 99 // 100)]

    def rebuild(self, eventlog: EventLog, chain_ids: list[int], max_examined: int = 200_000) -> None:
        """Refills the windows from the log (at start): per chain, a backward walk of its ``chain_seq`` entries."""
        def read(txn: lmdb.Transaction) -> dict[int, list[int]]:
            found: dict[int, list[int]] = {}
            for chain_id in chain_ids:
                taken = found[chain_id] = []
                cur = txn.cursor(db=eventlog.chain_db)
                positioned = (cur.set_range(CHAIN_SEQ.pack(chain_id + 1, 0)) and cur.prev()) or cur.last()
                examined = 0
                while positioned and examined < max_examined and len(taken) < self.size:
                    key = cur.key()
                    if U64.unpack(key[:8])[0] != chain_id:
                        break
                    examined += 1
                    if cur.value()[:1] == bytes((KIND_INCLUDED,)):
                        seq = U64.unpack(key[8:16])[0]
                        value = txn.get(seq_key(seq), db=eventlog.events_db)
                        if value is not None:
                            taken.append(decode_event(value, seq).tx_included.inclusion_latency_ms)
                    positioned = cur.prev()
            return found
        for chain_id, latencies in eventlog.read(read).items():
            if latencies:
                window = self._window(chain_id)
                if window is not None:
                    window.extend(reversed(latencies))


def lifecycle_totals(chain_id: int, counter: Callable[[int, bytes], int], latencies: LatencyWindow,
                     pending: int) -> query_pb2.LifecycleTotals:
    """The snapshot's lifecycle figures of one chain (``counter`` reads its ``agg`` counters)."""
    included, replaced, dropped = (counter(chain_id, f) for f in (AGG_INCLUDED, AGG_REPLACED, AGG_DROPPED))
    settled = included + replaced + dropped
    block_txs, private = counter(chain_id, AGG_BLOCK_TXS), counter(chain_id, AGG_PRIVATE)
    p50, p99 = latencies.percentiles(chain_id)
    return query_pb2.LifecycleTotals(
        pending=pending, included=included, replaced=replaced, dropped=dropped, included_private=private,
        reorgs=counter(chain_id, AGG_REORGS), reorgs_too_deep=counter(chain_id, AGG_REORGS_DEEP),
        inclusion_latency_p50_ms=p50, inclusion_latency_p99_ms=p99,
        replaced_rate=replaced / settled if settled else 0.0, dropped_rate=dropped / settled if settled else 0.0,
        private_share=private / block_txs if block_txs else 0.0)
