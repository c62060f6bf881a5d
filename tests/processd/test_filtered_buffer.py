"""The filtered fan-out's buffer (processd.views.subscriptions): a commit's matches are buffered as ready
SubscribeEventsResponse messages, sent as they are, joined when several are waiting (the last last_seq_id wins),
cut by the message bounds, and a subscriber whose buffer would pass its bound is cut off (slow_subscriber)."""

from __future__ import annotations

from common.pb.v1 import query_pb2
from processd.views.filter_model import compile_filter
from processd.views.subscribers import CUT_SLOW, Subscriber
from processd.views.subscriptions import SubscriptionHub
from tests.processd._filter_data import CHAINS, commit_of, predicate


def _hub(max_buffered: int = 100_000) -> tuple[SubscriptionHub, list[str], query_pb2.EventFilter]:
    cuts: list[str] = []
    return SubscriptionHub(16, max_buffered, on_cut=cuts.append), cuts, query_pb2.EventFilter(chain_ids=[CHAINS[0]])


def _parse(message: bytes) -> tuple[list[int], int]:
    parsed = query_pb2.SubscribeEventsResponse.FromString(message)
    return [e.seq_id for e in parsed.events], parsed.last_seq_id


def test_one_commit_is_one_message_sent_as_buffered() -> None:
    hub, _, f = _hub()
    subs = [Subscriber(0, frozenset(), hub.max_buffered, compile_filter(f)) for _ in range(2)]
    for sub in subs:
        hub.register(sub)
    commit = commit_of(0)
    hub.publish_commit(commit)
    messages = [sub.take_message(500, 1 << 20, commit.last_seq) for sub in subs]
    assert messages[0] is messages[1]  # one message per group and commit, shared by its subscribers
    seqs, last = _parse(messages[0])
    assert seqs == [s for s in predicate(f) if s <= commit.last_seq] and last == commit.last_seq
    # Sent later, after another commit: the head then is appended (the last occurrence wins).
    hub.publish_commit(commit_of(1))
    later = subs[0].take_message(500, 1 << 20, commit.last_seq + 10_000)
    assert _parse(later)[1] == commit.last_seq + 10_000 and not subs[0].buffer


def test_waiting_messages_are_joined_up_to_the_bounds() -> None:
    hub, _, f = _hub()
    sub = Subscriber(0, frozenset(), hub.max_buffered, compile_filter(f))
    hub.register(sub)
    commits = [commit_of(k) for k in range(3)]
    for commit in commits:
        hub.publish_commit(commit)
    expected = predicate(f)
    seqs, last = _parse(sub.take_message(10_000, 1 << 20, commits[-1].last_seq))
    assert seqs == expected and last == commits[-1].last_seq and sub.buffered_events == 0
    for commit in commits:
        hub.publish_commit(commit)
    pages = []
    while sub.buffer:  # at most one commit's message per page: each holds more than half the bound
        pages.append(_parse(sub.take_message(len(expected) // 2, 1 << 20, commits[-1].last_seq))[0])
    assert len(pages) == 3 and [s for p in pages for s in p] == expected


def test_a_buffer_past_its_bound_is_cut_off_with_the_reason() -> None:
    hub, cuts, f = _hub(max_buffered=len(predicate(query_pb2.EventFilter(chain_ids=[CHAINS[0]]))) // 2)
    sub = Subscriber(0, frozenset(), hub.max_buffered, compile_filter(f))
    hub.register(sub)
    hub.publish_commit(commit_of(0))
    hub.publish_commit(commit_of(1))
    assert sub.cut_reason == CUT_SLOW and cuts == [CUT_SLOW] and not sub.buffer and sub.wakeup.is_set()
    assert not hub.groups  # unregistered: later commits cost it nothing
