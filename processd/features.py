"""TxFeatures from an envelope and its DecodedCall (see docs/decoding.md for every field's meaning)."""

from __future__ import annotations

from common.pb.v1 import events_pb2, tx_pb2
from processd.decoding.model import OTHER, TRANSFER, DecodedCall

NATIVE_PROTOCOL = "native"


def u256(value: int) -> bytes:
    """Minimal big-endian bytes of a non-negative int (0 -> empty), the contract's uint256 encoding."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def build_features(envelope: tx_pb2.TxEnvelope, call: DecodedCall | None, protocol: str,
                   data: bytes) -> events_pb2.TxFeatures:
    """The TxFeatures of one transaction whose calldata is ``data`` (``envelope.input``, read once).

    ``call`` is None for an unknown selector (category other, method empty) and for empty calldata (a plain
    value transfer: category transfer, protocol "native", recipient = to, amount_in = value; or a contract
    creation: category other). Fields are set one by one and only when non-empty: markedly cheaper than
    keyword construction with upb protobuf.
    """
    f = events_pb2.TxFeatures()
    if protocol:
        f.protocol = protocol
    value = envelope.value
    if value:
        f.value = value
    gas_price = envelope.gas_price
    f.gas_price = envelope.max_fee_per_gas or gas_price
    f.priority_fee = envelope.max_priority_fee_per_gas or gas_price
    size = len(data)
    f.calldata_len = size
    if call is None:
        if size == 0 and envelope.to:
            f.category = TRANSFER
            f.recipient = envelope.to
            if value:
                f.amount_in = value
        else:
            f.category = OTHER
            f.selector = data[:4]
        return f
    if size:
        f.selector = data[:4]
    f.category = call.category  # type: ignore[assignment]
    f.method = call.method
    if not call.decoded:
        f.decode_error = call.error
        return f
    f.decoded = True
    if call.token_in is not None:
        f.token_in = call.token_in
    if call.token_out is not None:
        f.token_out = call.token_out
    if call.amount_in is not None:
        f.amount_in = u256(call.amount_in)
    if call.amount_out_min is not None:
        f.amount_out_min = u256(call.amount_out_min)
    if call.amount_in_max is not None:
        f.amount_in_max = u256(call.amount_in_max)
    if call.amount_out is not None:
        f.amount_out = u256(call.amount_out)
    if call.path:
        f.path.extend(call.path)
    if call.fee_tiers:
        f.fee_tiers.extend(call.fee_tiers)
    if call.recipient is not None:
        f.recipient = call.recipient
    if call.deadline:
        f.deadline = call.deadline
    return f
