"""Batch preparation hands the decoder the calldata as ``bytes`` (static words are sliced straight out of it);
other callers pass memoryviews. Both representations decode to the same values and the same errors: on every
fixture call, on every truncation of them and on corrupted and random calldata."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from common.testing.fixtures import load_mainnet_calls
from processd.analysis.decoding import AbiDecodeError, Decoder, all_methods

DECODER = Decoder()
METHODS = all_methods()
CALLS = [bytes.fromhex(c.input[2:]) for c in load_mainnet_calls()]
KNOWN = [c for c in CALLS if len(c) >= 4 and c[:4] in METHODS]
TO = b"\x0b" * 20
SENDER = b"\x0a" * 20


def plain(value: Any) -> Any:
    if isinstance(value, memoryview):
        return ("view", value.tobytes())
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    return value


def args_both_ways(data: bytes) -> list[Any]:
    method = METHODS[data[:4]]
    out = []
    for buf in (data, memoryview(data)):
        try:
            out.append(plain(method.args.decode(buf)))
        except AbiDecodeError as exc:
            out.append(("rejected", str(exc)))
    return out


def assert_same(data: bytes) -> None:
    as_bytes, as_view = args_both_ways(data)
    assert as_bytes == as_view
    assert DECODER.decode(data, TO, 5, SENDER) == DECODER.decode(memoryview(data), TO, 5, SENDER)


def test_fixture_calls_and_their_truncations() -> None:
    assert len(KNOWN) > 900
    for data in KNOWN:
        assert_same(data)
    for data in KNOWN[:300]:
        for cut in (4, 5, 36, 67, 68, len(data) // 2, len(data) - 1):
            if 4 <= cut < len(data):
                assert_same(data[:cut])


def test_bytes_arguments_are_views_into_the_calldata() -> None:
    multicalls = [c for c in KNOWN if c[:4] in (bytes.fromhex("5ae401dc"), bytes.fromhex("ac9650d8"))]
    assert multicalls
    for data in multicalls:
        inner_calls = METHODS[data[:4]].args.decode(data)[-1]
        assert inner_calls and all(isinstance(inner, memoryview) and inner.obj is data for inner in inner_calls)


@settings(max_examples=300, deadline=None)
@given(index=st.integers(min_value=0, max_value=10_000), pos=st.integers(min_value=4), byte=st.integers(0, 255))
def test_corrupted_calls(index: int, pos: int, byte: int) -> None:
    data = bytearray(KNOWN[index % len(KNOWN)])
    if len(data) > 4:  # arguments only: the selector picks the method
        data[4 + pos % (len(data) - 4)] = byte
    assert_same(bytes(data))


@settings(max_examples=200, deadline=None)
@given(selector=st.sampled_from(sorted(METHODS)), words=st.lists(st.sampled_from(
    [0, 1, 32, 64, 96, 2**160 - 1, 2**160, 2**255, 2**256 - 1]), max_size=12), tail=st.binary(max_size=40))
def test_random_word_soup(selector: bytes, words: list[int], tail: bytes) -> None:
    assert_same(selector + b"".join(w.to_bytes(32, "big") for w in words) + tail)
