"""The fast ABI decoder is equal to eth-abi: same values on every real fixture call (and every inner call of
a multicall), same accept/reject decision on truncated, corrupted and random calldata."""

from __future__ import annotations

from typing import Any

import eth_abi
import pytest
from eth_abi.exceptions import DecodingError
from eth_hash.auto import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.testing.eth_abi_reference import normalize
from common.testing.fixtures import load_mainnet_calls
from processd.analysis.decoding import AbiDecodeError, all_methods
from processd.analysis.decoding.abi import ArgsDecoder
from processd.analysis.decoding.routers import UR_COMMAND_TYPES

METHODS = all_methods()
CALLS = load_mainnet_calls()
KNOWN = [c for c in CALLS if len(c.input) >= 10 and bytes.fromhex(c.input[2:10]) in METHODS]


def ours(types: tuple[str, ...], data: bytes, start: int = 4) -> tuple[Any, ...] | None:
    """Fast decoder result in eth-abi's representation (bytes views -> bytes), None when rejected."""
    try:
        return _plain(ArgsDecoder(types).decode(memoryview(data), start))
    except AbiDecodeError:
        return None


def reference(types: tuple[str, ...], data: bytes) -> tuple[Any, ...] | None:
    try:
        return normalize(eth_abi.decode(types, data))  # type: ignore[no-any-return]
    except (DecodingError, OverflowError):  # eth-abi raises OverflowError on absurd lengths: a rejection too
        return None


def _plain(value: Any) -> Any:
    if isinstance(value, memoryview):
        return value.tobytes()
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


def test_selectors_are_keccak_of_signatures() -> None:
    assert len(METHODS) >= 40
    for selector, method in METHODS.items():
        assert keccak(method.signature.encode())[:4] == selector, method.signature


def test_fixture_has_known_calls_of_every_common_family() -> None:
    names = {METHODS[bytes.fromhex(c.input[2:10])].name for c in KNOWN}
    assert {"transfer", "approve", "swapExactETHForTokens", "exactInputSingle", "exactInput", "multicall"} <= names
    assert len(KNOWN) >= 900


def test_equal_to_eth_abi_on_every_fixture_call() -> None:
    inner_checked = 0
    for call in KNOWN:
        data = bytes.fromhex(call.input[2:])
        method = METHODS[data[:4]]
        expected = reference(method.types, data[4:])
        assert expected is not None, call.tx_hash  # real mined calls decode
        assert ours(method.types, data) == expected, call.tx_hash
        if method.name == "multicall":
            for inner in expected[-1]:
                inner_method = METHODS.get(inner[:4])
                if inner_method is not None:
                    assert ours(inner_method.types, inner) == reference(inner_method.types, inner[4:])
                    inner_checked += 1
    assert inner_checked >= 10


@pytest.mark.parametrize("cut", [1, 31, 33])
def test_truncated_fixture_calls_rejected_like_eth_abi(cut: int) -> None:
    for call in KNOWN:
        data = bytes.fromhex(call.input[2:])
        if len(data) - cut < 4:
            continue
        method = METHODS[data[:4]]
        short = data[:-cut]
        assert (ours(method.types, short) is None) == (reference(method.types, short[4:]) is None), call.tx_hash
        assert ours(method.types, short) == reference(method.types, short[4:])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(min_value=0, max_value=10_000), pos=st.integers(min_value=0), byte=st.integers(0, 255))
def test_corrupted_fixture_calls_agree_with_eth_abi(index: int, pos: int, byte: int) -> None:
    call = KNOWN[index % len(KNOWN)]
    data = bytearray(bytes.fromhex(call.input[2:]))
    if len(data) <= 4:
        return
    data[4 + pos % (len(data) - 4)] = byte
    method = METHODS[bytes(data[:4])]
    assert ours(method.types, bytes(data)) == reference(method.types, bytes(data[4:]))


@settings(max_examples=500, deadline=None)
@given(method_index=st.integers(min_value=0), words=st.lists(
    st.one_of(st.integers(0, 300), st.integers(0, 2**256 - 1), st.sampled_from([32, 64, 96, 128, 2**255]),
              # just inside / outside every width the registry uses (padding checks)
              st.sampled_from([2**b + d for b in (8, 24, 160, 256) for d in (-1, 0) if 2**b + d < 2**256])),
    max_size=14), tail=st.binary(max_size=40))
def test_random_word_soup_agrees_with_eth_abi(method_index: int, words: list[int], tail: bytes) -> None:
    """Small integers make plausible offsets and lengths, so pointer/length validation paths are hit."""
    method = list(METHODS.values())[method_index % len(METHODS)]
    data = method.selector + b"".join(w.to_bytes(32, "big") for w in words) + tail
    assert ours(method.types, data) == reference(method.types, data[4:])


@settings(max_examples=200, deadline=None)
@given(cmd=st.sampled_from(sorted(UR_COMMAND_TYPES)), recipient=st.binary(min_size=20, max_size=20),
       a=st.integers(0, 2**256 - 1), b=st.integers(0, 2**256 - 1), blob=st.binary(max_size=90), flag=st.booleans(),
       cut=st.integers(0, 40))
def test_universal_router_inputs_agree_with_eth_abi(cmd: int, recipient: bytes, a: int, b: int, blob: bytes,
                                                    flag: bool, cut: int) -> None:
    _, types = UR_COMMAND_TYPES[cmd]
    values: list[Any] = []
    for t in types:
        if t == "address":
            values.append(recipient)
        elif t == "uint256":
            values.append(a if len(values) < 2 else b)
        elif t == "bytes":
            values.append(blob)
        elif t == "address[]":
            values.append([recipient, recipient[::-1]])
        else:
            values.append(flag)
    encoded = eth_abi.encode(list(types), values)
    for data in (encoded, encoded[: len(encoded) - cut]):
        assert ours(types, data, start=0) == reference(types, data)


def test_padding_edges_of_every_head_word_agree_with_eth_abi() -> None:
    """Deterministic sweep: in each of the first 12 argument words of every known fixture call, set the
    byte that sits just above an address (11), a uint160 (11), a uint24 (28) or a bool/uint8 (30) to 1."""
    checked = rejected = 0
    for call in KNOWN:
        data = bytes.fromhex(call.input[2:])
        method = METHODS[data[:4]]
        for word in range(min(12, (len(data) - 4) // 32)):
            for byte in (11, 28, 30):
                pos = 4 + 32 * word + byte
                if data[pos] == 1:
                    continue
                mutated = data[:pos] + b"\x01" + data[pos + 1 :]
                expected = reference(method.types, mutated[4:])
                assert ours(method.types, mutated) == expected, (call.tx_hash, word, byte)
                checked += 1
                rejected += expected is None
    assert checked > 5_000 and rejected > 1_000
