"""Calldata decoding: a selector/ABI registry over ERC-20, wrapped-native, Uniswap V2-style routers,
Uniswap V3 SwapRouter / SwapRouter02 (with multicall) and the Universal Router, plus a per-chain registry
of known addresses for protocol labels. See docs/decoding.md.

``Decoder.decode`` never raises: unknown selectors give ``None``; a known selector whose arguments do not
decode gives a DecodedCall with ``decoded=False`` and ``error`` set.
"""

from __future__ import annotations

from typing import Any

from processd.analysis.decoding.abi import AbiDecodeError, ArgsDecoder
from processd.analysis.decoding.methods import DecoderFactory, Method, plain_methods
from processd.analysis.decoding.model import DecodedCall
from processd.analysis.decoding.registry import Registry
from processd.analysis.decoding.routers import router_methods

__all__ = ["MAX_ERROR_CHARS", "AbiDecodeError", "DecodedCall", "Decoder", "Method", "Registry", "all_methods"]

# A decode error is stored in the event log and served on every read path; an exception's text can quote
# attacker-chosen calldata, so it is cut to a bounded length.
MAX_ERROR_CHARS = 200


def all_methods(factory: DecoderFactory = ArgsDecoder) -> dict[bytes, Method]:
    """Selector -> Method for every known method (plain and batching)."""
    plain = plain_methods(factory)
    return {**plain, **router_methods(plain, factory)}


class Decoder:
    """Decodes one call's calldata by its selector. Build once (tables are compiled in the constructor)."""

    __slots__ = ("methods",)

    def __init__(self, factory: DecoderFactory = ArgsDecoder) -> None:
        self.methods = all_methods(factory)

    def decode(self, data: Any, to: bytes, value: int, sender: bytes) -> DecodedCall | None:
        """Decodes ``data`` (selector included) sent to ``to`` with ``value``.

        ``data`` is borrowed: bytes or a memoryview; ``bytes`` arguments come back as memoryviews into it, so
        nested calldata (multicall inner calls, Universal Router inputs) is never copied (static words are read
        straight from ``data``: slicing 32 bytes costs less than a memoryview of them). Returns None when the
        selector is unknown (or data is shorter than a selector).
        """
        if len(data) < 4:
            return None
        method = self.methods.get(data[:4])  # a memoryview slice hashes and compares like its bytes
        if method is None:
            return None
        try:
            return method.extract(method.args.decode(data), to, value, sender)
        except AbiDecodeError as exc:
            return DecodedCall(method.name, method.category, method.family, decoded=False,
                               error=str(exc)[:MAX_ERROR_CHARS])
        except Exception as exc:  # an extractor bug must not take processd down
            return DecodedCall(method.name, method.category, method.family, decoded=False,
                               error=f"internal decoder error: {type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS])
