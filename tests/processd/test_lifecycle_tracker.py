"""The lifecycle state machine alone (processd/storage/lifecycle.py): unit cases, a property test against a naive
reference model, and the restart property (re-running the tracker over the log from its floor gives the same
state). Property tests run derandomized (tests/conftest.py's gating profile)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from common.pb.v1 import block_pb2, events_pb2
from processd.storage.lifecycle import LifecycleTracker, fee_bump_bps
from processd.storage.lifestate import ChainLife, Pending

CHAIN = 1
TTL_S = 100


def _tracker(max_pending: int = 1000, depth: int = 4) -> LifecycleTracker:
    return LifecycleTracker(ttl_ms=TTL_S * 1000, max_pending=max_pending, max_reorg_depth=depth)


def _p(seq: int, tag: int, sender: int, nonce: int, fee: int = 100, seen_s: int = 1000) -> Pending:
    return Pending(seen_s * 10**9, seq, bytes([tag]) * 32, bytes([sender]) * 20, nonce, fee, False)


def _block(number: int, txs: list[tuple[int, int, int]], ts: int, tag: int = 0) -> block_pb2.BlockEnvelope:
    return block_pb2.BlockEnvelope(
        chain_id=CHAIN, number=number, hash=bytes([number % 256, tag]) * 16, timestamp=ts,
        txs=[block_pb2.IncludedTx(hash=bytes([h]) * 32, index=i, sender=bytes([s]) * 20, nonce=n)
             for i, (h, s, n) in enumerate(txs)])


def test_fee_bump() -> None:
    assert fee_bump_bps(100, 112) == 1200
    assert fee_bump_bps(100, 90) == -1000
    assert fee_bump_bps(0, 10) == 0 and fee_bump_bps(10, 0) == 0


def test_untracked_before_the_first_block_and_overflow_counted() -> None:
    t = _tracker(max_pending=2)
    assert t.pending(CHAIN, _p(1, 1, 1, 0)) == [] and not t.tracked
    t.block(_block(1, [], 1000), 2)
    for seq, tag in ((3, 2), (4, 3), (5, 4)):
        t.pending(CHAIN, _p(seq, tag, tag, 0))
    assert t.tracked == 2 and t.counts["overflow"] == 1
    # the writer's batch path keeps the same bound (and a replacement inside the batch goes the usual way)
    t = _tracker(max_pending=3)
    t.block(_block(1, [], 1000), 2)
    out = t.pending_many(CHAIN, [_p(3, 2, 2, 0), _p(4, 3, 3, 0), _p(5, 4, 2, 0), _p(6, 5, 5, 0), _p(7, 6, 6, 0)])
    assert [e[0] for e in out] == [events_pb2.EVENT_KIND_TX_REPLACED]
    assert (t.tracked, t.held, t.counts["overflow"]) == (2, 1, 2)
    assert set(t.chains[CHAIN].pending) == {bytes([3]) * 32, bytes([4]) * 32}


def test_a_transaction_stored_after_the_block_that_lists_it_is_included_at_once() -> None:
    """ingestd can deliver a block before a transaction's pending envelope (the block's fetch finished first):
    the late envelope is included in that block at once (it was tracked as pending, then dropped as nonce_passed
    by the sender's next block: docs/reliability.md bug 20), and a reorg that orphans the block puts it back."""
    t = _tracker()
    t.block(_block(1, [], 1000), 1)
    t.pending(CHAIN, _p(2, 7, 7, 0))  # the original, sender 7 nonce 0
    out = t.block(_block(2, [(9, 7, 0), (8, 5, 0)], 1010), 3)  # a speed-up (hash 9) mined before it was stored
    assert [e[0] for e in out.events] == [events_pb2.EVENT_KIND_TX_REPLACED]  # the original, by_block
    ((kind, chain, tx_hash, _seen_ns, body),) = t.pending(CHAIN, _p(4, 9, 7, 0, seen_s=1008))
    assert (kind, chain, tx_hash) == (events_pb2.EVENT_KIND_TX_INCLUDED, CHAIN, bytes([9]) * 32)
    assert (body.block_number, body.position, body.inclusion_latency_ms) == (2, 0, 2000)
    assert not t.tracked and t.counts["late_pending"] == 1
    # the sender's next block does not drop it (it is not pending), and a second announcement is a no-op
    assert not t.block(_block(3, [(10, 7, 1)], 1012), 5).events
    assert t.pending(CHAIN, _p(6, 9, 7, 0)) == []
    # a reorg at height 2 puts it back to pending with the block's other tracked inclusions
    reorg = t.block(_block(2, [], 1013, tag=1), 7)
    assert reorg.events[0][0] == events_pb2.EVENT_KIND_REORG and t.chains[CHAIN].pending[bytes([9]) * 32].repended
    # an unknown block's listing is forgotten with the block
    assert bytes([8]) * 32 not in t.chains[CHAIN].listed


def test_a_replaced_transaction_the_block_mines_is_included() -> None:
    """A node can accept a speed-up while it is mining the original, then mine the original (docs/reliability.md bug
    19): the original's (sender, nonce) slot is held after TX_REPLACED, and the block listing it includes it; the
    pending speed-up is replaced by_block by it, and a middle replacement is replaced by_block by the mined one."""
    t = _tracker()
    t.block(_block(1, [], 1000), 1)
    t.pending(CHAIN, _p(2, 7, 7, 0, fee=100, seen_s=1001))  # the original
    [(kind, _, _, _, body)] = t.pending(CHAIN, _p(3, 8, 7, 0, fee=120))  # a speed-up: the original is replaced
    assert kind == events_pb2.EVENT_KIND_TX_REPLACED and body.by_hash == bytes([8]) * 32
    t.pending(CHAIN, _p(4, 9, 7, 0, fee=150))  # another: the first speed-up is replaced too
    assert t.tracked == 1 and t.held == 2
    out = t.block(_block(2, [(7, 7, 0)], 1010), 5)  # ... but the node mined the original
    got = [(e[0], e[2][0], getattr(e[4], "by_hash", b"")[:1], getattr(e[4], "by_block", None)) for e in out.events]
    assert got == [(events_pb2.EVENT_KIND_TX_INCLUDED, 7, b"", None),
                   (events_pb2.EVENT_KIND_TX_REPLACED, 9, b"\x07", True),   # the pending one, by the block
                   (events_pb2.EVENT_KIND_TX_REPLACED, 8, b"\x07", True)]   # the middle one: by the mined hash
    assert out.events[0][4].inclusion_latency_ms == 9000 and out.included_tracked == 1
    assert t.tracked == 0 and t.held == 0 and not t.chains[CHAIN].replaced_at
    # a slot the mined replacement settled, or a passed nonce, forgets the held ones without an event
    t.pending(CHAIN, _p(6, 10, 5, 0))
    t.pending(CHAIN, _p(7, 11, 5, 0))
    t.pending(CHAIN, _p(8, 12, 6, 0))
    t.pending(CHAIN, _p(9, 13, 6, 0))
    assert t.held == 2
    out = t.block(_block(3, [(11, 5, 0), (14, 6, 1)], 1020), 10)
    assert [(e[0], e[2][0]) for e in out.events] == [(events_pb2.EVENT_KIND_TX_INCLUDED, 11),
                                                      (events_pb2.EVENT_KIND_TX_DROPPED, 13)]
    assert t.held == 0 and t.tracked == 0


def test_held_replaced_transactions_count_against_max_pending_and_expire() -> None:
    t = _tracker(max_pending=2)
    t.block(_block(1, [], 1000), 1)
    t.chains[CHAIN].blocks[1].floor = 10  # (the held block alone would set the floor below the transactions)
    t.pending(CHAIN, _p(2, 1, 1, 0))
    t.pending(CHAIN, _p(3, 2, 1, 0))  # replaces 1: 1 is held
    assert (t.tracked, t.held) == (1, 1)
    t.pending(CHAIN, _p(4, 3, 1, 0))  # replaces 2: the replacement is tracked first, 2 finds no room
    assert (t.tracked, t.held, t.counts["overflow"]) == (1, 1, 1)
    assert t.floors([CHAIN], 100)[CHAIN] == 2  # the held one is part of the restart floor
    out = t.block(_block(2, [], 1000 + TTL_S + 1), 5)  # past the TTL: 3 expires, 1 is forgotten silently
    assert [(e[0], e[2][0]) for e in out.events] == [(events_pb2.EVENT_KIND_TX_DROPPED, 3)]
    assert (t.tracked, t.held) == (0, 0)


def test_settling_without_blocks_keeps_the_expiry_heap_bounded() -> None:
    """Without blocks (a chain that does not mine, or between slow blocks) transactions still settle: replaced by
    pending ones past the bound (the replaced one is not held) and evicted by TxGone. Their expiry entries used to
    stay until a block was applied, so the heap grew by one entry per such settle (the soak's RssAnon growth with
    the lifecycle on); it is compacted as settles pile up, and expiry still drops exactly the live ones."""
    t = _tracker(max_pending=4)
    t.block(_block(1, [], 1000), 1)
    life = t.chains[CHAIN]

    def tx(seq: int, sender: int, nonce: int) -> Pending:
        return Pending(1000 * 10**9, seq, seq.to_bytes(32, "big"), bytes([sender]) * 20, nonce, 100 + seq, False)

    for seq in range(2, 6):  # two senders, two nonces each: the bound is reached
        t.pending(CHAIN, tx(seq, seq % 2, seq // 4))
    seq = 6
    for _ in range(5000):  # replacements at the bound (nothing held) and evictions of new ones
        out = t.pending(CHAIN, tx(seq, 0, 0))
        assert [e[0] for e in out] == [events_pb2.EVENT_KIND_TX_REPLACED]
        seq += 1
    assert t.counts["overflow"] == 5000 and (t.tracked, t.held) == (4, 0)
    for _ in range(2000):
        assert t.gone(CHAIN, next(reversed(life.pending)), "s")  # the newest tracked one
        t.pending(CHAIN, tx(seq, 9, seq))
        seq += 1
    assert t.counts["dropped_evicted"] == 2000 and t.tracked == 4
    live = len(life.pending) + len(life.replaced)
    assert len(life.expiry) <= 2 * live + 1024
    assert t.index_entries() == len(life.expiry) + len(life.order)
    t.floors([CHAIN], seq)  # (each commit's floor compacts the tracking order as the heap is)
    assert len(life.order) <= 2 * live + 1024
    live_hashes = set(life.pending)
    out = t.block(_block(2, [], 1000 + TTL_S + 1), seq)  # past the TTL: exactly the live ones expire, once each
    assert [e[0] for e in out.events] == [events_pb2.EVENT_KIND_TX_DROPPED] * 4
    assert {e[2] for e in out.events} == live_hashes and t.tracked == 0


def test_reorg_unincludes_and_reincludes() -> None:
    t = _tracker()
    t.block(_block(1, [], 1000), 1)
    t.pending(CHAIN, _p(2, 7, 1, 0))
    out = t.block(_block(2, [(7, 1, 0)], 1010), 3)
    assert [e[0] for e in out.events] == [events_pb2.EVENT_KIND_TX_INCLUDED] and t.tracked == 0
    assert out.latency_p50_ms == 10_000 and out.included_tracked == 1
    out = t.block(_block(2, [], 1011, tag=1), 4)  # same height, other hash
    [reorg] = out.events
    assert reorg[0] == events_pb2.EVENT_KIND_REORG and reorg[4].depth == 1 and reorg[4].unincluded == 1
    assert not reorg[4].too_deep and t.tracked == 1
    out = t.block(_block(3, [(7, 1, 0)], 1020), 5)
    assert out.events[0][4].reincluded and t.tracked == 0


def test_a_reorg_below_the_held_window_is_too_deep() -> None:
    t = _tracker(depth=2)
    for n in range(1, 8):
        t.block(_block(n, [], 1000 + n), n)
    out = t.block(_block(3, [], 1100, tag=9), 20)
    [reorg] = out.events
    assert reorg[4].too_deep and reorg[4].depth == 5


# ---- against a reference model ---------------------------------------------------------------------------------


@dataclass
class Reference:
    """The rules written the slow, obvious way: a status per hash, every scan over everything."""

    status: dict[bytes, str] = field(default_factory=dict)
    txs: dict[bytes, Pending] = field(default_factory=dict)
    #: Replaced by a pending transaction, and no block settled their (sender, nonce) yet: a block listing one
    #: includes it (the node mined the original after accepting its replacement: bug 19).
    held: set[bytes] = field(default_factory=set)
    #: Block number -> the hashes it lists, for the last ``depth`` blocks (the tracker's held window).
    listed: dict[int, set[bytes]] = field(default_factory=dict)
    depth: int = 4

    def pending(self, tx: Pending) -> None:
        if any(tx.tx_hash in hashes for hashes in self.listed.values()):  # a held block listed it already
            self.txs[tx.tx_hash] = tx
            self.status[tx.tx_hash] = "included"
            return
        for h, p in self.txs.items():
            if self.status[h] == "pending" and (p.sender, p.nonce) == (tx.sender, tx.nonce):
                self.status[h] = "replaced"
                self.held.add(h)
        self.txs[tx.tx_hash] = tx
        self.status[tx.tx_hash] = "pending"

    def block(self, block: block_pb2.BlockEnvelope) -> None:
        self.listed[block.number] = {itx.hash for itx in block.txs}
        for number in [n for n in self.listed if n <= max(self.listed) - self.depth]:
            del self.listed[number]
        for itx in block.txs:
            if self.status.get(itx.hash) == "pending" or itx.hash in self.held:
                was_pending = self.status[itx.hash] == "pending"
                self.status[itx.hash] = "included"
                self.held = {h for h in self.held if (self.txs[h].sender, self.txs[h].nonce) != (itx.sender, itx.nonce)}
                if was_pending:
                    continue
            for h, p in self.txs.items():
                if self.status[h] == "pending" and (p.sender, p.nonce) == (itx.sender, itx.nonce):
                    self.status[h] = "replaced"
            self.held = {h for h in self.held if (self.txs[h].sender, self.txs[h].nonce) != (itx.sender, itx.nonce)}
        top: dict[bytes, int] = {}
        for itx in block.txs:
            top[itx.sender] = max(top.get(itx.sender, -1), itx.nonce)
        for h, p in self.txs.items():
            if self.status[h] == "pending" and p.nonce < top.get(p.sender, -1):
                self.status[h] = "dropped"
        self.held = {h for h in self.held if self.txs[h].nonce >= top.get(self.txs[h].sender, -1)}
        for h, p in self.txs.items():
            if self.status[h] == "pending" and p.first_seen_ns < (block.timestamp - TTL_S) * 10**9:
                self.status[h] = "dropped"
        self.held = {h for h in self.held if self.txs[h].first_seen_ns >= (block.timestamp - TTL_S) * 10**9}

    def gone(self, tx_hash: bytes) -> None:
        if self.status.get(tx_hash) == "pending":
            self.status[tx_hash] = "dropped"


_KIND_STATUS = {events_pb2.EVENT_KIND_TX_INCLUDED: "included", events_pb2.EVENT_KIND_TX_REPLACED: "replaced",
                events_pb2.EVENT_KIND_TX_DROPPED: "dropped"}
_op = st.one_of(
    st.tuples(st.just("tx"), st.integers(0, 3), st.integers(0, 3), st.integers(1, 200), st.integers(0, 150)),
    st.tuples(st.just("block"), st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3), st.integers(0, 3)),
                                         max_size=4), st.integers(0, 60)),
    st.tuples(st.just("gone"), st.integers(0, 40)),
)


def _run(ops: list[tuple], tracker: LifecycleTracker,
         after: Callable[[], None] | None = None) -> tuple[Reference, dict[bytes, str], list[tuple]]:
    """Runs ``ops`` on the tracker and the reference (``after`` called after each); the tracker's statuses from its
    events; the 'log'."""
    ref = Reference()
    got: dict[bytes, str] = {}
    log: list[tuple] = []  # (seq, input) as the event log would hold them
    seq, number, now = 1, 1, 1000
    tracker.block(_block(number, [], now), seq)
    log.append((seq, "block", _block(number, [], now)))
    tag = 0
    #: A hash stands for one signed transaction, so a block lists a hash sent before with that sender and nonce
    #: (a hash never seen pending, private flow, takes the op's own).
    slot_of: dict[bytes, tuple[bytes, int]] = {}
    for op in ops:
        seq += 1
        if op[0] == "tx":
            tag += 1
            tx = _p(seq, 0, op[1], op[2], op[3], now - op[4])._replace(tx_hash=tag.to_bytes(2, "big") * 16)
            slot_of[tx.tx_hash] = (tx.sender, tx.nonce)
            ref.pending(tx)
            log.append((seq, "tx", tx))
            events = tracker.pending_many(CHAIN, [tx])  # (the writer's path; the rebuild below takes pending())
            got[tx.tx_hash] = "pending"
        elif op[0] in ("block", "reorg"):
            # a reorg: a block at a height already held (1-3 below the next one), with another hash
            number = max(2, number + 1 - op[3]) if op[0] == "reorg" else number + 1
            now += op[2]
            hashes = [((h % max(tag, 1)) + 1).to_bytes(2, "big") * 16 for h, _, _ in op[1]]
            block = _block(number, [], now, tag=seq % 256 if op[0] == "reorg" else 0)
            slots = [slot_of.get(h, (bytes([s]) * 20, n)) for h, (_, s, n) in zip(hashes, op[1], strict=True)]
            block.txs.extend(block_pb2.IncludedTx(hash=h, sender=sender, nonce=nonce)
                             for h, (sender, nonce) in zip(hashes, slots, strict=True))
            ref.block(block)
            events = tracker.block(block, seq).events
            log.append((seq, "block", block))
        else:
            h = ((op[1] % max(tag, 1)) + 1).to_bytes(2, "big") * 16
            ref.gone(h)
            events = tracker.gone(CHAIN, h, "src")
            if events:  # the log holds the reports that dropped a transaction (TX_DROPPED evicted), not the others
                log.append((seq, "gone", h))
        for kind, _, tx_hash, _, _ in events:
            if tx_hash:  # (a REORG is about the chain)
                got[tx_hash] = _KIND_STATUS[kind]
        if after is not None:
            after()
    return ref, got, log


_reorg = st.tuples(st.just("reorg"), st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3), st.integers(0, 3)),
                                             max_size=4), st.integers(0, 60), st.integers(1, 3))


def _check_layout(life: ChainLife) -> None:
    """The compact layout (docs/processd.md, lifecycle memory): a sender of one tracked nonce maps to its Pending
    itself, a dict only holds two or more; every slot holds the very tuple tracked for its hash; every tracked or
    held tuple is its own entry of the expiry heap."""
    for sender, held in life.by_sender.items():
        slots = list(held.items()) if isinstance(held, dict) else [(held.nonce, held)]
        assert not isinstance(held, dict) or len(held) >= 2
        for nonce, p in slots:
            assert (p.sender, p.nonce) == (sender, nonce) and life.pending[p.tx_hash] is p
    in_heap = {id(p) for p in life.expiry}
    assert all(id(p) in in_heap for p in life.pending.values())
    assert all(id(r[0]) in in_heap for r in life.replaced.values())


@settings(max_examples=300)
@given(st.lists(_op, max_size=40))
def test_tracker_agrees_with_the_reference_model(ops: list[tuple]) -> None:
    tracker = _tracker()
    ref, got, _ = _run(ops, tracker)
    assert got == ref.status
    assert tracker.tracked == sum(1 for s in ref.status.values() if s == "pending")
    assert set(tracker.chains[CHAIN].replaced) == ref.held


@settings(max_examples=200)
@given(st.lists(st.one_of(_op, _reorg), max_size=40))
def test_compact_layout_holds(ops: list[tuple]) -> None:
    tracker = _tracker()
    _run(ops, tracker, lambda: _check_layout(tracker.chains[CHAIN]))


@settings(max_examples=200)
@given(st.lists(st.one_of(_op, _reorg), max_size=40))
def test_rerun_from_the_floor_rebuilds_the_same_state(ops: list[tuple]) -> None:
    live = _tracker()
    _, _, log = _run(ops, live)
    floor = live.floors([CHAIN], log[-1][0] + 1)[CHAIN]
    rebuilt = _tracker()
    if log[0][0] < floor:  # the chain's first block precedes the floor: tracked from the start
        rebuilt.activate(CHAIN)
    for seq, kind, item in log:
        if seq < floor:
            continue
        if kind == "tx":
            rebuilt.pending(CHAIN, item)
        elif kind == "block":
            rebuilt.block(item, seq)
        else:
            rebuilt.gone(CHAIN, item, "src")
    a, b = live.chains[CHAIN], rebuilt.chains[CHAIN]
    assert {h: (p.seq, p.repended) for h, p in a.pending.items()} == {h: (p.seq, p.repended)
                                                                       for h, p in b.pending.items()}
    assert a.by_sender == b.by_sender and a.head == b.head
    assert {h: (r[0].seq, r[1]) for h, r in a.replaced.items()} == {h: (r[0].seq, r[1]) for h, r in b.replaced.items()}
    assert a.replaced_at == b.replaced_at
    assert {n: (x.block_hash, [p.tx_hash for p in x.included]) for n, x in a.blocks.items()} == {
        n: (x.block_hash, [p.tx_hash for p in x.included]) for n, x in b.blocks.items()}
