"""Exact JSON schemas of the REST parameters, derived from the parsers in :mod:`gatewayd.params` and
:func:`common.chains.parse_chain`.

"Exact" means a value matches the schema if and only if the server accepts it, so a client (or a fuzzer such
as schemathesis) can trust both directions. The parsers are more lenient than a bare "integer" or "name":
``parse_chain`` strips any Unicode whitespace (``str.strip``) and lowercases (``str.lower``, under which the
Kelvin sign is a "k"), accepts leading zeros and caps ids at 19 digits and 2**63-1; ``parse_kinds`` strips and
lowercases each comma-separated part. Both are bounded in length (gatewayd.params.MAX_*). The patterns below
are therefore generated from the same Python predicates (``str.isspace``, ``str.lower``), not written by hand.
"""

from __future__ import annotations

import functools
from typing import Any

from common.chains import KNOWN_CHAINS, MAX_CHAIN_ID
from gatewayd.params import (
    EVENT_KINDS,
    INCLUDES,
    LIFECYCLE_STATUSES,
    MAX_CHAIN_CHARS,
    MAX_INCLUDE_CHARS,
    MAX_INCLUDE_VALUES,
    MAX_KINDS_CHARS,
    MAX_KINDS_VALUES,
    MAX_TOKEN_CHARS,
    TOKEN_RE,
    UINT64_MAX,
    UINT256_MAX,
    ParamSpec,
    item_pattern,
    list_chars,
)

_UNICODE_END = 0x110000


def _escape(char: str) -> str:
    """One character as it appears in a pattern: ASCII alphanumerics as they are, anything else escaped (so the
    document stays ASCII and no character is read as regex syntax)."""
    if char.isascii() and char.isalnum():
        return char
    if char.isascii() and char.isprintable():
        return "\\" + char
    return f"\\u{ord(char):04x}"


@functools.cache
def _unicode_tables() -> tuple[str, dict[str, str]]:
    """(every character ``str.strip`` removes, ASCII char -> every single character that lowercases to it)."""
    spaces = []
    lowers: dict[str, list[str]] = {}
    for code in range(_UNICODE_END):
        char = chr(code)
        if char.isspace():
            spaces.append(char)
        low = char.lower()
        if len(low) == 1 and low.isascii() and low != char:
            lowers.setdefault(low, []).append(char)
    return "".join(spaces), {low: "".join(chars) for low, chars in lowers.items()}


def whitespace_class() -> str:
    """A character class of what ``str.strip()`` strips."""
    return "[" + "".join(_escape(c) for c in _unicode_tables()[0]) + "]"


def caseless(word: str) -> str:
    """A pattern matching exactly the strings whose ``str.lower()`` is ``word`` (an ASCII lowercase word)."""
    lowers = _unicode_tables()[1]
    out = []
    for char in word:
        variants = lowers.get(char, "")
        out.append("[" + _escape(char) + "".join(_escape(v) for v in variants) + "]" if variants else _escape(char))
    return "".join(out)


def _digits_at_most(limit: str) -> list[str]:
    """Alternatives matching exactly the ``len(limit)``-digit strings (leading zeros included) <= ``limit``."""
    alts = []
    for i, digit in enumerate(limit):
        rest = len(limit) - i - 1
        if digit != "0":
            alts.append(limit[:i] + f"[0-{int(digit) - 1}]" + (f"[0-9]{{{rest}}}" if rest else ""))
    alts.append(limit)
    return alts


def uint_pattern(minimum: int, maximum: int) -> str:
    """A pattern (no anchors) of the strings of 1 to ``len(str(maximum))`` ASCII digits, leading zeros allowed,
    whose value is in ``minimum..maximum`` (``minimum`` 0 or 1)."""
    if minimum not in (0, 1):
        raise ValueError("minimum must be 0 or 1")
    top = str(maximum)
    width = len(top)
    full = _digits_at_most(top)
    if minimum == 0:
        shorter = [f"[0-9]{{1,{width - 1}}}"] if width > 1 else []
        return "(?:" + "|".join(shorter + full) + ")"
    # Not all zeros: z leading zeros, a non-zero digit, then any digits, within the length.
    alts = [f"0{{{z}}}[1-9][0-9]{{0,{width - 2 - z}}}" for z in range(width - 1)]
    first = int(top[0])
    # full[0] ("[0-(first-1)]" + width-1 digits) includes the all-zeros string: split it by its first non-zero.
    head = full[1:] if first > 0 else full
    if first >= 2:
        head.insert(0, f"[1-{first - 1}][0-9]{{{width - 1}}}")
    alts += head + [f"0{{{z}}}[1-9][0-9]{{{width - 1 - z}}}" for z in range(1, width)]
    return "(?:" + "|".join(alts) + ")"


@functools.cache
def chain_pattern() -> str:
    """Exactly what :func:`common.chains.parse_chain` accepts: a known name or an id 1..2**63-1 of at most 19
    ASCII digits, either with surrounding whitespace, names in any case."""
    ws = whitespace_class()
    names = "|".join(caseless(name) for name in KNOWN_CHAINS)
    return f"^{ws}*(?:{uint_pattern(1, MAX_CHAIN_ID)}|{names}){ws}*$"


@functools.cache
def kinds_pattern() -> str:
    """Exactly what :func:`gatewayd.params.parse_kinds` accepts in one value: comma-separated kind names, each in
    any case with surrounding whitespace."""
    ws = whitespace_class()
    item = f"{ws}*(?:{'|'.join(caseless(kind) for kind in EVENT_KINDS)}){ws}*"
    return f"^{item}(?:,{item})*$"


#: Last-Event-ID: a plain decimal 0..2**64-2 (the stream resumes after it); HTTP strips the surrounding blanks.
LAST_EVENT_ID = {
    "type": "string",
    "pattern": f"^{uint_pattern(0, UINT64_MAX - 1)}$",
    "maxLength": 20,
    "description": "Resume after this seq_id (0..2**64-2, ASCII digits); an empty value is ignored.",
}

#: A transaction hash in the path: 0x and 64 hex digits, either case (gatewayd.params.parse_hash).
PATH_HASH = {"type": "string", "pattern": "^0[xX][0-9a-fA-F]{64}$", "minLength": 66, "maxLength": 66}


def param_schema(spec: ParamSpec) -> dict[str, Any]:
    """The JSON schema of one query parameter: what ``spec.parse`` accepts, no more and no less."""
    if spec.kind == "chain":
        return {
            "type": "string",
            "pattern": chain_pattern(),
            "maxLength": MAX_CHAIN_CHARS,
            "description": "a chain id (1..2**63-1, at most 19 ASCII digits) or a known chain name, any case",
            "examples": ["1", "polygon"],
        }
    if spec.kind == "kinds":
        # Repeatable (kinds=tx_seen&kinds=opp_detected) as well as comma-separated.
        return {
            "type": "array",
            "maxItems": MAX_KINDS_VALUES,
            "items": {"type": "string", "pattern": kinds_pattern(), "maxLength": MAX_KINDS_CHARS},
        }
    if spec.kind == "include":
        # Exact names (no case folding or spaces), comma-separated in one value or repeated.
        item = "(?:" + "|".join(INCLUDES) + ")"
        return {
            "type": "array",
            "maxItems": MAX_INCLUDE_VALUES,
            "items": {"type": "string", "pattern": f"^{item}(?:,{item})*$", "maxLength": MAX_INCLUDE_CHARS},
        }
    if spec.kind == "token":
        return {"type": "string", "pattern": f"^{TOKEN_RE}$", "maxLength": MAX_TOKEN_CHARS}
    if spec.kind == "status":
        return {"type": "string", "enum": list(LIFECYCLE_STATUSES)}
    if spec.kind == "uint256":
        # A decimal string: JSON numbers (and orjson) stop at 64 bits.
        return {"type": "string", "pattern": f"^{uint_pattern(0, UINT256_MAX)}$", "maxLength": 78, "default": "0"}
    if spec.kind in ("addresses", "methods", "protocols"):
        # One value, comma-separated items exactly as written (no spaces), at most spec.maximum of them.
        item = item_pattern(spec.kind)
        return {
            "type": "string",
            "pattern": f"^{item}(?:,{item}){{0,{spec.maximum - 1}}}$",
            "maxLength": list_chars(spec.kind, spec.maximum),
        }
    schema: dict[str, Any] = {"type": "integer", "minimum": spec.minimum, "maximum": spec.maximum}
    if spec.default is not None:
        schema["default"] = spec.default
    return schema
