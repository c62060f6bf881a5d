"""The indexed matcher equals the plain filter predicate (derandomized property tests, no server).

Stored batches are real ``prepare_batch`` output (synthetic traffic over several chains, the real analyzer).
For random sets of filters, built from values that occur in the data and values that do not, every filter's
group gets from ``match_columns`` (the live path: anchors looked up on the batches' columns) and from
``match_raw`` (the catch-up path: log values, views) exactly the events that ``TxFilter.matches`` picks one
transaction at a time, and those are the events the parsed-event reference (``_filter_reference``) picks.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from common.pb.v1 import events_pb2, query_pb2
from processd.storage.layout import decode_event
from processd.views.filter_index import FilterGroup, FilterIndex
from processd.views.filter_match import match_columns, match_raw
from processd.views.filter_model import compile_filter
from processd.views.tx_view import frame_event
from tests.processd._filter_data import CHAINS, EventFilter, occurring, predicate, stored
from tests.processd._filter_reference import DECODED, OPP, SEEN, group_transactions, tx_matches

_ABSENT = {"senders": [b"\xee" * 20], "to": [b"\xef" * 20], "selectors": [b"\xde\xad\xbe\xef"],
           "methods": ["nothing"], "protocols": ["nowhere"], "tokens_in": [b"\xed" * 20], "tokens_out": [b"\xec" * 20]}


@st.composite
def event_filters(draw: st.DrawFn) -> EventFilter:
    """A filter of 1-3 fields, each a few values (mostly occurring ones, sometimes one that never occurs)."""
    f = EventFilter()
    fields = draw(st.lists(st.sampled_from([*_ABSENT, "addresses", "chain_ids", "kinds", "min_value", "min_score",
                                            "min_profit_wei"]), min_size=1, max_size=3, unique=True))
    pool = occurring()
    for name in fields:
        if name == "addresses":
            f.addresses.extend(draw(st.lists(st.sampled_from(pool["senders"] + pool["to"]), min_size=1, max_size=6)))
        elif name == "chain_ids":
            f.chain_ids.extend(draw(st.lists(st.sampled_from([*CHAINS, 10]), min_size=1, max_size=2)))
        elif name == "kinds":
            f.kinds.extend(draw(st.lists(st.sampled_from([SEEN, DECODED, OPP]), min_size=1, max_size=2)))
        elif name == "min_value":
            f.min_value = draw(st.integers(1, 10**18)).to_bytes(8, "big")
        elif name == "min_score":
            f.min_score = draw(st.integers(1, 100))
        elif name == "min_profit_wei":
            f.min_profit_wei = draw(st.integers(1, 10**16)).to_bytes(8, "big")
        else:
            choices = (pool[name] or _ABSENT[name]) + _ABSENT[name]
            getattr(f, name).extend(draw(st.lists(st.sampled_from(choices), min_size=1, max_size=8)))
    return f


def _seqs(group: FilterGroup) -> list[int]:
    """The seq_ids of the events a group took (its framed bytes, parsed as a SubscribeEvents message)."""
    frames = group.frames()
    message = query_pb2.SubscribeEventsResponse.FromString(b"".join(b for b, _ in frames))
    return [e.seq_id for e in message.events]


def _groups(filters: list[EventFilter]) -> list[FilterGroup]:
    by_filter: dict[object, FilterGroup] = {}
    for f in filters:
        compiled = compile_filter(f)
        by_filter.setdefault(compiled, FilterGroup(compiled))
    return list(by_filter.values())


@settings(max_examples=60, deadline=None)
@given(st.lists(event_filters(), min_size=1, max_size=12))
def test_indexed_matching_on_columns_equals_thepredicate(filters: list[EventFilter]) -> None:
    groups = _groups(filters)
    index = FilterIndex(groups)
    match_columns(index, stored()[0])
    for g in groups:
        f = next(f for f in filters if compile_filter(f) == g.filter)
        assert _seqs(g) == predicate(f), f


@settings(max_examples=30, deadline=None)
@given(st.lists(event_filters(), min_size=1, max_size=6))
def test_indexed_matching_on_log_values_equals_the_predicate_and_the_reference(filters: list[EventFilter]) -> None:
    _, events = stored()
    raw = [(e.seq_id, e.chain_id, e.kind, bytes([e.kind]) + _stored_body(e)) for e in events]
    groups = _groups(filters)
    index = FilterIndex(groups)
    match_raw(index, raw)
    transactions = group_transactions(events)
    for g in groups:
        f = next(f for f in filters if compile_filter(f) == g.filter)
        reference = [e.seq_id for tx in transactions if tx_matches(f, tx) for e in tx
                     if not f.kinds or e.kind in f.kinds]
        assert _seqs(g) == predicate(f) == reference, f


def _stored_body(event: events_pb2.Event) -> bytes:
    """An event as the log stores it after its kind byte: without seq_id (the key holds it)."""
    copy = events_pb2.Event()
    copy.CopyFrom(event)
    copy.ClearField("seq_id")
    if copy.kind == OPP:
        copy.opp_detected.opportunity.ClearField("seq_id")
    return copy.SerializeToString()


def test_the_generated_filters_match_some_transactions_and_miss_others() -> None:
    """The data has what the properties need: each field's occurring values match a part of the log."""
    pool = occurring()
    total = len([e for e in stored()[1] if e.kind == SEEN])
    for name in ("senders", "to", "selectors", "methods", "protocols", "tokens_in", "tokens_out"):
        assert pool[name], name
        taken = len([s for s in predicate(EventFilter(**{name: pool[name][:3]}, kinds=[SEEN]))])
        assert 0 < taken < total, name


def test_each_frame_parses_as_the_event_the_log_decodes() -> None:
    """frame_event's bytes (an opportunity's seq_id merged in after its stored fields, not re-serialized) parse as
    the very Event ``decode_event`` makes of the stored value, at seqs across varint lengths."""
    _, events = stored()
    opportunities = 0
    for first, cols in stored()[0]:
        for shift in (0, (1 << 28) - first - 5, (1 << 35) - first):
            for i, value in enumerate(cols.values):
                seq = first + shift + i
                parsed = query_pb2.SubscribeEventsResponse.FromString(frame_event(seq, value)).events
                assert list(parsed) == [decode_event(value, seq)]
                opportunities += value[0] == OPP
    assert opportunities == 3 * sum(e.kind == OPP for e in events)
