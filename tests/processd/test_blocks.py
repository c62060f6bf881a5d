"""Blocks (TxBatch.blocks) in the event log: stored once per (chain, hash) as BLOCK events, seen_pending counted,
listed by ListBlocks, rebuilt at restart, pruned with their index entries; an old log without the blocks db opens."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import lmdb

from common.pb.v1 import block_pb2, events_pb2, ingest_pb2, query_pb2
from common.testing.ingest_push import channel, push_batches, push_envelopes
from common.testing.synth import synthetic_envelopes
from processd.api.server import ProcessdServer
from tests.processd._helpers import query_stub
from tests.reliability._support import audit_log

BLOCK = events_pb2.EVENT_KIND_BLOCK
Factory = Callable[..., Awaitable[ProcessdServer]]


def _block(number: int, tx_hashes: list[bytes], chain_id: int = 137, tag: int = 0) -> block_pb2.BlockEnvelope:
    return block_pb2.BlockEnvelope(
        chain_id=chain_id, number=number, hash=bytes([number % 256, tag]) * 16, parent_hash=b"\x07" * 32,
        timestamp=1_700_000_000 + number, base_fee=b"\x01\x00", source_id="node:8546", seen_unix_ns=10**18 + number,
        tx_count=len(tx_hashes),
        txs=[block_pb2.IncludedTx(hash=h, index=i, sender=b"\x05" * 20, nonce=i, gas_used=21000,
                                  status=block_pb2.TX_STATUS_REVERTED if i == 0 else block_pb2.TX_STATUS_OK)
             for i, h in enumerate(tx_hashes)])


def _batch(seq: int, blocks: list[block_pb2.BlockEnvelope]) -> ingest_pb2.TxBatch:
    return ingest_pb2.TxBatch(session_id="s", batch_seq=seq, blocks=blocks)


async def _listed(srv: ProcessdServer, chain_id: int = 137, limit: int = 100,
                  cursor: int = 0) -> query_pb2.ListBlocksResponse:
    async with channel(srv.address) as ch:
        return await query_stub(ch).ListBlocks(query_pb2.ListBlocksRequest(chain_id=chain_id, limit=limit,
                                                                           cursor=cursor))


async def _block_events(srv: ProcessdServer, chain_id: int = 137) -> list[events_pb2.Event]:
    async with channel(srv.address) as ch:
        scan = await query_stub(ch).ScanEvents(query_pb2.ScanEventsRequest(chain_id=chain_id, kinds=[BLOCK],
                                                                           limit=1000))
    return list(scan.events)


async def test_blocks_are_stored_once_counted_listed_and_rebuilt(server_factory: Factory, tmp_path: Path) -> None:
    srv = await server_factory(data_dir=tmp_path / "lmdb")
    a, b, c = synthetic_envelopes(3, seed=16, chain_ids=(137,))
    assert (await push_envelopes(srv.address, [a, b], batch_size=2))[0].accepted == 2
    unknown = b"\x09" * 32
    one = _block(1, [a.hash, b.hash, unknown])
    bad = _block(2, [a.hash])
    bad.hash = b"\x01" * 31
    ack = (await push_batches(srv.address, [_batch(2, [one, one, bad])]))[0]
    assert (ack.blocks_stored, ack.blocks_ignored) == (1, 2)  # the repeat in the batch, the malformed one
    # A resend stores nothing twice.
    again = (await push_batches(srv.address, [_batch(3, [one])]))[0]
    assert (again.blocks_stored, again.blocks_ignored) == (0, 1)
    # A block in the batch of its own transaction: stored after the envelope, so it was seen pending.
    two = _block(2, [c.hash])
    mixed = ingest_pb2.TxBatch(session_id="s", batch_seq=4, envelopes=[c], blocks=[two])
    ack = (await push_batches(srv.address, [mixed]))[0]
    assert (ack.accepted, ack.blocks_stored) == (1, 1)

    listed = (await _listed(srv)).blocks
    assert [(x.number, x.tx_count, x.seen_pending, x.reverted) for x in listed] == [(2, 1, 1, 1), (1, 3, 2, 1)]
    assert listed[1].hash == one.hash and listed[1].timestamp == one.timestamp and listed[1].base_fee == b"\x01\x00"
    assert (await _listed(srv, chain_id=0)).blocks == listed
    assert not (await _listed(srv, chain_id=1)).blocks
    page = await _listed(srv, limit=1)
    assert [x.number for x in page.blocks] == [2] and page.next_cursor == listed[0].seq_id
    rest = await _listed(srv, limit=1, cursor=page.next_cursor)
    assert [x.number for x in rest.blocks] == [1] and rest.next_cursor == 0
    events = await _block_events(srv)
    assert [e.block.block for e in events] == [one, two]
    assert [e.block.seen_pending for e in events] == [2, 1]
    assert all(e.kind == BLOCK and not e.tx_hash and e.source_id == "node:8546" for e in events)
    assert events[0].first_seen_unix_ns == one.seen_unix_ns

    await srv.stop(grace_s=0.5)
    srv2 = await server_factory(data_dir=tmp_path / "lmdb")
    assert (await _listed(srv2)).blocks == listed
    assert (await push_batches(srv2.address, [_batch(5, [one, two])]))[0].blocks_ignored == 2
    await srv2.stop(grace_s=0.5)
    audit = audit_log(tmp_path / "lmdb")
    audit.assert_clean()


async def test_an_old_log_without_the_blocks_db_opens_and_takes_blocks(server_factory: Factory,
                                                                     tmp_path: Path) -> None:
    srv = await server_factory(data_dir=tmp_path / "lmdb")
    [a] = synthetic_envelopes(1, seed=17, chain_ids=(137,))
    await push_envelopes(srv.address, [a])
    await srv.stop(grace_s=0.5)
    env = lmdb.open(str(tmp_path / "lmdb"), max_dbs=8)
    with env.begin(write=True) as txn:  # the log as a processd before blocks wrote it
        txn.drop(env.open_db(b"blocks", txn=txn), delete=True)
    env.close()
    srv2 = await server_factory(data_dir=tmp_path / "lmdb")
    ack = (await push_batches(srv2.address, [_batch(9, [_block(5, [a.hash])])]))[0]
    assert ack.blocks_stored == 1
    assert [(x.number, x.seen_pending) for x in (await _listed(srv2)).blocks] == [(5, 1)]
    await srv2.stop(grace_s=0.5)
    audit_log(tmp_path / "lmdb").assert_clean()


async def test_blocks_are_pruned_with_their_index_entries(server_factory: Factory, tmp_path: Path) -> None:
    srv = await server_factory(data_dir=tmp_path / "lmdb", retention_max_events=5)
    for n in range(1, 13):
        await push_batches(srv.address, [_batch(n, [_block(n, [])])])
    events = await _block_events(srv)
    assert len(events) <= 6 and events[-1].block.block.number == 12
    await srv.stop(grace_s=0.5)
    audit = audit_log(tmp_path / "lmdb")
    audit.assert_clean()
    assert audit.events == len(events)
