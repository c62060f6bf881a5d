"""SubscribeMany's tagging (processd.views.many, the hub's streams), without a server: derandomized properties.

Stored batches are real ``prepare_batch`` output (``_filter_data``). For random filters added to a stream under
random ids (equal filters under several ids, several streams sharing filters, SubscribeEvents subscribers beside
them), each commit published through the hub gives each stream messages whose events are, in seq order, exactly
the events some of its filters take, each the Event the log decodes, and each carrying exactly the ids of the
filters whose plain predicate (``TxFilter.matches`` one transaction at a time, ``_filter_data.predicate``) takes
it, which are also the ones the parsed-event reference (``_filter_reference.tx_matches``) takes.
"""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from common.pb.v1 import query_pb2
from processd.storage.layout import decode_event
from processd.views import many
from processd.views.filter_index import FilterIndex
from processd.views.filter_model import compile_filter
from processd.views.many import ManyLimitError, ManyRequestError
from processd.views.subscribers import CUT_SLOW_STREAM, ManyStream, Subscriber
from processd.views.subscriptions import SubscriptionHub
from processd.wire.encoding import varint, varints
from processd.wire.tags import tag
from tests.processd._filter_data import EventFilter, commit_of, predicate, stored
from tests.processd._filter_reference import OPP, SEEN, group_transactions, tx_matches
from tests.processd.test_filter_index_property import event_filters


def _drain(stream: ManyStream, head: int, max_events: int = 500, max_bytes: int = 1 << 20,
           ) -> list[query_pb2.SubscribeManyResponse]:
    out = []
    while stream.buffer:
        out.append(query_pb2.SubscribeManyResponse.FromString(stream.take_message(max_events, max_bytes, head)))
    return out


def _expected(filters: dict[int, EventFilter]) -> dict[int, list[int]]:
    """seq -> ids of the filters whose predicate takes the event (the ones no filter takes are absent)."""
    events = stored()[1]
    by_seq: dict[int, list[int]] = defaultdict(list)
    transactions = group_transactions(events)
    for fid, f in sorted(filters.items()):
        chosen = predicate(f)
        reference = [e.seq_id for tx in transactions if tx_matches(f, tx) for e in tx
                     if not f.kinds or e.kind in f.kinds]
        assert chosen == reference, f
        for seq in chosen:
            by_seq[seq].append(fid)
    return dict(sorted(by_seq.items()))


@settings(max_examples=40, deadline=None)
@given(st.lists(event_filters(), min_size=1, max_size=10), st.data())
def test_the_ids_on_each_event_are_the_filters_that_take_it(filters: list[EventFilter], data: st.DataObject) -> None:
    hub = SubscriptionHub(16, 1_000_000)
    hub.message_events = 37  # a commit's matches are cut into messages of at most this many events
    streams = [ManyStream(hub.max_buffered, 64) for _ in range(2)]
    for stream in streams:
        hub.add_stream(stream)
    wanted: list[dict[int, EventFilter]] = [{}, {}]
    ids = data.draw(st.lists(st.integers(0, 2**32 - 1), min_size=2 * len(filters), max_size=2 * len(filters),
                             unique=True))
    for i, f in enumerate(filters):
        # Each filter on the first stream; about half also on the second (groups shared across streams).
        targets = [0, 1] if data.draw(st.booleans()) else [0]
        for s in targets:
            fid = ids[2 * i + s]
            wanted[s][fid] = f
            hub.change_filters(streams[s], [(fid, compile_filter(f))], [])
    # A SubscribeEvents subscriber of the first filter shares its group.
    plain = Subscriber(0, frozenset(), hub.max_buffered, compile_filter(filters[0]))
    hub.register(plain)
    for stream, mine in zip(streams, wanted, strict=True):
        acks = _drain(stream, 0)
        assert [a.id for m in acks for a in m.added] == list(mine)
        assert all(a.from_seq_id == 1 for m in acks for a in m.added)
    for k in range(len(stored()[0])):
        hub.publish_commit(commit_of(k))
    events = {e.seq_id: e for e in stored()[1]}
    for stream, mine in zip(streams, wanted, strict=True):
        messages = _drain(stream, hub.last_seq, max_events=37)
        got = [(e.event.seq_id, sorted(e.filter_ids)) for m in messages for e in m.events]
        assert got == list(_expected(mine).items())
        for m in messages:
            for e in m.events:
                assert e.event == events[e.event.seq_id]
            assert len(m.events) <= 37 and m.last_seq_id == hub.last_seq
    assert plain.buffered_events == len(predicate(filters[0]))


def test_the_tags_shared_with_subscribe_events_are_the_same() -> None:
    """A framed SubscribeEvents entry is a ManyEvent's ``event`` field, and ``last_seq_id`` is one field in both
    responses (``Subscriber.take_message`` appends the head to either)."""
    assert tag(query_pb2.ManyEvent, "event") == tag(query_pb2.SubscribeEventsResponse, "events")
    assert tag(query_pb2.SubscribeManyResponse, "last_seq_id") == tag(query_pb2.SubscribeEventsResponse,
                                                                      "last_seq_id")


def _hub_with(stream: ManyStream) -> SubscriptionHub:
    hub = SubscriptionHub(16, stream.max_buffered)
    hub.add_stream(stream)
    return hub


def test_an_add_applies_from_the_next_commit_and_a_remove_stops_it() -> None:
    chain = stored()[0][0][1].chain[0]
    stream = ManyStream(100_000, 8)
    hub = _hub_with(stream)
    hub.publish_commit(commit_of(0))  # before any filter: nothing for the stream
    assert not stream.buffer
    hub.change_filters(stream, [(5, compile_filter(EventFilter(chain_ids=[chain])))], [])
    hub.publish_commit(commit_of(1))
    hub.change_filters(stream, [], [5, 6])  # 6 was never added: acknowledged all the same
    hub.publish_commit(commit_of(2))
    messages = _drain(stream, hub.last_seq)
    first1 = stored()[0][1][0]
    assert [(a.id, a.from_seq_id) for a in messages[0].added] == [(5, first1)]
    events = [e for m in messages for e in m.events]
    assert events and all(list(e.filter_ids) == [5] for e in events)
    assert [e.event.seq_id for e in events] == [s for s in predicate(EventFilter(chain_ids=[chain]))
                                                if first1 <= s < stored()[0][2][0]]
    # Waiting entries are joined into one message (repeated fields concatenate): the seqs say what is whose.
    assert [list(m.removed) for m in messages] == [[5, 6]]
    assert all(e.event.seq_id < stored()[0][2][0] for e in events)
    assert hub.stream_filters == 0 and not hub.groups


def test_bad_adds_raise_and_what_came_before_stays_acknowledged() -> None:
    stream = ManyStream(100_000, 2)
    hub = _hub_with(stream)
    f = compile_filter(EventFilter(chain_ids=[1]))
    try:
        hub.change_filters(stream, [(1, f), (1, f)], [])
    except ManyRequestError as exc:
        assert "filter id 1 is already in use" in str(exc)
    else:
        raise AssertionError("a reused id was accepted")
    try:
        hub.change_filters(stream, [(2, f), (3, f)], [])
    except ManyLimitError as exc:
        assert "limit of 2 filters" in str(exc)
    else:
        raise AssertionError("the bound was passed")
    assert [a.id for m in _drain(stream, 0) for a in m.added] == [1, 2]
    assert sorted(stream.filters) == [1, 2] and hub.stream_filters == 2
    hub.drop_stream(stream)
    assert hub.stream_filters == 0 and not hub.groups and not hub.streams


def test_a_stream_whose_buffer_would_overflow_is_cut_and_unregistered() -> None:
    cuts: list[str] = []
    stream = ManyStream(50, 8)
    hub = SubscriptionHub(16, 50, on_cut=cuts.append)
    hub.add_stream(stream)
    hub.change_filters(stream, [(1, compile_filter(EventFilter()))], [])  # takes everything: > 50 events
    hub.publish_commit(commit_of(0))
    assert cuts == [CUT_SLOW_STREAM] and stream.cut_reason == CUT_SLOW_STREAM
    assert not stream.buffer and not hub.streams and not hub.groups and hub.stream_filters == 0


def test_a_commit_past_the_message_bounds_is_cut_into_messages() -> None:
    stream = ManyStream(100_000, 8)
    hub = _hub_with(stream)
    hub.message_events, hub.message_bytes = 1000, 4096
    hub.change_filters(stream, [(9, compile_filter(EventFilter()))], [])
    _drain(stream, 0)
    commit = commit_of(0)
    hub.publish_commit(commit)
    entries = list(stream.buffer)
    # Each within the bytes (and last_seq_id's few), or one event bigger than them on its own.
    assert len(entries) > 1 and all(len(message) <= 4096 + 16 or n == 1 for message, n, _ in entries)
    messages = _drain(stream, commit.last_seq, max_bytes=1)  # one buffered entry per message
    assert [e.event.seq_id for m in messages for e in m.events] == list(range(commit.first_seq, commit.last_seq + 1))


def test_heartbeat_and_ack_entries_parse() -> None:
    assert query_pb2.SubscribeManyResponse.FromString(many.heartbeat(77)).last_seq_id == 77
    message, count, last = many.ack_entry([(3, 10)], [4], 9)
    parsed = query_pb2.SubscribeManyResponse.FromString(message)
    assert (count, last, parsed.last_seq_id) == (1, 9, 9)
    assert [(a.id, a.from_seq_id) for a in parsed.added] == [(3, 10)] and list(parsed.removed) == [4]


def test_tagged_values_parse_as_the_logs_events_with_their_ids() -> None:
    """``tag_values`` frames a stored value whole (its kind byte read as ``Event.kind``) with its seq field and an
    opportunity's seq: each entry parses as a ManyEvent whose event is the one the log decodes and whose ids are
    the field's; past the tables (a value over 16 KiB, the ids of 9,000 filters) it falls back to framing apart and
    gives the same."""
    first, cols = stored()[0][1]
    values = list(cols.values)
    seq_fields = many._seq_fields(first, cols)
    packed = [b"".join(map(varint, range(i % 3, i % 3 + 1 + i % 5))) for i in range(len(values))]
    fields = [many.ids_field(p) if i % 4 else b"" for i, p in enumerate(packed)]
    # The big value: a TX_SEEN with a long calldata (past the 2**14 tables), same seq.
    seen = decode_event(values[0], first)
    seen.ClearField("seq_id")
    seen.tx_seen.tx.input = bytes(20_000)
    big = [bytes([SEEN]) + seen.SerializeToString(), *values[1:]]
    wide = [many.ids_field(b"".join(map(varint, range(9000))))] * len(values)  # 17.9 KB of ids
    for vals, ids in ((values, fields), (big, fields), (values, wide)):
        entries = many.tag_values(vals, seq_fields, ids)
        expected = [(first + i, decode_event(v, first + i), f)
                    for i, (v, f) in enumerate(zip(vals, ids, strict=True)) if f]
        parsed = query_pb2.SubscribeManyResponse.FromString(b"".join(entries)).events
        assert len(parsed) == len(expected)
        for got, (seq, event, f) in zip(parsed, expected, strict=True):
            assert got.event == event and got.event.seq_id == seq
            assert list(got.filter_ids) == list(query_pb2.ManyEvent.FromString(f).filter_ids)


def test_varints_with_a_prefix_equal_varint_one_by_one() -> None:
    for first, count in ((1, 10), (16_000, 1000), (16_384, 16_384), (100_000, 50_000), ((1 << 28) - 100, 300),
                         (5, 0), (16_383, 2)):
        for prefix in (b"", b"\x08"):
            assert varints(first, count, prefix) == [prefix + varint(i) for i in range(first, first + count)]


def test_subscribers_joining_and_leaving_a_streams_group_after_the_index_is_built() -> None:
    """A group of one stream's filter, taken at once through the column tables, gains a SubscribeEvents
    subscriber and a second stream's id after the index was built (no rebuild: the anchors sort their groups
    again), then loses the first stream's id: each gets, commit by commit, exactly what the filter takes."""
    f = EventFilter(senders=sorted({e.tx_seen.tx.sender for e in stored()[1] if e.kind == SEEN})[:40])
    compiled = compile_filter(f)
    chosen = set(predicate(f))
    a, b = ManyStream(1_000_000, 8), ManyStream(1_000_000, 8)
    hub = SubscriptionHub(16, 1_000_000)
    for stream in (a, b):
        hub.add_stream(stream)
    hub.change_filters(a, [(1, compiled)], [])
    hub.publish_commit(commit_of(0))
    index = hub.index()
    plain = Subscriber(0, frozenset(), hub.max_buffered, compiled)
    hub.register(plain)
    hub.change_filters(b, [(7, compiled)], [])
    hub.publish_commit(commit_of(1))
    hub.change_filters(a, [], [1])
    hub.publish_commit(commit_of(2))
    assert hub.index() is index  # the same index all along
    bounds = [stored()[0][k][0] for k in range(3)] + [hub.last_seq + 1]

    def taken(k: int) -> list[int]:
        return sorted(s for s in chosen if bounds[k] <= s < bounds[k + 1])

    got_a = [(e.event.seq_id, list(e.filter_ids)) for m in _drain(a, hub.last_seq) for e in m.events]
    got_b = [(e.event.seq_id, list(e.filter_ids)) for m in _drain(b, hub.last_seq) for e in m.events]
    assert got_a == [(s, [1]) for s in taken(0) + taken(1)]
    assert got_b == [(s, [7]) for s in taken(1) + taken(2)]
    assert plain.buffered_events == len(taken(1)) + len(taken(2))


@settings(max_examples=30, deadline=None)
@given(st.lists(event_filters(), min_size=2, max_size=8), st.data())
def test_an_index_kept_up_to_date_equals_one_built_afresh(filters: list[EventFilter], data: st.DataObject) -> None:
    """Filters added and removed between commits (SubscribeMany ids, in requests of several; SubscribeEvents
    subscribers registered and gone; a stream's end) change only the index entries of their anchor values
    (``FilterIndex.update``): commit by commit, every stream and subscriber gets what it gets from a hub whose
    index is built afresh from its groups before each commit (ids compared as sets: their order is free)."""
    hubs = [SubscriptionHub(16, 1_000_000) for _ in range(2)]
    streams = [[ManyStream(1_000_000, 64) for _ in range(2)] for _ in hubs]
    subs: list[list[Subscriber]] = [[], []]
    for hub, mine in zip(hubs, streams, strict=True):
        for stream in mine:
            hub.add_stream(stream)
    held: list[set[int]] = [set(), set()]  # per stream, its ids in use (the same in both hubs)
    for k in range(len(stored()[0])):
        for _ in range(data.draw(st.integers(1, 3))):
            s = data.draw(st.integers(0, 1))
            remove = sorted(data.draw(st.sets(st.sampled_from(sorted(held[s]))))) if held[s] else []
            add = [(fid, data.draw(st.integers(0, len(filters) - 1)))
                   for fid in data.draw(st.sets(st.integers(0, 20), max_size=4)) if fid not in held[s] - set(remove)]
            held[s] = (held[s] - set(remove)) | {fid for fid, _ in add}
            register = data.draw(st.integers(-1, len(filters) - 1))
            for h, hub in enumerate(hubs):
                hub.change_filters(streams[h][s], [(fid, compile_filter(filters[i])) for fid, i in add], remove)
                if register >= 0:
                    subs[h].append(Subscriber(0, frozenset(), hub.max_buffered, compile_filter(filters[register])))
                    hub.register(subs[h][-1])
                elif subs[h]:
                    hub.unregister(subs[h].pop(0))
        hubs[1]._index = FilterIndex(hubs[1].groups.values())  # afresh: the reference
        for hub in hubs:
            hub.publish_commit(commit_of(k))
    if data.draw(st.booleans()):
        for h, hub in enumerate(hubs):
            hub.drop_stream(streams[h][0])
        assert not hubs[0].index().groups.keys() - set(hubs[0].groups.values())

    def received(stream: ManyStream, head: int) -> list[tuple[int, list[int]]]:
        return [(e.event.seq_id, sorted(e.filter_ids)) for m in _drain(stream, head) for e in m.events]

    for kept, fresh in zip(streams[0], streams[1], strict=True):
        assert received(kept, hubs[0].last_seq) == received(fresh, hubs[1].last_seq)
    assert [s.buffered_events for s in subs[0]] == [s.buffered_events for s in subs[1]]
    index = hubs[0].index()
    assert set(index.groups) == set(hubs[0].groups.values())
    # No entry outlives its groups (the index stays as large as the filters in use).
    assert all(anchor.groups for _, _, table in index.fields for anchor in table.values())
    assert all(table for column in index.columns for table in column.streams.values())


def test_a_stream_taking_few_of_a_batch_gets_them_framed_apart_with_their_opportunities() -> None:
    """A stream whose filters take few of a batch's transactions gets only theirs framed (``many._few``):
    each event, an opportunity's included, is the one the log decodes (its ``seq_id``, an opportunity's own
    ``opportunity.seq_id``), with the filter's id."""
    events = stored()[1]
    with_opps = [tx for tx in group_transactions(events) if any(e.kind == OPP for e in tx)]
    senders = sorted({tx[0].tx_seen.tx.sender for tx in with_opps[:2]})
    f = EventFilter(senders=senders)
    first, cols = stored()[0][0]
    chosen = [s for s in predicate(f) if s < first + len(cols.values)]
    taken = {s for s in chosen if decode_event(cols.values[s - first], s).kind == SEEN}
    assert chosen and len(taken) * many._FEW_RATIO < len(cols.seen_at)  # few: the path under test
    assert any(decode_event(cols.values[s - first], s).kind == OPP for s in chosen)
    stream = ManyStream(1_000_000, 8)
    hub = _hub_with(stream)
    hub.change_filters(stream, [(4, compile_filter(f))], [])
    hub.publish_commit(commit_of(0))
    got = [e for m in _drain(stream, hub.last_seq) for e in m.events]
    by_seq = {e.seq_id: e for e in events}
    assert [e.event.seq_id for e in got] == chosen
    assert all(e.event == by_seq[e.event.seq_id] and list(e.filter_ids) == [4] for e in got)
