"""What the decoder produces: one ``DecodedCall`` per transaction, plain Python values (ints, raw bytes)."""

from __future__ import annotations

from dataclasses import dataclass

from common.pb.v1 import events_pb2

SWAP = events_pb2.TX_CATEGORY_SWAP
TRANSFER = events_pb2.TX_CATEGORY_TRANSFER
APPROVAL = events_pb2.TX_CATEGORY_APPROVAL
OTHER = events_pb2.TX_CATEGORY_OTHER

# ABI families: which contract interface a selector belongs to. The protocol label of a call is looked up
# in the registry by (chain, address, family), falling back to the family's generic label.
ERC20 = "erc20"
WRAPPED_NATIVE = "wrapped_native"
UNISWAP_V2 = "uniswap_v2"
UNISWAP_V3 = "uniswap_v3"
NFT = "nft"

#: Generic protocol labels of calls whose address is not in the chain's registry.
GENERIC_LABELS: dict[str, str] = {
    ERC20: "erc20",
    WRAPPED_NATIVE: "",  # deposit()/withdraw(uint256) are generic names (vaults, staking): no label
    UNISWAP_V2: "uniswap_v2_fork",
    UNISWAP_V3: "uniswap_v3_fork",
    NFT: "erc721",
}


@dataclass(slots=True)
class DecodedCall:
    """Decoded facts about one call; ``None`` means unknown / not applicable.

    For multicall and Universal Router transactions the swap fields describe the primary (first) swap,
    with amounts summed over further swaps of the same token pair; ``swap_count`` counts all swaps.
    The field order is relied on: the ERC-20 extractors in ``methods.py`` pass the first 14 positionally.
    """

    method: str
    category: int
    family: str
    decoded: bool = True
    error: str = ""
    token_in: bytes | None = None
    token_out: bytes | None = None
    amount_in: int | None = None
    amount_out_min: int | None = None
    amount_in_max: int | None = None
    amount_out: int | None = None
    path: tuple[bytes, ...] = ()
    fee_tiers: tuple[int, ...] = ()
    recipient: bytes | None = None
    #: Deadline argument (unix seconds, saturated at 2**64-1); None when the call has no deadline argument.
    deadline: int | None = None
    #: The swap is paid with the transaction's native value (ETH-in).
    native_in: bool = False
    #: The swap pays out native currency (ETH-out, unwrap).
    native_out: bool = False
    #: A V2 "SupportingFeeOnTransferTokens" variant: the token taxes transfers.
    fee_on_transfer: bool = False
    swap_count: int = 0
    #: (name, canonical type, value text) per argument of a call decoded with a user ABI (processd --abi-dir);
    #: empty for the built-in decoders. ``args_truncated``: a value was cut to its bounds.
    args: tuple[tuple[str, str, str], ...] = ()
    args_truncated: bool = False
