"""A Uniswap V2 router call's path, read straight from the calldata (no full decoding).

The pipeline uses it to know which pairs' reserves a batch's valuation needs before the analysis runs (on the
event loop, so it reads only the few words it needs). The worker's full decoder gives the same path;
tests/processd/test_valuation_decode.py checks both agree on the real mainnet fixtures.
"""

from __future__ import annotations

#: Selector -> the argument index of ``address[] path`` (Router02's swaps and their fee-on-transfer variants).
PATH_ARG: dict[bytes, int] = {
    bytes.fromhex(s): i for s, i in (
        ("38ed1739", 2), ("8803dbee", 2), ("4a25d94a", 2), ("18cbafe5", 2), ("5c11d795", 2), ("791ac947", 2),
        ("7ff36ab5", 1), ("fb3bdb41", 1), ("b6f9de95", 1),
    )
}
#: Selector -> the offset in the calldata of the word holding ``path``'s offset (4 + 32 * its argument index).
PATH_HEAD: dict[bytes, int] = {selector: 4 + 32 * arg for selector, arg in PATH_ARG.items()}
#: Longest path read (a longer one is not valued).
MAX_PATH = 8
#: The 12 zero bytes an ABI-encoded address starts with.
_ZERO_WORD_HEAD = bytes(12)


def v2_path(data: bytes) -> tuple[bytes, ...] | None:
    """The token path of a V2 router swap call, None when ``data`` is not one or is malformed."""
    region = path_words(data)
    return None if region is None else path_of_words(region)


def path_words(data: bytes) -> bytes | None:
    """The ABI words of a V2 router swap call's ``path`` array (its elements, 32 bytes each), None when ``data``
    is not such a call or is too short for them: one slice, unchecked, so that the pipeline can key the routes it
    has resolved by it (:func:`path_of_words` of the words is :func:`v2_path` of the call)."""
    arg = PATH_ARG.get(data[:4])
    if arg is None:
        return None
    n = len(data)
    head = 4 + 32 * arg
    if n < head + 32:
        return None
    offset = int.from_bytes(data[head:head + 32], "big")
    start = 4 + offset
    if offset > n or n < start + 32:
        return None
    count = int.from_bytes(data[start:start + 32], "big")
    at = start + 32
    if not 2 <= count <= MAX_PATH or n < at + 32 * count:
        return None
    return data[at:at + 32 * count]


def path_of_words(words: bytes) -> tuple[bytes, ...] | None:
    """The addresses of :func:`path_words`' words; None when one is not an address (its 12 high bytes not 0)."""
    if len(words) == 64:  # most swaps: no loop (this runs on processd's event loop for every new route)
        if words[:12] != _ZERO_WORD_HEAD or words[32:44] != _ZERO_WORD_HEAD:
            return None
        return words[12:32], words[44:64]
    out = []
    for at in range(0, len(words), 32):  # a loop, not a comprehension (a function call per comprehension in 3.11)
        if words[at:at + 12] != _ZERO_WORD_HEAD:
            return None
        out.append(words[at + 12:at + 32])
    return tuple(out)
