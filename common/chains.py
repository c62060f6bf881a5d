"""Registry of well-known EVM chains: names users type on the command line and their EIP-155 chain ids."""

from __future__ import annotations

from common.errors import MempulseError

#: Chain names accepted wherever a chain is named (CLI flags, REST ``chain_id`` parameters).
KNOWN_CHAINS: dict[str, int] = {
    "ethereum": 1,
    "mainnet": 1,
    "optimism": 10,
    "bsc": 56,
    "gnosis": 100,
    "polygon": 137,
    "fantom": 250,
    "zksync": 324,
    "base": 8453,
    "arbitrum": 42161,
    "avalanche": 43114,
    "linea": 59144,
    "sepolia": 11155111,
    "holesky": 17000,
    "anvil": 31337,
}

#: Chains whose sequencer keeps no public mempool: a node answers the subscription but never announces
#: pending transactions. ingestd reports them as "mempool not visible" instead of looking healthy.
SEQUENCER_CHAINS: frozenset[int] = frozenset({10, 324, 8453, 42161, 59144})

_CANONICAL_NAMES: dict[int, str] = {}
for _name, _cid in KNOWN_CHAINS.items():
    _CANONICAL_NAMES.setdefault(_cid, _name)

MAX_CHAIN_ID = 2**63 - 1


class UnknownChainError(MempulseError, ValueError):
    """Raised when a chain name or id cannot be resolved; the message lists the known names."""


def known_chain_names() -> str:
    """The known chain names with their ids, for error messages (``ethereum=1, optimism=10, ...``)."""
    return ", ".join(f"{name}={cid}" for name, cid in KNOWN_CHAINS.items())


#: Digits of the largest chain id (MAX_CHAIN_ID has 19): a longer id is refused before int() sees it.
_MAX_CHAIN_ID_DIGITS = len(str(MAX_CHAIN_ID))


def parse_chain(value: str) -> int:
    """Resolves a chain name (case-insensitive) or a positive decimal chain id (ASCII digits only) to a chain id.

    ``str.isdigit`` alone is not enough: it accepts "²", "①", Arabic-Indic and fullwidth digits (on which int()
    either raises or reads a number nobody typed), and int() of a 5,000-digit string raises; both used to
    escape as tracebacks.
    """
    text = value.strip().lower()
    if text in KNOWN_CHAINS:
        return KNOWN_CHAINS[text]
    if len(text) <= _MAX_CHAIN_ID_DIGITS and text.isascii() and text.isdigit():
        cid = int(text)
        if 0 < cid <= MAX_CHAIN_ID:
            return cid
    shown = repr(value[:64] + ("..." if len(value) > 64 else ""))
    raise UnknownChainError(f"unknown chain {shown}: use a positive chain id or one of {known_chain_names()}")


def chain_name(chain_id: int) -> str:
    """Canonical name of a chain id, or the id as a string when the chain is not in the registry."""
    return _CANONICAL_NAMES.get(chain_id, str(chain_id))
