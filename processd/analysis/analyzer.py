"""Seam between processd's storage path and its decoding/ranking logic.

:meth:`Analyzer.analyze_fields` turns one transaction into its serialized features and ranked opportunities
(an :class:`EncodedAnalysis`): batch preparation calls it for every accepted envelope. ``analyze`` is the same
analysis parsed into protobuf messages, for callers that want messages. The decoding registry, the feature
inputs and the searcher behind it live in ``processd.analysis.decoding``, ``processd.analysis.features`` and
``processd.analysis.searcher``; the encoders in ``processd.wire``. It never raises on any calldata.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from common.pb.v1 import events_pb2, tx_pb2
from processd.analysis.decoding import Decoder
from processd.analysis.decoding.methods import DecoderFactory
from processd.analysis.decoding.model import OTHER, TRANSFER, UNISWAP_V2, WRAPPED_NATIVE, DecodedCall
from processd.analysis.decoding.registry import Registry
from processd.analysis.features import NATIVE_PROTOCOL, fee_fields
from processd.analysis.searcher import DEFAULT_MIN_SCORE, Searcher, ValuationInput, is_rankable
from processd.analysis.valuation.pairs import Venues
from processd.analysis.valuation.state import Reserves
from processd.analysis.valuation.value import Valuer
from processd.wire.features import encode_features

if TYPE_CHECKING:
    from processd.analysis.decoding.userabi import UserAbis
    from processd.analysis.decoding.userargs import UserDecoder


class EncodedAnalysis(NamedTuple):
    """One transaction's analysis as the event log stores it (what batch preparation needs of it)."""

    #: Serialized ``TxFeatures``.
    features: bytes
    #: Its category and protocol label, and whether the call decoded (the feature-count key).
    category: int
    protocol: str
    decoded: bool
    #: (score, serialized ``Opportunity``) pairs, highest score first. Opportunities carry chain_id and
    #: tx_hash; seq_id is their event's key (set when read).
    opportunities: tuple[tuple[int, bytes], ...]


#: Why a Uniswap V3-style swap has no valuation.
_V3_NOT_VALUED = "not valued: Uniswap V3-style swaps are not valued yet"

#: ``EncodedAnalysis(...)`` without the Python-level ``__new__`` namedtuple adds (it runs for every transaction).
_new = tuple.__new__


@dataclass(slots=True)
class Analysis:
    """What processd derives from one transaction, as protobuf messages (for callers that want messages)."""

    features: events_pb2.TxFeatures
    opportunities: list[events_pb2.Opportunity] = field(default_factory=list)


#: An analysis function (``Analyzer.analyze`` or a test's replacement).
AnalyzeFn = Callable[[tx_pb2.TxEnvelope], Analysis]


class Analyzer:
    """Decoder + registry + searcher (+ the user ABIs of ``processd --abi-dir``), built once and reused for every
    envelope (read-only, thread-safe)."""

    __slots__ = ("decoder", "registry", "searcher", "user", "valuer")

    def __init__(self, registry: Registry | None = None, min_score: int = DEFAULT_MIN_SCORE,
                 factory: DecoderFactory | None = None, user_abis: UserAbis | None = None,
                 venues: Venues | None = None) -> None:
        self.registry = registry or Registry()
        #: Values V2 router swaps on the reserves a batch brings (the factories of ``venues``).
        self.valuer = Valuer(venues)
        self.decoder = Decoder(factory) if factory is not None else Decoder()
        self.searcher = Searcher(self.registry, min_score)
        self.user: UserDecoder | None = None
        if user_abis:
            # Imported only when there are user ABIs: it imports eth-abi, which a processd without --abi-dir
            # (and each of its worker processes) need not load.
            from processd.analysis.decoding.userargs import UserDecoder
            self.user = UserDecoder(user_abis)

    def analyze(self, envelope: tx_pb2.TxEnvelope) -> Analysis:
        """Features (always present; category OTHER when the call is not recognised) and opportunities, as
        messages: :meth:`analyze_encoded`, parsed."""
        encoded = self.analyze_encoded(envelope)
        return Analysis(events_pb2.TxFeatures.FromString(encoded.features),
                        [events_pb2.Opportunity.FromString(o) for _, o in encoded.opportunities])

    def decode_call(self, chain_id: int, to: bytes, value: int, sender: bytes,
               data: bytes) -> tuple[DecodedCall | None, str]:
        """(decoded call or None, protocol label) of calldata ``data`` sent to ``to`` with ``value`` wei."""
        if data and self.user is not None:
            return self.decode_with_user_abis(chain_id, to, value, sender, data)
        return self.decode_builtin(chain_id, to, value, sender, data)

    def decode_builtin(self, chain_id: int, to: bytes, value: int, sender: bytes,
                       data: bytes) -> tuple[DecodedCall | None, str]:
        """:meth:`decode_call` with the built-in decoders only."""
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

    def decode_with_user_abis(self, chain_id: int, to: bytes, value: int, sender: bytes,
                              data: bytes) -> tuple[DecodedCall | None, str]:
        """:meth:`decode_call` of calldata with the user ABIs loaded (``self.user``), in their precedence: an
        ABI scoped to ``to``, then the built-in decoders, then an unscoped ABI (why: the module doc of
        ``processd.analysis.decoding.userabi``). A user ABI call's protocol is its file's label."""
        user = self.user
        assert user is not None
        selector = bytes(data[:4])
        fn = user.abis.scoped_function(chain_id, to, selector) if to and len(data) >= 4 else None
        if fn is None:
            call, protocol = self.decode_builtin(chain_id, to, value, sender, data)
            if call is not None or len(data) < 4:
                return call, protocol
            fn = user.abis.unscoped_function(selector)
            if fn is None:
                return None, protocol
        return user.decode(fn, data), fn.label

    def analyze_encoded(self, envelope: tx_pb2.TxEnvelope) -> EncodedAnalysis:
        """The analysis of ``envelope`` serialized (what the event log stores): :meth:`analyze_fields` of its
        fields."""
        return self.analyze_fields(envelope.chain_id, envelope.hash, envelope.sender, envelope.to, envelope.value,
                                   *fee_fields(envelope), envelope.input)

    def analyze_fields(self, chain_id: int, tx_hash: bytes, sender: bytes, to: bytes, value: bytes,
                       gas_price: bytes, max_fee_per_gas: bytes | None, max_priority_fee_per_gas: bytes | None,
                       data: bytes, reserves: Reserves | None = None) -> EncodedAnalysis:
        """The one analysis of a transaction, from the envelope fields batch preparation has already read (each
        upb field read allocates); an EIP-1559 fee field the envelope does not have is None (see
        :func:`processd.analysis.features.bid_and_tip`). :meth:`analyze` and :meth:`analyze_encoded` wrap it:
        a subclass overrides this method.

        The features and opportunities are encoded by hand (:mod:`processd.wire.features`,
        :mod:`processd.wire.opportunities`); ``tests/processd/test_prepare_equality.py`` proves the bytes
        equal to messages built with the protobuf library, errors included.

        ``reserves``: the pool state the batch's swaps are valued on (None: no reserve source, heuristic scores).
        """
        value_wei = int.from_bytes(value, "big") if value else 0
        if data and self.user is not None:
            call, protocol = self.decode_with_user_abis(chain_id, to, value_wei, sender, data)
        elif data:  # decode_builtin's first case, inlined (most transactions carry calldata)
            call = self.decoder.decode(data, to, value_wei, sender)
            registry = self.registry
            if call is not None:
                protocol = registry.label(chain_id, to, call.family) if to else ""
            else:
                protocol = registry.any_label(chain_id, to) if to else ""
        else:
            call, protocol = self.decode_builtin(chain_id, to, value_wei, sender, data)
        # bid_and_tip, inlined (it runs for every transaction): presence decides, not emptiness.
        tip = gas_price if max_priority_fee_per_gas is None else max_priority_fee_per_gas
        features = encode_features(call, protocol, data, to, value,
                                   gas_price if max_fee_per_gas is None else max_fee_per_gas, tip)
        if call is None:
            return _new(EncodedAnalysis, (features, TRANSFER if not data and to else OTHER, protocol, False, ()))
        if not call.swap_count or not is_rankable(call):
            return _new(EncodedAnalysis, (features, call.category, protocol, bool(call.decoded), ()))
        # self.valuation, inline (a call less per swap)
        valuation: ValuationInput
        if reserves is None:
            valuation = None
        elif call.family != UNISWAP_V2:
            valuation = _V3_NOT_VALUED
        else:
            valuation = self.valuer.value(chain_id, to, call, value_wei, int.from_bytes(
                gas_price if max_fee_per_gas is None else max_fee_per_gas, "big"), reserves)
        opportunities = self.searcher.rank(chain_id, tx_hash, call, protocol, value_wei, int.from_bytes(tip, "big"),
                                           valuation)
        return _new(EncodedAnalysis, (features, call.category, protocol, True, opportunities))


    def valuation(self, chain_id: int, to: bytes, call: DecodedCall, value_wei: int, bid_wei: int,
                  reserves: Reserves | None) -> ValuationInput:
        """What the searcher ranks a swap with: its valuation on ``reserves``, why it has none, or None (no reserve
        source: the heuristic scores)."""
        if reserves is None:
            return None
        if call.family != UNISWAP_V2:
            return _V3_NOT_VALUED
        return self.valuer.value(chain_id, to, call, value_wei, bid_wei, reserves)


def encode_analysis(analysis: Analysis) -> EncodedAnalysis:
    """The :class:`EncodedAnalysis` of an :class:`Analysis`."""
    f = analysis.features
    return EncodedAnalysis(f.SerializeToString(), f.category, f.protocol, f.decoded,
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
