"""Pool states (TxBatch.pools, issue 17): this processd does not store them yet, so every one is acknowledged as
ignored (IngestAck.pools_ignored) and counted, with or without envelopes in the batch; nothing else changes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from common.pb.v1 import ingest_pb2, pool_pb2
from common.testing.ingest_push import push_batches
from common.testing.synth import synthetic_envelopes
from processd.api.server import ProcessdServer

Factory = Callable[..., Awaitable[ProcessdServer]]


def _pool(n: int) -> pool_pb2.PoolState:
    return pool_pb2.PoolState(chain_id=137, pair=bytes([n]) * 20, factory=b"\x02" * 20, token0=b"\x03" * 20,
                              token1=b"\x04" * 20, reserve0=(10**21).to_bytes(9, "big"), reserve1=b"\x05",
                              block_number=7, block_hash=b"\x06" * 32,
                              source=pool_pb2.POOL_STATE_SOURCE_GET_RESERVES)


async def test_pool_states_are_acked_as_ignored(server_factory: Factory, tmp_path: Path) -> None:
    srv = await server_factory(data_dir=tmp_path / "lmdb")
    [env] = synthetic_envelopes(1, seed=17, chain_ids=(137,))
    only_pools, with_tx = await push_batches(srv.address, [
        ingest_pb2.TxBatch(session_id="s", batch_seq=1, pools=[_pool(1), _pool(2)]),
        ingest_pb2.TxBatch(session_id="s", batch_seq=2, envelopes=[env], pools=[_pool(3)])])
    assert (only_pools.pools_stored, only_pools.pools_ignored, only_pools.accepted) == (0, 2, 0)
    assert (with_tx.pools_stored, with_tx.pools_ignored, with_tx.accepted) == (0, 1, 1)
    assert srv.metrics.pool_states.labels("ignored")._value.get() == 3
