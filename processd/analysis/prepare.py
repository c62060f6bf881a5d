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

from common.pb.v1 import events_pb2, ingest_pb2, tx_pb2
from processd.analysis.analyzer import Analyzer, EncodedAnalysis
from processd.analysis.features import envelope_fees
from processd.analysis.validation import MAX_SOURCE_ID_CHARS, validate_fields, validate_typed
from processd.storage.eventlog import TX_KEY_HASH_BYTES, U64
from processd.wire import encoding
from processd.wire.columns import BatchColumns, FeatureKey

log = logging.getLogger(__name__)

AnalyzeEncoded = Callable[[tx_pb2.TxEnvelope], EncodedAnalysis]
AnalyzeFields = Callable[[int, bytes, bytes, bytes, bytes, bytes, bytes | None, bytes | None, bytes], EncodedAnalysis]


def fallback_analysis(envelope: tx_pb2.TxEnvelope, exc: Exception) -> EncodedAnalysis:
    """Features of a transaction whose analysis raised: category OTHER, the error in decode_error."""
    log.warning("analysis failed for 0x%s: %r", envelope.hash.hex(), exc)
    data = envelope.input
    bid, tip = envelope_fees(envelope)
    features = events_pb2.TxFeatures(
        category=events_pb2.TX_CATEGORY_OTHER, selector=data[:4], value=envelope.value, gas_price=bid,
        priority_fee=tip, calldata_len=len(data), decode_error=f"analysis failed: {exc!r}"[:200])
    return EncodedAnalysis(features.SerializeToString(), features.category, "", False, ())


def _fields_analyzer(analyze: AnalyzeEncoded) -> AnalyzeFields | None:
    """``Analyzer.analyze_fields`` when ``analyze`` is an ``Analyzer.analyze_encoded``: the same analysis from
    the envelope fields prepare_batch has already read for validation (each upb field read allocates)."""
    if getattr(analyze, "__func__", None) is Analyzer.analyze_encoded:
        analyzer: Analyzer = analyze.__self__  # type: ignore[attr-defined]
        return analyzer.analyze_fields
    return None


def prepare_batch(raw: bytes, received_ns: int, analyze: AnalyzeEncoded, chain_ids: frozenset[int],
                  max_input_bytes: int) -> BatchColumns:
    """Validates, analyses and encodes the envelopes of one serialized ``TxBatch`` into columns (module doc).

    This loop runs for every transaction processd stores, so it is written for speed: each envelope field is
    read once (every upb field read allocates) and shared by validation, analysis and the event header; the
    event encoding of :mod:`processd.wire.encoding` (``header``, ``event_value``) and the appends of
    :class:`processd.wire.columns.ColumnsBuilder` are inlined with per-batch caches.
    ``tests/processd/test_prepare_equality.py`` proves the output equal, byte for byte, to the obvious
    composition of those functions.
    """
    envelopes = ingest_pb2.TxBatch.FromString(raw).envelopes
    reasons = bytearray(len(envelopes))
    errors = 0
    analyze_fields = _fields_analyzer(analyze)
    join = b"".join
    table = encoding.VARINT_TABLE
    cont14 = encoding.CONT14_TABLE
    lengths = encoding.body_lengths_table()
    lengths_max = encoding.BODY_LENGTHS_MAX
    body_lengths = encoding.body_lengths
    varint = encoding.varint
    seen_prefix = encoding.SEEN_PREFIX
    decoded_prefix = encoding.DECODED_PREFIX
    opp_prefix = encoding.OPP_PREFIX
    seen_tag = encoding.SEEN_BODY_TAG
    decoded_tag = encoding.DECODED_BODY_TAG
    opp_tag = encoding.OPP_BODY_TAG
    seen_decoded = bytes((encoding.KIND_SEEN, encoding.KIND_DECODED))
    opp_kind = encoding.KIND_OPP
    max_source_chars = MAX_SOURCE_ID_CHARS
    key_hash_bytes = TX_KEY_HASH_BYTES
    # The columns (processd.wire.columns.ColumnsBuilder.add, inlined).
    chain_col: list[int] = []
    tx_keys: list[bytes] = []
    seen_at: list[int] = []
    tx_kinds: list[bytes] = []
    values: list[bytes] = []
    opps: list[tuple[int, int, int]] = []
    fkeys: list[FeatureKey] = []
    fkey_ids: dict[FeatureKey, int] = {}
    fkey_of: list[int] = []
    tally: dict[FeatureKey, int] = {}
    last_event: dict[int, int] = {}
    opp_count: dict[int, int] = {}
    offset = 0
    # Chains accepted in this batch -> (chain_id field + the hash field's tag and length, tx_hash key prefix).
    chains: dict[int, tuple[bytes, bytes]] = {}
    # received time and source id are nearly always shared by a whole batch: encoded once per source.
    tails: dict[str, bytes] = {}
    highs: dict[int, bytes] = {}
    source: str | None = None
    tail = b""
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
                chain = chains[chain_id] = (encoding.chain_field(chain_id) + b"\x22\x20", U64.pack(chain_id))
        # The signature and typed-transaction fields: read only here (validation.validate_typed).
        reason = validate_typed(envelope, max_input_bytes)
        if reason:
            reasons[index] = reason
            continue
        try:
            if analyze_fields is not None:
                # The EIP-1559 fee fields have presence: an empty one is a fee of 0 when set (HasField is read
                # only then, which is rare), and None when the transaction has no such field.
                features, category, protocol, decoded, opportunities = analyze_fields(
                    chain_id, tx_hash, sender, to, value, gas_price,
                    max_fee if max_fee or envelope.HasField("max_fee_per_gas") else None,
                    max_tip if max_tip or envelope.HasField("max_priority_fee_per_gas") else None, data)
            else:
                features, category, protocol, decoded, opportunities = analyze(envelope)
        except Exception as exc:  # analysis must never stop the log; store the tx undecoded
            features, category, protocol, decoded, opportunities = fallback_analysis(envelope, exc)
            errors += 1
        if source_id != source:
            source = source_id
            cached = tails.get(source_id)
            tail = tails[source_id] = encoding.header_tail(received_ns, source_id) if cached is None else cached
        # encoding.header (the hash is 32 bytes: validated), with encoding.varint inlined for nanosecond times.
        first_seen = envelope.first_seen_unix_ns
        if 72057594037927936 <= first_seen < 1180591620717411303424:  # 2**56 <= first_seen < 2**70
            # Its varint is 4 groups of 14 bits and the top: the part above bit 28 (268 ms) is shared by
            # nearly every transaction of a batch, so it is encoded once.
            high = first_seen >> 28
            high_bytes = highs.get(high)
            if high_bytes is None:
                high_bytes = highs[high] = cont14[high & 0x3FFF] + cont14[high >> 14 & 0x3FFF] + table[high >> 28]
            header = join((chain[0], tx_hash, b"\x28", cont14[first_seen & 0x3FFF], cont14[first_seen >> 14 & 0x3FFF],
                           high_bytes, tail))
        elif first_seen:
            header = join((chain[0], tx_hash, b"\x28", varint(first_seen), tail))
        else:
            header = join((chain[0], tx_hash, tail))
        # encoding.event_value of both events.
        body = envelope.SerializeToString()
        n = len(body)
        values.append(join((seen_prefix, header, seen_tag, lengths[n] if n < lengths_max else body_lengths(n), body)))
        n = len(features)
        values.append(join((decoded_prefix, header, decoded_tag, lengths[n] if n < lengths_max else body_lengths(n),
                            features)))
        chain_col.append(chain_id)
        tx_keys.append(chain[1] + tx_hash[:key_hash_bytes])  # eventlog.tx_key
        seen_at.append(offset)
        fkey = (chain_id, category, protocol, decoded, source_id)
        fid = fkey_ids.get(fkey)
        if fid is None:
            fid = fkey_ids[fkey] = len(fkeys)
            fkeys.append(fkey)
        fkey_of.append(fid)
        tally[fkey] = tally.get(fkey, 0) + 1
        offset += 2
        if opportunities:
            for score, opp in opportunities:
                n = len(opp)
                values.append(join((opp_prefix, header, opp_tag, lengths[n] if n < lengths_max else body_lengths(n),
                                    opp)))
                opps.append((offset, chain_id, score))
                offset += 1
            tx_kinds.append(seen_decoded + bytes((opp_kind,)) * len(opportunities))
            opp_count[chain_id] = opp_count.get(chain_id, 0) + len(opportunities)
        else:
            tx_kinds.append(seen_decoded)
        last_event[chain_id] = offset - 1
    return BatchColumns(bytes(reasons), errors, chain_col, tx_keys, seen_at, tx_kinds, values, opps, fkeys, fkey_of,
                        tally, last_event, opp_count)
