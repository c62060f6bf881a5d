"""TxFeatures fields: gas and value, plain transfers, wraps, approvals, unknown calls, encoding rules, and the
decode coverage of the real fixture."""

from __future__ import annotations

from collections import Counter

import eth_abi

from common.pb.v1 import events_pb2, tx_pb2
from common.testing.samples import fixture_envelopes
from processd.analysis.analyzer import Analyzer, analyze
from processd.analysis.features import u256
from tests.processd._reference import reference_analyze

A = Analyzer()
WETH = bytes.fromhex("c02aaa39b223fe8d0a0e5c4f27ead9083c756cc2")
USDC = bytes.fromhex("a0b86991c6218b36c1d19d4a2e9eb0ce3606eb48")
V2_ROUTER = bytes.fromhex("7a250d5630b4cf539739df2c5dacb4c659f2488d")
SENDER = b"\x0a" * 20
OTHER_ADDR = b"\x0b" * 20


def env(to: bytes, data: bytes = b"", value: int = 0, **gas: bytes) -> tx_pb2.TxEnvelope:
    return tx_pb2.TxEnvelope(chain_id=1, hash=b"\x03" * 32, sender=SENDER, to=to, input=data, value=u256(value), **gas)


def test_u256_is_minimal_big_endian() -> None:
    assert u256(0) == b"" and u256(1) == b"\x01" and u256(256) == b"\x01\x00" and len(u256(2**256 - 1)) == 32


def test_plain_value_transfer() -> None:
    f = A.analyze(env(OTHER_ADDR, value=10**18, gas_price=u256(7))).features
    assert (f.protocol, f.category, f.method, f.selector, f.decoded) == (
        "native", events_pb2.TX_CATEGORY_TRANSFER, "", b"", False)
    assert f.recipient == OTHER_ADDR and f.amount_in == u256(10**18) == f.value
    assert f.gas_price == f.priority_fee == u256(7) and f.calldata_len == 0


def test_eip1559_gas_fields() -> None:
    f = A.analyze(env(OTHER_ADDR, max_fee_per_gas=u256(50 * 10**9), max_priority_fee_per_gas=u256(2 * 10**9),
                      gas_price=u256(40 * 10**9))).features
    assert f.gas_price == u256(50 * 10**9) and f.priority_fee == u256(2 * 10**9)


def test_value_sent_to_weth_is_a_deposit() -> None:
    f = A.analyze(env(WETH, value=3 * 10**18)).features
    assert (f.protocol, f.category, f.method, f.token_out, f.amount_in) == (
        "weth", events_pb2.TX_CATEGORY_OTHER, "deposit", WETH, u256(3 * 10**18))
    w = A.analyze(env(WETH, bytes.fromhex("2e1a7d4d") + (5).to_bytes(32, "big"))).features
    assert (w.protocol, w.method, w.token_in, w.amount_in, w.decoded) == ("weth", "withdraw", WETH, b"\x05", True)
    # withdraw(uint256) on an unknown contract: a generic name (vaults, staking), no wrapped-native label.
    assert A.analyze(env(OTHER_ADDR, bytes.fromhex("2e1a7d4d") + (5).to_bytes(32, "big"))).features.protocol == ""


def test_contract_creation() -> None:
    f = A.analyze(env(b"", b"\x60\x80\x60\x40")).features
    assert (f.protocol, f.category, f.method, f.calldata_len) == ("", events_pb2.TX_CATEGORY_OTHER, "", 4)


def test_approval_fields() -> None:
    data = bytes.fromhex("095ea7b3") + eth_abi.encode(["address", "uint256"], [V2_ROUTER, 2**256 - 1])
    f = A.analyze(env(USDC, data)).features
    assert (f.protocol, f.category, f.method) == ("erc20", events_pb2.TX_CATEGORY_APPROVAL, "approve")
    assert f.token_in == USDC and f.recipient == V2_ROUTER and f.amount_in == b"\xff" * 32


def test_unknown_selector() -> None:
    f = A.analyze(env(OTHER_ADDR, b"\xde\xad\xbe\xef" + b"\x00" * 64)).features
    assert (f.category, f.method, f.selector, f.decoded, f.decode_error, f.calldata_len) == (
        events_pb2.TX_CATEGORY_OTHER, "", b"\xde\xad\xbe\xef", False, "", 68)
    assert f.protocol == ""
    # an unknown method of a known router keeps the router's label
    assert A.analyze(env(V2_ROUTER, b"\xde\xad\xbe\xef")).features.protocol == "uniswap_v2"
    # shorter than a selector
    assert A.analyze(env(OTHER_ADDR, b"\x01\x02")).features.selector == b"\x01\x02"


def test_huge_deadline_is_clamped_to_uint64() -> None:
    data = bytes.fromhex("7ff36ab5") + eth_abi.encode(
        ["uint256", "address[]", "address", "uint256"], [1, [WETH, USDC], SENDER, 2**256 - 1])
    f = A.analyze(env(V2_ROUTER, data, value=1)).features
    assert f.deadline == 2**64 - 1 and f.decoded


def test_module_level_analyze_uses_a_shared_analyzer() -> None:
    e = env(OTHER_ADDR, value=1)
    assert analyze(e).features == A.analyze(e).features


def test_fixture_decode_coverage() -> None:
    """Every fixture call with a registry selector decodes; counts by category and protocol."""
    by_category: Counter[int] = Counter()
    by_protocol: Counter[str] = Counter()
    errors = []
    for e in fixture_envelopes():
        f = A.analyze(e).features
        by_category[f.category] += 1
        by_protocol[f.protocol] += 1
        if f.method and not f.decoded:
            errors.append((e.hash.hex(), f.method, f.decode_error))
    assert errors == []
    assert by_category[events_pb2.TX_CATEGORY_SWAP] >= 200
    assert by_category[events_pb2.TX_CATEGORY_TRANSFER] >= 1_390  # 796 plain + 603 transfer + transferFrom...
    assert by_category[events_pb2.TX_CATEGORY_APPROVAL] >= 95
    assert by_protocol["uniswap_v2"] >= 120 and by_protocol["sushiswap"] >= 40 and by_protocol["uniswap_v3"] >= 30


# -- zero and absent are distinct (the amounts, the deadline and the notional have presence) --------------

def _both_paths(e: tx_pb2.TxEnvelope) -> tuple[events_pb2.TxFeatures, list[events_pb2.Opportunity]]:
    """The analysis as messages, after checking that the hand encoders store the very bytes the protobuf
    library gives for it (``_reference.py``)."""
    analysis = reference_analyze(A, e)
    encoded = A.analyze_encoded(e)
    assert encoded.features == analysis.features.SerializeToString()
    assert [o for _, o in encoded.opportunities] == [o.SerializeToString() for o in analysis.opportunities]
    parsed = A.analyze(e)
    assert parsed.features == analysis.features and parsed.opportunities == analysis.opportunities
    return analysis.features, analysis.opportunities


def test_amount_out_min_zero_is_present_and_zero() -> None:
    # swapExactTokensForTokens(amountIn, amountOutMin = 0, path, to, deadline = 0): the most exploitable swap
    data = bytes.fromhex("38ed1739") + eth_abi.encode(
        ["uint256", "uint256", "address[]", "address", "uint256"], [0, 0, [USDC, WETH], SENDER, 0])
    f, _ = _both_paths(env(V2_ROUTER, data, max_fee_per_gas=u256(9), max_priority_fee_per_gas=b""))
    assert f.decoded
    for name in ("amount_in", "amount_out_min", "deadline"):
        assert f.HasField(name), name  # known zeros
    assert f.amount_in == f.amount_out_min == b"" and f.deadline == 0
    assert not f.HasField("amount_in_max") and not f.HasField("amount_out")  # not part of this call


def test_deadline_absent_when_the_call_has_none() -> None:
    # SwapRouter02's swapExactTokensForTokens(amountIn, amountOutMin, path, to) has no deadline argument
    data = bytes.fromhex("472b43f3") + eth_abi.encode(
        ["uint256", "uint256", "address[]", "address"], [10**6, 5, [USDC, WETH], SENDER])
    f, _ = _both_paths(env(bytes.fromhex("68b3465833fb72a70ecdf485e0e4c7bd8665fc45"), data))
    assert f.decoded and not f.HasField("deadline")
    assert f.amount_out_min == b"\x05"


def test_zero_tip_is_a_tip_of_zero_not_the_gas_price() -> None:
    e = env(OTHER_ADDR, value=1, gas_price=u256(30 * 10**9), max_fee_per_gas=u256(30 * 10**9),
            max_priority_fee_per_gas=b"")
    f, _ = _both_paths(e)
    assert f.gas_price == u256(30 * 10**9) and f.priority_fee == b""
    # a legacy transaction has no tip field: its gas price is its tip
    f, _ = _both_paths(env(OTHER_ADDR, value=1, gas_price=u256(7)))
    assert f.priority_fee == u256(7)


def test_zero_value_transfer_has_amount_in_zero() -> None:
    f, _ = _both_paths(env(OTHER_ADDR, value=0, gas_price=u256(7)))
    assert f.category == events_pb2.TX_CATEGORY_TRANSFER and f.HasField("amount_in") and f.amount_in == b""


def test_known_notional_of_zero_is_present_unknown_is_absent() -> None:
    # ETH-in swap of 1 wei: the notional is known (1 wei); a token-in swap of tokens not in the reference table:
    # unknown, so absent
    data = bytes.fromhex("7ff36ab5") + eth_abi.encode(
        ["uint256", "address[]", "address", "uint256"], [0, [WETH, USDC], SENDER, 2**256 - 1])
    _, opps = _both_paths(env(V2_ROUTER, data, value=1, gas_price=u256(10**12)))
    assert opps and all(o.HasField("notional_wei") and o.notional_wei == b"\x01" for o in opps)
    unknown = (b"\x0c" * 20, b"\x0d" * 20)
    data = bytes.fromhex("38ed1739") + eth_abi.encode(
        ["uint256", "uint256", "address[]", "address", "uint256"], [10**30, 0, list(unknown), SENDER, 1])
    _, opps = _both_paths(env(V2_ROUTER, data, gas_price=u256(10**12)))
    assert opps and not any(o.HasField("notional_wei") for o in opps)
