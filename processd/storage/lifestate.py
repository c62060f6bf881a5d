"""The state the lifecycle tracker holds (``processd.storage.lifecycle``): a tracked transaction (:class:`Pending`, a
plain tuple read by the positions below), a recent block and what it included (:class:`HeldBlock`), what applying a
block gives (:class:`BlockOutcome`) and one chain's maps (:class:`ChainLife`: pending by hash and by (sender,
nonce), the held replaced transactions, the expiry heap, the held blocks, the tracking order and the restart floor).

Apart from the rules (:class:`processd.storage.lifecycle.LifecycleTracker`) so each module stays readable: this one
is the data and its bookkeeping, that one what an input does to it. docs/processd.md "The transaction lifecycle"
gives the memory layout and why each tuple is shaped as it is.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Final, NamedTuple

from common.pb.v1 import events_pb2
from processd.wire.lifeencoding import DroppedBody, IncludedBody, ReplacedBody

#: A lifecycle event to store: (kind, chain id, transaction hash (empty for REORG), the transaction's first-seen
#: unix ns, body: an IncludedBody, ReplacedBody or DroppedBody (encoded by hand), or a Reorg message).
LifeEvent = tuple[int, int, bytes, int, "IncludedBody | ReplacedBody | DroppedBody | events_pb2.Reorg"]

class Pending(NamedTuple):
    """One tracked pending transaction: a plain tuple (the writer builds one per stored transaction, so it costs a
    tuple, not an object; the tracker reads it by the ``SEQ``... indexes below). First-seen time, then seq: the
    tuple is its own expiry heap entry (ordered by first seen, ties by seq; no tuple of its own per entry)."""

    first_seen_ns: int
    seq: int  # its TX_SEEN seq
    tx_hash: bytes
    sender: bytes
    nonce: int
    fee: int  # its bid: max_fee_per_gas or gas_price, wei (0 = unknown)
    cancel: bool  # a transfer of 0 to itself without calldata
    repended: bool = False  # put back by a reorg (its next inclusion is a re-inclusion)


#: Positions of :class:`Pending`'s fields (the hot loops index tuples: no attribute lookup).
SEEN: Final = 0
SEQ: Final = 1
HASH: Final = 2
SENDER: Final = 3
NONCE: Final = 4
REPENDED: Final = 7
#: A transaction a block lists, as the tracker reads it: (hash, sender, nonce, index, receipt status).
BlockRow = tuple[bytes, bytes, int, int, int]
SEQ_OF, HASH_OF, HASH_OF_ROW = itemgetter(SEQ), itemgetter(HASH), itemgetter(0)
@dataclass(slots=True)
class HeldBlock:
    """A recent block of a chain and the tracked transactions it included (what a reorg puts back)."""

    number: int
    block_hash: bytes
    seq: int
    included: list[Pending] = field(default_factory=list)
    #: Every transaction the block lists, tracked or not (:data:`BlockRow` s): one whose pending envelope is stored
    #: after the block is included at once (:meth:`LifecycleTracker.pending`, which looks it up by :meth:`position`).
    rows: list[BlockRow] = field(default_factory=list)
    timestamp: int = 0

    #: The lowest seq this block's undo depends on (set once the block is applied: :meth:`seal`).
    floor: int = 0
    _positions: dict[bytes, tuple[int, int]] | None = None

    def seal(self) -> None:
        """Records :attr:`floor` (the included list does not change after the block is applied)."""
        self.floor = min(self.seq, min(map(SEQ_OF, self.included), default=self.seq))

    def position(self, tx_hash: bytes) -> tuple[int, int]:
        """(index, receipt status) of a transaction the block lists (the map is built on the first question: a
        late pending transaction is rare)."""
        if self._positions is None:
            self._positions = {row[0]: (row[3], row[4]) for row in self.rows}
        return self._positions[tx_hash]


@dataclass(slots=True)
class BlockOutcome:
    """What applying one block gives: the events to store after its BLOCK event, and its BlockSeen figures."""

    events: list[LifeEvent] = field(default_factory=list)
    latency_p50_ms: int = 0
    included_tracked: int = 0


class ChainLife:
    """One chain's lifecycle state."""

    def __init__(self) -> None:
        self.pending: dict[bytes, Pending] = {}
        #: The (sender, nonce) index of ``pending``: sender -> the tracked :class:`Pending` itself when the sender has
        #: one tracked nonce (most have: no dict per sender), else a dict nonce -> Pending (two or more: a dict left
        #: with one is collapsed back, so the shape is a function of the content and a rebuild gives the same).
        self.by_sender: dict[bytes, Pending | dict[int, Pending]] = {}
        #: Replaced transactions whose (sender, nonce) no block settled yet: hash -> (the transaction, the hash that
        #: replaced it); and sender -> nonce -> those hashes (a block listing one of them includes it: bug 19).
        self.replaced: dict[bytes, tuple[Pending, bytes]] = {}
        self.replaced_at: dict[bytes, dict[int, list[bytes]]] = {}
        #: The expiry heap: every tracked (and held replaced) transaction's :class:`Pending` itself, which orders by
        #: (first seen ns, seq); entries of settled ones are skipped when met.
        self.expiry: list[Pending] = []
        self.blocks: dict[int, HeldBlock] = {}
        self.included_hashes: set[bytes] = set()
        #: Hash -> the held block listing it (every transaction of the held blocks, tracked or not).
        self.listed: dict[bytes, HeldBlock] = {}
        self.head = -1
        #: The lowest seq of a transaction put back by a reorg and still tracked (its place in ``pending`` is new).
        self.repended_floor = 0
        #: The tracked transactions (their :class:`Pending` itself: no tuple per entry) in tracking order (seq
        #: order, but for those a reorg put back; an entry counts while it is the very object tracked):
        #: settled ones are dropped from the front when :meth:`floor` meets them (amortized O(1); iterating the
        #: ``pending`` dict from its start would walk every slot its deletions left).
        self.order: deque[Pending] = deque()

    def slot(self, sender: bytes, nonce: int) -> Pending | None:
        """The tracked transaction holding (``sender``, ``nonce``) in :attr:`by_sender`, if any."""
        held = self.by_sender.get(sender)
        if held is None:
            return None
        if isinstance(held, dict):
            return held.get(nonce)
        return held if held[NONCE] == nonce else None

    def claim(self, tx: Pending) -> None:
        """Gives ``tx`` its (sender, nonce) unless another tracked transaction holds it (a transaction put back by a
        reorg does not take its pair from one seen pending meanwhile)."""
        by_sender, sender = self.by_sender, tx[SENDER]
        held = by_sender.get(sender)
        if held is None:
            by_sender[sender] = tx
        elif isinstance(held, dict):
            held.setdefault(tx[NONCE], tx)
        elif held[NONCE] != tx[NONCE]:
            by_sender[sender] = {held[NONCE]: held, tx[NONCE]: tx}

    def unclaim(self, p: Pending) -> None:
        """Frees ``p``'s (sender, nonce) if ``p`` (by hash) holds it."""
        by_sender, sender = self.by_sender, p[SENDER]
        held = by_sender.get(sender)
        if held is None:
            return
        if isinstance(held, dict):
            q = held.get(p[NONCE])
            if q is not None and q[HASH] == p[HASH]:
                del held[p[NONCE]]
                if len(held) == 1:
                    by_sender[sender] = next(iter(held.values()))
        elif held[HASH] == p[HASH]:
            del by_sender[sender]

    def compact_expiry(self) -> None:
        """Rebuilds the expiry heap from the tracked and held transactions once the entries of settled ones (skipped
        when :meth:`LifecycleTracker._expire` meets them) outnumber those: expiry pops them only when a block is
        applied, and a chain without blocks still settles transactions by replacement and eviction (amortized O(1):
        a rebuild follows at least as many settles as it keeps entries)."""
        if len(self.expiry) > 2 * (len(self.pending) + len(self.replaced)) + 1024:
            expiry = [*self.pending.values(), *(r[0] for r in self.replaced.values())]
            heapq.heapify(expiry)
            self.expiry = expiry

    def floor(self, fallback: int) -> int:
        """The lowest seq the chain's state depends on (``fallback`` when it holds nothing)."""
        order, pending, replaced = self.order, self.pending, self.replaced
        # Settled entries behind a long-held one: compact (each keeps its Pending alive; as the expiry heap's bound).
        if len(order) > 2 * (len(pending) + len(replaced)) + 1024:
            order = self.order = deque(sorted([*pending.values(), *(r[0] for r in replaced.values())],
                                              key=SEQ_OF))
        while order:
            p = order[0]
            held = pending.get(p[HASH])
            if held is None:
                r = replaced.get(p[HASH])
                held = r[0] if r is not None else None
            if held is p:
                break
            order.popleft()
        marks = [order[0][SEQ]] if order else []
        if self.repended_floor and pending:
            marks.append(self.repended_floor)
        marks.extend(b.floor for b in self.blocks.values())
        return min(marks) if marks else fallback
