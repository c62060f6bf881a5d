"""A chain that goes back to a block it had left (A, then B at A's height, then A's child): processd stores A's
branch again and the lifecycle follows the node (``processd.storage.blockbranch``), through the real gRPC Ingest
stream and LMDB, in both forms ingestd sends it (A again as a head, then its child; or A and its child in one batch,
the branch walked back by parent hash). A stored block met again without a new child changes nothing (a resend
must not flip the chain), and a restart rebuilds the same state and the same recent blocks."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.pb.v1 import query_pb2
from common.testing.ingest_push import channel, push_batches
from tests.processd._helpers import query_stub
from tests.processd.test_lifecycle import CHAIN, Factory, _batch, _block, _life, _status, _tx
from tests.reliability._support import audit_log

S = query_pb2
X, Y = 0x11, 0x12
B1 = _block(1, [])
B2A = _block(2, [(bytes([X]) * 32, 1, 0)], tag=0, parent=B1.hash)
B2B = _block(2, [(bytes([Y]) * 32, 2, 0)], tag=1, parent=B1.hash)
B3 = _block(3, [], parent=B2A.hash)  # the node went back to 2a
BACK = [
    ("tx_included", bytes([X]), "block 2 latency 23000"),
    ("reorg", b"", "depth 1 back 1 orphaned 1"),  # 2b orphans 2a: X pending again
    ("tx_included", bytes([Y]), "block 2 latency 23000"),
    ("reorg", b"", "depth 1 back 1 orphaned 1"),  # 2a again (3's parent) orphans 2b: Y pending again
    ("tx_included", bytes([X]), "block 2 latency 23000 again"),
]


async def _blocks(address: str) -> list[tuple[int, bytes]]:
    """(number, hash tag) of the recent blocks, newest first."""
    async with channel(address) as ch:
        got = await query_stub(ch).ListBlocks(S.ListBlocksRequest(chain_id=CHAIN))
    return [(b.number, b.hash[1:2]) for b in got.blocks]


@pytest.mark.parametrize("form", ["head_again", "branch"])
async def test_a_chain_that_goes_back_to_a_block_is_followed(server_factory: Factory, tmp_path: Path,
                                                             form: str) -> None:
    data = tmp_path / "lmdb"
    srv = await server_factory(data_dir=data, lifecycle_ttl_ms=3_600_000)
    start = [_batch(1, blocks=[B1]), _batch(2, [_tx(X, 1, 0, 10), _tx(Y, 2, 0, 10)]), _batch(3, blocks=[B2A]),
             _batch(4, blocks=[B2B])]
    await push_batches(srv.address, start, max_inflight=1)
    if form == "head_again":
        # 2a again alone (as a head, or a resend) is a duplicate: the chain stays on 2b until a child says otherwise
        [ack] = await push_batches(srv.address, [_batch(5, blocks=[B2A])])
        assert (ack.blocks_stored, ack.blocks_ignored) == (0, 1)
        assert await _life(srv.address) == BACK[:3]
        [ack] = await push_batches(srv.address, [_batch(6, blocks=[B3])])
    else:
        [ack] = await push_batches(srv.address, [_batch(5, blocks=[B2A, B3])])
    assert (ack.blocks_stored, ack.blocks_ignored) == (1, 1 if form == "branch" else 0)
    assert await _life(srv.address) == BACK
    assert (await _status(srv.address, X))[0] == S.TX_LIFECYCLE_STATUS_INCLUDED
    assert (await _status(srv.address, Y))[0] == S.TX_LIFECYCLE_STATUS_PENDING
    # 2a's BLOCK event is stored again (it moves to its new seq in the recent blocks and the index)
    assert await _blocks(srv.address) == [(3, b"\x00"), (2, b"\x00"), (2, b"\x01"), (1, b"\x00")]
    reg = srv.metrics.registry
    chain = {"chain_id": str(CHAIN)}
    assert {o: reg.get_sample_value("mempulse_processd_blocks_total", {**chain, "outcome": o})
            for o in ("stored", "returned")} == {"stored": 4, "returned": 1}
    # resends of every block: duplicates, no flip
    await push_batches(srv.address, [_batch(7, blocks=[B2B]), _batch(8, blocks=[B2A]), _batch(9, blocks=[B3])],
                       max_inflight=1)
    assert await _life(srv.address) == BACK
    before = await _blocks(srv.address)

    # A restart rebuilds the same: Y pending (a later block includes it), the same recent blocks.
    await srv.stop(grace_s=0.5)
    srv2 = await server_factory(data_dir=data, lifecycle_ttl_ms=3_600_000)
    assert await _blocks(srv2.address) == before
    assert (await _status(srv2.address, Y))[0] == S.TX_LIFECYCLE_STATUS_PENDING
    await push_batches(srv2.address, [_batch(10, blocks=[_block(4, [(bytes([Y]) * 32, 2, 0)], parent=B3.hash)])])
    assert (await _life(srv2.address))[len(BACK):] == [("tx_included", bytes([Y]), "block 4 latency 47000 again")]
    await srv2.stop(grace_s=0.5)
    audit_log(data).assert_clean()


async def test_lifecycle_off_stores_the_returning_branch_too(server_factory: Factory, tmp_path: Path) -> None:
    """Without the lifecycle the recent blocks still follow the node: 2a is stored again before its child."""
    srv = await server_factory(data_dir=tmp_path / "lmdb", lifecycle_enabled=False)
    await push_batches(srv.address, [_batch(1, blocks=[B1]), _batch(2, blocks=[B2A]), _batch(3, blocks=[B2B]),
                                     _batch(4, blocks=[B2A, B3])], max_inflight=1)
    assert await _blocks(srv.address) == [(3, b"\x00"), (2, b"\x00"), (2, b"\x01"), (1, b"\x00")]
    assert await _life(srv.address) == []


async def test_pruning_a_block_stored_again_keeps_its_later_copy(server_factory: Factory, tmp_path: Path) -> None:
    """Retention prunes 2a's first BLOCK event: the ``blocks`` entry, which moved to its later copy, stays (2a is
    still known: a resend of it is a duplicate), and the log's indexes match its events."""
    data = tmp_path / "lmdb"
    srv = await server_factory(data_dir=data, lifecycle_enabled=False, retention_max_events=4)
    b4 = _block(4, [], parent=B3.hash)
    b5 = _block(5, [], parent=b4.hash)
    await push_batches(srv.address, [_batch(1, blocks=[B1]), _batch(2, blocks=[B2A]), _batch(3, blocks=[B2B]),
                                     _batch(4, blocks=[B2A, B3]), _batch(5, blocks=[b4]), _batch(6, blocks=[b5])],
                       max_inflight=1)
    [ack] = await push_batches(srv.address, [_batch(7, blocks=[B2A])])
    assert (ack.blocks_stored, ack.blocks_ignored) == (0, 1)
    await srv.stop(grace_s=0.5)
    audit_log(data).assert_clean()
