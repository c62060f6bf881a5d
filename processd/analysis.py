"""Seam between processd's storage path and its decoding/ranking logic.

``analyze`` turns one envelope into its features and ranked opportunities. The storage path calls it for
every accepted envelope; the decoding registry, feature extraction and searcher behind it live in
``processd.decoding``, ``processd.features`` and ``processd.searcher``. It never raises on any calldata.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from common.pb.v1 import events_pb2, tx_pb2
from processd.decoding import Decoder
from processd.decoding.methods import DecoderFactory
from processd.decoding.model import OTHER, WRAPPED_NATIVE, DecodedCall
from processd.decoding.registry import Registry
from processd.features import NATIVE_PROTOCOL, build_features
from processd.searcher import DEFAULT_MIN_SCORE, Searcher, is_rankable

#: What batch preparation needs of an analysis: (serialized TxFeatures, category, protocol, decoded,
#: opportunities). Opportunities carry chain_id and tx_hash; seq_id is set by the writer.
EncodedAnalysis = tuple[bytes, int, str, bool, list[events_pb2.Opportunity]]


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
        call: DecodedCall | None = None
        if data:
            call = self.decoder.decode(data, to, value, envelope.sender)
            if call is not None:
                protocol = self.registry.label(chain_id, to, call.family) if to else ""
            else:
                protocol = self.registry.any_label(chain_id, to) if to else ""
        elif to:
            protocol = NATIVE_PROTOCOL
            contract = self.registry.contract(chain_id, to)
            if contract is not None and WRAPPED_NATIVE in contract.labels:
                # Plain value sent to WETH/WMATIC/...: the fallback function deposits it.
                protocol = contract.labels[WRAPPED_NATIVE]
                call = DecodedCall("deposit", OTHER, WRAPPED_NATIVE, token_out=to, amount_in=value,
                                   recipient=envelope.sender)
        else:
            protocol = ""  # contract creation
        features = build_features(envelope, call, protocol, data)
        if call is None or not call.swap_count or not is_rankable(call):
            return Analysis(features)
        tip = int.from_bytes(features.priority_fee, "big")
        return Analysis(features, self.searcher.rank(chain_id, envelope.hash, call, protocol, value, tip))


    def analyze_encoded(self, envelope: tx_pb2.TxEnvelope) -> EncodedAnalysis:
        """:meth:`analyze` with the features serialized (what the event log stores)."""
        return encode_analysis(self.analyze(envelope))


def encode_analysis(analysis: Analysis) -> EncodedAnalysis:
    """The :data:`EncodedAnalysis` of an :class:`Analysis`."""
    f = analysis.features
    return f.SerializeToString(), f.category, f.protocol, f.decoded, analysis.opportunities


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
