"""Pool states (TxBatch.pools, issue 17) in processd's event log, through the real Ingest stream and LMDB: stored
as POOL_STATE events once per (chain, pair, block number, block hash) in the batch's commit, acked as stored or
ignored (repeat, malformed, chain not served), fed to the pool read model, served by ScanEvents (kind filter and
chain walk), rebuilt at restart and after kill -9 exactly as a reference model fed the acked states holds them,
pruned with their index entries; an old log without the pools db opens and takes them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import lmdb

from common.pb.v1 import events_pb2, ingest_pb2, pool_pb2, query_pb2
from common.testing.ingest_push import channel, push_batches
from common.testing.synth import synthetic_envelopes
from processd.api.server import ProcessdServer
from processd.views.pools import PoolView
from tests.processd._helpers import ProcessdSubprocess, query_stub
from tests.reliability._support import audit_log

POOL = events_pb2.EVENT_KIND_POOL_STATE
Factory = Callable[..., Awaitable[ProcessdServer]]


def _pool(pair: int, block: int, reserve0: int, reserve1: int = 5, chain_id: int = 137,
          tag: int = 0) -> pool_pb2.PoolState:
    return pool_pb2.PoolState(chain_id=chain_id, pair=bytes([pair]) * 20, factory=b"\x02" * 20, token0=b"\x03" * 20,
                              token1=b"\x04" * 20, reserve0=reserve0.to_bytes((reserve0.bit_length() + 7) // 8, "big"),
                              reserve1=reserve1.to_bytes((reserve1.bit_length() + 7) // 8, "big"), block_number=block,
                              block_hash=bytes([block % 256, tag]) * 16, source=pool_pb2.POOL_STATE_SOURCE_SYNC_LOG)


def _batch(seq: int, pools: list[pool_pb2.PoolState], **kw: object) -> ingest_pb2.TxBatch:
    return ingest_pb2.TxBatch(session_id="s", batch_seq=seq, pools=pools, **kw)  # type: ignore[arg-type]


def _held(view: PoolView) -> dict[tuple[int, bytes], tuple[int, int, int]]:
    return {key: (r.reserve0, r.reserve1, r.block_number)
            for key in list(view._held) if (r := view.lookup(*key)) is not None}


async def _pool_events(address: str, chain_id: int = 137) -> list[events_pb2.Event]:
    async with channel(address) as ch:
        scan = await query_stub(ch).ScanEvents(query_pb2.ScanEventsRequest(chain_id=chain_id, kinds=[POOL],
                                                                           limit=1000))
    return list(scan.events)


async def test_pool_states_are_stored_once_fed_to_the_view_scanned_and_rebuilt(server_factory: Factory,
                                                                               tmp_path: Path) -> None:
    srv = await server_factory(data_dir=tmp_path / "lmdb")
    [env] = synthetic_envelopes(1, seed=17, chain_ids=(137,))
    a1, b1 = _pool(1, 10, 1000), _pool(2, 10, 2000)
    bad = _pool(3, 10, 1)
    bad.block_hash = b"\x01" * 31
    first = (await push_batches(srv.address, [_batch(1, [a1, b1, a1, bad])]))[0]
    assert (first.pools_stored, first.pools_ignored, first.accepted) == (2, 2, 0)  # the repeat, the malformed one
    # A resend, and another copy of a1 with other reserves (the key is the block): both ignored. With a
    # transaction: stored after it. a2 is newer, b_old older than what the view holds for pair 2.
    a2, b_old = _pool(1, 11, 1100), _pool(2, 9, 1900)
    other_copy = _pool(1, 10, 999)
    second = (await push_batches(srv.address, [_batch(2, [a1, other_copy, a2, b_old], envelopes=[env])]))[0]
    assert (second.accepted, second.pools_stored, second.pools_ignored) == (1, 2, 2)
    # A reorg at pair 2's height: another hash at block 10 replaces it.
    b_reorg = _pool(2, 10, 2100, tag=1)
    assert (await push_batches(srv.address, [_batch(3, [b_reorg])]))[0].pools_stored == 1

    view = srv.models.pools
    assert _held(view) == {(137, a2.pair): (1100, 5, 11), (137, b1.pair): (2100, 5, 10)}
    assert view.lookup(137, a2.pair) is not None and view.lookup(1, a2.pair) is None
    assert view.counters.stale == 1  # b_old
    events = await _pool_events(srv.address)
    assert [e.pool_state.state for e in events] == [a1, b1, a2, b_old, b_reorg]
    assert all(e.kind == POOL and not e.tx_hash and not e.source_id and e.received_unix_ns for e in events)
    assert events[2].seq_id > second.last_seq_id  # after the batch's transaction
    async with channel(srv.address) as ch:  # the unfiltered walk over all chains carries them too
        every = (await query_stub(ch).ScanEvents(query_pb2.ScanEventsRequest(limit=1000))).events
    assert [e.seq_id for e in every if e.kind == POOL] == [e.seq_id for e in events]
    assert srv.metrics.pool_states.labels("stored")._value.get() == 5
    assert srv.metrics.pool_states.labels("duplicate")._value.get() == 3
    assert srv.metrics.pool_states.labels("invalid")._value.get() == 1
    digest = srv.models.digest()
    held = _held(view)

    await srv.stop(grace_s=0.5)
    srv2 = await server_factory(data_dir=tmp_path / "lmdb")
    assert _held(srv2.models.pools) == held
    assert srv2.models.digest() == digest
    assert (await push_batches(srv2.address, [_batch(4, [a1, a2, b_reorg])]))[0].pools_ignored == 3
    await srv2.stop(grace_s=0.5)
    audit_log(tmp_path / "lmdb").assert_clean()


async def test_pool_states_of_a_chain_not_served_are_ignored(server_factory: Factory, tmp_path: Path) -> None:
    srv = await server_factory(data_dir=tmp_path / "lmdb", chain_ids=frozenset({137}))
    ack = (await push_batches(srv.address, [_batch(1, [_pool(1, 5, 7, chain_id=1), _pool(1, 5, 7)])]))[0]
    assert (ack.pools_stored, ack.pools_ignored) == (1, 1)
    assert srv.models.pools.lookup(1, b"\x01" * 20) is None and srv.models.pools.lookup(137, b"\x01" * 20)


async def test_kill_9_then_restart_rebuilds_the_view_of_every_acked_state(server_factory: Factory,
                                                                          tmp_path: Path) -> None:
    data = tmp_path / "lmdb"
    proc = ProcessdSubprocess(data, tmp_path / "p.log").start()
    reference = PoolView()
    try:
        batches = []
        for n in range(1, 31):  # 8 pairs, blocks rising, with stale, repeated and reorged (tag: another hash) states
            states = [_pool(1 + (n * 3 + k) % 8, n + 2 - (k % 3), 1000 * n + k, n + k, tag=(n + k) % 5 // 4)
                      for k in range(4)]
            batches.append(_batch(n, states))
        acks = await push_batches(proc.address, batches)
        assert sum(a.pools_stored + a.pools_ignored for a in acks) == 120
        assert sum(a.pools_stored for a in acks) > 60
        for batch in batches:  # acked, so committed: the reference applies them in the order they were sent
            for state in batch.pools:
                reference.apply(state)
        proc.kill9()
    finally:
        proc.stop()
    srv = await server_factory(data_dir=data)
    assert _held(srv.models.pools) == _held(reference) and len(reference) == 8
    await srv.stop(grace_s=0.5)
    audit_log(data).assert_clean()


async def test_pool_states_are_pruned_with_their_index_entries(server_factory: Factory, tmp_path: Path) -> None:
    srv = await server_factory(data_dir=tmp_path / "lmdb", retention_max_events=5)
    for n in range(1, 13):
        await push_batches(srv.address, [_batch(n, [_pool(1, n, n), _pool(2, n, n)])])
    events = await _pool_events(srv.address)
    assert len(events) <= 6 and events[-1].pool_state.state.block_number == 12
    await srv.stop(grace_s=0.5)
    audit = audit_log(tmp_path / "lmdb")
    audit.assert_clean()
    assert audit.events == len(events)
    srv2 = await server_factory(data_dir=tmp_path / "lmdb")  # the retained states rebuild the latest ones
    assert srv2.models.pools.lookup(137, b"\x01" * 20).block_number == 12  # type: ignore[union-attr]


async def test_an_old_log_without_the_pools_db_opens_and_takes_pool_states(server_factory: Factory,
                                                                          tmp_path: Path) -> None:
    srv = await server_factory(data_dir=tmp_path / "lmdb")
    [env] = synthetic_envelopes(1, seed=18, chain_ids=(137,))
    await push_batches(srv.address, [_batch(1, [], envelopes=[env])])
    await srv.stop(grace_s=0.5)
    lenv = lmdb.open(str(tmp_path / "lmdb"), max_dbs=16)
    with lenv.begin(write=True) as txn:  # the log as a processd before pool states wrote it
        txn.drop(lenv.open_db(b"pools", txn=txn), delete=True)
    lenv.close()
    srv2 = await server_factory(data_dir=tmp_path / "lmdb")
    assert (await push_batches(srv2.address, [_batch(2, [_pool(1, 2, 3)])]))[0].pools_stored == 1
    assert srv2.models.pools.lookup(137, b"\x01" * 20) is not None
    await srv2.stop(grace_s=0.5)
    audit_log(tmp_path / "lmdb").assert_clean()


async def test_a_crash_after_the_commit_before_the_ack_then_the_resend_stores_nothing_twice(
        server_factory: Factory, tmp_path: Path) -> None:
    data = tmp_path / "lmdb"
    crash = {"MEMPULSE_TEST_CRASH_POINT": "after_commit", "MEMPULSE_TEST_CRASH_AFTER_BATCHES": "3"}
    proc = ProcessdSubprocess(data, tmp_path / "p.log", "--flush-interval-ms", "0", env=crash).start()
    batches = [_batch(n, [_pool(1, n, 100 * n), _pool(2, n, 200 * n)]) for n in range(1, 4)]
    acks = []
    try:
        for batch in batches:  # one at a time: one batch per commit, the third commits and is never acked
            try:
                acks += await push_batches(proc.address, [batch], timeout_s=10)
            except grpc.aio.AioRpcError:
                break
        assert proc.wait_exit(30) == 137
    finally:
        proc.stop()
    assert [a.pools_stored for a in acks] == [2, 2]
    srv = await server_factory(data_dir=data)
    assert srv.models.pools.lookup(137, b"\x01" * 20).block_number == 3  # type: ignore[union-attr]  # committed
    resent = (await push_batches(srv.address, [batches[2]]))[0]  # ingestd resends the unacked batch
    assert (resent.pools_stored, resent.pools_ignored) == (0, 2)
    reference = PoolView()
    for batch in batches:
        for state in batch.pools:
            reference.apply(state)
    assert _held(srv.models.pools) == _held(reference)
    assert len(await _pool_events(srv.address)) == 6
    await srv.stop(grace_s=0.5)
    audit_log(data).assert_clean()
