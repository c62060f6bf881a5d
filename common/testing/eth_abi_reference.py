"""eth-abi, the reference the fast ABI decoder (``processd.analysis.decoding.abi``) is tested and benchmarked against:
:func:`normalize` turns an ``eth_abi.decode`` result into the fast decoder's representation, so the two compare
with ``==`` (tests/processd/test_decoding_abi.py; the analysis benchmark's eth-abi backend,
scripts/bench/eth_abi_backend.py). eth-abi itself is a dev dependency."""

from __future__ import annotations

from typing import Any


def normalize(value: Any) -> Any:
    """eth-abi value -> fast-decoder representation: hex address strings to bytes, sequences to tuples."""
    if isinstance(value, str):
        return bytes.fromhex(value[2:])
    if isinstance(value, (tuple, list)):
        return tuple(normalize(v) for v in value)
    return value
