"""Stored batches for the filter tests without a server: real ``prepare_batch`` output at consecutive seqs,
their events parsed, the filter field values that occur in them, and the plain predicate (``TxFilter.matches``
one transaction at a time, no index)."""

from __future__ import annotations

import functools

from common.pb.v1 import events_pb2, ingest_pb2, query_pb2
from common.testing.synth import synthetic_envelopes
from processd.analysis.analyzer import Analyzer
from processd.analysis.prepare import prepare_batch
from processd.storage.layout import decode_event
from processd.storage.records import CommitResult
from processd.views.filter_model import compile_filter
from processd.views.tx_view import TxView
from processd.wire.columns import BatchColumns
from tests.processd._filter_reference import DECODED, SEEN

EventFilter = query_pb2.EventFilter
CHAINS = (1, 56, 137)
FIRST = 16_370  # seqs cross 2**14: the frames' varints change length inside the log


@functools.cache
def stored() -> tuple[list[tuple[int, BatchColumns]], list[events_pb2.Event]]:
    """Three prepared batches at consecutive seqs, and all their events parsed (with seq_id)."""
    out: list[tuple[int, BatchColumns]] = []
    events: list[events_pb2.Event] = []
    seq = FIRST
    for k in range(3):
        raw = ingest_pb2.TxBatch(session_id="p", batch_seq=k + 1, envelopes=synthetic_envelopes(
            120, seed=300 + k, chain_ids=CHAINS)).SerializeToString()
        cols = prepare_batch(raw, 1_700_000_000_000_000_000, Analyzer(), frozenset(), 128 * 1024)
        out.append((seq, cols))
        events.extend(decode_event(v, seq + i) for i, v in enumerate(cols.values))
        seq += len(cols.values)
    return out, events


@functools.cache
def occurring() -> dict[str, list[object]]:
    """Values of each filter field that occur in the stored transactions (sorted, so draws are stable)."""
    _, events = stored()
    seen = [e.tx_seen.tx for e in events if e.kind == SEEN]
    decoded = [e.tx_decoded.features for e in events if e.kind == DECODED]
    values: dict[str, set[object]] = {
        "senders": {t.sender for t in seen}, "to": {t.to for t in seen if t.to},
        "selectors": {t.input[:4] for t in seen if len(t.input) >= 4},
        "methods": {f.method for f in decoded if f.method}, "protocols": {f.protocol for f in decoded if f.protocol},
        "tokens_in": {f.token_in for f in decoded if f.token_in},
        "tokens_out": {f.token_out for f in decoded if f.token_out},
    }
    return {name: sorted(v, key=repr) for name, v in values.items()}


def predicate(f: EventFilter) -> list[int]:
    """What ``TxFilter.matches`` picks, one transaction at a time (no index)."""
    compiled = compile_filter(f)
    out: list[int] = []
    for first, cols in stored()[0]:
        n = len(cols.seen_at)
        for t in range(n):
            start = cols.seen_at[t]
            end = cols.seen_at[t + 1] if t + 1 < n else len(cols.values)
            if compiled.matches(TxView(cols.chain[t], cols.values, start, end, first + start)):
                out.extend(first + o for o in range(start, end)
                           if not compiled.kinds or cols.values[o][0] in compiled.kinds)
    return out


def commit_of(k: int) -> CommitResult:
    """The commit of the ``k``-th stored batch alone, as the writer reports it to the subscription hub."""
    first, cols = stored()[0][k]
    result = CommitResult(last_seq=first + len(cols.values) - 1, committed_ns=0, batches=1, envelopes=0,
                          first_seq=first)
    result.add_stored(first, cols)
    return result
