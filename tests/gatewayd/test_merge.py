"""The merge of several shards' pages and its cursors (gatewayd/merge.py): paging a merged walk with the returned
positions yields every record of every shard exactly once, each shard in its own order, whatever the keys, page
cuts and shards that miss a page; with keys in each shard's order the whole walk is in key order."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatewayd.merge import (
    EXHAUSTED,
    ShardPage,
    decode_cursor,
    encode_cursor,
    layout_fingerprint,
    merge_page,
    next_positions,
)
from gatewayd.params import ParamError


@dataclass(frozen=True)
class Rec:
    shard: int
    seq_id: int
    key: int


def desc_page(log: list[Rec], before: int, limit: int, cut: int) -> ShardPage[Rec]:
    """What processd's ListTransactions answers newest first: seq < before (0 = from the newest), at most
    ``limit``, cut shorter by size (``cut``, at least one record), with its next cursor."""
    older = [r for r in reversed(log) if before == 0 or r.seq_id < before]
    items = older[:max(1, min(limit, cut))]
    more = len(items) < len(older)
    return ShardPage(items, more, items[-1].seq_id if more else 0)


def asc_page(log: list[Rec], start: int, limit: int, cut: int) -> ShardPage[Rec]:
    """ListTransactions ascending: seq >= start, at most ``limit``, cut by size; its next cursor when more."""
    newer = [r for r in log if r.seq_id >= start]
    items = newer[:max(1, min(limit, cut))]
    more = len(items) < len(newer)
    return ShardPage(items, more, items[-1].seq_id + 1 if more else 0)


def make_logs(sizes: list[int], keys: list[int], sorted_keys: bool) -> list[list[Rec]]:
    logs = []
    k = 0
    for shard, size in enumerate(sizes):
        shard_keys = [keys[(k + j) % len(keys)] for j in range(size)]
        k += size
        if sorted_keys:
            shard_keys.sort()
        logs.append([Rec(shard, seq + 1, key) for seq, key in enumerate(shard_keys)])
    return logs


walks = st.fixed_dictionaries({
    "sizes": st.lists(st.integers(0, 30), min_size=1, max_size=4),
    "keys": st.lists(st.integers(0, 50), min_size=1, max_size=60),
    "limit": st.integers(1, 12),
    "cuts": st.lists(st.integers(1, 12), min_size=1, max_size=10),
    "down": st.lists(st.booleans(), min_size=1, max_size=10),
    "sorted_keys": st.booleans(),
})


@settings(max_examples=300)
@given(walks)
def test_descending_walk_returns_every_record_once_in_order(w: dict) -> None:
    logs = make_logs(w["sizes"], w["keys"], w["sorted_keys"])
    positions = [0] * len(logs)
    out: list[Rec] = []
    for step in range(10_000):
        if all(p == EXHAUSTED for p in positions):
            break
        cut = w["cuts"][step % len(w["cuts"])]
        down = w["down"][step % len(w["down"])] and step % 3 == 0  # a shard misses some pages, then is back
        pages: list[ShardPage[Rec] | None] = [
            None if positions[i] == EXHAUSTED or (down and i == step % len(logs))
            else desc_page(log, positions[i], w["limit"], cut) for i, log in enumerate(logs)]
        merged = merge_page(pages, lambda r: r.key, w["limit"])
        assert len(merged.items) <= w["limit"]
        out.extend(r for _, r in merged.items)
        positions = next_positions(pages, merged, positions, lambda r: r.seq_id, descending=True)
    else:
        pytest.fail("the walk did not end")
    everything = [r for log in logs for r in log]
    assert sorted(out, key=lambda r: (r.shard, r.seq_id)) == sorted(everything, key=lambda r: (r.shard, r.seq_id))
    for shard in range(len(logs)):  # each shard's own order (newest first) is kept
        seqs = [r.seq_id for r in out if r.shard == shard]
        assert seqs == sorted(seqs, reverse=True)
    if w["sorted_keys"] and not any(w["down"]):
        assert [r.key for r in out] == sorted((r.key for r in out), reverse=True)


@settings(max_examples=300)
@given(walks, st.lists(st.integers(1, 3), min_size=1, max_size=8))
def test_ascending_poll_returns_every_record_once_while_logs_grow(w: dict, growth: list[int]) -> None:
    final = make_logs([s + 10 for s in w["sizes"]], w["keys"], w["sorted_keys"])
    visible = [min(len(log), size) for log, size in zip(final, w["sizes"], strict=True)]
    positions = [0] * len(final)
    out: list[Rec] = []
    for step in range(10_000):
        logs = [log[:n] for log, n in zip(final, visible, strict=True)]
        cut = w["cuts"][step % len(w["cuts"])]
        pages: list[ShardPage[Rec] | None] = [
            asc_page(log, positions[i], w["limit"], cut) if any(r.seq_id >= positions[i] for r in log) else
            ShardPage([], False) for i, log in enumerate(logs)]
        merged = merge_page(pages, lambda r: r.key, w["limit"], descending=False)
        out.extend(r for _, r in merged.items)
        positions = next_positions(pages, merged, positions, lambda r: r.seq_id, descending=False)
        if not merged.items and visible == [len(log) for log in final]:
            break
        # Records keep arriving between polls.
        visible = [min(len(log), n + growth[(step + i) % len(growth)]) for i, (log, n) in
                   enumerate(zip(final, visible, strict=True))]
    else:
        pytest.fail("the poll did not end")
    everything = [r for log in final for r in log]
    assert sorted(out, key=lambda r: (r.shard, r.seq_id)) == sorted(everything, key=lambda r: (r.shard, r.seq_id))
    for shard in range(len(final)):
        seqs = [r.seq_id for r in out if r.shard == shard]
        assert seqs == sorted(seqs)


def test_merge_stops_where_a_shard_with_more_ran_out() -> None:
    a = ShardPage([Rec(0, 9, 90), Rec(0, 8, 10)], more=False)
    b = ShardPage([Rec(1, 5, 50)], more=True, resume=5)  # its next record (unknown) could beat a's 10
    merged = merge_page([a, b], lambda r: r.key, 10)
    assert [(i, r.key) for i, r in merged.items] == [(0, 90), (1, 50)]
    assert merged.cut
    assert next_positions([a, b], merged, [0, 0], lambda r: r.seq_id, descending=True) == [9, 5]


def test_ties_go_to_the_lower_shard_and_exhaustion_is_marked() -> None:
    a = ShardPage([Rec(0, 2, 7)], more=False)
    b = ShardPage([Rec(1, 3, 7)], more=False)
    merged = merge_page([a, b, None], lambda r: r.key, 10)
    assert [i for i, _ in merged.items] == [0, 1]
    assert next_positions([a, b, None], merged, [0, 0, 4], lambda r: r.seq_id, True) == [EXHAUSTED, EXHAUSTED, 4]


FP = layout_fingerprint([(1, 10), (137,)])


def test_cursor_round_trip() -> None:
    text = encode_cursor("tx", FP, [12, EXHAUSTED, 0])
    assert text == f"m1.tx.{FP}.12.x.0"
    assert decode_cursor("cursor", text, "tx", FP, 3) == [12, EXHAUSTED, 0]


def test_layout_fingerprint_names_the_chain_sets_in_order() -> None:
    assert layout_fingerprint([(10, 1), (137,)]) == FP
    assert layout_fingerprint([(137,), (1, 10)]) != FP
    assert layout_fingerprint([(1,), (10, 137)]) != FP


@pytest.mark.parametrize(("text", "why"), [
    ("12", "not a cursor"),
    (f"m2.tx.{FP}.1.2", "not a cursor"),
    (f"m1.ev.{FP}.1.2", "another route"),
    ("m1.tx.00000000.1.2", "another processd shard layout"),
    (f"m1.tx.{FP}.1", "1 positions for 2 shards"),
    (f"m1.tx.{FP}.1.2.3", "3 positions for 2 shards"),
    (f"m1.tx.{FP}.1.", "bad position"),
    (f"m1.tx.{FP}.1.18446744073709551616", "bad position"),
    (f"m1.tx.{FP}.1.123456789012345678901", "bad position"),
    (f"m1.tx.{FP}.1.xx", "bad position"),
    ("m1.tx." + FP + ".1" * 800, "longer than"),
])
def test_bad_or_foreign_cursors_are_a_400(text: str, why: str) -> None:
    with pytest.raises(ParamError) as info:
        decode_cursor("cursor", text, "tx", FP, 2)
    assert info.value.code == "invalid_cursor"
    assert why in info.value.message


def test_opportunities_of_several_shards_merge_by_the_read_models_ranking() -> None:
    """/opps/recent over shards: each shard's page is ranked (valued with a net profit by net profit, then the rest by
    score); the merge keeps that ranking across shards, so a high heuristic score never passes a valued one."""
    from common.pb.v1 import events_pb2
    from gatewayd.sharded import _rank

    def opp(seq: int, score: int, net: int | None = None) -> events_pb2.Opportunity:
        o = events_pb2.Opportunity(seq_id=seq, score=score, valued=net is not None)
        if net is not None:
            o.net_profit_wei = net.to_bytes(16, "big").lstrip(b"\0")
        return o

    a = [opp(1, 10, 5 * 10**17), opp(2, 3, 10**15), opp(3, 95), opp(4, 20)]
    b = [opp(11, 50, 10**18), opp(12, 99), opp(13, 40)]
    merged = merge_page([ShardPage(a, False), ShardPage(b, False)], _rank, 10)
    assert [o.seq_id for _, o in merged.items] == [11, 1, 2, 12, 3, 13, 4]
