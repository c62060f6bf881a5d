"""Calls of user ABI functions (:mod:`processd.analysis.decoding.userabi`) decoded into method name + named args.

The generic path is eth-abi (strict ``eth_abi.decode``): user ABIs carry any type (signed ints, strings, fixed
arrays, nested tuples), calls of them are a small share of the traffic, and eth-abi is the reference the fast
decoder of :mod:`processd.analysis.decoding.abi` is proven against. Its cost is bounded by
:data:`MAX_CALLDATA_BYTES`: ABI pointers may alias (every element of a ``bytes[]`` pointing at the same long
value), so the work is not linear in the calldata; past the bound the call is ``decoded=false`` with an error.

Values are rendered as text (``DecodedArg.value`` in events.proto): decimal for integers, lowercase 0x hex for
addresses and bytes, ``true``/``false``, a string as itself; tuples and arrays as JSON arrays whose scalars are
JSON strings (numbers as decimal strings: a uint256 is no JSON number a client can hold), bools JSON booleans.
Each value is cut at :data:`MAX_VALUE_CHARS` and all of a call's values at :data:`MAX_ARGS_CHARS` together; a
cut sets ``args_truncated`` (what was cut is visible on the record itself).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from typing import Any

from eth_abi import decode as eth_abi_decode
from eth_abi.grammar import ABIType, TupleType, parse

from processd.analysis.decoding.model import OTHER, DecodedCall
from processd.analysis.decoding.userabi import UserAbis, UserFunction
from processd.errors import ProcessdError

#: Calldata longer than this is not decoded with a user ABI (decoded=false) ...
MAX_CALLDATA_BYTES = 16 * 1024
#: ... nor calldata holding more values than this (an array element, a tuple, a bytes value each count one;
#: pointers may alias, so 16 KiB of ``uint256[][]`` can hold 62,500 values, 110 ms of eth-abi). Counted by
#: following the pointers first (:func:`_count`), at a cost bounded by this budget.
MAX_VALUES = 2048
#: A value's text and all of a call's values together, in characters (real calls: a Chainlink report renders
#: to about 1,500; OpenSea's atomicMatch_ to about 4,000 in all).
MAX_VALUE_CHARS = 4096
MAX_ARGS_CHARS = 16384
#: Family of user ABI calls (the protocol label is the file's, not the registry's).
USER_ABI = "user_abi"
_MAX_ERROR_CHARS = 200
_CUT = "..."


class _TooManyValues(ProcessdError):
    """The calldata holds more values than :data:`MAX_VALUES` (found before eth-abi builds any of them)."""


def _static_words(node: ABIType) -> int:
    """32-byte words of a static type's encoding (a static tuple or fixed array is inline)."""
    if node.is_array:
        return node.arrlist[-1][0] * _static_words(node.item_type)
    if isinstance(node, TupleType):
        return sum(_static_words(c) for c in node.components)
    return 1


def _count(node: ABIType, buf: bytes, pos: int, budget: list[int]) -> None:
    """Takes the values of ``node`` encoded at ``pos`` off ``budget[0]``, following pointers as a decoder does (an
    aliased pointer counts again, as eth-abi decodes it again); raises :class:`_TooManyValues` past the budget.
    Reads past the end stop quietly: the decoder then refuses the calldata itself."""
    if not node.is_dynamic:
        budget[0] -= _static_words(node)
    elif node.is_array or isinstance(node, TupleType):
        if node.is_array:
            dims = node.arrlist[-1]
            length = dims[0] if dims else int.from_bytes(buf[pos:pos + 32], "big")
            start = pos if dims else pos + 32
            items: Iterable[ABIType] = itertools.repeat(node.item_type, min(length, MAX_VALUES + 1))
        else:
            start, items = pos, node.components  # type: ignore[attr-defined]
        budget[0] -= 1
        offset = start
        for item in items:
            if budget[0] < 0 or offset + 32 > len(buf):
                break
            if item.is_dynamic:
                _count(item, buf, start + int.from_bytes(buf[offset:offset + 32], "big"), budget)
                offset += 32
            else:
                budget[0] -= _static_words(item)
                offset += 32 * _static_words(item)
    else:
        budget[0] -= 1  # bytes, string: one value
    if budget[0] < 0:
        raise _TooManyValues


class _Budget(ProcessdError):
    """Raised inside rendering when a value passes its character budget (the cut point is known); caught by
    :func:`render_args`, never seen outside this module."""


class _Writer:
    """Collects a value's text up to ``limit`` characters (raises :class:`_Budget` past it: no work is wasted
    rendering the rest of a long array)."""

    __slots__ = ("limit", "parts", "size")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)
        if self.size > self.limit:
            raise _Budget

    def text(self) -> str:
        return "".join(self.parts)


def _scalar(node: ABIType, value: Any) -> str:
    """A scalar value as text (module doc)."""
    base = node.base  # type: ignore[attr-defined]  # BasicType; tuples never reach here
    if base == "address":
        return str(value).lower()
    if base in ("bytes", "function"):
        return "0x" + bytes(value).hex()
    if base == "bool":
        return "true" if value else "false"
    return str(value)  # int, fixed (Decimal), string


def _write(out: _Writer, node: ABIType, value: Any, nested: bool) -> None:
    """Writes ``value`` of type ``node``: a composite as a JSON array, a scalar plain (top level) or as JSON."""
    if node.is_array or isinstance(node, TupleType):
        items = (zip((node.item_type,) * len(value), value, strict=True) if node.is_array
                 else zip(node.components, value, strict=True))  # type: ignore[attr-defined]
        out.add("[")
        for i, (item_node, item) in enumerate(items):
            if i:
                out.add(",")
            _write(out, item_node, item, True)
        out.add("]")
        return
    text = _scalar(node, value)
    if nested and node.base != "bool":  # type: ignore[attr-defined]
        text = json.dumps(text, ensure_ascii=False)
    out.add(text)


def render_args(fn: UserFunction, nodes: tuple[ABIType, ...], values: tuple[Any, ...],
                ) -> tuple[tuple[tuple[str, str, str], ...], bool]:
    """((name, type, value text) per argument, whether anything was cut), within the budgets (module doc)."""
    remaining = MAX_ARGS_CHARS
    cut = False
    args = []
    for name, type_, node, value in zip(fn.names, fn.types, nodes, values, strict=True):
        out = _Writer(min(MAX_VALUE_CHARS, remaining))
        try:
            _write(out, node, value, False)
            text = out.text()
        except _Budget:
            cut = True
            text = out.text()[: max(out.limit - len(_CUT), 0)] + _CUT if out.limit else ""
        remaining -= len(text)
        args.append((name, type_, text))
    return tuple(args), cut


class UserDecoder:
    """Decodes calls of the loaded user ABI functions (build once: the argument types are parsed here)."""

    __slots__ = ("_nodes", "abis")

    def __init__(self, abis: UserAbis) -> None:
        self.abis = abis
        functions = {*abis.unscoped.values(), *abis.scoped.values()}
        #: types -> (the argument list as one tuple type, None without arguments; each argument's type)
        self._nodes: dict[tuple[str, ...], tuple[ABIType | None, tuple[ABIType, ...]]] = {
            fn.types: (parse(f"({','.join(fn.types)})") if fn.types else None, tuple(parse(t) for t in fn.types))
            for fn in functions}

    def decode(self, fn: UserFunction, data: Any) -> DecodedCall:
        """``data`` (selector included) decoded as a call of ``fn``; never raises."""
        call = DecodedCall(fn.name, OTHER, USER_ABI, decoded=False)
        if len(data) > MAX_CALLDATA_BYTES:
            call.error = f"calldata of {len(data)} bytes: user ABIs decode at most {MAX_CALLDATA_BYTES}"
            return call
        whole, nodes = self._nodes[fn.types]
        args = bytes(data[4:])
        try:
            if whole is not None:
                _count(whole, args, 0, [MAX_VALUES])
            values = eth_abi_decode(fn.types, args)
            call.args, call.args_truncated = render_args(fn, nodes, values)
        except _TooManyValues:
            call.error = f"{fn.name}: more than {MAX_VALUES} values (user ABIs decode at most {MAX_VALUES})"
            return call
        except Exception as exc:  # eth-abi's DecodingError family, or any bug: a record, never a crash
            call.error = f"{fn.name}: {type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]
            return call
        call.decoded = True
        return call
