"""Batching entry points: Uniswap V3 ``multicall`` (SwapRouter, SwapRouter02) and Universal Router ``execute``.

Both carry a list of inner calls; each inner call is decoded with the plain method table (multicall) or
the Universal Router command table, and the swaps found are merged into one DecodedCall: the primary
(first) swap, extended along a chained route (A->B then B->C) or summed over a split route (same pair),
with the recipient resolved through the router's conventions (address(1) = msg.sender, address(2) or
address(0) = the router itself, paid out by a later unwrapWETH9 / sweepToken / UNWRAP_WETH / SWEEP).
"""

from __future__ import annotations

from typing import Any

from processd.analysis.decoding.abi import AbiDecodeError, ArgsDecoder
from processd.analysis.decoding.methods import ArgsDecoderLike, DecoderFactory, Method, deadline_u64, make_method
from processd.analysis.decoding.model import OTHER, SWAP, UNISWAP_V2, UNISWAP_V3, DecodedCall
from processd.analysis.decoding.v3path import MAX_PATH_TOKENS, parse_v3_path

ZERO_ADDRESS = bytes(20)
MSG_SENDER = bytes(19) + b"\x01"
ADDRESS_THIS = bytes(19) + b"\x02"
#: Most inner calls / commands decoded per batch (real ones carry 2-6). A bound, so that one crafted
#: transaction of many pointers to the same inner call cannot cost milliseconds of CPU.
MAX_BATCH_CALLS = 64
#: Universal Router / SwapRouter02 sentinel amount: "use the router's whole balance".
CONTRACT_BALANCE = 1 << 255

# Universal Router commands (low 6 bits of each command byte; bit 7 = allow revert).
UR_V3_SWAP_EXACT_IN = 0x00
UR_V3_SWAP_EXACT_OUT = 0x01
UR_SWEEP = 0x04
UR_V2_SWAP_EXACT_IN = 0x08
UR_V2_SWAP_EXACT_OUT = 0x09
UR_WRAP_ETH = 0x0B
UR_UNWRAP_WETH = 0x0C

#: command -> (name, argument types)
UR_COMMAND_TYPES: dict[int, tuple[str, tuple[str, ...]]] = {
    UR_V3_SWAP_EXACT_IN: ("V3_SWAP_EXACT_IN", ("address", "uint256", "uint256", "bytes", "bool")),
    UR_V3_SWAP_EXACT_OUT: ("V3_SWAP_EXACT_OUT", ("address", "uint256", "uint256", "bytes", "bool")),
    UR_SWEEP: ("SWEEP", ("address", "address", "uint256")),
    UR_V2_SWAP_EXACT_IN: ("V2_SWAP_EXACT_IN", ("address", "uint256", "uint256", "address[]", "bool")),
    UR_V2_SWAP_EXACT_OUT: ("V2_SWAP_EXACT_OUT", ("address", "uint256", "uint256", "address[]", "bool")),
    UR_WRAP_ETH: ("WRAP_ETH", ("address", "uint256")),
    UR_UNWRAP_WETH: ("UNWRAP_WETH", ("address", "uint256")),
}


def ur_command_decoders(factory: DecoderFactory = ArgsDecoder) -> dict[int, tuple[str, ArgsDecoderLike]]:
    """command -> (name, argument decoder)."""
    return {cmd: (name, factory(types)) for cmd, (name, types) in UR_COMMAND_TYPES.items()}


def merge_swaps(outer: str, parts: list[DecodedCall], deadline: int | None, to: bytes, value: int,
                sender: bytes) -> DecodedCall:
    """Folds the decoded inner calls of a batch into one DecodedCall named ``outer/<first swap>``."""
    primary: DecodedCall | None = None
    payout: DecodedCall | None = None
    swaps = 0
    for part in parts:
        if part.category == SWAP:
            swaps += 1
            if primary is None:
                primary = part
            else:
                _fold(primary, part)
        elif part.recipient is not None and part.method in ("unwrapWETH9", "sweepToken", "UNWRAP_WETH", "SWEEP"):
            payout = part
    if primary is None:
        return DecodedCall(outer, OTHER, "", deadline=deadline)
    primary.method = outer + "/" + primary.method
    primary.swap_count = swaps
    if primary.recipient in (ZERO_ADDRESS, ADDRESS_THIS) and payout is not None:
        primary.recipient = payout.recipient
        primary.native_out = primary.native_out or payout.native_out
        if not primary.amount_out_min and payout.amount_out_min:
            primary.amount_out_min = payout.amount_out_min
    if primary.recipient == MSG_SENDER:
        primary.recipient = sender
    elif primary.recipient in (ZERO_ADDRESS, ADDRESS_THIS):
        primary.recipient = to
    if primary.deadline is None:
        primary.deadline = deadline
    primary.native_in = value > 0
    return primary


def _fold(primary: DecodedCall, part: DecodedCall) -> None:
    """Adds a further swap of the batch: a chained hop extends the route, a split of the same pair sums."""
    exact_in = primary.amount_in is not None or primary.amount_out_min is not None
    part_exact_in = part.amount_in is not None or part.amount_out_min is not None
    if (exact_in and part_exact_in and part.token_in == primary.token_out and part.token_in != part.token_out
            and len(primary.path) + len(part.path) <= MAX_PATH_TOKENS + 1):
        primary.token_out = part.token_out
        primary.path = primary.path + part.path[1:]
        primary.fee_tiers = primary.fee_tiers + part.fee_tiers
        primary.amount_out_min = part.amount_out_min
        primary.recipient = part.recipient
        primary.native_out = part.native_out
    elif part.token_in == primary.token_in and part.token_out == primary.token_out and exact_in == part_exact_in:
        primary.amount_in = _add(primary.amount_in, part.amount_in)
        primary.amount_out_min = _add(primary.amount_out_min, part.amount_out_min)
        primary.amount_out = _add(primary.amount_out, part.amount_out)
        primary.amount_in_max = _add(primary.amount_in_max, part.amount_in_max)


def _add(a: int | None, b: int | None) -> int | None:
    if a is None or b is None or a >= CONTRACT_BALANCE or b >= CONTRACT_BALANCE:
        return a
    return a + b


# --- multicall ------------------------------------------------------------------------------------------


def _multicall(name: str, plain: dict[bytes, Method], deadline_arg: bool) -> Any:
    def extract(a: tuple[Any, ...], to: bytes, value: int, sender: bytes) -> DecodedCall:
        calls = a[-1]
        deadline = deadline_u64(a[0]) if deadline_arg else None
        if len(calls) > MAX_BATCH_CALLS:
            return DecodedCall(name, OTHER, "", decoded=False,
                               error=f"{name} of {len(calls)} calls (max {MAX_BATCH_CALLS})")
        parts = []
        for i, inner in enumerate(calls):
            method = plain.get(bytes(inner[:4])) if len(inner) >= 4 else None
            if method is None or method.family not in (UNISWAP_V2, UNISWAP_V3):
                continue  # selfPermit, NonfungiblePositionManager calls, ...: not swaps
            try:
                args = method.args.decode(inner)
                parts.append(method.extract(args, to, value, sender))
            except AbiDecodeError as exc:
                failed = DecodedCall(name + "/" + method.name, method.category, method.family, decoded=False)
                failed.error = f"{name} call {i} ({method.name}): {exc}"
                return failed
        return merge_swaps(name, parts, deadline, to, value, sender)

    return extract


# --- Universal Router -------------------------------------------------------------------------------------


def _ur_part(cmd: int, name: str, a: tuple[Any, ...], value: int) -> DecodedCall | None:
    if cmd in (UR_V3_SWAP_EXACT_IN, UR_V3_SWAP_EXACT_OUT):
        exact_in = cmd == UR_V3_SWAP_EXACT_IN
        tokens, fees = parse_v3_path(a[3], reverse=not exact_in)
        family = UNISWAP_V3
    elif cmd in (UR_V2_SWAP_EXACT_IN, UR_V2_SWAP_EXACT_OUT):
        exact_in = cmd == UR_V2_SWAP_EXACT_IN
        tokens, fees = a[3], ()
        if not tokens or len(tokens) > MAX_PATH_TOKENS:
            raise AbiDecodeError(f"{name}: path of {len(tokens)} tokens (1 to {MAX_PATH_TOKENS})")
        family = UNISWAP_V2
    elif cmd == UR_UNWRAP_WETH:
        return DecodedCall(name, OTHER, "", recipient=a[0], amount_out_min=a[1], native_out=True)
    elif cmd == UR_SWEEP:
        return DecodedCall(name, OTHER, "", token_out=a[0], recipient=a[1], amount_out_min=a[2])
    else:
        return None
    amount_in = a[1] if exact_in else None
    if amount_in is not None and amount_in >= CONTRACT_BALANCE:
        amount_in = value or None  # the router's balance: what the tx wrapped, if it paid in ETH
    return DecodedCall(
        name,
        SWAP,
        family,
        token_in=tokens[0],
        token_out=tokens[-1],
        amount_in=amount_in,
        amount_out_min=a[2] if exact_in else None,
        amount_out=None if exact_in else a[1],
        amount_in_max=None if exact_in else a[2],
        path=tuple(tokens),
        fee_tiers=fees,
        recipient=a[0],
        swap_count=1,
    )


def _execute(name: str, deadline_arg: bool, decoders: dict[int, tuple[str, ArgsDecoderLike]]) -> Any:
    def extract(a: tuple[Any, ...], to: bytes, value: int, sender: bytes) -> DecodedCall:
        commands, inputs = a[0], a[1]
        deadline = deadline_u64(a[2]) if deadline_arg else None
        if len(commands) > MAX_BATCH_CALLS:
            return DecodedCall(name, OTHER, "", decoded=False,
                               error=f"{name} of {len(commands)} commands (max {MAX_BATCH_CALLS})")
        if len(commands) != len(inputs):
            failed = DecodedCall(name, OTHER, "", decoded=False)
            failed.error = f"{name}: {len(commands)} commands but {len(inputs)} inputs"
            return failed
        parts = []
        for i, command in enumerate(commands):
            cmd = command & 0x3F
            entry = decoders.get(cmd)
            if entry is None:
                continue  # permit2, transfers, NFT marketplaces, V4: not decoded
            cmd_name, args_decoder = entry
            try:
                part = _ur_part(cmd, cmd_name, args_decoder.decode(inputs[i], 0), value)
            except AbiDecodeError as exc:
                failed = DecodedCall(name + "/" + cmd_name, SWAP if cmd in (0, 1, 8, 9) else OTHER, "",
                                     decoded=False)
                failed.error = f"{name} command {i} ({cmd_name}): {exc}"
                return failed
            if part is not None:
                parts.append(part)
        return merge_swaps(name, parts, deadline, to, value, sender)

    return extract


def router_methods(plain: dict[bytes, Method], factory: DecoderFactory = ArgsDecoder) -> dict[bytes, Method]:
    """Selector -> Method for the batching entry points (inner calls decoded with ``plain``)."""
    ur = ur_command_decoders(factory)
    table = [
        make_method("ac9650d8", "multicall(bytes[])", UNISWAP_V3, OTHER,
                    _multicall("multicall", plain, deadline_arg=False), factory),
        make_method("5ae401dc", "multicall(uint256,bytes[])", UNISWAP_V3, OTHER,
                    _multicall("multicall", plain, deadline_arg=True), factory),
        make_method("1f0464d1", "multicall(bytes32,bytes[])", UNISWAP_V3, OTHER,
                    _multicall("multicall", plain, deadline_arg=False), factory),
        make_method("3593564c", "execute(bytes,bytes[],uint256)", "", OTHER,
                    _execute("execute", True, ur), factory),
        make_method("24856bc3", "execute(bytes,bytes[])", "", OTHER, _execute("execute", False, ur), factory),
    ]
    return {m.selector: m for m in table}
