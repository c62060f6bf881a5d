"""Seam between processd's storage path and its decoding/ranking logic.

``analyze`` turns one envelope into its features and ranked opportunities. The storage path calls it for
every accepted envelope; the decoding registry, feature extraction and searcher behind it live in
``processd.analysis.decoding``, ``processd.analysis.features`` and ``processd.analysis.searcher``. It never
raises on any calldata.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from common.pb.v1 import events_pb2, tx_pb2
from processd.analysis.decoding import Decoder
from processd.analysis.decoding.methods import DecoderFactory
from processd.analysis.decoding.model import OTHER, TRANSFER, WRAPPED_NATIVE, DecodedCall
from processd.analysis.decoding.registry import Registry
from processd.analysis.features import (
    NATIVE_PROTOCOL,
    bid_and_tip,
    build_features,
    build_features_from,
    encode_features,
    fee_fields,
)
from processd.analysis.searcher import DEFAULT_MIN_SCORE, Searcher, is_rankable

#: What batch preparation needs of an analysis: (serialized TxFeatures, category, protocol, decoded,
#: (score, serialized opportunity) pairs). Opportunities carry chain_id and tx_hash; seq_id is their event's key
#: (set when read).
EncodedAnalysis = tuple[bytes, int, str, bool, tuple[tuple[int, bytes], ...]]


@dataclass(slots=True)
class Analysis:
    """What processd derives from one transaction."""

    features: events_pb2.TxFeatures
    opportunities: list[events_pb2.Opportunity] = field(default_factory=list)


#: An analysis function (``Analyzer.analyze`` or a test's replacement).
AnalyzeFn = Callable[[tx_pb2.TxEnvelope], Analysis]


class Analyzer:
    """Decoder + registry + searcher, built once and reused for every envelope (read-only, thread-safe)."""

    __slots__ = ("decoder", "registry", "searcher")

    def __init__(self, registry: Registry | None = None, min_score: int = DEFAULT_MIN_SCORE,
                 factory: DecoderFactory | None = None) -> None:
        self.registry = registry or Registry()
        self.decoder = Decoder(factory) if factory is not None else Decoder()
        self.searcher = Searcher(self.registry, min_score)

    def analyze(self, envelope: tx_pb2.TxEnvelope) -> Analysis:
        """Features (always present; category OTHER when the call is not recognised) and opportunities."""
        data = envelope.input  # read once: every protobuf field read materialises a new object
        to = envelope.to
        chain_id = envelope.chain_id
        value = int.from_bytes(envelope.value, "big")
        call, protocol = self.decode_call(chain_id, to, value, envelope.sender, data)
        features = build_features(envelope, call, protocol, data)
        if call is None or not call.swap_count or not is_rankable(call):
            return Analysis(features)
        tip = int.from_bytes(features.priority_fee, "big")
        return Analysis(features, self.searcher.rank(chain_id, envelope.hash, call, protocol, value, tip))

    def decode_call(self, chain_id: int, to: bytes, value: int, sender: bytes,
               data: bytes) -> tuple[DecodedCall | None, str]:
        """(decoded call or None, protocol label) of calldata ``data`` sent to ``to`` with ``value`` wei."""
        if data:
            call = self.decoder.decode(data, to, value, sender)
            if call is not None:
                return call, self.registry.label(chain_id, to, call.family) if to else ""
            return None, self.registry.any_label(chain_id, to) if to else ""
        if to:
            contract = self.registry.contract(chain_id, to)
            if contract is not None and WRAPPED_NATIVE in contract.labels:
                # Plain value sent to WETH/WMATIC/...: the fallback function deposits it.
                return DecodedCall("deposit", OTHER, WRAPPED_NATIVE, token_out=to, amount_in=value,
                                   recipient=sender), contract.labels[WRAPPED_NATIVE]
            return None, NATIVE_PROTOCOL
        return None, ""  # contract creation

    def analyze_encoded(self, envelope: tx_pb2.TxEnvelope) -> EncodedAnalysis:
        """:meth:`analyze` with the features and opportunities serialized (what the event log stores)."""
        return self.analyze_fields(envelope.chain_id, envelope.hash, envelope.sender, envelope.to, envelope.value,
                                   *fee_fields(envelope), envelope.input)

    def analyze_fields(self, chain_id: int, tx_hash: bytes, sender: bytes, to: bytes, value: bytes,
                       gas_price: bytes, max_fee_per_gas: bytes | None, max_priority_fee_per_gas: bytes | None,
                       data: bytes) -> EncodedAnalysis:
        """:meth:`analyze_encoded` of the envelope with these fields (batch preparation has read them already);
        an EIP-1559 fee field the envelope does not have is None (see :func:`processd.analysis.features.bid_and_tip`).

        Equal, byte for byte, to serializing what :meth:`analyze` returns (``tests/processd/
        test_prepare_equality.py``), but without building protobuf messages: the features and opportunities
        are encoded by hand (``encode_features``, ``rank_encoded``). Should a hand encoder refuse a value, the
        message path encodes it, so even errors are those of :meth:`analyze`. It does not call :meth:`analyze`:
        a subclass that overrides ``analyze`` must override ``analyze_encoded`` too.
        """
        value_wei = int.from_bytes(value, "big") if value else 0
        if data:  # decode_call's first case, inlined (most transactions carry calldata)
            call = self.decoder.decode(data, to, value_wei, sender)
            registry = self.registry
            if call is not None:
                protocol = registry.label(chain_id, to, call.family) if to else ""
            else:
                protocol = registry.any_label(chain_id, to) if to else ""
        else:
            call, protocol = self.decode_call(chain_id, to, value_wei, sender, data)
        bid, tip = bid_and_tip(gas_price, max_fee_per_gas, max_priority_fee_per_gas)
        try:
            features = encode_features(call, protocol, data, to, value, bid, tip)
        except Exception:
            features = build_features_from(call, protocol, data, to, value, bid, tip).SerializeToString()
        if call is None:
            return features, (TRANSFER if not data and to else OTHER), protocol, False, ()
        if not call.swap_count or not is_rankable(call):
            return features, call.category, protocol, bool(call.decoded), ()
        tip_wei = int.from_bytes(tip, "big")
        searcher = self.searcher
        try:
            opportunities = searcher.rank_encoded(chain_id, tx_hash, call, protocol, value_wei, tip_wei)
        except Exception:
            opportunities = tuple((o.score, o.SerializeToString())
                                  for o in searcher.rank(chain_id, tx_hash, call, protocol, value_wei, tip_wei))
        return features, call.category, protocol, True, opportunities


def encode_analysis(analysis: Analysis) -> EncodedAnalysis:
    """The :data:`EncodedAnalysis` of an :class:`Analysis`."""
    f = analysis.features
    return (f.SerializeToString(), f.category, f.protocol, f.decoded,
            tuple((o.score, o.SerializeToString()) for o in analysis.opportunities))


_default: Analyzer | None = None


def default_analyzer() -> Analyzer:
    """The process-wide Analyzer, built on first use (no work at import time)."""
    global _default
    if _default is None:
        _default = Analyzer()
    return _default


def analyze(envelope: tx_pb2.TxEnvelope) -> Analysis:
    """Features (always present; category OTHER when the call is not recognised) and opportunities."""
    return (_default or default_analyzer()).analyze(envelope)
