"""Reference builders of what processd stores, written with the protobuf library: the slow, obvious way.

processd has one implementation of each stage, the hand encoders of ``processd/wire/`` (features,
opportunities, event values). These are what the byte-equality tests (``test_prepare_equality.py``,
``test_features.py``) compare them with: messages built field by field with ``events_pb2`` and serialized by
the library, so a wrong tag, order, length or presence in a hand encoder shows up as different bytes, and an
odd value is accepted or refused exactly as protobuf does it. Used only by tests.
"""

from __future__ import annotations

from common.pb.v1 import events_pb2, tx_pb2
from processd.analysis.analyzer import Analysis, Analyzer
from processd.analysis.decoding.model import OTHER, TRANSFER, DecodedCall
from processd.analysis.features import envelope_fees, u256
from processd.analysis.searcher import Searcher, ValuationInput, is_rankable
from processd.analysis.valuation.state import Reserves


def reference_features(call: DecodedCall | None, protocol: str, data: bytes, to: bytes, value: bytes,
                       gas_price: bytes, priority_fee: bytes) -> events_pb2.TxFeatures:
    """The TxFeatures message of one transaction (arguments as ``processd.wire.features.encode_features``).

    Fields are set one by one and only when non-empty; the amounts and the deadline have presence: set whenever
    the call has them, 0 included.
    """
    f = events_pb2.TxFeatures()
    if protocol:
        f.protocol = protocol
    if value:
        f.value = value
    f.gas_price = gas_price
    f.priority_fee = priority_fee
    size = len(data)
    f.calldata_len = size
    if call is None:
        if size == 0 and to:
            f.category = TRANSFER
            f.recipient = to
            f.amount_in = value  # a known amount, 0 included (a zero-value self-send cancels a nonce)
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
    if call.deadline is not None:
        f.deadline = call.deadline
    for name, type_, text in call.args:  # user ABI calls (processd --abi-dir)
        f.args.add(name=name, type=type_, value=text)
    f.args_truncated = call.args_truncated
    return f


def reference_rank(searcher: Searcher, chain_id: int, tx_hash: bytes, call: DecodedCall, protocol: str,
                   value: int, tip_wei: int, valuation: ValuationInput = None) -> list[events_pb2.Opportunity]:
    """The Opportunity messages of a decoded swap (the searcher's scores and valuations, encoded by the library)."""
    ranked = searcher.score_kinds(chain_id, call, protocol, value, tip_wei, valuation)
    if ranked is None:
        return []
    a, scored = ranked
    out = []
    for score, kind, reasons, v in scored:
        opp = events_pb2.Opportunity()
        opp.chain_id = chain_id
        opp.tx_hash = tx_hash
        opp.protocol = protocol
        if call.token_in is not None:
            opp.token_in = call.token_in
        if call.token_out is not None:
            opp.token_out = call.token_out
        if a.notional_wei is not None:  # presence: a known notional of 0 is set (empty), an unknown one is not
            opp.notional_wei = u256(a.notional_wei)
        opp.slippage_bps = a.slippage_bps
        opp.kind = kind  # type: ignore[assignment]
        opp.score = score
        opp.reasons.extend(reasons)
        opp.valued = v.valued
        opp.valuation_note = v.note
        for name in ("net_profit_wei", "sandwich_profit_wei", "frontrun_amount_in", "backrun_profit_wei",
                     "gas_cost_wei", "backrun_amount_in"):
            amount = getattr(v, name)
            if amount is not None:
                setattr(opp, name, u256(amount))
        opp.price_impact_bps = v.price_impact_bps
        opp.profit_token = v.profit_token
        opp.state_block_number = v.state_block_number
        out.append(opp)
    return out


def reference_analyze(analyzer: Analyzer, envelope: tx_pb2.TxEnvelope, reserves: Reserves | None = None) -> Analysis:
    """``analyzer``'s analysis of ``envelope`` with every message built by the library (decoding, scores and
    valuation on ``reserves`` are the analyzer's own)."""
    data = envelope.input
    to = envelope.to
    chain_id = envelope.chain_id
    value = int.from_bytes(envelope.value, "big")
    call, protocol = analyzer.decode_call(chain_id, to, value, envelope.sender, data)
    bid, tip = envelope_fees(envelope)
    features = reference_features(call, protocol, data, to, envelope.value, bid, tip)
    if call is None or not call.swap_count or not is_rankable(call):
        return Analysis(features)
    tip_wei = int.from_bytes(tip, "big")
    valuation = analyzer.valuation(chain_id, to, call, value, int.from_bytes(bid, "big"), reserves)
    return Analysis(features, reference_rank(analyzer.searcher, chain_id, envelope.hash, call, protocol, value,
                                             tip_wei, valuation))
