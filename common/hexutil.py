"""Conversions between JSON-RPC hex strings, raw bytes and the contract's big-endian uint256 bytes.

The protobuf contract carries hashes and addresses as raw bytes and uint256 quantities as minimal
big-endian bytes (empty = 0); JSON (REST, JSON-RPC) carries them as 0x hex or decimal strings.
"""

from __future__ import annotations

from common.errors import MempulseError

UINT256_MAX = 2**256 - 1


class HexError(MempulseError, ValueError):
    """A hex string is malformed or has the wrong length."""


def hex_to_bytes(text: str, length: int | None = None) -> bytes:
    """Decodes ``0x``-prefixed hex into bytes, checking the byte length when ``length`` is given."""
    if not isinstance(text, str) or not text.startswith(("0x", "0X")):
        raise HexError(f"expected 0x-prefixed hex, got {text!r:.80}")
    try:
        raw = bytes.fromhex(text[2:])
    except ValueError:
        raise HexError(f"invalid hex {text!r:.80}") from None
    if length is not None and len(raw) != length:
        raise HexError(f"expected {length} bytes, got {len(raw)}")
    return raw


def quantity_to_int(text: str) -> int:
    """Parses a JSON-RPC hex quantity (``0x1a``) into an int."""
    if not isinstance(text, str) or not text.startswith(("0x", "0X")) or len(text) < 3:
        raise HexError(f"expected a 0x hex quantity, got {text!r:.80}")
    try:
        return int(text, 16)
    except ValueError:
        raise HexError(f"invalid hex quantity {text!r:.80}") from None


def int_to_uint256(value: int) -> bytes:
    """Minimal big-endian bytes of a uint256 (0 -> empty bytes)."""
    if value < 0 or value > UINT256_MAX:
        raise HexError(f"{value} is outside uint256")
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def uint256_to_int(raw: bytes) -> int:
    """Int value of big-endian uint256 bytes (empty = 0)."""
    return int.from_bytes(raw, "big")


def quantity_to_uint256(text: str) -> bytes:
    """JSON-RPC hex quantity straight to minimal big-endian uint256 bytes."""
    return int_to_uint256(quantity_to_int(text))


def uint256_to_decimal(raw: bytes) -> str:
    """Decimal string of big-endian uint256 bytes, the REST representation of amounts."""
    return str(int.from_bytes(raw, "big"))
