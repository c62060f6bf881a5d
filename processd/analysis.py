"""Seam between processd's storage path and its decoding/ranking logic.

``analyze`` turns one envelope into its features and ranked opportunities. The storage path calls it for
every accepted envelope; the decoding registry, feature extraction and searcher behind it live in
``processd.decoding``, ``processd.features`` and ``processd.searcher``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common.pb.v1 import events_pb2, tx_pb2


@dataclass(slots=True)
class Analysis:
    """What processd derives from one transaction."""

    features: events_pb2.TxFeatures
    opportunities: list[events_pb2.Opportunity] = field(default_factory=list)


def analyze(envelope: tx_pb2.TxEnvelope) -> Analysis:
    """Features (always present; category OTHER when the call is not recognised) and opportunities."""
    features = events_pb2.TxFeatures(
        category=events_pb2.TX_CATEGORY_OTHER,
        selector=envelope.input[:4],
        value=envelope.value,
        gas_price=envelope.max_fee_per_gas or envelope.gas_price,
        priority_fee=envelope.max_priority_fee_per_gas or envelope.gas_price,
        calldata_len=len(envelope.input),
    )
    return Analysis(features=features)
