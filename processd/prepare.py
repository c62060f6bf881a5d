"""Batch preparation: all the work on an ingest batch that does not depend on the event log's state.

Validation, decoding, features, ranking and the encoding of every event value except its seq id are pure
functions of the batch bytes, so they can run anywhere: in the writer's thread, or in analysis worker
processes (``processd.analysis_pool``) while the single writer commits the previous group. What is left for
the writer per transaction is the dedup check, seq assignment (:func:`processd.encoding.with_seq`) and the
LMDB puts.

A prepared batch is plain tuples of bytes, ints and strings (cheap to pickle between processes):

``PreparedBatch = (reasons, txs, analysis_errors)``
    ``reasons``: one byte per envelope of the batch, its ``REJECT_REASON_*`` (0 = valid).
    ``txs``: one :data:`PreparedTx` per valid envelope, in batch order.
    ``analysis_errors``: transactions whose analysis raised (stored undecoded, see :func:`fallback_analysis`).

``PreparedTx = (index, chain_id, tx_key, seen_rest, decoded_rest, features, fkey, opps)``
    ``index``: position of the envelope in the batch; ``tx_key``: its ``tx_hash`` index key;
    ``seen_rest`` / ``decoded_rest``: :func:`processd.encoding.event_rest` of its TX_SEEN and TX_DECODED
    events; ``features``: serialized ``TxFeatures``; ``fkey``: (chain, category, protocol, decoded), the
    feature-count key; ``opps``: None, or (event header, serialized opportunities without their seq_id).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from common.pb.v1 import events_pb2, ingest_pb2, tx_pb2
from processd import encoding
from processd.analysis import EncodedAnalysis
from processd.eventlog import U64
from processd.validation import validate

log = logging.getLogger(__name__)

PreparedTx = tuple[int, int, bytes, bytes, bytes, bytes, tuple[int, int, str, bool],
                   "tuple[bytes, tuple[bytes, ...]] | None"]
PreparedBatch = tuple[bytes, list[PreparedTx], int]
AnalyzeEncoded = Callable[[tx_pb2.TxEnvelope], EncodedAnalysis]

KIND_SEEN = encoding.KIND_SEEN
KIND_DECODED = encoding.KIND_DECODED


def fallback_analysis(envelope: tx_pb2.TxEnvelope, exc: Exception) -> EncodedAnalysis:
    """Features of a transaction whose analysis raised: category OTHER, the error in decode_error."""
    log.warning("analysis failed for 0x%s: %r", envelope.hash.hex(), exc)
    data = envelope.input
    features = events_pb2.TxFeatures(
        category=events_pb2.TX_CATEGORY_OTHER, selector=data[:4], value=envelope.value,
        gas_price=envelope.max_fee_per_gas or envelope.gas_price,
        priority_fee=envelope.max_priority_fee_per_gas or envelope.gas_price,
        calldata_len=len(data), decode_error=f"analysis failed: {exc!r}"[:200])
    return features.SerializeToString(), features.category, "", False, []


def prepare_batch(raw: bytes, received_ns: int, analyze: AnalyzeEncoded, chain_ids: frozenset[int],
                  max_input_bytes: int) -> PreparedBatch:
    """Validates, analyses and encodes the envelopes of one serialized ``TxBatch`` (see the module doc)."""
    envelopes = ingest_pb2.TxBatch.FromString(raw).envelopes
    reasons = bytearray(len(envelopes))
    txs: list[PreparedTx] = []
    append = txs.append
    errors = 0
    event_rest = encoding.event_rest
    make_header = encoding.header
    u64 = U64.pack
    # received time and source id are nearly always shared by a whole batch: encoded once per source.
    tails: dict[str, bytes] = {}
    chain_fields: dict[int, bytes] = {}
    for index, envelope in enumerate(envelopes):
        reason = validate(envelope, chain_ids, max_input_bytes)
        if reason:
            reasons[index] = reason
            continue
        try:
            features, category, protocol, decoded, opportunities = analyze(envelope)
        except Exception as exc:  # analysis must never stop the log; store the tx undecoded
            features, category, protocol, decoded, opportunities = fallback_analysis(envelope, exc)
            errors += 1
        chain_id = envelope.chain_id
        tx_hash = envelope.hash
        source_id = envelope.source_id
        tail = tails.get(source_id)
        if tail is None:
            tail = tails[source_id] = encoding.header_tail(received_ns, source_id)
        chain_field = chain_fields.get(chain_id)
        if chain_field is None:
            chain_field = chain_fields[chain_id] = encoding.chain_field(chain_id)
        header = make_header(chain_field, tx_hash, envelope.first_seen_unix_ns, tail)
        opps = (header, tuple(o.SerializeToString() for o in opportunities)) if opportunities else None
        append((index, chain_id, u64(chain_id) + tx_hash, event_rest(KIND_SEEN, header, envelope.SerializeToString()),
                event_rest(KIND_DECODED, header, features), features, (chain_id, category, protocol, decoded), opps))
    return bytes(reasons), txs, errors
