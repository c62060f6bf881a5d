"""A small, fast Solidity ABI decoder for the argument types routers and tokens use.

Why not eth-abi on the hot path: eth-abi decodes through a BytesIO stream, frame stacks, generators and
eth-utils conversions, about 15-40 µs per swap; processd must analyse 50,000+ tx/s on two cores. This
decoder compiles each argument list once into nested closures that read words straight out of the calldata,
bytes or memoryview (bytes values come back as memoryview slices, so nested calldata is never copied). It accepts
and rejects exactly what ``eth_abi.decode(types, data)`` (strict mode) accepts and rejects, and returns the
same values except for representation: addresses are 20 raw bytes (eth-abi: lowercase hex) and ``bytes``
values are memoryview slices (eth-abi: bytes). ``tests/processd/test_decoding_abi.py`` proves it equal to
eth-abi on every bundled mainnet call.

Supported types: ``uint<N>``, ``address``, ``bool``, ``bytes<N>``, ``bytes``, ``T[]`` and tuples
``(T1,T2,...)`` of those, nested arbitrarily.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from processd.errors import ProcessdError

Buffer = bytes | memoryview
#: A compiled decoder: (buffer, absolute position of the value, buffer length) -> python value.
ValueDecoder = Callable[[Any, int, int], Any]

_ZERO32 = bytes(32)
_FROM = int.from_bytes


class AbiDecodeError(ProcessdError, ValueError):
    """Calldata does not decode as the method's argument types (short data, bad padding, bad pointer)."""


class _Type:
    """A compiled ABI type: how to decode it and its head footprint."""

    __slots__ = ("components", "decode", "dynamic", "eth_abi_head_words", "head_words", "name")

    def __init__(self, name: str, decode: ValueDecoder, dynamic: bool, head_words: int) -> None:
        self.name = name
        self.decode = decode
        self.dynamic = dynamic
        # Words this type occupies in its parent's head (a static tuple occupies all its words).
        self.head_words = head_words
        # eth-abi's pointer validation counts every tuple component as one head word (sized arrays aside),
        # even a static tuple of several words; mirrored so both decoders reject the same pointers.
        self.eth_abi_head_words = 1
        # Tuple components (None for other types).
        self.components: list[_Type] | None = None


def _uint_decoder(bits: int) -> ValueDecoder:
    if bits == 256:

        def dec_uint256(buf: Any, pos: int, n: int) -> int:
            if pos + 32 > n:
                raise AbiDecodeError(f"uint256 at {pos}: short data")
            return _FROM(buf[pos : pos + 32], "big")

        return dec_uint256
    limit = 1 << bits

    def dec_uint(buf: Any, pos: int, n: int) -> int:
        if pos + 32 > n:
            raise AbiDecodeError(f"uint{bits} at {pos}: short data")
        value = _FROM(buf[pos : pos + 32], "big")
        if value >= limit:
            raise AbiDecodeError(f"uint{bits} at {pos}: non-zero padding")
        return value

    return dec_uint


def _dec_address(buf: Any, pos: int, n: int) -> bytes:
    if pos + 32 > n:
        raise AbiDecodeError(f"address at {pos}: short data")
    if buf[pos : pos + 12] != _ZERO32[:12]:
        raise AbiDecodeError(f"address at {pos}: non-zero padding")
    return bytes(buf[pos + 12 : pos + 32])


def _dec_bool(buf: Any, pos: int, n: int) -> bool:
    if pos + 32 > n:
        raise AbiDecodeError(f"bool at {pos}: short data")
    value = _FROM(buf[pos : pos + 32], "big")
    if value > 1:
        raise AbiDecodeError(f"bool at {pos}: not 0 or 1")
    return value == 1


def _fixed_bytes_decoder(size: int) -> ValueDecoder:
    pad = bytes(32 - size)

    def dec_fixed_bytes(buf: Any, pos: int, n: int) -> bytes:
        if pos + 32 > n:
            raise AbiDecodeError(f"bytes{size} at {pos}: short data")
        if buf[pos + size : pos + 32] != pad:
            raise AbiDecodeError(f"bytes{size} at {pos}: non-zero padding")
        return bytes(buf[pos : pos + size])

    return dec_fixed_bytes


def _dec_bytes(buf: Any, pos: int, n: int) -> memoryview:
    if pos + 32 > n:
        raise AbiDecodeError(f"bytes length at {pos}: short data")
    length = _FROM(buf[pos : pos + 32], "big")
    start = pos + 32
    padded = (length + 31) // 32 * 32
    if start + padded > n:
        raise AbiDecodeError(f"bytes at {pos}: {length} bytes declared, {n - start} available")
    if padded != length and any(buf[start + length : start + padded]):
        raise AbiDecodeError(f"bytes at {pos}: non-zero padding")
    # Borrowed either way: a view into the caller's bytes, or a slice of the caller's view.
    return buf[start : start + length] if type(buf) is memoryview else memoryview(buf)[start : start + length]


def _array_type(item: _Type) -> _Type:
    item_dec = item.decode
    if item.dynamic:

        def dec_dyn_array(buf: Any, pos: int, n: int) -> tuple[Any, ...]:
            if pos + 32 > n:
                raise AbiDecodeError(f"array length at {pos}: short data")
            size = _FROM(buf[pos : pos + 32], "big")
            base = pos + 32
            end_of_offsets = base + 32 * size
            if end_of_offsets > n:
                raise AbiDecodeError(f"array at {pos}: {size} offsets declared, data too short")
            out = []
            for p in range(base, end_of_offsets, 32):
                target = base + _FROM(buf[p : p + 32], "big")
                if target < end_of_offsets or target >= n:
                    raise AbiDecodeError(f"array at {pos}: invalid pointer at {p}")
                out.append(target)
            return tuple([item_dec(buf, t, n) for t in out])

        return _Type(item.name + "[]", dec_dyn_array, True, 1)

    stride = 32 * item.head_words
    if item.name == "address":

        def dec_address_array(buf: Any, pos: int, n: int) -> tuple[Any, ...]:
            if pos + 32 > n:
                raise AbiDecodeError(f"array length at {pos}: short data")
            size = _FROM(buf[pos : pos + 32], "big")
            base = pos + 32
            if base + 32 * size > n:
                raise AbiDecodeError(f"array at {pos}: {size} items declared, data too short")
            words = [_FROM(buf[p : p + 32], "big") for p in range(base, base + 32 * size, 32)]
            for w in words:
                if w >> 160:
                    raise AbiDecodeError(f"address[] at {pos}: non-zero padding")
            return tuple([w.to_bytes(20, "big") for w in words])

        return _Type("address[]", dec_address_array, True, 1)

    def dec_static_array(buf: Any, pos: int, n: int) -> tuple[Any, ...]:
        if pos + 32 > n:
            raise AbiDecodeError(f"array length at {pos}: short data")
        size = _FROM(buf[pos : pos + 32], "big")
        base = pos + 32
        if base + stride * size > n:
            raise AbiDecodeError(f"array at {pos}: {size} items declared, data too short")
        return tuple([item_dec(buf, p, n) for p in range(base, base + stride * size, stride)])

    return _Type(item.name + "[]", dec_static_array, True, 1)


def _static_inline(t: _Type, pos: str, lines: list[str], env: dict[str, Any], counter: list[int]) -> str:
    """Emits straight-line code decoding static type ``t`` at ``pos`` (head length already checked);
    returns the expression holding its value."""
    counter[0] += 1
    v = f"v{counter[0]}"
    kind = t.name
    if kind == "uint256":
        lines.append(f"    {v} = FROM(b[{pos}:{pos} + 32], 'big')")
    elif kind.startswith("uint"):
        lines.append(f"    {v} = FROM(b[{pos}:{pos} + 32], 'big')")
        lines.append(f"    if {v} >> {int(kind[4:])}: raise AbiDecodeError(f'{kind} at {{{pos}}}: non-zero padding')")
    elif kind == "address":
        # Padding compared as bytes and the address sliced out: cheaper than an int round trip.
        lines.append(f"    if b[{pos}:{pos} + 12] != Z12:")
        lines.append(f"        raise AbiDecodeError(f'address at {{{pos}}}: non-zero padding')")
        lines.append(f"    {v} = BYTES(b[{pos} + 12:{pos} + 32])")
    elif kind == "bool":
        lines.append(f"    {v} = FROM(b[{pos}:{pos} + 32], 'big')")
        lines.append(f"    if {v} > 1: raise AbiDecodeError(f'bool at {{{pos}}}: not 0 or 1')")
        lines.append(f"    {v} = {v} == 1")
    elif kind.startswith("(") and t.components is not None:
        items = []
        off = 0
        for c in t.components:
            items.append(_static_inline(c, f"{pos} + {off}" if off else pos, lines, env, counter))
            off += 32 * c.head_words
        return "(" + "".join(i + ", " for i in items) + ")"
    else:  # bytes<N> and anything else static: call its decoder
        env[f"D{v}"] = t.decode
        lines.append(f"    {v} = D{v}(b, {pos}, n)")
    return v


def _tuple_type(components: list[_Type]) -> _Type:
    """Compiles a tuple into generated straight-line code: no per-component calls for static words.

    Code generation is for speed (the decoder runs for every pending transaction): a closure per
    component costs about twice as much as inline reads.
    """
    dynamic = any(c.dynamic for c in components)
    name = "(" + ",".join(c.name for c in components) + ")"
    head_bytes = 32 * sum(1 if c.dynamic else c.head_words for c in components)
    if not dynamic:
        # A static tuple nested in a parent is inlined by the parent; this decoder serves the top level.
        t = _Type(name, _no_decode, False, head_bytes // 32)
        t.components = components
        t.decode = _generate(t, components, head_bytes, 0)
        return t
    eth_abi_head_bytes = 32 * sum(c.eth_abi_head_words for c in components)
    t = _Type(name, _no_decode, True, 1)
    t.components = components
    t.decode = _generate(t, components, head_bytes, eth_abi_head_bytes)
    return t


def _no_decode(buf: Any, pos: int, n: int) -> Any:
    raise AssertionError("decoder not generated")


def _generate(t: _Type, components: list[_Type], head_bytes: int, eth_abi_head_bytes: int) -> ValueDecoder:
    env: dict[str, Any] = {"FROM": _FROM, "AbiDecodeError": AbiDecodeError, "Z12": _ZERO32[:12], "BYTES": bytes}
    lines = [
        "def dec(b, pos, n):",
        f"    if pos + {head_bytes} > n:",
        f"        raise AbiDecodeError(f'tuple at {{pos}}: head needs {head_bytes} bytes, {{n - pos}} available')",
    ]
    if eth_abi_head_bytes:
        lines.append(f"    eoo = pos + {eth_abi_head_bytes}")
    counter = [0]
    items = []
    off = 0
    for c in components:
        p = f"pos + {off}" if off else "pos"
        if c.dynamic:
            counter[0] += 1
            v = f"v{counter[0]}"
            env[f"D{v}"] = c.decode
            lines.append(f"    {v} = pos + FROM(b[{p}:{p} + 32], 'big')")
            lines.append(f"    if {v} < eoo or {v} >= n: raise AbiDecodeError(f'tuple at {{pos}}: invalid pointer')")
            lines.append(f"    {v} = D{v}(b, {v}, n)")
            items.append(v)
            off += 32
        else:
            items.append(_static_inline(c, p, lines, env, counter))
            off += 32 * c.head_words
    lines.append("    return (" + "".join(i + ", " for i in items) + ")")
    exec("\n".join(lines), env)
    return env["dec"]


def split_components(text: str) -> list[str]:
    """Splits a comma-separated ABI type list at its top level (``"a,(b,c),d"`` -> ``["a", "(b,c)", "d"]``)."""
    parts: list[str] = []
    depth = 0
    start = 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if text:
        parts.append(text[start:])
    return parts


def parse_type(text: str) -> _Type:
    """Compiles one ABI type string (``"address[]"``, ``"(bytes,address,uint256)"``)."""
    text = text.strip()
    if text.endswith("[]"):
        return _array_type(parse_type(text[:-2]))
    if text.startswith("(") and text.endswith(")"):
        return _tuple_type([parse_type(c) for c in split_components(text[1:-1])])
    if text == "address":
        return _Type(text, _dec_address, False, 1)
    if text == "bool":
        return _Type(text, _dec_bool, False, 1)
    if text == "bytes":
        return _Type(text, _dec_bytes, True, 1)
    if text.startswith("uint"):
        bits = int(text[4:] or "256")
        if bits % 8 or not 8 <= bits <= 256:
            raise ValueError(f"bad ABI type {text!r}")
        return _Type(text, _uint_decoder(bits), False, 1)
    if text.startswith("bytes"):
        size = int(text[5:])
        if not 1 <= size <= 32:
            raise ValueError(f"bad ABI type {text!r}")
        return _Type(text, _fixed_bytes_decoder(size), False, 1)
    raise ValueError(f"unsupported ABI type {text!r}")


class ArgsDecoder:
    """Decodes a method's argument list (the calldata after the 4-byte selector)."""

    __slots__ = ("_decode", "types")

    def __init__(self, types: tuple[str, ...]) -> None:
        self.types = types
        self._decode = parse_type("(" + ",".join(types) + ")").decode

    def decode(self, data: Buffer, start: int = 4) -> tuple[Any, ...]:
        """Decodes the arguments encoded in ``data[start:]`` (pointers are relative to ``start``).

        Raises AbiDecodeError when the data does not decode; never anything else for any input bytes.
        """
        try:
            return self._decode(data, start, len(data))
        except AbiDecodeError:
            raise
        except (IndexError, ValueError, OverflowError, MemoryError) as exc:  # defensive: never leak others
            raise AbiDecodeError(f"undecodable arguments: {exc}") from None
