"""The recent-blocks read model: per chain (and over all chains) the newest stored blocks, bounded.

Each entry is a ``ListBlocksBlock`` (number, hash, counts, times; not the transaction list, which stays in the
block's BLOCK event), built once per block when its commit is applied. Ordered by seq (commit order: ingestd
sends a chain's blocks by height, gaps filled in order, so this is height order but for reorgs). Rebuilt at
start from the ``blocks`` index: one backward cursor walk per chain (its keys sort by height within a chain)
and one event read per entry, so the cost is the window's, not the log's.
"""

from __future__ import annotations

import contextlib
from collections import deque

import lmdb

from common.pb.v1 import block_pb2, query_pb2
from processd.storage.eventlog import U64, EventLog, decode_event, seq_key
from processd.storage.records import BlockEntry

_REVERTED = block_pb2.TX_STATUS_REVERTED


def summary(seq: int, value: bytes | memoryview) -> query_pb2.ListBlocksBlock:
    """The list entry of the BLOCK event ``value`` stored at ``seq``."""
    event = decode_event(value, seq)
    block = event.block.block
    return query_pb2.ListBlocksBlock(
        seq_id=seq, chain_id=block.chain_id, number=block.number, hash=block.hash, parent_hash=block.parent_hash,
        timestamp=block.timestamp, base_fee=block.base_fee, tx_count=block.tx_count,
        seen_pending=event.block.seen_pending, source_id=block.source_id, seen_unix_ns=block.seen_unix_ns,
        received_unix_ns=event.received_unix_ns, reverted=sum(1 for tx in block.txs if tx.status == _REVERTED),
        inclusion_latency_p50_ms=event.block.inclusion_latency_p50_ms)


class BlockWindow:
    """The newest ``size`` blocks per chain and over all chains, newest last."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.all: deque[query_pb2.ListBlocksBlock] = deque(maxlen=size)
        self.chains: dict[int, deque[query_pb2.ListBlocksBlock]] = {}

    def __len__(self) -> int:
        return len(self.all)

    def add(self, entries: list[BlockEntry]) -> None:
        """Adds a commit's stored blocks (in seq order)."""
        for seq, _, value in entries:
            self._append(summary(seq, value))

    def _append(self, entry: query_pb2.ListBlocksBlock) -> None:
        window = self.chains.get(entry.chain_id)
        if window is None:
            window = self.chains[entry.chain_id] = deque(maxlen=self.size)
        elif window and entry.number <= window[-1].number:  # a reorg, or a block stored again: the chain went back
            for old in [e for e in window if e.hash == entry.hash]:  # to it (it moves to its new seq, as the index
                window.remove(old)  # entry does: the window rebuilt at start is the same)
                with contextlib.suppress(ValueError):  # (gone from the window of all chains already)
                    self.all.remove(old)
        self.all.append(entry)
        window.append(entry)

    def page(self, chain_id: int, limit: int, cursor: int) -> tuple[list[query_pb2.ListBlocksBlock], int]:
        """Up to ``limit`` blocks with a seq below ``cursor`` (0 = from the newest), newest first, and the cursor
        of the next page (0 when none is left in the window)."""
        window = self.all if not chain_id else self.chains.get(chain_id, ())
        out: list[query_pb2.ListBlocksBlock] = []
        more = False
        for entry in reversed(window):
            if cursor and entry.seq_id >= cursor:
                continue
            if len(out) == limit:
                more = True
                break
            out.append(entry)
        return out, out[-1].seq_id if more and out else 0

    def rebuild(self, eventlog: EventLog) -> None:
        """Fills the window from the log (at start, before any commit)."""
        def read(txn: lmdb.Transaction) -> list[query_pb2.ListBlocksBlock]:
            found: list[query_pb2.ListBlocksBlock] = []
            cur = txn.cursor(db=eventlog.blocks_db)
            positioned = cur.last()
            while positioned:
                chain = cur.key()[:8]
                taken = 0
                while positioned and cur.key()[:8] == chain and taken < self.size:
                    seq = U64.unpack(cur.value())[0]
                    value = txn.get(seq_key(seq), db=eventlog.events_db)
                    if value is not None:
                        found.append(summary(seq, value))
                        taken += 1
                    positioned = cur.prev()
                # on to the previous chain: jump below this chain's smallest key
                positioned = cur.set_range(chain) and cur.prev() if positioned else False
            return found
        entries = eventlog.read(read)
        entries.sort(key=lambda e: e.seq_id)
        for entry in entries:
            self._append(entry)
