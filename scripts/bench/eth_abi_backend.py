"""eth-abi as an alternative argument decoder: the reference the fast decoder is tested and benchmarked
against. Values are converted to the fast decoder's representation (addresses as 20 raw bytes)."""

from __future__ import annotations

from typing import Any

import eth_abi
from eth_abi.exceptions import DecodingError

from processd.decoding.abi import AbiDecodeError


def normalize(value: Any) -> Any:
    """eth-abi value -> fast-decoder representation: hex address strings to bytes, sequences to tuples."""
    if isinstance(value, str):
        return bytes.fromhex(value[2:])
    if isinstance(value, (tuple, list)):
        return tuple(normalize(v) for v in value)
    return value


class EthAbiArgsDecoder:
    """Same interface as ``processd.decoding.abi.ArgsDecoder``, decoding with ``eth_abi.decode``."""

    __slots__ = ("types",)

    def __init__(self, types: tuple[str, ...]) -> None:
        self.types = types

    def decode(self, data: Any, start: int = 4) -> tuple[Any, ...]:
        """Decodes ``data[start:]``; raises AbiDecodeError when eth-abi cannot."""
        try:
            return normalize(eth_abi.decode(self.types, bytes(data[start:])))
        except (DecodingError, ValueError, OverflowError) as exc:
            raise AbiDecodeError(str(exc)) from None
