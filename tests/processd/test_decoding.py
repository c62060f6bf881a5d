"""Decoded arguments of specific real mainnet swaps and transfers (checked against eth-abi and against the
known facts of those transactions), synthetic SwapRouter02 / Universal Router calls, and robustness."""

from __future__ import annotations

import eth_abi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.pb.v1 import events_pb2, tx_pb2
from common.testing.fixtures import load_mainnet_calls
from common.testing.samples import envelope_from_call
from processd.analysis.analyzer import Analyzer
from processd.analysis.decoding import Decoder

CALLS = {c.tx_hash: c for c in load_mainnet_calls()}
ANALYZER = Analyzer()

WETH = bytes.fromhex("c02aaa39b223fe8d0a0e5c4f27ead9083c756cc2")
USDT = bytes.fromhex("dac17f958d2ee523a2206206994597c13d831ec7")
USDC = bytes.fromhex("a0b86991c6218b36c1d19d4a2e9eb0ce3606eb48")
SENDER = bytes.fromhex("1111111111111111111111111111111111111111")
TOKEN = bytes.fromhex("1f9840a85d5af5bf1d1762f925bdaddc4201f984")  # UNI
SWAP_ROUTER02 = bytes.fromhex("68b3465833fb72a70ecdf485e0e4c7bd8665fc45")
UNIVERSAL_ROUTER = bytes.fromhex("3fc91a3afd70395cd496c647d5a6cc9d4b2b7fad")


def features_of(tx_hash: str, chain_id: int = 1) -> events_pb2.TxFeatures:
    return ANALYZER.analyze(envelope_from_call(CALLS[tx_hash], chain_id)).features


def args_of(tx_hash: str, types: list[str]) -> tuple:
    return eth_abi.decode(types, bytes.fromhex(CALLS[tx_hash].input[10:]))


def addr(text: str) -> bytes:
    return bytes.fromhex(text[2:])


def u(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def test_v2_swap_exact_eth_for_tokens() -> None:
    tx = "0x708bd389fc5e2cb917f3ccf61e4822d771334fa4a76315d59098aac634c83f5d"
    out_min, path, to, deadline = args_of(tx, ["uint256", "address[]", "address", "uint256"])
    f = features_of(tx)
    assert (f.protocol, f.category, f.method, f.selector.hex()) == (
        "uniswap_v2", events_pb2.TX_CATEGORY_SWAP, "swapExactETHForTokens", "7ff36ab5")
    assert f.decoded and not f.decode_error
    assert u(f.amount_in) == CALLS[tx].value == 20 * 10**18  # ETH in = msg.value
    assert u(f.amount_out_min) == out_min == 0x1D30BA285E7F6B5D274
    assert list(f.path) == [addr(p) for p in path] == [WETH, addr("0x3f382dbd960e3a9bbceae22651e88158d2791550")]
    assert (f.token_in, f.token_out) == (WETH, addr(path[1]))
    assert f.recipient == addr(to) == addr("0x30391a4f9d2f099d41888f811784281cba4097f0")
    assert f.deadline == deadline == 0x5F6BE8EB
    assert not f.amount_in_max and not f.amount_out


def test_v3_exact_input_single() -> None:
    tx = "0xdbaa07f706a6e52630ee122295b5e6f67d5e90b08db6eaa3a28b405dbf325727"
    ((token_in, token_out, fee, recipient, deadline, amount_in, out_min, _limit),) = args_of(
        tx, ["(address,address,uint24,address,uint256,uint256,uint256,uint160)"])
    f = features_of(tx)
    assert (f.protocol, f.method) == ("uniswap_v3", "exactInputSingle")
    assert (f.token_in, f.token_out) == (addr(token_in), addr(token_out)) == (WETH, USDT)
    assert list(f.fee_tiers) == [fee] == [3000]
    assert u(f.amount_in) == amount_in == 95 * 10**18
    assert u(f.amount_out_min) == out_min == 375_630_509_089
    assert f.recipient == addr(recipient)
    assert f.deadline == deadline == 1_620_731_529


def test_v3_exact_input_packed_path() -> None:
    tx = "0xe8f1ff4c190439abae59fef67936d3e0d2b5d6caa3d947829caf98fb16b85fb3"
    ((path, recipient, deadline, amount_in, out_min),) = args_of(tx, ["(bytes,address,uint256,uint256,uint256)"])
    f = features_of(tx)
    assert f.method == "exactInput" and f.decoded
    assert list(f.path) == [path[0:20], path[23:43], path[46:66]]
    assert list(f.path)[:2] == [USDT, USDC]
    assert list(f.fee_tiers) == [int.from_bytes(path[20:23], "big"), int.from_bytes(path[43:46], "big")] == [500, 10000]
    assert (u(f.amount_in), u(f.amount_out_min), f.deadline) == (amount_in, out_min, deadline)
    assert f.recipient == addr(recipient)


def test_v3_multicall_exact_input_single_then_unwrap() -> None:
    tx = "0x7bef2d089a3403863f08183aeafc5f39e0fc649621e7d3845219afc4df54f866"
    (inner_calls,) = args_of(tx, ["bytes[]"])
    assert [c[:4].hex() for c in inner_calls] == ["414bf389", "49404b7c"]
    ((token_in, token_out, fee, recipient, deadline, amount_in, out_min, _),) = eth_abi.decode(
        ["(address,address,uint24,address,uint256,uint256,uint256,uint160)"], inner_calls[0][4:])
    unwrap_min, unwrap_to = eth_abi.decode(["uint256", "address"], inner_calls[1][4:])
    assert recipient == "0x" + "00" * 20  # the router keeps the WETH, unwrapWETH9 pays out ETH
    f = features_of(tx)
    assert (f.protocol, f.category, f.method) == ("uniswap_v3", events_pb2.TX_CATEGORY_SWAP,
                                                   "multicall/exactInputSingle")
    assert (f.token_in, f.token_out) == (addr(token_in), addr(token_out)) == (addr(token_in), WETH)
    assert (u(f.amount_in), u(f.amount_out_min), f.deadline) == (amount_in, out_min, deadline)
    assert list(f.fee_tiers) == [fee]
    assert f.recipient == addr(unwrap_to)  # resolved through unwrapWETH9
    assert unwrap_min == out_min


def test_erc20_transfer() -> None:
    tx = "0xb4a542d1db4a48668753ade47a5124f728ab65bbc2d1b97fc9904196b94f1f3e"
    to, amount = args_of(tx, ["address", "uint256"])
    f = features_of(tx)
    assert (f.protocol, f.category, f.method) == ("erc20", events_pb2.TX_CATEGORY_TRANSFER, "transfer")
    assert f.token_in == USDC and u(f.amount_in) == amount == 1_500_000_000 and f.recipient == addr(to)


def test_v2_swap_exact_tokens_for_tokens_on_sushiswap() -> None:
    tx = "0x003a04f032b3d71932b247c1334caf90cf3b47b9c28ba7d8860f665cb669feef"
    amount_in, out_min, path, to, deadline = args_of(tx, ["uint256", "uint256", "address[]", "address", "uint256"])
    f = features_of(tx)
    assert (f.protocol, f.method) == ("sushiswap", "swapExactTokensForTokens")
    assert (u(f.amount_in), u(f.amount_out_min), f.deadline) == (amount_in, out_min, deadline)
    assert list(f.path) == [addr(p) for p in path] and f.recipient == addr(to)


def test_same_calldata_on_polygon_gets_polygon_labels() -> None:
    """The demo replays mainnet calldata on chain 137: the V2 router address is not Polygon's (fork label);
    Uniswap V3's SwapRouter really is deployed at the same address on Polygon."""
    assert features_of("0x708bd389fc5e2cb917f3ccf61e4822d771334fa4a76315d59098aac634c83f5d", 137).protocol == (
        "uniswap_v2_fork")
    assert features_of("0xdbaa07f706a6e52630ee122295b5e6f67d5e90b08db6eaa3a28b405dbf325727", 137).protocol == (
        "uniswap_v3")
    assert features_of("0xb4a542d1db4a48668753ade47a5124f728ab65bbc2d1b97fc9904196b94f1f3e", 137).protocol == "erc20"


# --- synthetic calls for routers the 2020-2021 fixture predates ---------------------------------------------


def v3_path(*hops: bytes | int) -> bytes:
    return b"".join(h if isinstance(h, bytes) else h.to_bytes(3, "big") for h in hops)


def envelope(to: bytes, data: bytes, value: int = 0, chain_id: int = 1) -> tx_pb2.TxEnvelope:
    return tx_pb2.TxEnvelope(chain_id=chain_id, hash=b"\x01" * 32, sender=SENDER, to=to, input=data,
                             value=value.to_bytes(32, "big").lstrip(b"\0"), gas_price=(30 * 10**9).to_bytes(5, "big"))


def test_swaprouter02_multicall_with_deadline_and_struct_without_deadline() -> None:
    single = bytes.fromhex("04e45aaf") + eth_abi.encode(
        ["(address,address,uint24,address,uint256,uint256,uint160)"],
        [(WETH, TOKEN, 3000, "0x" + "00" * 19 + "01", 5 * 10**18, 123, 0)])
    data = bytes.fromhex("5ae401dc") + eth_abi.encode(["uint256", "bytes[]"], [1_700_000_000, [single]])
    f = ANALYZER.analyze(envelope(SWAP_ROUTER02, data, value=5 * 10**18)).features
    assert (f.protocol, f.method, f.decoded) == ("uniswap_v3", "multicall/exactInputSingle", True)
    assert (f.token_in, f.token_out, u(f.amount_in), u(f.amount_out_min)) == (WETH, TOKEN, 5 * 10**18, 123)
    assert f.deadline == 1_700_000_000  # from the multicall, the struct has none
    assert f.recipient == SENDER  # address(1) = msg.sender


def test_swaprouter02_exact_output_reversed_path_and_v2_swap() -> None:
    path = v3_path(USDC, 500, WETH, 3000, TOKEN)  # exact output: encoded output-first
    data = bytes.fromhex("09b81346") + eth_abi.encode(["(bytes,address,uint256,uint256)"], [(path, SENDER, 7, 9)])
    f = ANALYZER.analyze(envelope(SWAP_ROUTER02, data)).features
    assert f.method == "exactOutput" and list(f.path) == [TOKEN, WETH, USDC] and list(f.fee_tiers) == [3000, 500]
    assert (f.token_in, f.token_out, u(f.amount_out), u(f.amount_in_max)) == (TOKEN, USDC, 7, 9)
    v2 = bytes.fromhex("472b43f3") + eth_abi.encode(["uint256", "uint256", "address[]", "address"],
                                                     [100, 90, [USDC, USDT], SENDER])
    g = ANALYZER.analyze(envelope(SWAP_ROUTER02, v2)).features
    assert (g.protocol, g.method, g.deadline, u(g.amount_in), u(g.amount_out_min)) == (
        "uniswap_v2", "swapExactTokensForTokens", 0, 100, 90)


def ur_execute(commands: bytes, inputs: list[bytes], deadline: int | None = 1_700_000_000) -> bytes:
    if deadline is None:
        return bytes.fromhex("24856bc3") + eth_abi.encode(["bytes", "bytes[]"], [commands, inputs])
    return bytes.fromhex("3593564c") + eth_abi.encode(["bytes", "bytes[]", "uint256"], [commands, inputs, deadline])


def test_universal_router_wrap_then_v3_exact_in() -> None:
    wrap = eth_abi.encode(["address", "uint256"], ["0x" + "00" * 19 + "02", 2**255])
    swap = eth_abi.encode(["address", "uint256", "uint256", "bytes", "bool"],
                          ["0x" + "00" * 19 + "01", 2**255, 4_000, v3_path(WETH, 500, USDC), False])
    f = ANALYZER.analyze(envelope(UNIVERSAL_ROUTER, ur_execute(bytes([0x0B, 0x00]), [wrap, swap]), value=3 * 10**18))
    feats = f.features
    assert (feats.protocol, feats.method, feats.decoded) == ("uniswap_v3", "execute/V3_SWAP_EXACT_IN", True)
    assert (feats.token_in, feats.token_out, list(feats.fee_tiers)) == (WETH, USDC, [500])
    assert u(feats.amount_in) == 3 * 10**18  # CONTRACT_BALANCE after WRAP_ETH = the value sent
    assert u(feats.amount_out_min) == 4_000 and feats.recipient == SENDER and feats.deadline == 1_700_000_000
    assert f.opportunities  # a 3 ETH swap is ranked


def test_universal_router_v2_exact_out_without_deadline_and_unwrap() -> None:
    swap = eth_abi.encode(["address", "uint256", "uint256", "address[]", "bool"],
                          ["0x" + "00" * 19 + "02", 10**18, 2_100 * 10**6, [USDC, WETH], True])
    unwrap = eth_abi.encode(["address", "uint256"], [SENDER, 10**18])
    data = ur_execute(bytes([0x09, 0x0C]), [swap, unwrap], deadline=None)
    f = ANALYZER.analyze(envelope(UNIVERSAL_ROUTER, data)).features
    assert (f.protocol, f.method) == ("uniswap_v2", "execute/V2_SWAP_EXACT_OUT")
    assert (f.token_in, f.token_out, u(f.amount_out), u(f.amount_in_max)) == (USDC, WETH, 10**18, 2_100 * 10**6)
    assert f.recipient == SENDER and f.deadline == 0  # paid out by UNWRAP_WETH


def test_universal_router_mixed_route_is_chained() -> None:
    v3 = eth_abi.encode(["address", "uint256", "uint256", "bytes", "bool"],
                        ["0x" + "00" * 19 + "02", 1_000 * 10**6, 0, v3_path(USDC, 500, WETH), True])
    v2 = eth_abi.encode(["address", "uint256", "uint256", "address[]", "bool"],
                        ["0x" + "00" * 19 + "01", 0, 777, [WETH, TOKEN], False])
    f = ANALYZER.analyze(envelope(UNIVERSAL_ROUTER, ur_execute(bytes([0x80, 0x08]), [v3, v2]))).features
    assert f.method == "execute/V3_SWAP_EXACT_IN" and list(f.path) == [USDC, WETH, TOKEN]
    assert (f.token_in, f.token_out, u(f.amount_in), u(f.amount_out_min)) == (USDC, TOKEN, 1_000 * 10**6, 777)
    assert f.recipient == SENDER


def test_universal_router_unknown_address_gets_fork_label_and_no_swap_is_other() -> None:
    swap = eth_abi.encode(["address", "uint256", "uint256", "address[]", "bool"], [SENDER, 5, 4, [USDC, USDT], True])
    other = b"\x22" * 20
    assert ANALYZER.analyze(envelope(other, ur_execute(b"\x08", [swap]))).features.protocol == "uniswap_v2_fork"
    sweep = eth_abi.encode(["address", "address", "uint256"], [USDC, SENDER, 1])
    f = ANALYZER.analyze(envelope(UNIVERSAL_ROUTER, ur_execute(bytes([0x04, 0x3F]), [sweep, b""]))).features
    assert (f.category, f.method, f.decoded) == (events_pb2.TX_CATEGORY_OTHER, "execute", True)


def test_universal_router_command_input_mismatch_is_a_decode_error() -> None:
    f = ANALYZER.analyze(envelope(UNIVERSAL_ROUTER, ur_execute(b"\x08\x00", [b""]))).features
    assert not f.decoded and "2 commands but 1 inputs" in f.decode_error


# --- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [1, 20, 100])
def test_truncated_known_selector_gives_decode_error(cut: int) -> None:
    call = CALLS["0x708bd389fc5e2cb917f3ccf61e4822d771334fa4a76315d59098aac634c83f5d"]
    env = envelope_from_call(call)
    env.input = env.input[:-cut]
    f = ANALYZER.analyze(env).features
    assert f.method == "swapExactETHForTokens" and f.category == events_pb2.TX_CATEGORY_SWAP
    assert not f.decoded and f.decode_error
    assert not f.amount_out_min and not f.path


def test_bad_inner_multicall_call_is_a_decode_error() -> None:
    bad_inner = bytes.fromhex("414bf389") + b"\x00" * 40
    data = bytes.fromhex("ac9650d8") + eth_abi.encode(["bytes[]"], [[bad_inner]])
    f = ANALYZER.analyze(envelope(SWAP_ROUTER02, data)).features
    assert not f.decoded and "multicall call 0 (exactInputSingle)" in f.decode_error


def test_bad_v3_path_is_a_decode_error() -> None:
    data = bytes.fromhex("c04b8d59") + eth_abi.encode(["(bytes,address,uint256,uint256,uint256)"],
                                                      [(b"\x01" * 30, SENDER, 1, 2, 3)])
    f = ANALYZER.analyze(envelope(SWAP_ROUTER02, data)).features
    assert not f.decoded and "bad V3 path length 30" in f.decode_error


SELECTORS = sorted(Decoder().methods)


@settings(max_examples=500, deadline=None)
@given(selector=st.sampled_from(SELECTORS), body=st.binary(max_size=400), value=st.integers(0, 2**256 - 1),
       to=st.sampled_from([b"", UNIVERSAL_ROUTER, SWAP_ROUTER02, WETH, b"\x05" * 20]))
def test_random_calldata_after_known_selector_never_raises(selector: bytes, body: bytes, value: int, to: bytes) -> None:
    a = ANALYZER.analyze(envelope(to, selector + body, value=value))
    assert a.features.calldata_len == len(selector) + len(body)
    assert a.features.decoded or a.features.decode_error or a.features.method in ("multicall", "execute")
    for opp in a.opportunities:
        assert 0 <= opp.score <= 100


@settings(max_examples=300, deadline=None)
@given(index=st.integers(0, len(CALLS) - 1), cut=st.integers(0, 600), junk=st.binary(max_size=8))
def test_truncated_or_extended_fixture_calls_never_raise(index: int, cut: int, junk: bytes) -> None:
    env = envelope_from_call(list(CALLS.values())[index])
    env.input = env.input[: max(0, len(env.input) - cut)] + junk
    ANALYZER.analyze(env)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_calldata_never_raises(data: bytes) -> None:
    ANALYZER.analyze(envelope(b"\x07" * 20, data))


def test_nested_calldata_is_borrowed_not_copied() -> None:
    """multicall inner calls and Universal Router inputs are views into the original calldata buffer."""
    call = CALLS["0x7bef2d089a3403863f08183aeafc5f39e0fc649621e7d3845219afc4df54f866"]
    data = bytes.fromhex(call.input[2:])
    method = Decoder().methods[data[:4]]
    (inner_calls,) = method.args.decode(memoryview(data))
    assert len(inner_calls) == 2
    for inner in inner_calls:
        assert isinstance(inner, memoryview) and inner.obj is data
    swap = eth_abi.encode(["address", "uint256", "uint256", "address[]", "bool"], [SENDER, 5, 4, [USDC, USDT], True])
    ur = ur_execute(b"\x08", [swap])
    commands, inputs, _ = Decoder().methods[ur[:4]].args.decode(memoryview(ur))
    assert commands.obj is ur and inputs[0].obj is ur and bytes(inputs[0]) == swap


def test_absurd_paths_are_bounded() -> None:
    """A valid ABI encoding of a 40-token path is refused: features never grow with pathological input."""
    long_path = [bytes([i]) * 20 for i in range(1, 41)]
    v2 = bytes.fromhex("7ff36ab5") + eth_abi.encode(["uint256", "address[]", "address", "uint256"],
                                                     [1, long_path, SENDER, 2])
    f = ANALYZER.analyze(envelope(b"\x05" * 20, v2, value=1)).features
    assert not f.decoded and "path of 40 tokens" in f.decode_error and not f.path
    v3 = bytes.fromhex("c04b8d59") + eth_abi.encode(["(bytes,address,uint256,uint256,uint256)"],
                                                    [(v3_path(*[x for t in long_path for x in (t, 500)][:-1]),
                                                      SENDER, 1, 2, 3)])
    g = ANALYZER.analyze(envelope(SWAP_ROUTER02, v3)).features
    assert not g.decoded and "40 tokens" in g.decode_error


def test_oversized_batches_are_refused_cheaply() -> None:
    single = bytes.fromhex("04e45aaf") + eth_abi.encode(
        ["(address,address,uint24,address,uint256,uint256,uint160)"], [(WETH, TOKEN, 3000, SENDER, 1, 1, 0)])
    f = ANALYZER.analyze(envelope(SWAP_ROUTER02, bytes.fromhex("ac9650d8")
                                  + eth_abi.encode(["bytes[]"], [[single] * 65]))).features
    assert not f.decoded and "multicall of 65 calls (max 64)" in f.decode_error
    ok = ANALYZER.analyze(envelope(SWAP_ROUTER02, bytes.fromhex("ac9650d8")
                                   + eth_abi.encode(["bytes[]"], [[single] * 64]))).features
    assert ok.decoded and ok.method == "multicall/exactInputSingle" and u(ok.amount_in) == 64
    g = ANALYZER.analyze(envelope(UNIVERSAL_ROUTER, ur_execute(b"\x3f" * 65, [b""] * 65))).features
    assert not g.decoded and "65 commands" in g.decode_error


def test_decode_error_text_is_bounded_even_when_an_exception_quotes_the_calldata() -> None:
    """An extractor error whose text repeats the calldata must not carry it into the log and read paths."""
    import dataclasses

    from processd.analysis.decoding import MAX_ERROR_CHARS

    decoder = Decoder()
    selector, method = next(iter(decoder.methods.items()))

    def quoting_extractor(args: object, to: bytes, value: int, sender: bytes) -> None:
        raise ValueError("bad call " + "ab" * 70_000)

    decoder.methods[selector] = dataclasses.replace(method, extract=quoting_extractor)
    call = decoder.decode(selector + bytes(32 * len(method.types)), bytes(20), 0, bytes(20))
    assert call is not None and not call.decoded
    assert call.error.startswith("internal decoder error: ValueError: bad call")
    assert len(call.error) == MAX_ERROR_CHARS
