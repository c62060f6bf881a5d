"""Uniswap V3 packed swap paths: ``token (20 bytes) | fee (uint24, 3 bytes) | token | fee | token ...``."""

from __future__ import annotations

from typing import Any

from processd.analysis.decoding.abi import AbiDecodeError

_HOP = 23  # fee (3) + next token (20)
#: Longest swap path accepted (tokens). Real routes have at most 4-5; the bound keeps a pathological
#: transaction from turning a large calldata into an equally large feature record.
MAX_PATH_TOKENS = 16


def parse_v3_path(path: Any, reverse: bool = False) -> tuple[tuple[bytes, ...], tuple[int, ...]]:
    """Tokens and fee tiers of a packed path (``path`` borrowed: bytes or memoryview).

    ``reverse`` is for exact-output swaps, whose path is encoded output-first: the result is always in
    input -> output order. Raises AbiDecodeError on a length that is not 20 + 23*k with k >= 1.
    """
    length = len(path)
    if length < 20 + _HOP or (length - 20) % _HOP:
        raise AbiDecodeError(f"bad V3 path length {length} (expected 20 + 23*k, k >= 1)")
    if length > 20 + _HOP * (MAX_PATH_TOKENS - 1):
        raise AbiDecodeError(f"V3 path of {(length - 20) // _HOP + 1} tokens (max {MAX_PATH_TOKENS})")
    tokens = [bytes(path[0:20])]
    fees = []
    for pos in range(20, length, _HOP):
        fees.append(int.from_bytes(path[pos : pos + 3], "big"))
        tokens.append(bytes(path[pos + 3 : pos + _HOP]))
    if reverse:
        tokens.reverse()
        fees.reverse()
    return tuple(tokens), tuple(fees)
