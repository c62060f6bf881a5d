"""Test and benchmark inputs: the bundled real mainnet calls as TxEnvelopes."""

from __future__ import annotations

from common.pb.v1 import tx_pb2
from common.testing.fixtures import MainnetCall, load_mainnet_calls

#: Gas price used for fixture calls that do not record one (pre-receipt data), wei.
DEFAULT_GAS_PRICE_WEI = 30 * 10**9


def _u256(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def envelope_from_call(call: MainnetCall, chain_id: int = 1) -> tx_pb2.TxEnvelope:
    """The envelope ingestd would produce for ``call`` replayed as a legacy transaction (gas price = the
    price the call paid on mainnet, as common.testing.replay sends it)."""
    env = tx_pb2.TxEnvelope()
    env.chain_id = chain_id
    env.hash = bytes.fromhex(call.tx_hash[2:])
    env.sender = bytes.fromhex(call.sender[2:])
    if call.to:
        env.to = bytes.fromhex(call.to[2:])
    env.value = _u256(call.value)
    env.gas_price = _u256(call.effective_gas_price or DEFAULT_GAS_PRICE_WEI)
    env.gas = call.gas
    env.input = bytes.fromhex(call.input[2:])
    return env


def fixture_envelopes(chain_id: int = 1) -> list[tx_pb2.TxEnvelope]:
    """Every bundled mainnet call as an envelope of ``chain_id``, in fixture order."""
    return [envelope_from_call(c, chain_id) for c in load_mainnet_calls()]
