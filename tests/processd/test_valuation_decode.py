"""Real mainnet V2 router swaps (common/testing/fixtures) map to the valuation's inputs: the path, amounts,
deadline, recipient and value the decoder gives are the ABI's, and the calldata reader used before the analysis
reads the same path."""

from __future__ import annotations

import random
from itertools import pairwise

import eth_abi
import pytest

from common.testing.fixtures import MainnetCall, load_mainnet_calls
from processd.analysis.analyzer import Analyzer
from processd.analysis.valuation.calldata import MAX_PATH, PATH_ARG, path_words, v2_path
from processd.analysis.valuation.pairs import Venues, pair_address, words_plan
from processd.analysis.valuation.value import gather, pairs_needed

TOKENS_ARGS = ["uint256", "uint256", "address[]", "address", "uint256"]
ETH_ARGS = ["uint256", "address[]", "address", "uint256"]
EXACT_OUT = {"8803dbee", "4a25d94a", "fb3bdb41"}
ANALYZER = Analyzer()
V2_CALLS = [c for c in load_mainnet_calls() if c.to and len(c.input) >= 10 and bytes.fromhex(c.input[2:10]) in PATH_ARG]


def test_the_fixtures_hold_v2_router_swaps_of_every_shape() -> None:
    assert len(V2_CALLS) > 150
    assert {c.input[2:10] for c in V2_CALLS} >= {"38ed1739", "7ff36ab5", "18cbafe5", "fb3bdb41", "8803dbee"}


@pytest.mark.parametrize("call", V2_CALLS, ids=lambda c: c.tx_hash[:12])
def test_fixture_swap_maps_to_valuation_inputs(call: MainnetCall) -> None:
    data = bytes.fromhex(call.input[2:])
    selector = data[:4].hex()
    to = bytes.fromhex(call.to[2:])  # type: ignore[index]
    decoded, _ = ANALYZER.decode_call(1, to, call.value, bytes.fromhex(call.sender[2:]), data)
    assert decoded is not None and decoded.decoded
    eth_in = PATH_ARG[data[:4]] == 1
    args = eth_abi.decode(ETH_ARGS if eth_in else TOKENS_ARGS, data[4:])
    path = tuple(bytes.fromhex(a[2:]) for a in args[1 if eth_in else 2])
    assert decoded.path == path == v2_path(data)
    assert decoded.recipient == bytes.fromhex(args[-2][2:])
    assert decoded.deadline == min(args[-1], 2**64 - 1)
    assert decoded.native_in == eth_in
    if selector in EXACT_OUT:
        assert decoded.amount_out == args[0]
        assert decoded.amount_in_max == (call.value if eth_in else args[1])  # ETH in: msg.value is the maximum
        assert decoded.amount_out_min is None
    else:
        assert decoded.amount_out_min == args[0 if eth_in else 1]
        assert decoded.amount_in == (call.value if eth_in else args[0])
    # the pairs the pipeline reads before the analysis: the hops on the router's factory first
    venues = Venues()
    factory = venues.factory_of_router(1, to)
    if factory is None:
        assert pairs_needed(1, to, data, venues) == ()  # a fork router the valuation does not know
    else:
        needed = pairs_needed(1, to, data, venues)
        hops = [pair_address(factory.address, factory.init_code_hash, a, b) for a, b in pairwise(path)]
        assert list(needed[:len(hops)]) == hops


def test_malformed_calldata_has_no_path() -> None:
    data = bytes.fromhex(V2_CALLS[0].input[2:])
    assert v2_path(data[:40]) is None
    assert v2_path(b"\x38\xed\x17\x39" + (2**255).to_bytes(32, "big") * 5) is None  # offset out of range
    assert v2_path(b"\xa9\x05\x9c\xbb" + bytes(64)) is None  # transfer(): not a router swap


class _RecordingSource:
    """A ReserveSource that knows no pair and records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, bytes]] = []

    def lookup(self, chain_id: int, pair: bytes) -> None:
        self.asked.append((chain_id, pair))


def _mangled(data: bytes, rng: random.Random) -> list[bytes]:
    """The call and variants of it that path_words must read or refuse: cut short, another offset or count word,
    another selector."""
    arg = PATH_ARG[data[:4]]
    head = 4 + 32 * arg
    offset = int.from_bytes(data[head:head + 32], "big")
    out = [data, data[:rng.randrange(len(data))], data[:head + 31], data[:4 + offset + 63]]
    for value in (0, 32, offset + 32, len(data), 2**255, rng.randrange(len(data) + 64)):
        out.append(data[:head] + value.to_bytes(32, "big") + data[head + 32:])
    # Address words after the call, so that a longer count can be read in full.
    tail = b"".join(bytes(12) + rng.randbytes(20) for _ in range(MAX_PATH + 2))
    for count in (0, 1, 3, MAX_PATH, MAX_PATH + 1, 2**64):
        at = 4 + offset
        out.append(data[:at] + count.to_bytes(32, "big") + data[at + 32:])
        out.append(data[:at] + count.to_bytes(32, "big") + data[at + 32:] + tail)
    out.append(rng.choice(list(PATH_ARG)) + data[4:])
    return out


def _need_keys(venues: Venues, calls: list[tuple[int, bytes, bytes]]) -> set[tuple[int, bytes]]:
    """The pair keys the routes ``path_words`` reads in ``calls`` need (what ``gather`` must ask for, each once)."""
    keys: set[tuple[int, bytes]] = set()
    for chain_id, to, data in calls:
        words = path_words(data)
        plan = None if words is None else words_plan(venues, chain_id, to, words)
        if plan is not None:
            keys.update(plan.need_keys)
    return keys


def test_gather_reads_the_routes_path_words_reads() -> None:
    """gather (calldata.path_words inline) asks for exactly the pairs of the routes path_words reads, each once,
    on every fixture swap and mangled variants of it (derandomized)."""
    rng = random.Random(17)
    venues = Venues()
    calls = []
    for c in V2_CALLS:
        to = bytes.fromhex(c.to[2:])  # type: ignore[index]
        calls += [(1, to, d) for d in _mangled(bytes.fromhex(c.input[2:]), rng)]
    for batch in (calls, calls[::7], calls[:50]):
        source = _RecordingSource()
        found, unknown = gather(batch, source, venues)
        sub = _need_keys(venues, batch)
        assert sorted(source.asked) == sorted(sub) and found == [] and unknown == len(sub)
    assert len(_need_keys(venues, calls)) > 100
