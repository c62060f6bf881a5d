"""Batch preparation: all the work on an ingest batch that does not depend on the event log's state.

Validation, decoding, features, ranking and the encoding of every event value are pure functions of the batch
bytes (values carry no seq: the seq is their key), so they can run anywhere: in the writer's thread, or in
analysis worker processes (``processd.analysis.pool``) while the single writer commits the previous group.
What is left for the writer is the dedup check, seq assignment and the LMDB puts.

A prepared batch is a :class:`processd.wire.columns.BatchColumns`: flat lists of bytes, ints and strings (cheap to
send between processes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from common.pb.v1 import ingest_pb2, tx_pb2
from processd.analysis.analyzer import Analyzer, EncodedAnalysis
from processd.analysis.decoding.model import OTHER, DecodedCall
from processd.analysis.features import envelope_fees
from processd.analysis.validation import MAX_SOURCE_ID_CHARS, validate_fields, validate_typed
from processd.analysis.valuation.state import Reserves
from processd.storage.layout import TX_KEY_HASH_BYTES, U64
from processd.wire.batch import Accepted, encode_batch
from processd.wire.columns import LIFE_ROW, BatchColumns
from processd.wire.encoding import hash_prefix
from processd.wire.features import encode_features

log = logging.getLogger(__name__)

#: An analysis of the whole envelope (a test's or ``ProcessdServer(analyze=...)``'s function, encoded).
AnalyzeEncoded = Callable[[tx_pb2.TxEnvelope], EncodedAnalysis]


def fallback_analysis(envelope: tx_pb2.TxEnvelope, exc: Exception) -> EncodedAnalysis:
    """Features of a transaction whose analysis raised: category OTHER, the error in decode_error."""
    log.warning("analysis failed for 0x%s: %r", envelope.hash.hex(), exc)
    # An undecoded call with the error: encode_features writes category, selector, the envelope's value and fees,
    # calldata length and decode_error, nothing else (the same encoder as every other record; it cannot raise
    # on a validated envelope).
    call = DecodedCall("", OTHER, "", decoded=False, error=f"analysis failed: {exc!r}"[:200])
    bid, tip = envelope_fees(envelope)
    features = encode_features(call, "", envelope.input, envelope.to, envelope.value, bid, tip)
    return EncodedAnalysis(features, OTHER, "", False, ())


def prepare_batch(raw: bytes, received_ns: int, analyzer: Analyzer | AnalyzeEncoded, chain_ids: frozenset[int],
                  max_input_bytes: int, reserves: Reserves | None = None) -> BatchColumns:
    """Validates, analyses and encodes the envelopes of one serialized ``TxBatch`` into columns (module doc).

    ``reserves`` is the pool state the batch's swaps are valued on (gathered by the pipeline before the analysis,
    so the result stays a function of the inputs); None when processd has no reserve source (heuristic scores).

    ``analyzer`` is an :class:`Analyzer`, whose ``analyze_fields`` gets the fields this loop has read already,
    or a function of the whole envelope (tests, ``ProcessdServer(analyze=...)``).

    This loop runs for every transaction processd stores, so it is written for speed: each envelope field is
    read once (every upb field read allocates) and shared by validation, analysis and the event header; the
    event header, the values and the column appends of the accepted transactions are the second step,
    :func:`processd.wire.batch.encode_batch`. ``tests/processd/test_prepare_equality.py`` proves the output
    equal, byte for byte, to the obvious composition of validation, protobuf messages and ``ColumnsBuilder``.
    """
    envelopes = ingest_pb2.TxBatch.FromString(raw).envelopes
    reasons = bytearray(len(envelopes))
    errors = 0
    analyze_fields = analyzer.analyze_fields if isinstance(analyzer, Analyzer) else None
    analyze_envelope = analyzer.analyze_encoded if isinstance(analyzer, Analyzer) else analyzer
    accepted: list[Accepted] = []
    max_source_chars = MAX_SOURCE_ID_CHARS
    key_hash_bytes = TX_KEY_HASH_BYTES
    # Chains accepted in this batch -> (what precedes the hash in their headers, tx_hash key prefix).
    chains: dict[int, tuple[bytes, bytes]] = {}
    pack_life = LIFE_ROW.pack
    for index, envelope in enumerate(envelopes):
        chain_id = envelope.chain_id
        tx_hash = envelope.hash
        sender = envelope.sender
        to = envelope.to
        value = envelope.value
        gas_price = envelope.gas_price
        max_fee = envelope.max_fee_per_gas
        max_tip = envelope.max_priority_fee_per_gas
        data = envelope.input
        source_id = envelope.source_id
        chain = chains.get(chain_id)
        # The inline test only says "certainly valid" (it implies validate_fields(...) == OK, for a chain that
        # passed it before); validate_fields gives every verdict otherwise.
        if chain is None or not (
            len(tx_hash) == 32 and len(sender) == 20 and (not to or len(to) == 20) and len(value) <= 32
            and len(gas_price) <= 32 and len(max_fee) <= 32 and len(max_tip) <= 32
            and len(data) <= max_input_bytes and len(source_id) <= max_source_chars
        ):
            reason = validate_fields(chain_id, tx_hash, sender, to, value, gas_price, max_fee, max_tip, data,
                                     source_id, chain_ids, max_input_bytes)
            if reason:
                reasons[index] = reason
                continue
            if chain is None:
                chain = chains[chain_id] = (hash_prefix(chain_id), U64.pack(chain_id))
        # The signature and typed-transaction fields: read only here (validation.validate_typed).
        reason = validate_typed(envelope, max_input_bytes)
        if reason:
            reasons[index] = reason
            continue
        try:
            if analyze_fields is not None:
                # The EIP-1559 fee fields have presence: an empty one is a fee of 0 when set (HasField is read
                # only then, which is rare), and None when the transaction has no such field.
                analysis = analyze_fields(
                    chain_id, tx_hash, sender, to, value, gas_price,
                    max_fee if max_fee or envelope.HasField("max_fee_per_gas") else None,
                    max_tip if max_tip or envelope.HasField("max_priority_fee_per_gas") else None, data, reserves)
            else:
                analysis = analyze_envelope(envelope)
        except Exception as exc:  # analysis must never stop the log; store the tx undecoded
            analysis = fallback_analysis(envelope, exc)
            errors += 1
        first_seen = envelope.first_seen_unix_ns
        accepted.append((chain_id, chain[0], chain[1] + tx_hash[:key_hash_bytes], tx_hash,  # eventlog.tx_key
                         first_seen, source_id, envelope.SerializeToString(), analysis, sender, to, data[:4],
                         # the lifecycle's fields (wire.columns.life_row, inline)
                         pack_life(tx_hash, sender, envelope.nonce, (max_fee or gas_price).rjust(32, b"\x00"),
                                   first_seen, to == sender and not data and not value.strip(b"\x00"))))
    return encode_batch(received_ns, accepted, bytes(reasons), errors)
