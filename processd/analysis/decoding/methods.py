"""The selector table of plain (non-batching) methods and how each one's arguments map to a DecodedCall.

Each ``Method`` carries its canonical signature, its 4-byte selector (a test recomputes every selector as
keccak256(signature)[:4]), its argument decoder and an extractor. Extractors get the decoded argument
tuple and the transaction context: ``to`` (20 bytes), ``value`` (wei) and ``sender`` (20 bytes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from processd.analysis.decoding.abi import AbiDecodeError, ArgsDecoder, split_components
from processd.analysis.decoding.model import (
    APPROVAL,
    ERC20,
    NFT,
    OTHER,
    SWAP,
    TRANSFER,
    UNISWAP_V2,
    UNISWAP_V3,
    WRAPPED_NATIVE,
    DecodedCall,
)
from processd.analysis.decoding.v3path import MAX_PATH_TOKENS, parse_v3_path

MAX_U64 = (1 << 64) - 1

Extractor = Callable[[tuple[Any, ...], bytes, int, bytes], DecodedCall]


class ArgsDecoderLike(Protocol):
    """Decodes the ABI-encoded arguments in ``data[start:]``; raises AbiDecodeError when they do not."""

    types: tuple[str, ...]

    def decode(self, data: Any, start: int = 4) -> tuple[Any, ...]: ...


DecoderFactory = Callable[[tuple[str, ...]], ArgsDecoderLike]


@dataclass(frozen=True, slots=True)
class Method:
    """One known ABI method: selector, canonical signature, family, category, argument decoder, extractor."""

    selector: bytes
    name: str
    signature: str
    family: str
    category: int
    extract: Extractor
    args: ArgsDecoderLike

    @property
    def types(self) -> tuple[str, ...]:
        """The argument types, as eth-abi type strings."""
        return self.args.types


def signature_types(signature: str) -> tuple[str, ...]:
    """Argument types of a canonical signature: ``f(uint256,(bytes,address))`` -> ("uint256", "(bytes,address)")."""
    return tuple(split_components(signature[signature.index("(") + 1 : -1]))


def make_method(selector: str, signature: str, family: str, category: int, extract: Extractor,
                factory: DecoderFactory = ArgsDecoder) -> Method:
    """A Method whose argument decoder is built by ``factory`` from the signature's types."""
    return Method(bytes.fromhex(selector), signature[: signature.index("(")], signature, family, category, extract,
                  factory(signature_types(signature)))


def deadline_u64(value: int) -> int:
    """Deadlines are uint256 on chain; bots often pass 2**256-1. Clamped to the uint64 feature field."""
    return value if value <= MAX_U64 else MAX_U64


# --- ERC-20 / wrapped native -------------------------------------------------------------------------


# The most frequent calls of all (a third of a mempool) build their DecodedCall with positional arguments:
# (method, category, family, decoded, error, token_in, token_out, amount_in, amount_out_min, amount_in_max,
# amount_out, path, fee_tiers, recipient). Binding keywords to the 19 fields costs a quarter of the decoding.


def _transfer(a: tuple[Any, ...], to: bytes, value: int, sender: bytes) -> DecodedCall:
    return DecodedCall("transfer", TRANSFER, ERC20, True, "", to, None, a[1], None, None, None, (), (), a[0])


def _transfer_from(a: tuple[Any, ...], to: bytes, value: int, sender: bytes) -> DecodedCall:
    return DecodedCall("transferFrom", TRANSFER, ERC20, True, "", to, None, a[2], None, None, None, (), (), a[1])


def _approve(name: str) -> Extractor:
    def extract(a: tuple[Any, ...], to: bytes, value: int, sender: bytes) -> DecodedCall:
        # The spender goes into ``recipient`` and the allowance into ``amount_in`` (documented).
        return DecodedCall(name, APPROVAL, ERC20, True, "", to, None, a[1], None, None, None, (), (), a[0])

    return extract


def _set_approval_for_all(a: tuple[Any, ...], to: bytes, value: int, sender: bytes) -> DecodedCall:
    return DecodedCall("setApprovalForAll", APPROVAL, NFT, token_in=to, recipient=a[0])


def _deposit(a: tuple[Any, ...], to: bytes, value: int, sender: bytes) -> DecodedCall:
    return DecodedCall("deposit", OTHER, WRAPPED_NATIVE, token_out=to, amount_in=value, recipient=sender)


def _withdraw(a: tuple[Any, ...], to: bytes, value: int, sender: bytes) -> DecodedCall:
    return DecodedCall("withdraw", OTHER, WRAPPED_NATIVE, token_in=to, amount_in=a[0], recipient=sender)


# --- Uniswap V2-style routers -------------------------------------------------------------------------


def _v2(name: str, shape: str, native_in: bool = False, native_out: bool = False, fot: bool = False) -> Extractor:
    """Extractor for a V2 swap; ``shape`` names the argument layout.

    in_tokens:  (amountIn, amountOutMin, path, to[, deadline])
    in_eth:     (amountOutMin, path, to, deadline)           amount in = msg.value
    out_tokens: (amountOut, amountInMax, path, to[, deadline])
    out_eth:    (amountOut, path, to, deadline)              amount in max = msg.value
    """

    deadline_arity = 4 if shape in ("in_eth", "out_eth") else 5  # SwapRouter02's V2 swaps have no deadline

    def extract(a: tuple[Any, ...], to: bytes, value: int, sender: bytes) -> DecodedCall:
        if shape == "in_tokens":
            amount_in, out_min, path, recipient = a[0], a[1], a[2], a[3]
            in_max = out = None
        elif shape == "in_eth":
            amount_in, out_min, path, recipient = value, a[0], a[1], a[2]
            in_max = out = None
        elif shape == "out_tokens":
            out, in_max, path, recipient = a[0], a[1], a[2], a[3]
            amount_in = out_min = None
        else:  # out_eth
            out, in_max, path, recipient = a[0], value, a[1], a[2]
            amount_in = out_min = None
        if len(path) > MAX_PATH_TOKENS:
            raise AbiDecodeError(f"path of {len(path)} tokens (max {MAX_PATH_TOKENS})")
        deadline = deadline_u64(a[-1]) if len(a) == deadline_arity else None
        return DecodedCall(
            name,
            SWAP,
            UNISWAP_V2,
            token_in=path[0] if path else None,
            token_out=path[-1] if path else None,
            amount_in=amount_in,
            amount_out_min=out_min,
            amount_in_max=in_max,
            amount_out=out,
            path=path,
            recipient=recipient,
            deadline=deadline,
            native_in=native_in,
            native_out=native_out,
            fee_on_transfer=fot,
            swap_count=1,
        )

    return extract


# --- Uniswap V3 SwapRouter / SwapRouter02 -------------------------------------------------------------


def _v3_single(name: str, exact_in: bool, has_deadline: bool) -> Extractor:
    """(tokenIn, tokenOut, fee, recipient, [deadline,] amountIn|amountOut, amountOutMin|amountInMax, limit)."""

    def extract(a: tuple[Any, ...], to: bytes, value: int, sender: bytes) -> DecodedCall:
        p = a[0]
        k = 5 if has_deadline else 4
        first, second = p[k], p[k + 1]
        return DecodedCall(
            name,
            SWAP,
            UNISWAP_V3,
            token_in=p[0],
            token_out=p[1],
            amount_in=first if exact_in else None,
            amount_out_min=second if exact_in else None,
            amount_out=None if exact_in else first,
            amount_in_max=None if exact_in else second,
            path=(p[0], p[1]),
            fee_tiers=(p[2],),
            recipient=p[3],
            deadline=deadline_u64(p[4]) if has_deadline else None,
            native_in=value > 0,
            swap_count=1,
        )

    return extract


def _v3_path(name: str, exact_in: bool, has_deadline: bool) -> Extractor:
    """(path, recipient, [deadline,] amountIn|amountOut, amountOutMin|amountInMax); exact-out paths reversed."""

    def extract(a: tuple[Any, ...], to: bytes, value: int, sender: bytes) -> DecodedCall:
        p = a[0]
        tokens, fees = parse_v3_path(p[0], reverse=not exact_in)
        k = 3 if has_deadline else 2
        first, second = p[k], p[k + 1]
        return DecodedCall(
            name,
            SWAP,
            UNISWAP_V3,
            token_in=tokens[0],
            token_out=tokens[-1],
            amount_in=first if exact_in else None,
            amount_out_min=second if exact_in else None,
            amount_out=None if exact_in else first,
            amount_in_max=None if exact_in else second,
            path=tokens,
            fee_tiers=fees,
            recipient=p[1],
            deadline=deadline_u64(p[2]) if has_deadline else None,
            native_in=value > 0,
            swap_count=1,
        )

    return extract


def _periphery(name: str) -> Extractor:
    """unwrapWETH9 / sweepToken / refundETH: helpers of a multicall (category other on their own)."""

    def extract(a: tuple[Any, ...], to: bytes, value: int, sender: bytes) -> DecodedCall:
        call = DecodedCall(name, OTHER, UNISWAP_V3)
        if name == "unwrapWETH9":
            call.amount_out_min = a[0]
            call.recipient = a[1] if len(a) > 1 else None
            call.native_out = True
        elif name == "sweepToken":
            call.token_out = a[0]
            call.amount_out_min = a[1]
            call.recipient = a[2] if len(a) > 2 else None
        return call

    return extract


def _liquidity(name: str) -> Extractor:
    def extract(a: tuple[Any, ...], to: bytes, value: int, sender: bytes) -> DecodedCall:
        return DecodedCall(name, OTHER, UNISWAP_V2)

    return extract


#: Makes a Method of (selector, signature, family, category, extractor) with the decoder factory in use.
_Make = Callable[[str, str, str, int, Extractor], Method]


def plain_methods(factory: DecoderFactory = ArgsDecoder) -> dict[bytes, Method]:
    """Selector -> Method for every known non-batching method (built on demand, not at import)."""

    def make(selector: str, signature: str, family: str, category: int, extract: Extractor) -> Method:
        return make_method(selector, signature, family, category, extract, factory)

    table = [*_token_methods(make), *_v2_methods(make), *_v3_methods(make)]
    return {m.selector: m for m in table}


def _token_methods(_m: _Make) -> list[Method]:
    """ERC-20 transfers and approvals, NFT approval for all, wrapped-native deposit and withdrawal."""
    return [
        _m("a9059cbb", "transfer(address,uint256)", ERC20, TRANSFER, _transfer),
        _m("23b872dd", "transferFrom(address,address,uint256)", ERC20, TRANSFER, _transfer_from),
        _m("095ea7b3", "approve(address,uint256)", ERC20, APPROVAL, _approve("approve")),
        _m("39509351", "increaseAllowance(address,uint256)", ERC20, APPROVAL, _approve("increaseAllowance")),
        _m("a22cb465", "setApprovalForAll(address,bool)", NFT, APPROVAL, _set_approval_for_all),
        _m("d0e30db0", "deposit()", WRAPPED_NATIVE, OTHER, _deposit),
        _m("2e1a7d4d", "withdraw(uint256)", WRAPPED_NATIVE, OTHER, _withdraw),
    ]


def _v2_methods(_m: _Make) -> list[Method]:
    """Uniswap V2 routers' swaps (and SwapRouter02's V2 swaps) and liquidity management."""
    v2 = UNISWAP_V2
    deadline = ",uint256"
    path_in = ",address[],address"
    # Uniswap V2 Router02 and its forks (Sushiswap, PancakeSwap, QuickSwap, ShibaSwap, ...):
    # (selector, name, argument list, layout, native in, native out, fee-on-transfer)
    tokens_args = "(uint256,uint256,address[],address,uint256)"
    eth_args = "(uint256,address[],address,uint256)"
    fot = "SupportingFeeOnTransferTokens"
    v2_swaps = [
        ("38ed1739", "swapExactTokensForTokens", tokens_args, "in_tokens", False, False, False),
        ("8803dbee", "swapTokensForExactTokens", tokens_args, "out_tokens", False, False, False),
        ("7ff36ab5", "swapExactETHForTokens", eth_args, "in_eth", True, False, False),
        ("4a25d94a", "swapTokensForExactETH", tokens_args, "out_tokens", False, True, False),
        ("18cbafe5", "swapExactTokensForETH", tokens_args, "in_tokens", False, True, False),
        ("fb3bdb41", "swapETHForExactTokens", eth_args, "out_eth", True, False, False),
        ("5c11d795", "swapExactTokensForTokens" + fot, tokens_args, "in_tokens", False, False, True),
        ("b6f9de95", "swapExactETHForTokens" + fot, eth_args, "in_eth", True, False, True),
        ("791ac947", "swapExactTokensForETH" + fot, tokens_args, "in_tokens", False, True, True),
    ]
    table = [_m(selector, name + arglist, v2, SWAP, _v2(name, shape, native_in, native_out, is_fot))
             for selector, name, arglist, shape, native_in, native_out, is_fot in v2_swaps]
    return [
        *table,
        # SwapRouter02's V2 swaps (no deadline argument: the multicall carries it).
        _m("472b43f3", "swapExactTokensForTokens(uint256,uint256" + path_in + ")", v2, SWAP,
           _v2("swapExactTokensForTokens", "in_tokens")),
        _m("42712a67", "swapTokensForExactTokens(uint256,uint256" + path_in + ")", v2, SWAP,
           _v2("swapTokensForExactTokens", "out_tokens")),
        # V2 liquidity management (decoded for the method name; category other).
        _m("e8e33700", "addLiquidity(address,address,uint256,uint256,uint256,uint256,address" + deadline + ")", v2,
           OTHER, _liquidity("addLiquidity")),
        _m("f305d719", "addLiquidityETH(address,uint256,uint256,uint256,address" + deadline + ")", v2, OTHER,
           _liquidity("addLiquidityETH")),
        _m("baa2abde", "removeLiquidity(address,address,uint256,uint256,uint256,address" + deadline + ")", v2, OTHER,
           _liquidity("removeLiquidity")),
        _m("02751cec", "removeLiquidityETH(address,uint256,uint256,uint256,address" + deadline + ")", v2, OTHER,
           _liquidity("removeLiquidityETH")),
        _m("2195995c", "removeLiquidityWithPermit(address,address,uint256,uint256,uint256,address" + deadline
           + ",bool,uint8,bytes32,bytes32)", v2, OTHER, _liquidity("removeLiquidityWithPermit")),
        _m("ded9382a", "removeLiquidityETHWithPermit(address,uint256,uint256,uint256,address" + deadline
           + ",bool,uint8,bytes32,bytes32)", v2, OTHER, _liquidity("removeLiquidityETHWithPermit")),
        _m("af2979eb", "removeLiquidityETHSupportingFeeOnTransferTokens(address,uint256,uint256,uint256,address"
           + deadline + ")", v2, OTHER, _liquidity("removeLiquidityETHSupportingFeeOnTransferTokens")),
    ]


def _v3_methods(_m: _Make) -> list[Method]:
    """Uniswap V3 SwapRouter and SwapRouter02 swaps and the periphery payments."""
    v3 = UNISWAP_V3
    return [
        # Uniswap V3 SwapRouter (deadline inside the params struct).
        _m("414bf389", "exactInputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))", v3, SWAP,
           _v3_single("exactInputSingle", exact_in=True, has_deadline=True)),
        _m("c04b8d59", "exactInput((bytes,address,uint256,uint256,uint256))", v3, SWAP,
           _v3_path("exactInput", exact_in=True, has_deadline=True)),
        _m("db3e2198", "exactOutputSingle((address,address,uint24,address,uint256,uint256,uint256,uint160))", v3, SWAP,
           _v3_single("exactOutputSingle", exact_in=False, has_deadline=True)),
        _m("f28c0498", "exactOutput((bytes,address,uint256,uint256,uint256))", v3, SWAP,
           _v3_path("exactOutput", exact_in=False, has_deadline=True)),
        # SwapRouter02 (no deadline in the struct).
        _m("04e45aaf", "exactInputSingle((address,address,uint24,address,uint256,uint256,uint160))", v3, SWAP,
           _v3_single("exactInputSingle", exact_in=True, has_deadline=False)),
        _m("b858183f", "exactInput((bytes,address,uint256,uint256))", v3, SWAP,
           _v3_path("exactInput", exact_in=True, has_deadline=False)),
        _m("5023b4df", "exactOutputSingle((address,address,uint24,address,uint256,uint256,uint160))", v3, SWAP,
           _v3_single("exactOutputSingle", exact_in=False, has_deadline=False)),
        _m("09b81346", "exactOutput((bytes,address,uint256,uint256))", v3, SWAP,
           _v3_path("exactOutput", exact_in=False, has_deadline=False)),
        # Periphery payments, usually inside a multicall.
        _m("49404b7c", "unwrapWETH9(uint256,address)", v3, OTHER, _periphery("unwrapWETH9")),
        _m("49616997", "unwrapWETH9(uint256)", v3, OTHER, _periphery("unwrapWETH9")),
        _m("df2ab5bb", "sweepToken(address,uint256,address)", v3, OTHER, _periphery("sweepToken")),
        _m("e90a182f", "sweepToken(address,uint256)", v3, OTHER, _periphery("sweepToken")),
        _m("12210e8a", "refundETH()", v3, OTHER, _periphery("refundETH")),
    ]
