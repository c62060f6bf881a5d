"""A batch's events, encoded and appended as columns: the per-transaction step of batch preparation.

:func:`batch_encoder` returns the ``add`` and ``build`` of one batch. ``add(chain_id, hash_prefix, tx_key,
tx_hash, first_seen_ns, source_id, envelope, analysis)`` takes a valid transaction: ``hash_prefix`` is
:func:`processd.wire.encoding.hash_prefix` of its chain (its hash is 32 bytes), ``tx_key`` its ``tx_hash`` index
key, ``envelope`` its serialized ``TxEnvelope`` and ``analysis`` its ``EncodedAnalysis``. It does in place what
the obvious composition does: the shared header (:func:`processd.wire.encoding.event_header`), one value per
event (:func:`processd.wire.encoding.event_value` of the envelope, the features and each opportunity) and the
column appends of :meth:`processd.wire.columns.ColumnsBuilder.add`; ``tests/processd/test_prepare_equality.py``
compares the columns with that composition, byte for byte.

Why one closure: ``add`` runs for every transaction processd stores, so it is one call per transaction over
locals, cells and module globals (no attribute lookups), with per-batch caches: the header's tail
(:func:`processd.wire.encoding.header_tail`) is encoded once per source (nearly always one per batch), and of
a nanosecond first-seen time, whose varint is 4 groups of 14 bits and the top, the part above bit 28 (268 ms),
shared by nearly every transaction of a batch, is encoded once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from processd.wire import encoding
from processd.wire.columns import BatchColumns, FeatureKey

#: (serialized TxFeatures, category, protocol, decoded, (score, serialized Opportunity) pairs): the fields of
#: ``processd.analysis.analyzer.EncodedAnalysis`` (wire does not import analysis).
Encoded = tuple[bytes, int, str, bool, tuple[tuple[int, bytes], ...]]
#: ``add(chain_id, hash_prefix, tx_key, tx_hash, first_seen_ns, source_id, envelope, analysis)``.
AddFn = Callable[[int, bytes, bytes, bytes, int, str, bytes, Encoded], None]
#: ``build(reasons, analysis_errors)``: the columns of the transactions added so far.
BuildFn = Callable[[bytes, int], BatchColumns]


# Module-level names for the closure below (a global load costs what a local one does).
_join = b"".join
_TABLE = encoding.VARINT_TABLE
_CONT14 = encoding.CONT14_TABLE
_LENGTHS_MAX = encoding.BODY_LENGTHS_MAX
_body_lengths = encoding.body_lengths
_varint = encoding.varint
_header_tail = encoding.header_tail
_FIRST_SEEN_TAG = encoding.FIRST_SEEN_TAG
_SEEN_PREFIX, _DECODED_PREFIX, _OPP_PREFIX = encoding.SEEN_PREFIX, encoding.DECODED_PREFIX, encoding.OPP_PREFIX
_SEEN_TAG, _DECODED_TAG, _OPP_TAG = encoding.SEEN_BODY_TAG, encoding.DECODED_BODY_TAG, encoding.OPP_BODY_TAG
_SEEN_DECODED = bytes((encoding.KIND_SEEN, encoding.KIND_DECODED))
_OPP_KIND = bytes((encoding.KIND_OPP,))


def batch_encoder(received_ns: int) -> tuple[AddFn, BuildFn]:
    """``(add, build)`` of one batch received at ``received_ns``: ``add(chain_id, hash_prefix, tx_key, tx_hash,
    first_seen_ns, source_id, envelope, analysis)`` appends a valid transaction, ``build(reasons,
    analysis_errors)`` returns the columns (module doc)."""
    lengths = encoding.body_lengths_table()
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

    def add(chain_id: int, hash_prefix: bytes, tx_key: bytes, tx_hash: bytes, first_seen: int, source_id: str,
            envelope: bytes, analysis: Encoded) -> None:
        nonlocal source, tail
        if source_id != source:
            source = source_id
            cached = tails.get(source_id)
            tail = tails[source_id] = _header_tail(received_ns, source_id) if cached is None else cached
        # The header: encoding.header, with encoding.varint inlined for nanosecond times.
        if 72057594037927936 <= first_seen < 1180591620717411303424:  # 2**56 <= first_seen < 2**70
            high = first_seen >> 28
            high_bytes = highs.get(high)
            if high_bytes is None:
                high_bytes = highs[high] = _CONT14[high & 0x3FFF] + _CONT14[high >> 14 & 0x3FFF] + _TABLE[high >> 28]
            header = _join((hash_prefix, tx_hash, _FIRST_SEEN_TAG, _CONT14[first_seen & 0x3FFF],
                            _CONT14[first_seen >> 14 & 0x3FFF], high_bytes, tail))
        elif first_seen:
            header = _join((hash_prefix, tx_hash, _FIRST_SEEN_TAG, _varint(first_seen), tail))
        else:
            header = _join((hash_prefix, tx_hash, tail))
        features, category, protocol, decoded, opportunities = analysis
        offset = len(values)
        n = len(envelope)
        m = len(features)
        values.append(_join((_SEEN_PREFIX, header, _SEEN_TAG, lengths[n] if n < _LENGTHS_MAX else _body_lengths(n),
                             envelope)))
        values.append(_join((_DECODED_PREFIX, header, _DECODED_TAG,
                             lengths[m] if m < _LENGTHS_MAX else _body_lengths(m), features)))
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
                values.append(_join((_OPP_PREFIX, header, _OPP_TAG,
                                     lengths[n] if n < _LENGTHS_MAX else _body_lengths(n), opp)))
                opps.append((offset, chain_id, score))
                offset += 1
            tx_kinds.append(_SEEN_DECODED + _OPP_KIND * len(opportunities))
            opp_count[chain_id] = opp_count.get(chain_id, 0) + len(opportunities)
        else:
            tx_kinds.append(_SEEN_DECODED)
        last_event[chain_id] = len(values) - 1

    def build(reasons: bytes, analysis_errors: int) -> BatchColumns:
        counts = Counter(fkey_of)  # transactions per feature key, counted once per batch (a C loop)
        tally = {fkey: counts[fid] for fid, fkey in enumerate(fkeys)}
        return BatchColumns(reasons, analysis_errors, chain_col, tx_keys, seen_at, tx_kinds, values, opps, fkeys,
                            fkey_of, tally, last_event, opp_count)

    return add, build
