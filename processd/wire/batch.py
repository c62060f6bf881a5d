"""A prepared batch's events, encoded and laid out as columns: the second step of batch preparation.

:func:`processd.analysis.prepare.prepare_batch` validates and analyses the envelopes of a batch and hands the
accepted ones to :func:`encode_batch` as :data:`Accepted` tuples. For each, :func:`encode_batch` does in place
what the obvious composition does: the shared header (:func:`processd.wire.encoding.event_header`), one value
per event (:func:`processd.wire.encoding.event_value` of the envelope, the features and each opportunity) and the
column appends of :meth:`processd.wire.columns.ColumnsBuilder.add`; ``tests/processd/test_prepare_equality.py``
compares the columns with that composition, byte for byte.

Why one loop, written out: it runs for every transaction processd stores. The loop reads locals only (no
attribute lookups, no call per transaction), and keeps per-batch caches: the header's tail
(:func:`processd.wire.encoding.header_tail`) is encoded once per source (nearly always one per batch), and of a
nanosecond first-seen time, whose varint is 4 groups of 14 bits and the top, the part above bit 28 (268 ms),
shared by nearly every transaction of a batch, is encoded once.
"""

from __future__ import annotations

from collections import Counter
from operator import itemgetter

from processd.wire import encoding
from processd.wire.columns import BatchColumns, FeatureKey

#: (serialized TxFeatures, category, protocol, decoded, (score, serialized Opportunity) pairs): the fields of
#: ``processd.analysis.analyzer.EncodedAnalysis`` (wire does not import analysis).
Encoded = tuple[bytes, int, str, bool, tuple[tuple[int, bytes], ...]]
#: One accepted transaction: (chain id, :func:`processd.wire.encoding.hash_prefix` of its chain, its ``tx_hash``
#: index key, its hash (32 bytes), first-seen unix ns, source id, serialized ``TxEnvelope``, its analysis, and
#: its envelope's sender, to and input[:4], as the columns of the same names carry them, and its packed
#: :data:`processd.wire.columns.LIFE_ROW`).
Accepted = tuple[int, bytes, bytes, bytes, int, str, bytes, Encoded, bytes, bytes, bytes, bytes]

_SEEN_DECODED = bytes((encoding.KIND_SEEN, encoding.KIND_DECODED))
_OPP_KIND = bytes((encoding.KIND_OPP,))


def encode_batch(received_ns: int, accepted: list[Accepted], reasons: bytes, analysis_errors: int) -> BatchColumns:
    """The columns of a batch received at ``received_ns`` whose valid transactions are ``accepted`` (in order);
    ``reasons`` and ``analysis_errors`` are passed through (module doc)."""
    join = b"".join
    table, cont14, varint = encoding.VARINT_TABLE, encoding.CONT14_TABLE, encoding.varint
    lengths, lengths_max, body_lengths = encoding.body_lengths_table(), encoding.BODY_LENGTHS_MAX, encoding.body_lengths
    first_seen_tag = encoding.FIRST_SEEN_TAG
    seen_prefix, decoded_prefix, opp_prefix = encoding.SEEN_PREFIX, encoding.DECODED_PREFIX, encoding.OPP_PREFIX
    seen_tag, decoded_tag, opp_tag = encoding.SEEN_BODY_TAG, encoding.DECODED_BODY_TAG, encoding.OPP_BODY_TAG
    tails: dict[str, bytes] = {}
    highs: dict[int, bytes] = {}
    source: str | None = None
    tail = b""
    chain_col: list[int] = []
    tx_keys: list[bytes] = []
    seen_at: list[int] = []
    tx_kinds: list[bytes] = []
    values: list[bytes] = []
    opps: list[tuple[int, int, int]] = []
    fkeys: list[FeatureKey] = []
    fkey_ids: dict[FeatureKey, int] = {}
    fkey_of: list[int] = []
    last_event: dict[int, int] = {}
    opp_count: dict[int, int] = {}
    for chain_id, hash_prefix, tx_key, tx_hash, first_seen, source_id, envelope, analysis, _, _, _, _ in accepted:
        if source_id != source:
            source = source_id
            cached = tails.get(source_id)
            tail = tails[source_id] = encoding.header_tail(received_ns, source_id) if cached is None else cached
        # The header: encoding.header, with encoding.varint inlined for nanosecond times.
        if 72057594037927936 <= first_seen < 1180591620717411303424:  # 2**56 <= first_seen < 2**70
            high = first_seen >> 28
            high_bytes = highs.get(high)
            if high_bytes is None:
                high_bytes = highs[high] = cont14[high & 0x3FFF] + cont14[high >> 14 & 0x3FFF] + table[high >> 28]
            header = join((hash_prefix, tx_hash, first_seen_tag, cont14[first_seen & 0x3FFF],
                           cont14[first_seen >> 14 & 0x3FFF], high_bytes, tail))
        elif first_seen:
            header = join((hash_prefix, tx_hash, first_seen_tag, varint(first_seen), tail))
        else:
            header = join((hash_prefix, tx_hash, tail))
        features, category, protocol, decoded, opportunities = analysis
        offset = len(values)
        n = len(envelope)
        values.append(join((seen_prefix, header, seen_tag, lengths[n] if n < lengths_max else body_lengths(n),
                            envelope)))
        n = len(features)
        values.append(join((decoded_prefix, header, decoded_tag, lengths[n] if n < lengths_max else body_lengths(n),
                            features)))
        chain_col.append(chain_id)
        tx_keys.append(tx_key)
        seen_at.append(offset)
        fkey = (chain_id, category, protocol, decoded, source_id)
        fid = fkey_ids.get(fkey)
        if fid is None:
            fid = fkey_ids[fkey] = len(fkeys)
            fkeys.append(fkey)
        fkey_of.append(fid)
        if opportunities:
            offset += 2
            for score, opp in opportunities:
                n = len(opp)
                values.append(join((opp_prefix, header, opp_tag, lengths[n] if n < lengths_max else body_lengths(n),
                                    opp)))
                opps.append((offset, chain_id, score))
                offset += 1
            tx_kinds.append(_SEEN_DECODED + _OPP_KIND * len(opportunities))
            opp_count[chain_id] = opp_count.get(chain_id, 0) + len(opportunities)
        else:
            tx_kinds.append(_SEEN_DECODED)
        last_event[chain_id] = len(values) - 1
    # The filtered fan-out's columns and the lifecycle's rows (columns.py), taken from the accepted tuples at C level.
    sender_col, to_col, selector_col = (list(map(itemgetter(i), accepted)) for i in (8, 9, 10))
    life = join(map(itemgetter(11), accepted))
    counts = Counter(fkey_of)  # transactions per feature key, counted once per batch (a C loop)
    tally = {fkey: counts[fid] for fid, fkey in enumerate(fkeys)}
    return BatchColumns(reasons, analysis_errors, chain_col, tx_keys, seen_at, tx_kinds, values, opps, fkeys, fkey_of,
                        tally, last_event, opp_count, sender_col, to_col, selector_col, life)
