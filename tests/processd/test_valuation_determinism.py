"""The valuation is a function of the log (issue 17): processd values each batch's swaps on the pool states of the
batches before it in log order and on its own, whatever the commit timing. The same batches (pool states and V2
router swaps, interleaved, reserves moving every block) go through fresh processd servers whose commits lag the
receipt differently (flush interval, analysis workers, a restart halfway that rebuilds the view from the log); every
one gives the same opportunities, byte for byte, and each valued one is priced at the block a reference walk of the
batches in order says."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import eth_abi

from common.pb.v1 import events_pb2, ingest_pb2, pool_pb2, query_pb2, tx_pb2
from common.testing.ingest_push import channel, push_batches
from processd.analysis.valuation.amm import swap_out
from processd.api.server import ProcessdServer
from tests.processd._helpers import query_stub
from tests.processd._valuation import SUSHI, UNI, UNI_ROUTER, USDC, WETH, pool

Factory = Callable[..., Awaitable[ProcessdServer]]
OPP = events_pb2.EVENT_KIND_OPP_DETECTED
BLOCKS = range(1, 13)


def reserves(block: int) -> tuple[int, int, int]:
    """WETH on both pairs, USDC on uniswap's and on sushiswap's after ``block``: prices move every block."""
    r_weth = (1000 + 37 * block) * 10**18
    return r_weth, (2_000_000 - 41_000 * block) * 10**6, (2_020_000 + 23_000 * (block % 5)) * 10**6


def pool_states(block: int) -> list[pool_pb2.PoolState]:
    r_weth, r_uni, r_sushi = reserves(block)
    out = []
    for factory, r_usdc in ((UNI, r_uni), (SUSHI, r_sushi)):
        p = pool(factory, WETH, r_weth, USDC, r_usdc, block=block)
        out.append(pool_pb2.PoolState(
            chain_id=1, pair=p.pair, factory=factory.address, token0=p.token0, token1=p.token1,
            reserve0=p.reserve0.to_bytes(32, "big"), reserve1=p.reserve1.to_bytes(32, "big"), block_number=block,
            block_hash=hashlib.sha256(block.to_bytes(8, "big")).digest(), source=pool_pb2.POOL_STATE_SOURCE_SYNC_LOG))
    return out


def swap(i: int, block: int) -> tx_pb2.TxEnvelope:
    """A WETH -> USDC exact-input swap of 0.5-40 WETH with 0-4% slack on the reserves of ``block``."""
    r_weth, r_uni, _ = reserves(block)
    amount = 10**17 * (5 + (i * 53) % 400)
    out_min = swap_out(amount, r_weth, r_uni) * (100 - i % 5) // 100
    data = bytes.fromhex("38ed1739") + eth_abi.encode(
        ["uint256", "uint256", "address[]", "address", "uint256"], [amount, out_min, [WETH, USDC], b"\x09" * 20, 2**40])
    return tx_pb2.TxEnvelope(chain_id=1, hash=hashlib.sha256(b"det" + i.to_bytes(8, "big")).digest(),
                             sender=b"\x09" * 20, to=UNI_ROUTER, input=data, nonce=i, gas=300_000,
                             gas_price=(20 * 10**9).to_bytes(8, "big"), source_id="t", first_seen_unix_ns=10**18 + i)


def batches() -> tuple[list[ingest_pb2.TxBatch], dict[bytes, int]]:
    """Batches in stream order (pool states alone, swaps alone, both in one batch), and for each swap the block
    whose reserves it must be valued on: the newest pool state before it in the stream, its own batch's included."""
    out: list[ingest_pb2.TxBatch] = []
    expected: dict[bytes, int] = {}
    i = 0
    for block in BLOCKS:
        kind = block % 3  # 0: states then swaps in two batches; 1: both in one batch; 2: swaps then states
        txs = []
        for _ in range(4):
            i += 1
            txs.append(swap(i, block))
        if kind == 2:  # swaps first: valued on the previous block's states (none before block 1)
            out.append(ingest_pb2.TxBatch(session_id="d", batch_seq=len(out) + 1, envelopes=txs))
            out.append(ingest_pb2.TxBatch(session_id="d", batch_seq=len(out) + 1, pools=pool_states(block)))
            expected.update((t.hash, block - 1) for t in txs)
        elif kind == 1:
            out.append(ingest_pb2.TxBatch(session_id="d", batch_seq=len(out) + 1, envelopes=txs,
                                          pools=pool_states(block)))
            expected.update((t.hash, block) for t in txs)
        else:
            out.append(ingest_pb2.TxBatch(session_id="d", batch_seq=len(out) + 1, pools=pool_states(block)))
            out.append(ingest_pb2.TxBatch(session_id="d", batch_seq=len(out) + 1, envelopes=txs))
            expected.update((t.hash, block) for t in txs)
    return out, expected


async def opportunities(address: str) -> dict[bytes, list[bytes]]:
    """Every OPP_DETECTED event's opportunity, serialized, per transaction (in log order)."""
    async with channel(address) as ch:
        page = await query_stub(ch).ScanEvents(query_pb2.ScanEventsRequest(from_seq_id=1, kinds=[OPP], limit=5000))
    assert not page.truncated and page.next_seq_id > page.last_seq_id
    out: dict[bytes, list[bytes]] = {}
    for e in page.events:
        out.setdefault(e.tx_hash, []).append(e.opp_detected.opportunity.SerializeToString(deterministic=True))
    return out


async def test_the_same_batches_give_the_same_valuations_whatever_the_commit_timing(server_factory: Factory,
                                                                                    tmp_path: Path) -> None:
    sent, expected = batches()
    runs = []
    # Commits right away, one batch in flight at a time: each batch is committed before the next arrives.
    fast = await server_factory(data_dir=tmp_path / "fast", flush_interval_ms=1, analysis_workers=0)
    for batch in sent:
        await push_batches(fast.address, [batch], max_inflight=1)
    runs.append(await opportunities(fast.address))
    # Commits every 250 ms with every batch in flight at once: later batches are prepared long before the
    # earlier ones are committed (what a view fed at commit time would value on stale reserves).
    slow = await server_factory(data_dir=tmp_path / "slow", flush_interval_ms=250, flush_max_events=100_000,
                                analysis_workers=2)
    await push_batches(slow.address, sent, max_inflight=64)
    runs.append(await opportunities(slow.address))
    # Half, a restart (the valuation view rebuilt from the log), the other half.
    first = await server_factory(data_dir=tmp_path / "restart", flush_interval_ms=50, analysis_workers=1)
    await push_batches(first.address, sent[:len(sent) // 2], max_inflight=64)
    await first.stop(grace_s=0.5)
    second = await server_factory(data_dir=tmp_path / "restart", flush_interval_ms=50, analysis_workers=1)
    assert second.pipeline.valuation_view is not None and len(second.pipeline.valuation_view) == 2
    await push_batches(second.address, sent[len(sent) // 2:], max_inflight=64)
    runs.append(await opportunities(second.address))

    assert runs[0] == runs[1] == runs[2]
    valued_blocks: dict[bytes, set[int]] = {}
    for tx_hash, opps in runs[0].items():
        for raw in opps:
            o = events_pb2.Opportunity.FromString(raw)
            if o.valued:
                valued_blocks.setdefault(tx_hash, set()).add(o.state_block_number)
            elif expected[tx_hash] == 0:
                assert o.valuation_note.startswith("not valued: pool state unknown"), o.valuation_note
    assert valued_blocks, "no swap was valued"
    assert all(blocks == {expected[h]} for h, blocks in valued_blocks.items())
    # the reserves moved under the stream: swaps were valued on many blocks, own-batch states included
    assert len({b for blocks in valued_blocks.values() for b in blocks}) >= 6
    # every arrangement was valued: states in an earlier batch, in the swaps' own batch, only in a later one
    sent_in = {t.hash: (len(b.pools) > 0, bool(i and sent[i - 1].pools and not sent[i - 1].envelopes))
               for i, b in enumerate(sent) for t in b.envelopes}
    assert {sent_in[h] for h in valued_blocks} == {(True, False), (False, True), (False, False)}
