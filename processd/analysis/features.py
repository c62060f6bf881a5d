"""TxFeatures from an envelope and its DecodedCall (see docs/decoding.md for every field's meaning).

What goes into the record is decided here and in :class:`processd.analysis.analyzer.Analyzer` (the bid and
tip, the protocol label, the decoded call); how it is written is :func:`processd.wire.features.encode_features`,
the one encoder of ``TxFeatures`` (by hand, for speed).
"""

from __future__ import annotations

from common.pb.v1 import tx_pb2

NATIVE_PROTOCOL = "native"


def u256(value: int) -> bytes:
    """Minimal big-endian bytes of a non-negative int (0 -> empty), the contract's uint256 encoding."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def fee_fields(envelope: tx_pb2.TxEnvelope) -> tuple[bytes, bytes | None, bytes | None]:
    """(gas price, max fee per gas, max priority fee per gas) of an envelope, an EIP-1559 field it does not have
    as None (presence, not emptiness: a set, empty field is a fee of 0)."""
    return (envelope.gas_price,
            envelope.max_fee_per_gas if envelope.HasField("max_fee_per_gas") else None,
            envelope.max_priority_fee_per_gas if envelope.HasField("max_priority_fee_per_gas") else None)


def envelope_fees(envelope: tx_pb2.TxEnvelope) -> tuple[bytes, bytes]:
    """(bid, tip) of an envelope for :func:`processd.wire.features.encode_features` (see :func:`bid_and_tip`)."""
    return bid_and_tip(*fee_fields(envelope))


def bid_and_tip(gas_price: bytes, max_fee: bytes | None, max_tip: bytes | None) -> tuple[bytes, bytes]:
    """The bid (max fee per gas, else the legacy gas price) and the tip (max priority fee per gas, else the
    legacy gas price) of a transaction; ``None`` is a fee field the envelope does not have.

    Presence decides, not emptiness: an EIP-1559 tip of 0 (common on mainnet) is a tip of 0, not "use the
    gas price", which would make a zero-tip transaction look like the most urgent one.
    """
    return (gas_price if max_fee is None else max_fee), (gas_price if max_tip is None else max_tip)
