"""User ABIs (``processd --abi-dir``): loading, precedence, scoping, rendering, bounds and refusals.

The ABI files are in ``tests/processd/abis/``: an Etherscan-style array of mainnet contracts whose selectors the
built-in tables do not know (Chainlink, DSProxy, OpenSea Wyvern, MetaMask Swaps, ...), a Foundry artifact of an
ERC-20 + Uniswap V2 router interface, and a mempulse wrapper scoping a custom contract with tuples and arrays.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eth_abi import decode, encode
from eth_abi.grammar import parse
from hypothesis import given, settings
from hypothesis import strategies as st

from common.envconfig import ConfigError
from common.testing.fixtures import load_mainnet_calls
from processd.analysis.analyzer import Analyzer
from processd.analysis.decoding import all_methods
from processd.analysis.decoding.model import ERC20, OTHER
from processd.analysis.decoding.userabi import MAX_TYPE_DEPTH, UserAbis, load_abi_dir, selector_of
from processd.analysis.decoding.userargs import (
    MAX_ARGS_CHARS,
    MAX_CALLDATA_BYTES,
    MAX_VALUE_CHARS,
    MAX_VALUES,
    USER_ABI,
)
from processd.config import load_config

ABIS = Path(__file__).resolve().parent / "abis"
VAULT = bytes.fromhex("00000000000000000000000000000000000c0de1")
OTHER_ADDRESS = b"\x0b" * 20
SENDER = b"\x0a" * 20


@pytest.fixture(scope="module")
def abis() -> UserAbis:
    return load_abi_dir(ABIS)


@pytest.fixture(scope="module")
def analyzer(abis: UserAbis) -> Analyzer:
    return Analyzer(user_abis=abis)


def expected_text(type_str: str, value: Any) -> str:
    """The documented rendering, written independently of processd's: scalars plain at the top level; composites
    as compact JSON with every scalar a string but bools."""
    def plain(node: Any, v: Any) -> Any:
        if node.is_array:
            return [plain(node.item_type, x) for x in v]
        if hasattr(node, "components"):
            return [plain(c, x) for c, x in zip(node.components, v, strict=True)]
        if node.base == "bool":
            return v
        if node.base == "address":
            return v.lower()
        if node.base == "bytes":
            return "0x" + v.hex()
        return str(v)
    node = parse(type_str)
    out = plain(node, value)
    if isinstance(out, bool):
        return "true" if out else "false"
    return out if isinstance(out, str) else json.dumps(out, separators=(",", ":"), ensure_ascii=False)


def test_loads_every_shape(abis: UserAbis) -> None:
    names = {fn.name for fn in abis.unscoped.values()}
    assert {"transmit", "atomicMatch_", "swap", "claim"} <= names  # bare array (events, fallback skipped)
    assert {"permit", "getAmountsOut", "quote", "transfer"} <= names  # Foundry artifact
    settle = abis.scoped_function(1, VAULT, bytes.fromhex("04d8c4f2"))
    assert settle is not None and settle.label == "custom_vault"
    assert settle.types == ("(address,uint128[],(address,bytes)[2])", "(int128,bool,string)[]", "uint16[3][]",
                            "bytes4")
    assert abis.scoped_function(137, VAULT, settle.selector) is None  # chain_ids: [1]


def test_mainnet_calls_unknown_to_the_builtins_decode_as_eth_abi(analyzer: Analyzer, abis: UserAbis) -> None:
    """Every fixture call whose selector the built-in tables lack but the Etherscan-style ABI has: method, label,
    and each argument's text equal to eth_abi.decode's value rendered independently."""
    builtin = all_methods()
    checked: dict[str, int] = {}
    truncated = 0
    for c in load_mainnet_calls():
        data = bytes.fromhex(c.input[2:])
        fn = abis.unscoped_function(data[:4])
        if fn is None or data[:4] in builtin or fn.source != "mainnet_unknown.json":
            continue
        call, protocol = analyzer.decode_call(1, bytes.fromhex(c.to[2:]), c.value, SENDER, data)
        assert call is not None and call.method == fn.name and call.family == USER_ABI and protocol == "user_abi"
        try:
            values = decode(list(fn.types), data[4:])
        except Exception:
            assert not call.decoded and call.error.startswith(fn.name)
            continue
        assert call.decoded and call.category == OTHER, (c.tx_hash, call.error)
        assert [a[:2] for a in call.args] == list(zip(fn.names, fn.types, strict=True))
        want = [expected_text(t, v) for t, v in zip(fn.types, values, strict=True)]
        got = [a[2] for a in call.args]
        if call.args_truncated:  # a long value is cut, "..." marking the cut: compare what is left
            assert all(g == w or (g.endswith("...") and w.startswith(g[:-3])) for g, w in zip(got, want, strict=True))
            assert got != want
            truncated += 1
            continue
        assert got == want
        checked[fn.name] = checked.get(fn.name, 0) + 1
    assert truncated < 10 and sum(checked.values()) > 150
    assert {"transmit", "submit", "atomicMatch_", "swap", "execute"} <= set(checked)


def test_builtins_keep_their_selectors_unless_scoped(analyzer: Analyzer) -> None:
    data = bytes.fromhex("a9059cbb") + encode(["address", "uint256"], ["0x" + "11" * 20, 5])
    builtin, protocol = analyzer.decode_call(1, OTHER_ADDRESS, 0, SENDER, data)
    assert builtin is not None and builtin.family == ERC20 and builtin.amount_in == 5 and not builtin.args
    assert protocol == "erc20"
    scoped, protocol = analyzer.decode_call(1, VAULT, 0, SENDER, data)
    assert scoped is not None and protocol == "custom_vault" and scoped.family == USER_ABI
    assert scoped.args == (("dst", "address", "0x" + "11" * 20), ("wad", "uint256", "5"))
    on_polygon, protocol = analyzer.decode_call(137, VAULT, 0, SENDER, data)  # scoped to chain 1 only
    assert on_polygon is not None and on_polygon.family == ERC20
    plain, protocol = Analyzer().decode_call(1, VAULT, 0, SENDER, data)  # without user ABIs: the built-in's
    assert plain is not None and plain.family == ERC20 and not plain.args and protocol == "erc20"


def test_unscoped_abi_decodes_what_the_builtins_do_not(analyzer: Analyzer) -> None:
    data = bytes.fromhex("ad615dec") + encode(["uint256"] * 3, [1, 2, 3])
    call, protocol = analyzer.decode_call(56, OTHER_ADDRESS, 0, SENDER, data)
    assert call is not None and call.method == "quote" and protocol == "user_abi"
    assert call.args == (("amountA", "uint256", "1"), ("reserveA", "uint256", "2"), ("reserveB", "uint256", "3"))
    unknown = bytes.fromhex("deadbeef") + bytes(32)
    assert analyzer.decode_call(1, OTHER_ADDRESS, 0, SENDER, unknown) == (None, "")


def test_tuples_arrays_and_signed_values_render(analyzer: Analyzer, abis: UserAbis) -> None:
    settle = abis.scoped_function(1, VAULT, bytes.fromhex("04d8c4f2"))
    assert settle is not None
    values = [("0x" + "ab" * 20, [1, 2**128 - 1], [("0x" + "cd" * 20, b"\x01\x02"), ("0x" + "ef" * 20, b"")]),
              [(-5, True, 'a "quoted" ☃'), (2**127 - 1, False, "")], [[1, 2, 3], [65535, 0, 7]], b"\xca\xfe\xba\xbe"]
    data = settle.selector + encode(list(settle.types), values)
    call, _ = analyzer.decode_call(1, VAULT, 0, SENDER, data)
    assert call is not None and call.decoded, call
    assert [a[2] for a in call.args] == [
        f'["0x{"ab" * 20}",["1","{2**128 - 1}"],[["0x{"cd" * 20}","0x0102"],["0x{"ef" * 20}","0x"]]]',
        f'[["-5",true,"a \\"quoted\\" ☃"],["{2**127 - 1}",false,""]]',
        '[["1","2","3"],["65535","0","7"]]',
        "0xcafebabe"]
    bad = data[:-32]  # short: eth-abi refuses it, so does the user decoder (a record, not a crash)
    call, _ = analyzer.decode_call(1, VAULT, 0, SENDER, bad)
    assert call is not None and not call.decoded and call.error.startswith("settle: ") and not call.args


def test_values_are_cut_to_their_bounds(analyzer: Analyzer, abis: UserAbis) -> None:
    swap = abis.unscoped_function(bytes.fromhex("5f575529"))
    assert swap is not None
    data = swap.selector + encode(list(swap.types), ["x" * 5000, "0x" + "11" * 20, 7, b"\x22" * 5000])
    call, _ = analyzer.decode_call(1, OTHER_ADDRESS, 0, SENDER, data)
    assert call is not None and call.decoded and call.args_truncated
    texts = [a[2] for a in call.args]
    assert texts[0] == "x" * (MAX_VALUE_CHARS - 3) + "..." and texts[2] == "7"
    assert len(texts[3]) == MAX_VALUE_CHARS and texts[3].endswith("...")
    assert sum(map(len, texts)) <= MAX_ARGS_CHARS
    # The per-call budget: many long values share MAX_ARGS_CHARS, the rest keep name and type with no value.
    match = abis.unscoped_function(bytes.fromhex("ab834bab"))  # atomicMatch_: six bytes arguments
    assert match is not None
    long = b"\x01" * 2200
    big = match.selector + encode(list(match.types), [["0x" + "11" * 20] * 14, [1] * 18, [2] * 8, *[long] * 6,
                                                        [3, 4], [b"\x05" * 32] * 5])
    call, _ = analyzer.decode_call(1, OTHER_ADDRESS, 0, SENDER, big)
    assert call is not None and call.args_truncated
    texts = [a[2] for a in call.args]
    assert sum(map(len, texts)) == MAX_ARGS_CHARS and texts[-1] == texts[-2] == ""  # spent: name and type only
    assert [a[0] for a in call.args] == list(match.names)
    huge = swap.selector + encode(list(swap.types), ["", "0x" + "11" * 20, 7, bytes(MAX_CALLDATA_BYTES)])
    call, _ = analyzer.decode_call(1, OTHER_ADDRESS, 0, SENDER, huge)
    assert call is not None and not call.decoded and "at most" in call.error and not call.args


_ABIS = load_abi_dir(ABIS)
_BUILTIN = frozenset(all_methods())  # compiled once: building the tables costs ~20 ms
_ANALYZER = Analyzer(user_abis=_ABIS)
#: (function, the address it is called at): a scoped function at its contract, the others anywhere.
_TARGETS = sorted([(fn, OTHER_ADDRESS) for fn in _ABIS.unscoped.values()]
                  + [(fn, address) for (_, address, _), fn in _ABIS.scoped.items()],
                  key=lambda t: (t[0].source, t[0].name, t[1]))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_TARGETS), st.lists(st.one_of(
    st.integers(min_value=0, max_value=2**256 - 1).map(lambda n: n.to_bytes(32, "big")),
    st.sampled_from([0, 32, 64, 96, 128, 2**255]).map(lambda n: n.to_bytes(32, "big")),  # plausible pointers
    st.binary(max_size=40)), max_size=24))
def test_random_calldata_never_raises_and_agrees_with_eth_abi(target: Any, words: list[bytes]) -> None:
    """Word soup after every user function's selector: a record (decoded or not) every time, decoded exactly when
    eth-abi accepts the calldata."""
    fn, to = target
    data = fn.selector + b"".join(words)
    analyzer = _ANALYZER
    call, _ = analyzer.decode_call(1, to, 0, SENDER, data)
    if call is None or call.family != USER_ABI:  # the built-ins keep their selectors at an unscoped address
        assert fn.selector in _BUILTIN
        return
    try:
        decode(list(fn.types), data[4:])
        accepted = True
    except Exception:
        accepted = False
    assert call.decoded == accepted and call.method == fn.name
    assert bool(call.args) == (accepted and bool(fn.types))


def test_cut_and_corrupted_real_calls_agree_with_eth_abi() -> None:
    """Up to three real fixture calls per user function, cut short (by 1-40 bytes) and with each of their first 12
    words' first and last byte flipped: decoded exactly when strict eth-abi accepts them."""
    per_function: dict[bytes, list[bytes]] = {}
    for c in load_mainnet_calls():
        data = bytes.fromhex(c.input[2:])
        if _ABIS.unscoped_function(data[:4]) is not None and data[:4] not in _BUILTIN:
            per_function.setdefault(data[:4], []).append(data)
    cases = 0
    for selector, calls in per_function.items():
        fn = _ABIS.unscoped_function(selector)
        assert fn is not None
        for data in calls[:3]:
            variants = [data[:-cut] for cut in (1, 2, 31, 32, 33, 40) if len(data) - cut >= 4]
            for word in range(min(12, (len(data) - 4) // 32)):
                for offset in (0, 31):
                    i = 4 + 32 * word + offset
                    variants.append(data[:i] + bytes([data[i] ^ 0x81]) + data[i + 1:])
            for variant in variants:
                call, _ = _ANALYZER.decode_call(1, OTHER_ADDRESS, 0, SENDER, variant)
                assert call is not None
                try:
                    decode(list(fn.types), variant[4:])
                    accepted = True
                except Exception:
                    accepted = False
                assert call.decoded == accepted, (fn.name, variant.hex())
                cases += 1
    assert cases > 500


def test_aliased_pointers_cannot_multiply_the_work(tmp_path: Path) -> None:
    """16 KiB of ``uint256[][]`` whose 250 pointers all alias one 250-word array is 62,500 values for eth-abi: it is
    refused (by counting, before eth-abi builds anything); distinct small rows decode, and aliased rows up to
    MAX_VALUES values in all."""
    abi = [{"type": "function", "name": "grid", "inputs": [{"name": "rows", "type": "uint256[][]"}]}]
    user = Analyzer(user_abis=load_abi_dir(_write(tmp_path, "grid.json", abi)))
    grid = selector_of("grid(uint256[][])")
    n = m = 250
    bomb = grid + encode(["uint256"], [32]) + encode(["uint256"], [n]) + b"".join(
        encode(["uint256"], [32 * n]) for _ in range(n)) + encode(["uint256[]"], [list(range(m))])[32:]
    assert len(bomb) <= MAX_CALLDATA_BYTES and sum(map(len, decode(["uint256[][]"], bomb[4:])[0])) == n * m
    call, _ = user.decode_call(1, OTHER_ADDRESS, 0, SENDER, bomb)
    assert call is not None and not call.decoded and call.error == (
        f"grid: more than {MAX_VALUES} values (user ABIs decode at most {MAX_VALUES})")
    rows = [[i, i + 1] for i in range(100)]
    call, _ = user.decode_call(1, OTHER_ADDRESS, 0, SENDER, grid + encode(["uint256[][]"], [rows]))
    assert call is not None and call.decoded and call.args[0][2] == expected_text("uint256[][]", rows)
    # At the bound: the argument tuple, the outer array, and per (aliased) row its array and m words count.
    def aliased(rows: int) -> bytes:
        return grid + encode(["uint256"], [32]) + encode(["uint256"], [rows]) + b"".join(
            encode(["uint256"], [32 * rows]) for _ in range(rows)) + encode(["uint256[]"], [list(range(m))])[32:]
    fits = (MAX_VALUES - 2) // (m + 1)
    call, _ = user.decode_call(1, OTHER_ADDRESS, 0, SENDER, aliased(fits))
    assert call is not None and call.decoded, call.error
    call, _ = user.decode_call(1, OTHER_ADDRESS, 0, SENDER, aliased(fits + 1))
    assert call is not None and not call.decoded and "more than" in call.error


def _write(tmp_path: Path, name: str, doc: Any) -> Path:
    (tmp_path / name).write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return tmp_path


def _nested(depth: int) -> dict[str, Any]:
    param: dict[str, Any] = {"name": "x", "type": "uint256"}
    for _ in range(depth - 1):
        param = {"name": "t", "type": "tuple", "components": [param]}
    return param


@pytest.mark.parametrize(("doc", "problem"), [
    ("{not json", "Expecting property name"),
    ({"bytecode": "0x00"}, "not an ABI"),
    ([{"type": "function", "name": "f", "inputs": [{"name": "a", "type": "uint7"}]}], "unsupported ABI type 'uint7'"),
    ([{"type": "function", "inputs": []}], "function name None"),
    ([{"type": "function", "name": "f", "inputs": [{"name": "a", "type": "tuple"}]}], "\"components\""),
    ([{"type": "function", "name": "f", "inputs": [_nested(MAX_TYPE_DEPTH + 1)]}], "nested deeper"),
    ({"abi": [], "addresses": ["0x1234"]}, "bad address '0x1234'"),
    ({"abi": [], "addresses": ["0x" + "zz" * 20]}, "non-hexadecimal"),
    ({"abi": [], "chain_ids": [1]}, "needs \"addresses\""),
    ({"abi": [], "addresses": [], "chain_ids": ["1"]}, "positive integers"),
    ([3], "ABI entry 0 is not an object"),
])
def test_bad_files_are_refused_naming_the_file(tmp_path: Path, doc: Any, problem: str) -> None:
    _write(tmp_path, "good.json", [])
    directory = _write(tmp_path, "broken.json", doc)
    with pytest.raises(ConfigError) as info:
        load_abi_dir(directory)
    message = str(info.value)
    assert f"ABI file {directory / 'broken.json'}: " in message and problem in message and "\n" not in message
    with pytest.raises(ConfigError, match=r"broken\.json"):  # processd refuses to start
        load_config(["--data-dir", str(tmp_path / "lmdb"), "--abi-dir", str(directory)], env={})


def test_abi_dir_knob(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "lmdb")
    assert load_config(["--data-dir", data_dir], env={}).abi_dir is None
    assert load_config(["--data-dir", data_dir], env={"MEMPULSE_PROCESSD_ABI_DIR": str(ABIS)}).abi_dir == ABIS
    with pytest.raises(ConfigError, match="not a directory"):
        load_config(["--data-dir", data_dir, "--abi-dir", str(tmp_path / "missing")], env={})
