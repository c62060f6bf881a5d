"""The writer's dedup on columns: duplicates anywhere in a batch leave contiguous seqs and consistent indexes."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from common.pb.v1 import events_pb2, query_pb2
from common.testing.ingest_push import channel, push_envelopes
from common.testing.synth import synthetic_envelopes
from processd.api.server import ProcessdServer
from processd.storage.eventlog import CHAIN_SEQ, U64, decode_event, tx_key
from tests.processd._helpers import query_stub

SEEN = events_pb2.EVENT_KIND_TX_SEEN
DECODED = events_pb2.EVENT_KIND_TX_DECODED
OPP = events_pb2.EVENT_KIND_OPP_DETECTED


def _log(server: ProcessdServer) -> tuple[list[tuple[int, events_pb2.Event]], dict[bytes, int], dict[bytes, bytes]]:
    """Every (seq, event), the tx_hash index and the chain_seq index, read straight from LMDB."""
    log = server.eventlog
    assert log.env is not None
    with log.env.begin() as txn:
        events = [(U64.unpack(k)[0], decode_event(v, U64.unpack(k)[0])) for k, v in txn.cursor(db=log.events_db)]
        hashes = {bytes(k): U64.unpack(v)[0] for k, v in txn.cursor(db=log.tx_db)}
        chain_index = {bytes(k): bytes(v) for k, v in txn.cursor(db=log.chain_db)}
    return events, hashes, chain_index


def _expected_chain_index(events: list[tuple[int, events_pb2.Event]]) -> dict[bytes, bytes]:
    """One entry per transaction: (chain, TX_SEEN seq) -> the kinds of its events."""
    index: dict[bytes, bytes] = {}
    key = b""
    for seq, e in events:
        if e.kind == SEEN:
            key = CHAIN_SEQ.pack(e.chain_id, seq)
            index[key] = b""
        index[key] += bytes((e.kind,))
    return index


def _check_consistent(server: ProcessdServer) -> list[tuple[int, events_pb2.Event]]:
    events, hashes, chain_index = _log(server)
    seqs = [seq for seq, _ in events]
    assert seqs == list(range(1, len(seqs) + 1))  # gap-free
    assert all(seq == e.seq_id for seq, e in events)
    assert chain_index == _expected_chain_index(events)
    seen = {(e.chain_id, e.tx_hash): seq for seq, e in events if e.kind == SEEN}
    assert len(seen) == sum(1 for _, e in events if e.kind == SEEN)  # no transaction stored twice
    assert hashes == {tx_key(c, h): seq for (c, h), seq in seen.items()}
    # Each transaction's events are contiguous: SEEN, DECODED, then its opportunities (seq_id = their event).
    for i, (seq, e) in enumerate(events):
        if e.kind == DECODED:
            assert events[i - 1][1].kind == SEEN and events[i - 1][1].tx_hash == e.tx_hash
        elif e.kind == OPP:
            assert events[i - 1][1].kind in (DECODED, OPP) and events[i - 1][1].tx_hash == e.tx_hash
            assert e.opp_detected.opportunity.seq_id == seq
            assert e.opp_detected.opportunity.tx_hash == e.tx_hash
    return events


async def test_duplicates_interleaved_with_new_transactions(server: ProcessdServer) -> None:
    stored = synthetic_envelopes(300, seed=60)
    await push_envelopes(server.address, stored[::2], batch_size=150)
    fresh = synthetic_envelopes(300, seed=61)
    # Interleave: already stored, new, new twice in this batch, ... (with real swaps among them, so some
    # transactions have opportunities and more than two events).
    batch: list[Any] = []
    for i in range(150):
        batch += [stored[2 * i], fresh[i]]
        if i % 7 == 0:
            batch.append(fresh[i])
    acks = await push_envelopes(server.address, batch, batch_size=len(batch), first_batch_seq=100)
    assert acks[0].accepted == 150
    assert acks[0].duplicates == len(batch) - 150
    events = _check_consistent(server)
    assert acks[0].last_seq_id == events[-1][0]
    assert acks[0].first_seq_id == next(seq for seq, e in events if e.tx_hash == fresh[0].hash)
    assert any(e.kind == OPP for _, e in events)  # the opportunity path was exercised
    # The read models agree with the log.
    assert server.models.last_seq == events[-1][0]


async def test_a_batch_of_only_duplicates_moves_no_seq(server: ProcessdServer) -> None:
    envs = synthetic_envelopes(100, seed=62)
    first = await push_envelopes(server.address, envs, batch_size=100)
    again = await push_envelopes(server.address, envs + envs, batch_size=200, first_batch_seq=2)
    assert (again[0].accepted, again[0].duplicates, again[0].first_seq_id, again[0].last_seq_id) == (0, 200, 0, 0)
    events = _check_consistent(server)
    assert events[-1][0] == first[0].last_seq_id


async def test_index_keys_hold_a_hash_prefix_and_lookups_check_the_whole_hash(server: ProcessdServer) -> None:
    """tx_hash keys are (chain, first 16 bytes of the hash): a second transaction sharing that prefix (2**-128
    per pair for real hashes) is counted as a duplicate, and GetTransaction answers only for the full hash."""
    original = synthetic_envelopes(1, seed=63)[0]
    twin = type(original)()
    twin.CopyFrom(original)
    twin.hash = original.hash[:16] + bytes(b ^ 0xFF for b in original.hash[16:])
    twin.nonce += 1
    acks = await push_envelopes(server.address, [original], batch_size=1)
    again = await push_envelopes(server.address, [twin], batch_size=1, first_batch_seq=2)
    assert (acks[0].accepted, again[0].accepted, again[0].duplicates) == (1, 0, 1)
    _check_consistent(server)
    async with channel(server.address) as ch:
        q = query_stub(ch)
        found = await q.GetTransaction(query_pb2.GetTransactionRequest(chain_id=original.chain_id,
                                                                       hash=original.hash))
        assert found.transaction.tx.hash == original.hash
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await q.GetTransaction(query_pb2.GetTransactionRequest(chain_id=twin.chain_id, hash=twin.hash))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
