"""The transaction lifecycle through processd's real gRPC Ingest stream and LMDB (issue 16): included, replaced
(by a pending speed-up and by a block), dropped (evicted, expired, nonce passed), private flow, a reorg and the
re-inclusion after it, GetTransaction's status and history, ListTransactions' status filter, the state after
a restart (rebuilt from the log) and after kill -9, and the commit order next to pool states (issue 17)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import lmdb
import pytest

from common.pb.v1 import block_pb2, events_pb2, ingest_pb2, pool_pb2, query_pb2, tx_pb2
from common.testing.ingest_push import channel, push_batches
from common.testing.synth import synthetic_envelopes
from processd.api.server import ProcessdServer
from processd.storage import lifeproc
from processd.storage.eventlog import U64, decode_event, tx_key
from processd.storage.lifeproc import LifeProcess
from tests.processd._helpers import ProcessdSubprocess, query_stub
from tests.reliability._support import audit_log

Factory = Callable[..., Awaitable[ProcessdServer]]
CHAIN = 137
T0 = 1_700_000_000
GWEI = 10**9
LIFE_KINDS = [events_pb2.EVENT_KIND_TX_INCLUDED, events_pb2.EVENT_KIND_TX_REPLACED,
              events_pb2.EVENT_KIND_TX_DROPPED, events_pb2.EVENT_KIND_REORG]
S = query_pb2


def _sender(n: int) -> bytes:
    return bytes([n]) * 20


def _tx(tag: int, sender: int, nonce: int, fee_gwei: int, first_seen_s: int = T0 + 1) -> tx_pb2.TxEnvelope:
    [env] = synthetic_envelopes(1, seed=1000 + tag, chain_ids=(CHAIN,))
    env.hash = bytes([tag]) * 32
    env.sender = _sender(sender)
    env.nonce = nonce
    env.ClearField("gas_price")
    env.max_fee_per_gas = (fee_gwei * GWEI).to_bytes(8, "big")
    env.first_seen_unix_ns = first_seen_s * 10**9
    return env


def _block(number: int, txs: list[tuple[bytes, int, int]], tag: int = 0, ts: int | None = None,
           parent: bytes = b"\x07" * 32) -> block_pb2.BlockEnvelope:
    """A block of (hash, sender, nonce) transactions."""
    return block_pb2.BlockEnvelope(
        chain_id=CHAIN, number=number, hash=bytes([0xB0 + number, tag]) * 16, parent_hash=parent,
        timestamp=T0 + 12 * number if ts is None else ts, source_id="node:8546", seen_unix_ns=10**18 + number,
        tx_count=len(txs),
        txs=[block_pb2.IncludedTx(hash=h, index=i, sender=_sender(s), nonce=n, gas_used=21000,
                                  status=block_pb2.TX_STATUS_OK) for i, (h, s, n) in enumerate(txs)])


def _batch(seq: int, envelopes: list[tx_pb2.TxEnvelope] | None = None, blocks: list[block_pb2.BlockEnvelope] | None
           = None, gone: list[bytes] | None = None) -> ingest_pb2.TxBatch:
    return ingest_pb2.TxBatch(
        session_id="s", batch_seq=seq, envelopes=envelopes or [], blocks=blocks or [],
        gone=[ingest_pb2.TxGone(chain_id=CHAIN, hash=h, reason=ingest_pb2.GONE_REASON_EVICTED, source_id="node:8546",
                                seen_unix_ns=10**18) for h in gone or []])


async def _life(address: str) -> list[tuple[str, bytes, str]]:
    """(kind, tx hash tag, detail) of every lifecycle event, in seq order."""
    async with channel(address) as ch:
        scan = await query_stub(ch).ScanEvents(S.ScanEventsRequest(chain_id=CHAIN, kinds=LIFE_KINDS, limit=1000))
    out = []
    for e in scan.events:
        body = e.WhichOneof("body")
        if body == "tx_included":
            detail = f"block {e.tx_included.block_number} latency {e.tx_included.inclusion_latency_ms}" + (
                " again" if e.tx_included.reincluded else "")
        elif body == "tx_replaced":
            r = e.tx_replaced
            detail = f"by {r.by_hash[:1].hex()} bump {r.fee_bump_bps}" + (" block" if r.by_block else "")
        elif body == "tx_dropped":
            detail = events_pb2.DropReason.Name(e.tx_dropped.reason)
        else:
            detail = f"depth {e.reorg.depth} back {e.reorg.unincluded} orphaned {len(e.reorg.orphaned_hashes)}"
        out.append((body or "", e.tx_hash[:1], detail))
    return out


async def _status(address: str, tag: int) -> tuple[int, list[int]]:
    async with channel(address) as ch:
        got = await query_stub(ch).GetTransaction(S.GetTransactionRequest(chain_id=CHAIN, hash=bytes([tag]) * 32))
    return got.status, [e.kind for e in got.history]


A, B, C, D, E, F, G, U = 0xA1, 0xA2, 0xC1, 0xD1, 0xE1, 0xF1, 0x61, 0x51
#: Before the chain's first block (untracked), then the pending set of the scenario.
BEFORE = _tx(U, 9, 0, 10)
PENDING = [_tx(A, 1, 0, 10), _tx(B, 1, 0, 12), _tx(C, 2, 5, 10), _tx(D, 2, 7, 10), _tx(E, 3, 1, 10),
           _tx(F, 4, 0, 10), _tx(G, 5, 0, 10, first_seen_s=T0 - 7200)]
PRIVATE, Y = b"\x99" * 32, b"\x98" * 32
BLOCK2 = _block(2, [(bytes([B]) * 32, 1, 0), (PRIVATE, 2, 6), (Y, 3, 1)])
BLOCK2B = _block(2, [(PRIVATE, 2, 6)], tag=1)
BLOCK3 = _block(3, [(bytes([B]) * 32, 1, 0)], parent=BLOCK2B.hash)

EXPECTED = [
    ("tx_replaced", bytes([A]), "by a2 bump 2000"),
    ("tx_dropped", bytes([F]), "DROP_REASON_EVICTED"),
    ("tx_included", bytes([B]), "block 2 latency 23000"),
    ("tx_replaced", bytes([E]), "by 98 bump 0 block"),
    ("tx_dropped", bytes([C]), "DROP_REASON_NONCE_PASSED"),
    ("tx_dropped", bytes([G]), "DROP_REASON_EXPIRED"),
    ("reorg", b"", "depth 1 back 1 orphaned 1"),
    ("tx_included", bytes([B]), "block 3 latency 35000 again"),
]


async def _scenario(address: str) -> list[ingest_pb2.IngestAck]:
    """Pushes the scenario (module doc) in separate batches, like ingestd sends them."""
    return await push_batches(address, [
        _batch(1, [BEFORE]), _batch(2, blocks=[_block(1, [])]), _batch(3, PENDING[:1]), _batch(4, PENDING[1:]),
        _batch(5, gone=[bytes([F]) * 32, b"\x33" * 32]), _batch(6, blocks=[BLOCK2]), _batch(7, blocks=[BLOCK2B]),
        _batch(8, blocks=[BLOCK3])], max_inflight=1)


@pytest.mark.parametrize("in_process", [False, True], ids=["lifecycle_process", "in_writer_thread"])
async def test_lifecycle_outcomes_statuses_and_restart(server_factory: Factory, tmp_path: Path,
                                                       in_process: bool) -> None:
    """The scenario's events, statuses, lists, snapshot and metrics, with the engine in the lifecycle process
    (default) and in the writer's thread: the same everywhere."""
    srv = await server_factory(data_dir=tmp_path / "lmdb", lifecycle_ttl_ms=3_600_000,
                               lifecycle_process=not in_process)
    acks = await _scenario(srv.address)
    assert (acks[4].gone_stored, acks[4].gone_ignored) == (1, 1)  # F evicted; an unknown hash ignored
    assert await _life(srv.address) == EXPECTED
    life_writer = srv.writer.life
    assert life_writer is not None and life_writer.parsed == 0  # fields from preparation's life column
    # the writer's copy of what is pending (what statuses read) is the engine's state, wherever it runs
    assert life_writer.pending == {c: set(h) for c, h in life_writer.engine.pending_sets().items()}
    assert life_writer.pending == {CHAIN: {bytes([D]) * 32}}
    statuses = {tag: (await _status(srv.address, tag))[0] for tag in (A, B, C, D, E, F, G, U)}
    assert statuses == {A: S.TX_LIFECYCLE_STATUS_REPLACED, B: S.TX_LIFECYCLE_STATUS_INCLUDED,
                        C: S.TX_LIFECYCLE_STATUS_DROPPED, D: S.TX_LIFECYCLE_STATUS_PENDING,
                        E: S.TX_LIFECYCLE_STATUS_REPLACED, F: S.TX_LIFECYCLE_STATUS_DROPPED,
                        G: S.TX_LIFECYCLE_STATUS_DROPPED, U: S.TX_LIFECYCLE_STATUS_UNSPECIFIED}
    assert (await _status(srv.address, B))[1] == [events_pb2.EVENT_KIND_TX_INCLUDED] * 2
    async with channel(srv.address) as ch:
        stub = query_stub(ch)
        dropped = await stub.ListTransactions(S.ListTransactionsRequest(chain_id=CHAIN,
                                                                        status=S.TX_LIFECYCLE_STATUS_DROPPED))
        blocks = (await stub.ListBlocks(S.ListBlocksRequest(chain_id=CHAIN))).blocks
        snap = await stub.GetSnapshot(S.GetSnapshotRequest(chain_id=CHAIN))
    assert sorted(t.tx.hash[0] for t in dropped.transactions) == sorted([C, F, G])
    assert [(b.number, b.seen_pending, b.inclusion_latency_p50_ms) for b in blocks][:2] == [(3, 1, 35000), (2, 0, 0)]
    life = snap.chains[0].lifecycle
    assert (life.pending, life.included, life.replaced, life.dropped, life.reorgs) == (1, 2, 2, 3, 1)
    # Private flow: blocks 2, 2' and 3 list 5 transactions, of which PRIVATE (twice) and Y were never pending.
    assert life.included_private == 3 and life.private_share == pytest.approx(3 / 5)
    assert life.inclusion_latency_p50_ms == 23000 and life.inclusion_latency_p99_ms == 35000
    # The metrics come from the commits' grouped lifecycle figures (CommitResult.life_kinds, life_latencies,
    # life_other): the same outcomes as the events above.
    reg = srv.metrics.registry
    chain = {"chain_id": str(CHAIN)}
    outcomes = {o: reg.get_sample_value("mempulse_processd_lifecycle_total", {**chain, "outcome": o})
                for o in ("included", "replaced", "dropped_evicted", "dropped_nonce_passed", "dropped_expired")}
    assert outcomes == {"included": 2, "replaced": 2, "dropped_evicted": 1, "dropped_nonce_passed": 1,
                        "dropped_expired": 1}
    assert reg.get_sample_value("mempulse_processd_inclusion_latency_seconds_count", chain) == 2
    assert reg.get_sample_value("mempulse_processd_inclusion_latency_seconds_sum", chain) == pytest.approx(58.0)
    assert reg.get_sample_value("mempulse_processd_reorgs_total", {**chain, "depth": "1"}) == 1
    kinds = {k: reg.get_sample_value("mempulse_processd_events_total", {"kind": k})
             for k in ("tx_included", "tx_replaced", "tx_dropped", "reorg")}
    assert kinds == {"tx_included": 2, "tx_replaced": 2, "tx_dropped": 3, "reorg": 1}

    # A restart rebuilds the state from the log: D is still pending, and a later block settles it.
    await srv.stop(grace_s=0.5)
    srv2 = await server_factory(data_dir=tmp_path / "lmdb", lifecycle_ttl_ms=3_600_000,
                                lifecycle_process=not in_process)
    assert (await _status(srv2.address, D))[0] == S.TX_LIFECYCLE_STATUS_PENDING
    await push_batches(srv2.address, [_batch(9, blocks=[_block(4, [(bytes([D]) * 32, 2, 7)])])])
    assert (await _life(srv2.address))[len(EXPECTED):] == [("tx_included", bytes([D]), "block 4 latency 47000")]
    await srv2.stop(grace_s=0.5)
    audit_log(tmp_path / "lmdb").assert_clean()


async def test_a_batch_of_a_block_a_txgone_and_pool_states_commits_them_in_order(server_factory: Factory,
                                                                               tmp_path: Path) -> None:
    """One batch carrying a block, a TxGone and a pool state (issue 16 and 17 together): the block, its lifecycle
    events right behind it, the eviction, then the pool state, all acked together; a restart rebuilds the same
    lifecycle state, pool view and read-model digest."""
    srv = await server_factory(data_dir=tmp_path / "lmdb", lifecycle_ttl_ms=3_600_000)
    state = pool_pb2.PoolState(chain_id=CHAIN, pair=b"\x11" * 20, factory=b"\x02" * 20, token0=b"\x03" * 20,
                               token1=b"\x04" * 20, reserve0=(10**21).to_bytes(9, "big"), reserve1=b"\x05",
                               block_number=2, block_hash=BLOCK2.hash, source=pool_pb2.POOL_STATE_SOURCE_SYNC_LOG)
    both = _batch(5, blocks=[BLOCK2], gone=[bytes([F]) * 32])
    both.pools.append(state)
    acks = await push_batches(srv.address, [_batch(1, [BEFORE]), _batch(2, blocks=[_block(1, [])]),
                                            _batch(3, PENDING[:1]), _batch(4, PENDING[1:]), both], max_inflight=1)
    assert (acks[-1].blocks_stored, acks[-1].gone_stored, acks[-1].pools_stored) == (1, 1, 1)
    kinds = [events_pb2.EVENT_KIND_BLOCK, events_pb2.EVENT_KIND_POOL_STATE, *LIFE_KINDS]
    async with channel(srv.address) as ch:
        scan = await query_stub(ch).ScanEvents(S.ScanEventsRequest(chain_id=CHAIN, kinds=kinds, limit=1000))
    tail = [(e.WhichOneof("body"), e.tx_hash[:1]) for e in scan.events][2:]  # after block 1 and A's replacement
    assert tail == [("block", b""), ("tx_included", bytes([B])), ("tx_replaced", bytes([E])),
                    ("tx_dropped", bytes([C])), ("tx_dropped", bytes([G])), ("tx_dropped", bytes([F])),
                    ("pool_state", b"")]
    held, digest = srv.models.pools.lookup(CHAIN, state.pair), srv.models.digest()
    snap = await _snapshot_lifecycle(srv.address)
    assert held is not None and held.reserve0 == 10**21 and snap.dropped == 3

    await srv.stop(grace_s=0.5)
    srv2 = await server_factory(data_dir=tmp_path / "lmdb", lifecycle_ttl_ms=3_600_000)
    assert srv2.models.pools.lookup(CHAIN, state.pair) == held and srv2.models.digest() == digest
    assert await _snapshot_lifecycle(srv2.address) == snap
    assert (await _status(srv2.address, D))[0] == S.TX_LIFECYCLE_STATUS_PENDING
    await srv2.stop(grace_s=0.5)
    audit_log(tmp_path / "lmdb").assert_clean()


async def _snapshot_lifecycle(address: str) -> query_pb2.LifecycleTotals:
    async with channel(address) as ch:
        snap = await query_stub(ch).GetSnapshot(S.GetSnapshotRequest(chain_id=CHAIN))
    return snap.chains[0].lifecycle


async def test_lifecycle_off_stores_blocks_without_lifecycle_events(server_factory: Factory, tmp_path: Path) -> None:
    srv = await server_factory(data_dir=tmp_path / "lmdb", lifecycle_enabled=False)
    acks = await _scenario(srv.address)
    assert sum(a.blocks_stored for a in acks) == 4 and (acks[4].gone_stored, acks[4].gone_ignored) == (0, 2)
    assert await _life(srv.address) == []
    assert (await _status(srv.address, D))[0] == S.TX_LIFECYCLE_STATUS_UNSPECIFIED


def test_kill9_and_restart_give_identical_lifecycle(tmp_path: Path) -> None:
    """processd killed -9 after the scenario's first part restarts with the same state: the rest of the scenario
    gives exactly the events of an uninterrupted run."""
    data = tmp_path / "lmdb"
    proc = ProcessdSubprocess(data, tmp_path / "processd.log", "--flush-interval-ms", "1").start()
    try:
        first = [_batch(1, [BEFORE]), _batch(2, blocks=[_block(1, [])]), _batch(3, PENDING[:1]),
                 _batch(4, PENDING[1:]), _batch(5, gone=[bytes([F]) * 32])]
        asyncio.run(push_batches(proc.address, first, max_inflight=1))
        proc.kill9()
        proc.start()
        rest = _after_the_loss()
        asyncio.run(push_batches(proc.address, rest, max_inflight=1))
        assert asyncio.run(_life(proc.address)) == EXPECTED
        assert asyncio.run(_status(proc.address, D))[0] == S.TX_LIFECYCLE_STATUS_PENDING
    finally:
        proc.stop()
    audit_log(data).assert_clean()


def _as_before_tx_life_seq(data: Path) -> int:
    """Rewrites a log's lifecycle index as a build before ``tx_life_seq`` wrote it (``tx_life``: the ``tx_hash`` key
    + the event's seq); returns the entries moved."""
    env = lmdb.open(str(data), max_dbs=16)
    try:
        events, life, life_seq = (env.open_db(n) for n in (b"events", b"tx_life", b"tx_life_seq"))
        with env.begin(write=True) as txn:
            entries = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=life_seq)]
            for key, kind in entries:
                seq = U64.unpack(key[8:])[0]
                event = decode_event(txn.get(U64.pack(seq), db=events), seq)
                txn.put(tx_key(event.chain_id, event.tx_hash) + U64.pack(seq), kind, db=life)
            txn.drop(life_seq, delete=True)
    finally:
        env.close()
    return len(entries)


async def test_a_log_indexed_before_tx_life_seq_reads_and_goes_on(server_factory: Factory, tmp_path: Path) -> None:
    """A log whose lifecycle events a build before ``tx_life_seq`` indexed (in ``tx_life``, by hash) opens: the
    statuses and histories read its entries, the events committed after are indexed in ``tx_life_seq``, both read
    together, and retention prunes both (the audit finds each retained event indexed once)."""
    data = tmp_path / "lmdb"
    srv = await server_factory(data_dir=data, lifecycle_ttl_ms=3_600_000)
    first = [_batch(1, [BEFORE]), _batch(2, blocks=[_block(1, [])]), _batch(3, PENDING[:1]),
             _batch(4, PENDING[1:]), _batch(5, gone=[bytes([F]) * 32]), _batch(6, blocks=[BLOCK2])]
    await push_batches(srv.address, first, max_inflight=1)
    await srv.stop(grace_s=0.5)
    assert _as_before_tx_life_seq(data) == 6  # A replaced, F evicted, B included, E replaced, C and G dropped
    srv2 = await server_factory(data_dir=data, lifecycle_ttl_ms=3_600_000)
    assert await _status(srv2.address, A) == (S.TX_LIFECYCLE_STATUS_REPLACED, [events_pb2.EVENT_KIND_TX_REPLACED])
    await push_batches(srv2.address, [_batch(7, blocks=[BLOCK2B]), _batch(8, blocks=[BLOCK3])], max_inflight=1)
    assert await _life(srv2.address) == EXPECTED
    assert (await _status(srv2.address, B))[1] == [events_pb2.EVENT_KIND_TX_INCLUDED] * 2  # one entry in each index
    async with channel(srv2.address) as ch:
        dropped = await query_stub(ch).ListTransactions(S.ListTransactionsRequest(
            chain_id=CHAIN, status=S.TX_LIFECYCLE_STATUS_DROPPED))
    assert sorted(t.tx.hash[0] for t in dropped.transactions) == sorted([C, F, G])
    await srv2.stop(grace_s=0.5)
    audit_log(data).assert_clean()
    srv3 = await server_factory(data_dir=data, lifecycle_ttl_ms=3_600_000, retention_max_events=12)
    await push_batches(srv3.address, [_batch(9, [_tx(0x71, 7, 0, 10)])], max_inflight=1)  # a commit prunes
    await srv3.stop(grace_s=0.5)
    audit = audit_log(data)
    audit.assert_clean()
    assert audit.first_seq > 20  # the old index's events were pruned with their entries


def _before_the_loss() -> list[ingest_pb2.TxBatch]:
    """The first batches of the restart tests (before the lifecycle process is lost, or the log is reopened)."""
    return [_batch(1, [BEFORE]), _batch(2, blocks=[_block(1, [])]), _batch(3, PENDING[:1]),
            _batch(4, PENDING[1:]), _batch(5, gone=[bytes([F]) * 32])]


def _after_the_loss() -> list[ingest_pb2.TxBatch]:
    """The blocks those tests commit after it (a reorg among them)."""
    return [_batch(6, blocks=[BLOCK2]), _batch(7, blocks=[BLOCK2B]), _batch(8, blocks=[BLOCK3])]


async def test_a_lost_lifecycle_process_is_replaced_and_the_commit_done_again(server_factory: Factory,
                                                                              tmp_path: Path) -> None:
    """The lifecycle process killed -9 between commits: the next commit fails to reach it, is aborted, a new process
    rebuilds the state from the log and the commit is done again; the events are those of an uninterrupted run and
    nothing is acked twice or lost."""
    srv = await server_factory(data_dir=tmp_path / "lmdb", lifecycle_ttl_ms=3_600_000)
    life = srv.writer.life
    assert life is not None and isinstance(life.engine, LifeProcess) and life.engine.pid is not None
    await push_batches(srv.address, _before_the_loss(), max_inflight=1)
    killed = life.engine.pid
    os.kill(killed, signal.SIGKILL)
    rest = _after_the_loss()
    acks = await push_batches(srv.address, rest, max_inflight=1)
    assert [a.blocks_stored for a in acks] == [1, 1, 1]
    assert await _life(srv.address) == EXPECTED
    assert life.engine.pid not in (None, killed) and life.engine.restarts == 1
    assert srv.metrics.registry.get_sample_value("mempulse_processd_lifecycle_process_restarts_total") == 1
    assert (await _status(srv.address, D))[0] == S.TX_LIFECYCLE_STATUS_PENDING
    assert life.pending == {c: set(h) for c, h in life.engine.pending_sets().items()}
    await srv.stop(grace_s=0.5)
    audit_log(tmp_path / "lmdb").assert_clean()


async def test_a_lifecycle_process_that_stops_answering_is_replaced(server_factory: Factory, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A lifecycle process that stops answering (SIGSTOP: alive, silent) is lost after the call timeout: it is
    killed, a new one rebuilds from the log, and the commit is done again with the events of an uninterrupted run."""
    monkeypatch.setattr(lifeproc, "CALL_TIMEOUT_S", 1.0)
    srv = await server_factory(data_dir=tmp_path / "lmdb", lifecycle_ttl_ms=3_600_000)
    life = srv.writer.life
    assert life is not None and isinstance(life.engine, LifeProcess) and life.engine.pid is not None
    await push_batches(srv.address, _before_the_loss(), max_inflight=1)
    stopped = life.engine.pid
    os.kill(stopped, signal.SIGSTOP)
    try:
        rest = _after_the_loss()
        await push_batches(srv.address, rest, max_inflight=1)
        assert await _life(srv.address) == EXPECTED
        assert life.engine.pid not in (None, stopped) and life.engine.restarts == 1
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stopped, signal.SIGKILL)
    await srv.stop(grace_s=0.5)
    audit_log(tmp_path / "lmdb").assert_clean()


async def test_bad_gone_reports_are_counted_and_ignored(server_factory: Factory, tmp_path: Path) -> None:
    srv = await server_factory(data_dir=tmp_path / "lmdb")
    bad = ingest_pb2.TxBatch(session_id="s", batch_seq=1, gone=[
        ingest_pb2.TxGone(chain_id=CHAIN, hash=b"\x01" * 31, reason=ingest_pb2.GONE_REASON_EVICTED),
        ingest_pb2.TxGone(chain_id=CHAIN, hash=b"\x01" * 32, reason=ingest_pb2.GONE_REASON_UNSPECIFIED)])
    [ack] = await push_batches(srv.address, [bad])
    assert (ack.gone_stored, ack.gone_ignored) == (0, 2)
    with pytest.raises(grpc.aio.AioRpcError):
        async with channel(srv.address) as ch:
            await query_stub(ch).GetTransaction(S.GetTransactionRequest(chain_id=CHAIN, hash=b"\x01" * 32))


async def _collect(call: object, n: int) -> list[tuple[int, int]]:
    """(seq, kind) of the first ``n`` events a subscription sends."""
    got: list[tuple[int, int]] = []
    async for message in call:  # type: ignore[attr-defined]
        got.extend((e.seq_id, e.kind) for e in message.events)
        if len(got) >= n:
            break
    return got


async def test_subscriptions_carry_lifecycle_kinds_live_and_in_catch_up(server_factory: Factory,
                                                                        tmp_path: Path) -> None:
    srv = await server_factory(data_dir=tmp_path / "lmdb")
    by_sender = query_pb2.EventFilter(senders=[_sender(1)], kinds=LIFE_KINDS)  # A and B's events: replaced, included
    async with channel(srv.address) as ch:
        stub = query_stub(ch)
        live = stub.SubscribeEvents(S.SubscribeEventsRequest(from_head=True, kinds=LIFE_KINDS))
        live_b = stub.SubscribeEvents(S.SubscribeEventsRequest(from_head=True, filter=by_sender))
        await live.initial_metadata()
        await live_b.initial_metadata()
        await _scenario(srv.address)
        scan = await stub.ScanEvents(S.ScanEventsRequest(kinds=LIFE_KINDS, limit=1000))
        expected = [(e.seq_id, e.kind) for e in scan.events]
        assert len(expected) == len(EXPECTED)
        assert await _collect(live, len(expected)) == expected
        mine = [(e.seq_id, e.kind) for e in scan.events if e.tx_hash[:1] in (bytes([A]), bytes([B]))]
        assert await _collect(live_b, len(mine)) == mine
        again = stub.SubscribeEvents(S.SubscribeEventsRequest(from_seq_id=1, kinds=LIFE_KINDS))
        assert await _collect(again, len(expected)) == expected
        for call in (live, live_b, again):
            call.cancel()
