"""The pool read model (processd/views/pools.py): newer blocks replace, stale and repeated states do not, a reorg's
later state wins, malformed bodies are counted, the bound evicts the least recently updated; applying the same
sequence again gives the same model (what a replay of the log relies on)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from common.pb.v1 import pool_pb2
from processd.views.pools import PoolReserves, PoolView


def state(pair: int, block: int, r0: int, r1: int = 7, tag: int = 0, chain: int = 1) -> pool_pb2.PoolState:
    return pool_pb2.PoolState(chain_id=chain, pair=bytes([pair]) * 20, factory=b"\x0f" * 20, token0=b"\x01" * 20,
                              token1=b"\x02" * 20, reserve0=r0.to_bytes(32, "big").lstrip(b"\x00"),
                              reserve1=r1.to_bytes(32, "big").lstrip(b"\x00"), block_number=block,
                              block_hash=bytes([block % 256, tag]) * 16, source=pool_pb2.POOL_STATE_SOURCE_SYNC_LOG)


def test_newer_blocks_replace_older_and_repeats_do_not() -> None:
    view = PoolView()
    assert view.lookup(1, b"\x05" * 20) is None
    assert view.apply(state(5, 10, 2**111))
    assert view.lookup(1, b"\x05" * 20) == PoolReserves(1, b"\x05" * 20, b"\x01" * 20, b"\x02" * 20, 2**111, 7, 10)
    assert not view.apply(state(5, 9, 1)) and not view.apply(state(5, 10, 1))  # older; the same block again
    assert view.lookup(1, b"\x05" * 20).reserve0 == 2**111  # type: ignore[union-attr]
    assert view.apply(state(5, 10, 3, tag=1))  # another block at height 10 (a reorg): the later one wins
    assert view.apply(state(5, 11, 0))  # an empty reserve is 0
    assert view.lookup(1, b"\x05" * 20).reserve0 == 0  # type: ignore[union-attr]
    assert view.lookup(137, b"\x05" * 20) is None  # per chain
    assert (view.counters.applied, view.counters.stale) == (3, 2)


def test_malformed_states_are_counted_never_applied() -> None:
    view = PoolView()
    bad = [state(1, 1, 1) for _ in range(5)]
    bad[0].pair = b"\x01" * 19
    bad[1].chain_id = 0
    bad[2].reserve0 = b"\x01" * 33
    bad[3].token0, bad[3].token1 = bad[3].token1, bad[3].token0
    bad[4].block_hash = b""
    assert not any(view.apply(s) for s in bad)
    assert view.counters.malformed == 5 and len(view) == 0


def test_the_bound_evicts_the_least_recently_updated() -> None:
    view = PoolView(max_pairs=2)
    view.apply(state(1, 1, 1))
    view.apply(state(2, 1, 1))
    view.apply(state(1, 2, 1))  # pair 1 updated: pair 2 is now the oldest
    view.apply(state(3, 1, 1))
    assert len(view) == 2 and view.counters.evicted == 1
    assert view.lookup(1, b"\x02" * 20) is None and view.lookup(1, b"\x01" * 20) is not None


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(0, 2**112 - 1), st.integers(0, 1)),
                max_size=40))
def test_the_model_is_the_newest_state_per_pair_and_a_replay_gives_the_same(
        steps: list[tuple[int, int, int, int]]) -> None:
    states = [state(pair, block, r0, tag=tag) for pair, block, r0, tag in steps]
    view, again = PoolView(), PoolView()
    expected: dict[int, tuple[int, bytes, int]] = {}
    for s, (pair, block, r0, _) in zip(states, steps, strict=True):
        view.apply(s)
        held = expected.get(pair)
        if held is None or block > held[0] or (block == held[0] and s.block_hash != held[1]):
            expected[pair] = (block, s.block_hash, r0)
    for s in states:
        again.apply(s)
    for pair in range(1, 5):
        got = view.lookup(1, bytes([pair]) * 20)
        assert got == again.lookup(1, bytes([pair]) * 20)
        assert (got.block_number, got.reserve0) == expected[pair][::2] if got else pair not in expected
