"""Per-chain registry of well-known contracts (routers, wrapped native tokens, major tokens) and the fixed
reference prices the searcher uses to express amounts in native-currency terms.

Protocol labels: a call's ABI family ("uniswap_v2", "uniswap_v3", "erc20", ...) is looked up in the entry
of the called address on that chain; when the address is unknown (or does not implement that family) the
generic label of the family is used ("uniswap_v2_fork", "uniswap_v3_fork", "erc20").

Reference prices are FIXED, round numbers chosen for ranking, not market data: they only need to put a
swap's size on the right order of magnitude. They are documented in docs/decoding.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from processd.analysis.decoding.model import ERC20, GENERIC_LABELS, UNISWAP_V2, UNISWAP_V3, WRAPPED_NATIVE

#: Reference prices, micro-USD per whole unit (1 USD = 1_000_000). Fixed, documented, not market data.
REF_USD_MICROS: dict[str, int] = {
    "USD": 1_000_000,
    "ETH": 2_000_000_000,
    "BTC": 40_000_000_000,
    "POL": 500_000,
    "BNB": 300_000_000,
    "FTM": 500_000,
}

#: Native currency of each chain (its reference peg); chains not listed are treated as ETH-native.
NATIVE_PEG: dict[int, str] = {1: "ETH", 137: "POL", 56: "BNB", 250: "FTM", 100: "USD"}


@dataclass(frozen=True, slots=True)
class Token:
    """A token whose value is pegged to a reference asset (``peg`` names a REF_USD_MICROS key)."""

    symbol: str
    decimals: int
    peg: str


@dataclass(frozen=True, slots=True)
class Contract:
    """A known contract: a display name, the protocol label per ABI family, and token facts if a token."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    token: Token | None = None


def _router(name: str, v2: str | None = None, v3: str | None = None) -> Contract:
    labels = {}
    if v2:
        labels[UNISWAP_V2] = v2
    if v3:
        labels[UNISWAP_V3] = v3
    return Contract(name, labels)


def _token(symbol: str, decimals: int, peg: str) -> Contract:
    return Contract(symbol, {ERC20: "erc20"}, Token(symbol, decimals, peg))


def _wrapped(symbol: str, label: str, peg: str) -> Contract:
    return Contract(symbol, {ERC20: label, WRAPPED_NATIVE: label}, Token(symbol, 18, peg))


_UNI_V3_ROUTERS = {
    "e592427a0aece92de3edee1f18e0157c05861564": _router("Uniswap V3 SwapRouter", v3="uniswap_v3"),
    "68b3465833fb72a70ecdf485e0e4c7bd8665fc45": _router("Uniswap SwapRouter02", v2="uniswap_v2", v3="uniswap_v3"),
}
_SUSHI_MULTICHAIN = {"1b02da8cb0d097eb8d57a175b88c7d8b47997506": _router("SushiSwap Router", v2="sushiswap")}

_RAW: dict[int, dict[str, Contract]] = {
    1: {
        "7a250d5630b4cf539739df2c5dacb4c659f2488d": _router("Uniswap V2 Router02", v2="uniswap_v2"),
        "f164fc0ec4e93095b804a4795bbe1e041497b92a": _router("Uniswap V2 Router01", v2="uniswap_v2"),
        "d9e1ce17f2641f24ae83637ab66a2cca9c378b9f": _router("SushiSwap Router", v2="sushiswap"),
        "03f7724180aa6b939894b5ca4314783b0b36b329": _router("ShibaSwap Router", v2="shibaswap"),
        **_UNI_V3_ROUTERS,
        "ef1c6e67703c7bd7107eed8303fbe6ec2554bf6b": _router("Uniswap Universal Router v1", "uniswap_v2", "uniswap_v3"),
        "3fc91a3afd70395cd496c647d5a6cc9d4b2b7fad": _router("Uniswap Universal Router", "uniswap_v2", "uniswap_v3"),
        "66a9893cc07d91d95644aedd05d03f95e1dba8af": _router("Uniswap Universal Router v2", "uniswap_v2", "uniswap_v3"),
        "c02aaa39b223fe8d0a0e5c4f27ead9083c756cc2": _wrapped("WETH", "weth", "ETH"),
        "a0b86991c6218b36c1d19d4a2e9eb0ce3606eb48": _token("USDC", 6, "USD"),
        "dac17f958d2ee523a2206206994597c13d831ec7": _token("USDT", 6, "USD"),
        "6b175474e89094c44da98b954eedeac495271d0f": _token("DAI", 18, "USD"),
        "4fabb145d64652a948d72533023f6e7a623c7c53": _token("BUSD", 18, "USD"),
        "8e870d67f660d95d5be530380d0ec0bd388289e1": _token("USDP", 18, "USD"),
        "2260fac5e5542a773aa44fbcfedf7c193bc2c599": _token("WBTC", 8, "BTC"),
        "ae7ab96520de3a18e5e111b5eaab095312d7fe84": _token("stETH", 18, "ETH"),
    },
    137: {
        "a5e0829caced8ffdd4de3c43696c57f7d7a678ff": _router("QuickSwap Router", v2="quickswap"),
        **_SUSHI_MULTICHAIN,
        **_UNI_V3_ROUTERS,
        "ec7be89e9d109e7e3fec59c222cf297125fefda2": _router("Uniswap Universal Router", "uniswap_v2", "uniswap_v3"),
        "0d500b1d8e8ef31e21c99d1db9a6444d3adf1270": _wrapped("WMATIC", "wmatic", "POL"),
        "2791bca1f2de4661ed88a30c99a7a9449aa84174": _token("USDC.e", 6, "USD"),
        "3c499c542cef5e3811e1192ce70d8cc03d5c3359": _token("USDC", 6, "USD"),
        "c2132d05d31c914a87c6611c10748aeb04b58e8f": _token("USDT", 6, "USD"),
        "8f3cf7ad23cd3cadbd9735aff958023239c6a063": _token("DAI", 18, "USD"),
        "7ceb23fd6bc0add59e62ac25578270cff1b9f619": _token("WETH", 18, "ETH"),
        "1bfd67037b42cf73acf2047067bd4f2c47d9bfd6": _token("WBTC", 8, "BTC"),
    },
    56: {
        "10ed43c718714eb63d5aa57b78b54704e256024e": _router("PancakeSwap V2 Router", v2="pancakeswap_v2"),
        "13f4ea83d0bd40e75c8222255bc855a974568dd4": _router("PancakeSwap SmartRouter", "pancakeswap_v2",
                                                             "pancakeswap_v3"),
        **_SUSHI_MULTICHAIN,
        "bb4cdb9cbd36b01bd1cbaebf2de08d9173bc095c": _wrapped("WBNB", "wbnb", "BNB"),
        "55d398326f99059ff775485246999027b3197955": _token("USDT", 18, "USD"),
        "e9e7cea3dedca5984780bafc599bd69add087d56": _token("BUSD", 18, "USD"),
        "8ac76a51cc950d9822d68b83fe1ad97b32cd580d": _token("USDC", 18, "USD"),
        "2170ed0880ac9a755fd29b2688956bd959f933f8": _token("ETH", 18, "ETH"),
        "7130d2a12b9bcbfae4f2634d864a1ee1ce3ead9c": _token("BTCB", 18, "BTC"),
    },
    250: {
        "f491e7b69e4244ad4002bc14e878a34207e38c29": _router("SpookySwap Router", v2="spookyswap"),
        **_SUSHI_MULTICHAIN,
        "21be370d5312f44cb42ce377bc9b8a0cef1a4c83": _wrapped("WFTM", "wftm", "FTM"),
    },
}


class Registry:
    """Lookups by (chain id, 20-byte address); built once, read-only afterwards."""

    __slots__ = ("_by_chain", "_default_labels", "_labels")

    def __init__(self, raw: dict[int, dict[str, Contract]] | None = None) -> None:
        source = _RAW if raw is None else raw
        self._by_chain: dict[int, dict[bytes, Contract]] = {
            chain: {bytes.fromhex(addr): c for addr, c in entries.items()} for chain, entries in source.items()
        }
        # (chain, address, family) -> label, flattened so the hot path does one dict lookup.
        self._labels: dict[tuple[int, bytes, str], str] = {
            (chain, addr, family): label
            for chain, entries in self._by_chain.items()
            for addr, c in entries.items()
            for family, label in c.labels.items()
        }

        # (chain, address) -> the contract's first label, for calls whose selector is unknown.
        self._default_labels: dict[tuple[int, bytes], str] = {
            (chain, addr): next(iter(c.labels.values()))
            for chain, entries in self._by_chain.items()
            for addr, c in entries.items()
            if c.labels
        }

    def any_label(self, chain_id: int, address: bytes) -> str:
        """Label of a known contract called with an unknown selector ("" when the address is unknown)."""
        return self._default_labels.get((chain_id, address), "")

    def contract(self, chain_id: int, address: bytes) -> Contract | None:
        """The known contract at ``address`` on ``chain_id``, if any."""
        entries = self._by_chain.get(chain_id)
        return entries.get(address) if entries else None

    def token(self, chain_id: int, address: bytes | None) -> Token | None:
        """Token facts (decimals, peg) of a known token, else None."""
        if address is None:
            return None
        entries = self._by_chain.get(chain_id)
        contract = entries.get(address) if entries else None
        return contract.token if contract is not None else None

    def label(self, chain_id: int, address: bytes, family: str) -> str:
        """Protocol label of a call of ``family`` at ``address``: registry label, else the generic one."""
        label = self._labels.get((chain_id, address, family))
        if label is not None:
            return label
        return GENERIC_LABELS.get(family, "")


def native_peg(chain_id: int) -> str:
    """Reference peg of the chain's native currency (ETH when the chain is not listed)."""
    return NATIVE_PEG.get(chain_id, "ETH")
