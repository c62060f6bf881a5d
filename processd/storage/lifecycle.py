"""The transaction lifecycle state machine (issue 16): pending -> included | replaced | dropped, per chain.

:class:`LifecycleTracker` holds, per chain, the pending transactions it tracks (by hash, and by sender and nonce),
the recent blocks (up to ``max_reorg_depth``, with the transactions each included) and the chain's head (that
state's shapes are ``processd.storage.lifestate``'s; this module is the rules). It is pure state, no LMDB: the
single writer (``processd.storage.writer``) feeds it the inputs of a commit in seq order inside the write
transaction (through ``processd.storage.lifeengine.LifeEngine``, in the lifecycle process or in the writer's
thread), and stores the :data:`~processd.storage.lifestate.LifeEvent` s it returns, encoded, in that same
transaction, so a lifecycle event is exactly as durable as its cause.

Rules (docs/architecture.md, "The transaction lifecycle"):

* A chain is tracked from its first stored block (before it, nothing can settle a transaction, and there is no
  log time to expire one by). A transaction stored before that stays untracked (status UNSPECIFIED).
* **pending**: a stored transaction (TX_SEEN) of a tracked chain, at most ``max_pending`` over all chains (past the
  bound it is counted as ``overflow`` and left untracked).
* **replaced**: a new pending transaction of the same (sender, nonce) replaces the tracked one (TX_REPLACED with
  the fee bump in bps and whether it is a cancel); so does a block including another hash of that pair
  (``by_block``: a replacement processd only saw mined). A transaction replaced by a pending one keeps its
  (sender, nonce) slot (``ChainLife.replaced``, counted in ``max_pending``) until a block settles that nonce: a
  node can accept a speed-up or cancel while it is mining the original, and then mines the original
  (docs/reliability.md bug 19). A block listing a held replaced transaction includes it (TX_INCLUDED after its
  TX_REPLACED: its last event is the node's truth), the pending replacement is replaced ``by_block`` by it, and
  any other held replaced hash of the slot whose replacement was not the mined one is replaced ``by_block`` by the
  mined one; a block mining the nonce or a higher one of the sender, or expiry, forgets the slot.
* **included**: a block lists the hash (TX_INCLUDED: block, index, receipt status, latency = block timestamp minus
  first seen); also a transaction stored after a held block listed it (ingestd fetched the block first): it is
  included in that block as it is stored.
* **dropped**: ``nonce_passed`` when a block includes a higher nonce of the sender (the nonce was used by a
  transaction processd never saw pending: it cannot be "replaced by" a known hash, so it is a drop, not a
  replacement); ``evicted`` on ingestd's TxGone; ``expired`` when a block's timestamp is past the transaction's
  first-seen time plus ``ttl_ms``. Expiry is evaluated only when a block is applied, against that block's
  timestamp: log time, never the wall clock, so replaying the log reproduces it.
* **reorg**: a block at a height the tracker holds with another hash orphans the held blocks from that height up:
  their included transactions are pending again (and included anew when their block of the new branch arrives),
  and a REORG event records depth, hashes and how many came back. A reorg below the held window
  (deeper than ``max_reorg_depth``) is recorded with ``too_deep`` and undoes the held blocks only. A transaction put
  back whose (sender, nonce) another pending one took meanwhile is tracked by hash only (the pair stays the other's).

Restart: :meth:`LifecycleTracker.floors` gives per chain the lowest seq whose events the state depends on (tracked
transactions, held blocks and their included transactions); the writer persists it per chain (``agg``) in every
commit that changed the chain, and at start :meth:`processd.storage.lifeengine.LifeEngine.rebuild_env` re-runs the
tracker over the log from there, which reproduces the state (the rules are a function of the log's events in seq
order; ``tests/processd/test_lifecycle_tracker.py`` checks it as a property).
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Iterable

from common.pb.v1 import block_pb2, events_pb2
from processd.storage.lifestate import HASH as _HASH
from processd.storage.lifestate import HASH_OF as _HASH_OF
from processd.storage.lifestate import HASH_OF_ROW as _HASH_OF_ROW
from processd.storage.lifestate import NONCE as _NONCE
from processd.storage.lifestate import REPENDED as _REPENDED
from processd.storage.lifestate import SEEN as _SEEN
from processd.storage.lifestate import SENDER as _SENDER
from processd.storage.lifestate import SEQ as _SEQ
from processd.storage.lifestate import (
    BlockOutcome,
    BlockRow,
    ChainLife,
    HeldBlock,
    LifeEvent,
    Pending,
)
from processd.wire.lifeencoding import DroppedBody, IncludedBody, ReplacedBody

KIND_INCLUDED: int = events_pb2.EVENT_KIND_TX_INCLUDED
KIND_REPLACED: int = events_pb2.EVENT_KIND_TX_REPLACED
KIND_DROPPED: int = events_pb2.EVENT_KIND_TX_DROPPED
KIND_REORG: int = events_pb2.EVENT_KIND_REORG
EXPIRED = events_pb2.DROP_REASON_EXPIRED
EVICTED = events_pb2.DROP_REASON_EVICTED
NONCE_PASSED = events_pb2.DROP_REASON_NONCE_PASSED
#: Outcome labels of mempulse_processd_lifecycle_total (the first four are also agg counters).
OUTCOMES = ("included", "replaced", "dropped_expired", "dropped_evicted", "dropped_nonce_passed", "overflow",
            "late_pending", "reincluded", "replaced_mined")


#: C-level constructors of the event bodies (a NamedTuple's own ``__new__`` is a Python call per event).
_included_body = functools.partial(tuple.__new__, IncludedBody)
_replaced_body = functools.partial(tuple.__new__, ReplacedBody)
_dropped_body = functools.partial(tuple.__new__, DroppedBody)


def fee_bump_bps(old: bytes | int, new: bytes | int) -> int:
    """The replacement's bid over the replaced one's, basis points of the old bid (0 when either is unknown); a bid
    is wei, as an int or big-endian bytes (read only here: a replacement is rare, a tracked transaction is not)."""
    if isinstance(old, bytes):
        old = int.from_bytes(old, "big")
    if isinstance(new, bytes):
        new = int.from_bytes(new, "big")
    if old <= 0 or new <= 0:
        return 0
    return (new - old) * 10_000 // old


class LifecycleTracker:
    """The lifecycle state of every tracked chain (module doc). Used by the single writer's thread only."""

    def __init__(self, *, ttl_ms: int = 3_600_000, max_pending: int = 200_000, max_reorg_depth: int = 64) -> None:
        self.ttl_ns = ttl_ms * 1_000_000
        self.max_pending = max_pending
        self.max_reorg_depth = max_reorg_depth
        self.chains: dict[int, ChainLife] = {}
        self.tracked = 0
        #: Replaced transactions held until a block settles their nonce (``ChainLife.replaced``, all chains).
        self.held = 0
        #: Outcome counts since start (OUTCOMES; the metrics read and the writer's agg deltas come from events).
        self.counts: dict[str, int] = dict.fromkeys(OUTCOMES, 0)

    def active(self, chain_id: int) -> bool:
        """Whether the chain is tracked (a block of it was applied)."""
        return chain_id in self.chains

    def activate(self, chain_id: int) -> ChainLife:
        """Starts tracking ``chain_id`` (its first block, or a restart that knows it had one)."""
        life = self.chains.get(chain_id)
        if life is None:
            life = self.chains[chain_id] = ChainLife()
        return life

    # ---- inputs ------------------------------------------------------------------------------------------

    def pending(self, chain_id: int, tx: Pending) -> list[LifeEvent]:
        """A stored pending transaction: tracked (and replacing its (sender, nonce) predecessor) when its chain is."""
        life = self.chains.get(chain_id)
        if life is None:
            return []
        if tx.tx_hash in life.included_hashes:  # announced after a held block included it
            self.counts["late_pending"] += 1
            return []
        held = life.listed.get(tx.tx_hash)
        if held is not None:  # stored after the block that lists it (its fetch finished later): included now
            return self._late_include(life, chain_id, tx, held)
        out: list[LifeEvent] = []
        holder = life.slot(tx.sender, tx.nonce)
        if holder is not None:
            old = self._settle(life, holder[_HASH])
            body = ReplacedBody(tx.tx_hash, fee_bump_bps(old.fee, tx.fee), tx.cancel, old.seq)
            out.append((KIND_REPLACED, chain_id, old.tx_hash, old.first_seen_ns, body))
            self.counts["replaced"] += 1
            self._track(life, tx)
            self._hold_replaced(life, old, tx.tx_hash)  # after the replacement: it has the first claim on room
            life.compact_expiry()  # (past the bound the replaced one is not held: its entry is stale)
            return out
        self._track(life, tx)
        return out

    def pending_many(self, chain_id: int, txs: Iterable[Pending]) -> list[LifeEvent]:
        """:meth:`pending` of each of ``txs`` in order (a batch's stored transactions), with the usual case (a new
        (sender, nonce), room under the bound, no held block listing it) in one loop of dict operations; any other
        goes through :meth:`pending`."""
        life = self.chains.get(chain_id)
        if life is None:
            return []
        out: list[LifeEvent] = []
        pending, by_sender, listed, included = life.pending, life.by_sender, life.listed, life.included_hashes
        expiry, order_append, push = life.expiry, life.order.append, heapq.heappush
        added = 0  # tracked by the loop, not yet in self.tracked
        room = self.max_pending - self.tracked - self.held
        for tx in txs:
            tx_hash, sender, nonce = tx[_HASH], tx[_SENDER], tx[_NONCE]
            held = by_sender.get(sender)
            if tx_hash in listed or tx_hash in included or room <= added or (held is not None and (
                    nonce in held if isinstance(held, dict) else held[_NONCE] == nonce)):
                self.tracked += added  # (pending() reads and counts it)
                added = 0
                out += self.pending(chain_id, tx)
                room = self.max_pending - self.tracked - self.held
                continue
            if held is None:  # (ChainLife.claim, inline: the pair is free)
                by_sender[sender] = tx
            elif isinstance(held, dict):
                held[nonce] = tx
            else:
                by_sender[sender] = {held[_NONCE]: held, nonce: tx}
            pending[tx_hash] = tx
            push(expiry, tx)
            order_append(tx)
            added += 1
        self.tracked += added
        return out

    def _late_include(self, life: ChainLife, chain_id: int, tx: Pending, held: HeldBlock) -> list[LifeEvent]:
        """A pending transaction stored after a held block listed it: included in that block (its (sender, nonce)
        was settled by the block already), and put back like the block's other inclusions if a reorg orphans it."""
        index, status = held.position(tx.tx_hash)
        latency = max(0, held.timestamp * 1000 - tx.first_seen_ns // 1_000_000)
        held.included.append(tx)
        life.included_hashes.add(tx.tx_hash)
        self.counts["late_pending"] += 1
        self.counts["included"] += 1
        body = IncludedBody(held.number, held.block_hash, index, status, latency, tx.seq, held.seq, False)
        return [(KIND_INCLUDED, chain_id, tx.tx_hash, tx.first_seen_ns, body)]

    def gone(self, chain_id: int, tx_hash: bytes, source_id: str) -> list[LifeEvent]:
        """ingestd says the node no longer knows ``tx_hash``: a tracked one is dropped as evicted."""
        life = self.chains.get(chain_id)
        if life is None or tx_hash not in life.pending:
            return []
        old = self._settle(life, tx_hash)
        life.compact_expiry()
        self.counts["dropped_evicted"] += 1
        body = DroppedBody(EVICTED, old.seq, source_id)
        return [(KIND_DROPPED, chain_id, old.tx_hash, old.first_seen_ns, body)]

    def block(self, block: block_pb2.BlockEnvelope, seq: int) -> BlockOutcome:
        """Applies a new block (stored as a BLOCK event at ``seq``): reorg, inclusions, replacements, nonce
        drops, expiry, in that order (module doc)."""
        chain_id = block.chain_id
        life = self.activate(chain_id)
        outcome = BlockOutcome()
        if block.number <= life.head:
            held = life.blocks.get(block.number)
            if held is None or held.block_hash != block.hash:
                outcome.events.append(self._reorg(life, block, held is None))
        held_block = HeldBlock(block.number, block.hash, seq, timestamp=block.timestamp)
        # Each field of each listed transaction read once (every upb read allocates): (hash, sender, nonce, index,
        # receipt status).
        rows: list[BlockRow] = [(tx.hash, tx.sender, tx.nonce, tx.index, tx.status) for tx in block.txs]
        held_block.rows = rows
        self._include(life, chain_id, rows, held_block, outcome)
        self._nonces_passed(life, chain_id, rows, outcome)
        self._expire(life, chain_id, block.timestamp * 1_000_000_000, outcome)
        held_block.seal()
        life.blocks[block.number] = held_block
        life.included_hashes.update(map(_HASH_OF, held_block.included))
        life.listed.update(dict.fromkeys(map(_HASH_OF_ROW, rows), held_block))
        life.head = max(life.head, block.number)
        for number in [n for n in life.blocks if n <= life.head - self.max_reorg_depth]:
            self._forget(life, life.blocks.pop(number))
        return outcome

    # ---- block steps -------------------------------------------------------------------------------------

    def _reorg(self, life: ChainLife, block: block_pb2.BlockEnvelope, below_window: bool) -> LifeEvent:
        """Un-includes the held blocks from ``block.number`` up (they are orphaned); the REORG event."""
        orphaned = sorted((b for b in life.blocks.values() if b.number >= block.number), key=lambda b: b.number)
        depth = life.head - block.number + 1
        back = 0
        for held in orphaned:
            del life.blocks[held.number]
            self._forget(life, held)
            for tx in held.included:
                if tx.tx_hash in life.pending:
                    continue
                tx = tx._replace(repended=True)
                if self._track(life, tx):
                    back += 1
                    life.repended_floor = min(life.repended_floor or tx.seq, tx.seq)
        too_deep = below_window or depth > self.max_reorg_depth
        life.head = block.number - 1
        body = events_pb2.Reorg(depth=depth, new_hash=block.hash, number=block.number,
                                orphaned_hashes=[b.block_hash for b in orphaned], unincluded=back, too_deep=too_deep)
        return (KIND_REORG, block.chain_id, b"", 0, body)

    def _include(self, life: ChainLife, chain_id: int, rows: list[BlockRow],
                 held: HeldBlock, outcome: BlockOutcome) -> None:
        """Settles the block's tracked transactions as included, other hashes of their (sender, nonce) as replaced
        by them, and includes a listed transaction held as replaced (bug 19: the node mined the original). One loop
        over the block's rows, the settling of a tracked transaction written out (it runs for most of them)."""
        ts_ms, number, block_hash, block_seq = held.timestamp * 1000, held.number, held.block_hash, held.seq
        latencies: list[int] = []
        pending, by_sender, replaced, events, counts = life.pending, life.by_sender, life.replaced, outcome.events, \
            self.counts
        included, replaced_at = held.included, life.replaced_at  # (a ChainLife's maps are never rebound)
        settled = 0  # (taken from self.tracked once, after the loop)
        for tx_hash, sender, nonce, index, status in rows:
            p = pending.pop(tx_hash, None)
            in_pending = p is not None
            if p is not None:  # (LifecycleTracker._settle, inline for a sender of one tracked nonce)
                holder = by_sender.get(p[_SENDER])
                if holder is not None:
                    if type(holder) is dict:
                        life.unclaim(p)
                    elif holder[_HASH] == tx_hash:
                        del by_sender[p[_SENDER]]
                settled += 1
            elif tx_hash in replaced:
                p = self._forget_replaced(life, tx_hash)
                counts["replaced_mined"] += 1
            if p is not None:
                latency = ts_ms - p[_SEEN] // 1_000_000
                if latency < 0:
                    latency = 0
                latencies.append(latency)
                included.append(p)
                reincluded = p[_REPENDED]
                if reincluded:
                    counts["reincluded"] += 1
                events.append((KIND_INCLUDED, chain_id, tx_hash, p[_SEEN], _included_body(
                    (number, block_hash, index, status, latency, p[_SEQ], block_seq, reincluded))))
            if not in_pending and sender in by_sender:
                holder = life.slot(sender, nonce)
                if holder is not None:
                    other = holder[_HASH]
                    old = self._settle(life, other)
                    events.append((KIND_REPLACED, chain_id, other, old[_SEEN], _replaced_body(
                        (tx_hash, 0, False, old[_SEQ], True))))
                    counts["replaced"] += 1
            if replaced_at:
                self._settle_slot(life, chain_id, sender, nonce, tx_hash, events)
        self.tracked -= settled
        counts["included"] += len(latencies)
        if not pending:
            life.repended_floor = 0
        if latencies:
            latencies.sort()
            outcome.latency_p50_ms = latencies[(len(latencies) - 1) // 2]
            outcome.included_tracked = len(latencies)

    def _settle_slot(self, life: ChainLife, chain_id: int, sender: bytes, nonce: int, mined: bytes,
                     events: list[LifeEvent]) -> None:
        """A block mined ``mined`` at (``sender``, ``nonce``): the replaced transactions held for that slot are
        forgotten, and one whose replacement was not the mined transaction is replaced ``by_block`` by it (what the
        node says of it)."""
        nonces = life.replaced_at.get(sender)
        hashes = nonces.get(nonce) if nonces else None
        if not hashes:
            return
        for tx_hash in list(hashes):
            by_hash = life.replaced[tx_hash][1]
            old = self._forget_replaced(life, tx_hash)
            if by_hash != mined:
                body = ReplacedBody(mined, 0, False, old.seq, by_block=True)
                events.append((KIND_REPLACED, chain_id, tx_hash, old.first_seen_ns, body))
                self.counts["replaced"] += 1

    def _nonces_passed(self, life: ChainLife, chain_id: int, rows: list[BlockRow],
                       outcome: BlockOutcome) -> None:
        """Drops the tracked transactions whose nonce is below one the block mined for their sender."""
        by_sender, replaced_at, pending = life.by_sender, life.replaced_at, life.pending
        mined: dict[bytes, int] = {}
        for _, sender, nonce, _, _ in rows:  # (both maps drop a sender whose last nonce goes: ``in`` is enough)
            if (sender in by_sender or sender in replaced_at) and nonce >= mined.get(sender, -1):
                mined[sender] = nonce
        events = outcome.events
        dropped = 0  # (taken from self.tracked and counted once, after the loop)
        for sender, top in mined.items():
            held = replaced_at.get(sender)
            if held:  # replaced transactions of a passed nonce: their slot is settled (by a hash never seen)
                for nonce in [n for n in held if n < top]:
                    for tx_hash in list(held[nonce]):
                        self._forget_replaced(life, tx_hash)
            holder = by_sender.get(sender)
            if holder is None:
                continue
            if isinstance(holder, dict):
                passed = self._unclaim_below(life, sender, top)
            else:  # (_unclaim_below, inline for a sender of one tracked nonce: most)
                if holder[_NONCE] >= top:
                    continue
                del by_sender[sender]
                passed = [holder[_HASH]]
            for tx_hash in passed:  # (LifecycleTracker._settle, inline: the pair maps to the tracked hash)
                old = pending.pop(tx_hash)
                events.append((KIND_DROPPED, chain_id, tx_hash, old[_SEEN],
                               _dropped_body((NONCE_PASSED, old[_SEQ], ""))))
            dropped += len(passed)
        self.tracked -= dropped
        self.counts["dropped_nonce_passed"] += dropped

    @staticmethod
    def _unclaim_below(life: ChainLife, sender: bytes, top: int) -> list[bytes]:
        """Frees the (``sender``, nonce) pairs below ``top``; the hashes that held them, by nonce."""
        by_sender = life.by_sender
        held = by_sender.get(sender)
        if held is None:
            return []
        if not isinstance(held, dict):
            if held[_NONCE] >= top:
                return []
            del by_sender[sender]
            return [held[_HASH]]
        nonces: dict[int, Pending] = held
        passed = sorted([n for n in nonces if n < top])
        hashes = [nonces.pop(n)[_HASH] for n in passed]
        if len(nonces) == 1:
            by_sender[sender] = next(iter(nonces.values()))
        elif not nonces:
            del by_sender[sender]
        return hashes

    def _expire(self, life: ChainLife, chain_id: int, now_ns: int, outcome: BlockOutcome) -> None:
        """Drops, as expired, the tracked transactions first seen more than the TTL before ``now_ns`` (the block's
        timestamp), oldest first-seen first."""
        cutoff = now_ns - self.ttl_ns
        heap, pending, by_sender, events = life.expiry, life.pending, life.by_sender, outcome.events
        pop = heapq.heappop
        expired = 0  # (taken from self.tracked and counted once, after the loop)
        while heap and heap[0][0] < cutoff:
            entry = pop(heap)
            seq, tx_hash = entry[_SEQ], entry[_HASH]
            p = pending.get(tx_hash)
            if p is None or p[_SEQ] != seq:
                held = life.replaced.get(tx_hash)
                if held is not None and held[0][_SEQ] == seq:  # a replaced one expires silently (it is settled)
                    self._forget_replaced(life, tx_hash)
                continue
            del pending[tx_hash]  # (LifecycleTracker._settle, inline for a sender of one tracked nonce)
            holder = by_sender.get(p[_SENDER])
            if holder is not None:
                if type(holder) is dict:
                    life.unclaim(p)
                elif holder[_HASH] == tx_hash:
                    del by_sender[p[_SENDER]]
            expired += 1
            events.append((KIND_DROPPED, chain_id, tx_hash, p[_SEEN], _dropped_body((EXPIRED, seq, ""))))
        self.tracked -= expired
        self.counts["dropped_expired"] += expired
        life.compact_expiry()  # (after the loop: it pops from the heap it started with)

    # ---- state -------------------------------------------------------------------------------------------

    @staticmethod
    def _forget(life: ChainLife, held: HeldBlock) -> None:
        """A held block leaves the window (or is orphaned): its hashes are no longer included or listed by it."""
        life.included_hashes.difference_update(map(_HASH_OF, held.included))
        for tx_hash in map(_HASH_OF_ROW, held.rows):
            if life.listed.get(tx_hash) is held:
                del life.listed[tx_hash]

    def _track(self, life: ChainLife, tx: Pending) -> bool:
        if self.tracked + self.held >= self.max_pending:
            self.counts["overflow"] += 1
            return False
        life.pending[tx.tx_hash] = tx
        life.claim(tx)
        heapq.heappush(life.expiry, tx)
        life.order.append(tx)
        self.tracked += 1
        return True

    def _settle(self, life: ChainLife, tx_hash: bytes) -> Pending:
        p = life.pending.pop(tx_hash)
        life.unclaim(p)
        self.tracked -= 1
        return p

    def _hold_replaced(self, life: ChainLife, old: Pending, by_hash: bytes) -> None:
        """Keeps a transaction just replaced by a pending one until a block settles its (sender, nonce) (bug 19);
        past ``max_pending`` it is not kept (counted as ``overflow``)."""
        if self.tracked + self.held >= self.max_pending:
            self.counts["overflow"] += 1
            return
        life.replaced[old.tx_hash] = (old, by_hash)
        life.replaced_at.setdefault(old.sender, {}).setdefault(old.nonce, []).append(old.tx_hash)
        self.held += 1

    def _forget_replaced(self, life: ChainLife, tx_hash: bytes) -> Pending:
        p = life.replaced.pop(tx_hash)[0]
        nonces = life.replaced_at[p.sender]
        hashes = nonces[p.nonce]
        hashes.remove(tx_hash)
        if not hashes:
            del nonces[p.nonce]
            if not nonces:
                del life.replaced_at[p.sender]
        self.held -= 1
        return p

    def floors(self, chain_ids: Iterable[int], fallback: int) -> dict[int, int]:
        """Per chain, the lowest seq its state depends on (``fallback``, the commit's last seq + 1, when none)."""
        return {c: self.chains[c].floor(fallback) for c in chain_ids if c in self.chains}

    def index_entries(self) -> int:
        """Entries of every chain's expiry heap and tracking order (those of settled transactions linger until
        compacted: :meth:`ChainLife.compact_expiry`, :meth:`ChainLife.floor`); the gauge of their bound."""
        return sum(len(life.expiry) + len(life.order) for life in self.chains.values())

    def pending_count(self, chain_id: int) -> int:
        """Tracked pending transactions of a chain."""
        life = self.chains.get(chain_id)
        return len(life.pending) if life is not None else 0
