"""eth-abi as an alternative argument decoder for the analysis benchmark: the reference the fast decoder is tested
and benchmarked against. Values are converted to the fast decoder's representation (addresses as 20 raw bytes) by
``common.testing.eth_abi_reference.normalize``, which the tests use too."""

from __future__ import annotations

from typing import Any

import eth_abi
from eth_abi.exceptions import DecodingError

from common.testing.eth_abi_reference import normalize
from processd.analysis.decoding.abi import AbiDecodeError


class EthAbiArgsDecoder:
    """Same interface as ``processd.analysis.decoding.abi.ArgsDecoder``, decoding with ``eth_abi.decode``."""

    __slots__ = ("types",)

    def __init__(self, types: tuple[str, ...]) -> None:
        self.types = types

    def decode(self, data: Any, start: int = 4) -> tuple[Any, ...]:
        """Decodes ``data[start:]``; raises AbiDecodeError when eth-abi cannot."""
        try:
            return normalize(eth_abi.decode(self.types, bytes(data[start:])))
        except (DecodingError, ValueError, OverflowError) as exc:
            raise AbiDecodeError(str(exc)) from None
