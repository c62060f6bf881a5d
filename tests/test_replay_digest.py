"""The replay digest (scripts/replay_digest): the same code over the same input gives the same digest, and the
digest sees a change of what is stored. Runs the working tree's processd for real, three times (a few s each)."""

from __future__ import annotations

import copy
from pathlib import Path

import lmdb
import pytest

from common.pb.v1 import events_pb2
from common.testing.replay_digest import ROOT, digest_tree, first_differences, zero_varint_fields
from common.testing.replay_input import CHAINS, SECOND_SOURCE, pool_state_batches, read_recording, with_lifecycle
from processd.views.pools import well_formed
from tests.reliability._support import audit_log

pytestmark = pytest.mark.integration
LIFE_KINDS = {events_pb2.EVENT_KIND_TX_INCLUDED, events_pb2.EVENT_KIND_TX_REPLACED, events_pb2.EVENT_KIND_TX_DROPPED,
              events_pb2.EVENT_KIND_REORG}


def test_the_recording_holds_what_the_digest_needs() -> None:
    batches = read_recording()
    envelopes = [env for batch in batches for env in batch.envelopes]
    keys = [(env.chain_id, env.hash) for env in envelopes]
    assert {env.chain_id for env in envelopes} >= set(CHAINS)
    assert len(set(keys)) < len(keys)  # duplicates
    assert {env.tx_type for env in envelopes} == {0, 1, 2, 3, 4}
    assert any(len(env.hash) != 32 for env in envelopes) and any(env.chain_id == 0 for env in envelopes)
    assert {s.source_id for batch in batches for s in batch.sightings} == {SECOND_SOURCE}
    assert any(batch.chain_stats for batch in batches)


def test_zero_varint_fields_keeps_every_other_byte() -> None:
    event = events_pb2.Event(chain_id=1, kind=events_pb2.EVENT_KIND_TX_SEEN, tx_hash=b"\x07" * 32,
                             first_seen_unix_ns=123, received_unix_ns=456, source_id="a")
    zeroed = zero_varint_fields(event.SerializeToString(), frozenset((6,)))
    expected = events_pb2.Event()
    expected.CopyFrom(event)
    expected.received_unix_ns = 0
    assert events_pb2.Event.FromString(zeroed) == expected
    assert zeroed.replace(b"\x30\x00", b"") == expected.SerializeToString()  # tag 6 kept, value 0


def test_same_code_same_digest_and_a_changed_input_changes_it(tmp_path: Path) -> None:
    batches = read_recording()
    first = digest_tree(ROOT, batches, tmp_path / "first")
    second = digest_tree(ROOT, batches, tmp_path / "second")
    assert first.hexdigest() == second.hexdigest(), first_differences(first, second)

    mutated = copy.deepcopy(batches)
    mutated[5].envelopes[3].gas += 1
    changed = digest_tree(ROOT, mutated, tmp_path / "mutated")
    assert changed.hexdigest() != first.hexdigest()
    assert "lmdb:events" in first_differences(first, changed)


def test_the_digest_covers_pool_states(tmp_path: Path) -> None:
    """Pool states (issue 17) appended to the recording: stored as POOL_STATE events, the same digest twice, and a
    changed reserve shows in the events, the pools index stays (same keys) and ScanEvents."""
    batches = read_recording()
    batches += pool_state_batches(len(batches) + 1)
    first = digest_tree(ROOT, batches, tmp_path / "first")
    second = digest_tree(ROOT, batches, tmp_path / "second")
    assert first.hexdigest() == second.hexdigest(), first_differences(first, second)
    keys = {(p.chain_id, p.pair, p.block_number, p.block_hash) for b in batches for p in b.pools if well_formed(p)}
    assert len(first.parts["lmdb:pools"]) == len(keys) > 6 * 6  # each (chain, pair, block, hash) once

    mutated = copy.deepcopy(batches)
    mutated[-1].pools[0].reserve0 = b"\x01"
    changed = digest_tree(ROOT, mutated, tmp_path / "mutated")
    differing = first_differences(first, changed)
    assert "lmdb:events" in differing and "query:ScanEvents" in differing and "lmdb:pools" not in differing


def test_lifecycle_replays_to_the_same_digest(tmp_path: Path) -> None:
    """The recording with blocks, TxGone reports and a reorg around it (issue 16): every lifecycle kind and reason
    is stored, and a second run gives the same digest (lifecycle results depend on the log only, never the wall
    clock or commit grouping)."""
    batches = with_lifecycle(read_recording())
    first = digest_tree(ROOT, batches, tmp_path / "first")
    second = digest_tree(ROOT, batches, tmp_path / "second")
    assert first.hexdigest() == second.hexdigest(), first_differences(first, second)
    assert first.parts["lmdb:tx_life_seq"]
    env = lmdb.open(str(tmp_path / "first" / "data"), readonly=True, lock=False, max_dbs=16)
    try:
        with env.begin(db=env.open_db(b"events", create=False)) as txn:
            events = [events_pb2.Event.FromString(bytes(v[1:])) for _, v in txn.cursor() if v[0] in LIFE_KINDS]
    finally:
        env.close()
    assert {e.kind for e in events} == LIFE_KINDS
    assert {e.tx_dropped.reason for e in events if e.kind == events_pb2.EVENT_KIND_TX_DROPPED} == {
        events_pb2.DROP_REASON_EXPIRED, events_pb2.DROP_REASON_EVICTED, events_pb2.DROP_REASON_NONCE_PASSED}
    assert any(e.tx_included.reincluded for e in events) and any(e.tx_replaced.by_block for e in events)
    audit_log(tmp_path / "first" / "data").assert_clean()


def test_lifecycle_and_pool_states_in_one_log(tmp_path: Path) -> None:
    """Both later event families in one input (the lifecycle around the recording, pool states after it): every
    kind is stored next to the other, both indexes are filled and the log's invariants hold."""
    batches = with_lifecycle(read_recording())
    batches += pool_state_batches(max(b.batch_seq for b in batches) + 1)
    run = digest_tree(ROOT, batches, tmp_path / "both")
    assert run.parts["lmdb:tx_life_seq"] and run.parts["lmdb:pools"]
    env = lmdb.open(str(tmp_path / "both" / "data"), readonly=True, lock=False, max_dbs=16)
    try:
        with env.begin(db=env.open_db(b"events", create=False)) as txn:
            kinds = {v[0] for _, v in txn.cursor()}
    finally:
        env.close()
    assert kinds >= LIFE_KINDS | {events_pb2.EVENT_KIND_BLOCK, events_pb2.EVENT_KIND_POOL_STATE}
    audit_log(tmp_path / "both" / "data").assert_clean()
