"""Read models and the subscription hub as units (real LMDB where a log is involved)."""

from __future__ import annotations

import asyncio
import itertools
import random
from pathlib import Path

from common.pb.v1 import events_pb2
from common.testing.ingest_push import push_envelopes
from common.testing.synth import synthetic_envelopes
from processd.api.server import ProcessdServer
from processd.storage.records import OppEntry
from processd.views.readmodels import OpportunityWindow, ReadModels
from processd.views.subscribers import Subscriber
from processd.views.subscriptions import SubscriptionHub
from processd.wire import encoding
from tests.processd._helpers import make_config


def opp_entry(seq: int, score: int, chain_id: int = 1) -> OppEntry:
    """An opportunity as the writer hands it to the read models: (seq, chain, score, events value)."""
    opp = events_pb2.Opportunity(chain_id=chain_id, score=score)
    header = encoding.event_header(chain_id, b"\x01" * 32, 5, 6, "src")
    return seq, chain_id, score, encoding.event_value(encoding.KIND_OPP, header, opp.SerializeToString())


def test_opportunity_window_keeps_newest_and_ranks_by_score_then_recency() -> None:
    w = OpportunityWindow(maxlen=4)
    for seq, score in ((1, 90), (2, 10), (3, 50), (4, 50), (5, 70), (6, 20)):
        w.add(opp_entry(seq, score))
    assert len(w) == 4  # seqs 1 and 2 aged out
    assert [(o.seq_id, o.score) for o in w.top(10)] == [(5, 70), (4, 50), (3, 50), (6, 20)]
    assert [o.seq_id for o in w.top(10, min_score=50)] == [5, 4, 3]
    assert [o.seq_id for o in w.top(1)] == [5]
    assert w.seqs() == [5, 4, 3, 6]
    assert w.seqs_by_age() == [3, 4, 5, 6]  # the replay digest's view: the content, oldest first, unranked


def valued_entry(seq: int, score: int, net_wei: int | None) -> OppEntry:
    """An opportunity valued on pool state (net profit ``net_wei``; None: native value unknown)."""
    opp = events_pb2.Opportunity(chain_id=1, score=score, valued=True)
    if net_wei is not None:
        opp.net_profit_wei = net_wei.to_bytes(32, "big").lstrip(b"\0")
    header = encoding.event_header(1, b"\x01" * 32, 5, 6, "src")
    return seq, 1, score, encoding.event_value(encoding.KIND_OPP, header, opp.SerializeToString())


def test_opportunity_window_ranks_valued_by_net_profit_then_the_rest_by_score() -> None:
    w = OpportunityWindow(maxlen=10)
    w.extend([opp_entry(1, 90), valued_entry(2, 5, 10**15), valued_entry(3, 40, 3 * 10**17), opp_entry(4, 60),
              valued_entry(5, 80, None), valued_entry(6, 1, 3 * 10**17), opp_entry(7, 60)])
    # net profit first (equal nets: newer first), then the heuristic and the net-unknown ones by score, newer first
    assert w.seqs() == [6, 3, 2, 1, 5, 7, 4]
    assert [o.seq_id for o in w.top(3)] == [6, 3, 2]
    # min_score leaves out a low-scoring valued one without ending the ranking there
    assert [o.seq_id for o in w.top(10, min_score=30)] == [3, 1, 5, 7, 4]
    assert [o.seq_id for o in w.top(10, min_score=70)] == [1, 5]
    # a profit bound keeps only valued ones netting at least that much
    assert [o.seq_id for o in w.top(10, min_profit_wei=10**17)] == [6, 3]
    assert [o.seq_id for o in w.top(10, keep=lambda seq, chain: seq % 2 == 1)] == [3, 1, 5, 7]
    w.extend([valued_entry(8, 50, 10**18), opp_entry(9, 99), opp_entry(10, 1), opp_entry(11, 2)])  # 1 ages out
    assert w.seqs() == [8, 6, 3, 2, 9, 5, 7, 4, 11, 10]


def test_hub_reads_back_a_commit_it_was_not_handed(tmp_path: Path) -> None:
    """A subscriber that registers while a commit runs without collected events still gets them (from LMDB)."""

    async def scenario() -> None:
        srv = ProcessdServer(make_config(tmp_path / "lmdb"))
        await srv.start()
        try:
            await push_envelopes(srv.address, synthetic_envelopes(30, seed=81), batch_size=30)
            last = srv.models.last_seq
            hub = SubscriptionHub(4, 1000, read_range=srv.eventlog.raw_range)
            sub = Subscriber(0, frozenset(), 1000)
            sub.next_seq = 5
            hub.register(sub)
            hub.publish(1, last, None)
            assert [e.seq_id for e in sub.buffer] == list(range(5, last + 1))
            hub.publish(last + 1, last, None)  # an empty commit (all duplicates) delivers nothing
            assert len(sub.buffer) == last - 4
        finally:
            await srv.stop()

    asyncio.run(scenario())


def test_rebuild_is_bounded_and_equal_when_complete(tmp_path: Path) -> None:
    async def fill() -> tuple[str, int]:
        srv = ProcessdServer(make_config(tmp_path / "lmdb", recent_tx_per_chain=50, recent_features=50,
                                         opportunity_window=20))
        await srv.start()
        try:
            await push_envelopes(srv.address, synthetic_envelopes(1200, seed=82), batch_size=200)
            return srv.models.digest(), srv.models.last_seq
        finally:
            await srv.stop()

    digest, last = asyncio.run(fill())
    from processd.storage.eventlog import EventLog

    log = EventLog(tmp_path / "lmdb", 1 << 30).open()
    try:
        full = ReadModels(50, 50, 20)
        examined = full.rebuild(log)
        assert full.digest() == digest and examined < last  # windows full long before the log start
        capped = ReadModels(50, 50, 20)
        assert capped.rebuild(log, max_examined=10) == 10
        assert capped.digest() != digest and capped.last_seq == last
    finally:
        log.close()


def test_opportunity_window_batch_extend_equals_one_by_one() -> None:
    """extend() (one merge for large batches) leaves exactly the state of add() per opportunity."""
    rng = random.Random(5)
    for _trial in range(100):
        maxlen = rng.choice([1, 3, 10, 100, 500])
        one, batch = OpportunityWindow(maxlen), OpportunityWindow(maxlen)
        seq = 0
        for _ in range(rng.randint(1, 6)):
            opps = []
            for _ in range(rng.choice([0, 1, 5, 63, 64, 65, 200, 700])):
                seq += rng.randint(1, 3)
                opps.append(opp_entry(seq, rng.randint(0, 100)))
            for opp in opps:
                one.add(opp)
            batch.extend(opps)
            min_score = rng.randint(0, 100)
            assert len(one) == len(batch) <= maxlen
            assert one.seqs() == batch.seqs()
            assert [o.seq_id for o in one.top(10**6, min_score)] == [o.seq_id for o in batch.top(10**6, min_score)]


def test_commits_fill_windows_as_if_every_transaction_were_added_one_by_one() -> None:
    """apply() builds entries only for what the windows keep; the windows must equal the reference that adds
    every stored transaction's TX_SEEN / TX_DECODED entry in seq order (single- and multi-chain batches, commits
    smaller and larger than the windows, different tx and feature window sizes)."""
    from collections import deque

    from processd.storage.records import CommitResult
    from processd.wire.columns import ColumnsBuilder

    rng = random.Random(11)
    for _trial in range(60):
        recent_tx, recent_features = rng.choice([(1, 1), (3, 5), (7, 2), (50, 50), (64, 10)])
        models = ReadModels(recent_tx, recent_features, 10)
        ref_all_tx: deque[tuple[int, int, bytes]] = deque(maxlen=recent_tx)
        ref_all_f: deque[tuple[int, int, bytes]] = deque(maxlen=recent_features)
        ref_tx: dict[int, deque[tuple[int, int, bytes]]] = {}
        ref_f: dict[int, deque[tuple[int, int, bytes]]] = {}
        seq = 0
        for _commit in range(rng.randint(1, 5)):
            result = CommitResult(last_seq=0, committed_ns=1, batches=0, envelopes=0)
            for _batch in range(rng.randint(1, 4)):
                chains = [rng.choice([1, 137, 56])] if rng.random() < 0.6 else [1, 137, 56]
                weights = rng.choice([[1, 1, 1], [30, 1, 1], [1, 1, 30]])
                builder = ColumnsBuilder()
                for _tx in range(rng.choice([0, 1, 2, 9, 40, 130])):
                    # Uneven shares too: a chain with few transactions in a big batch is copied out (sparse).
                    chain_id = rng.choices(chains, weights=weights[:len(chains)])[0]
                    kinds = (bytes((encoding.KIND_SEEN, encoding.KIND_DECODED))
                             + bytes((encoding.KIND_OPP,)) * rng.randint(0, 2))
                    values = [b"%d-%d" % (len(builder.values) + i, chain_id) for i in range(len(kinds))]
                    builder.add(chain_id, b"k", (chain_id, 0, "", False), kinds, values, [50] * (len(kinds) - 2),
                                (b"", b"", b""))
                columns = builder.build(b"", 0)
                if not columns.chain:
                    continue
                first = seq + 1
                for t, chain_id in enumerate(columns.chain):
                    at = columns.seen_at[t]
                    entry, feature = (first + at, chain_id, columns.values[at]), (first + at + 1, chain_id,
                                                                                  columns.values[at + 1])
                    ref_all_tx.append(entry)
                    ref_all_f.append(feature)
                    ref_tx.setdefault(chain_id, deque(maxlen=recent_tx)).append(entry)
                    ref_f.setdefault(chain_id, deque(maxlen=recent_features)).append(feature)
                seq += len(columns.values)
                result.stored.append((first, columns))
                result.stored_txs += len(columns.chain)
            result.last_seq = seq
            models.apply(result)
        pairs = [(models.all_txs, ref_all_tx), (models.all_features, ref_all_f)]
        for chain_id in ref_tx:
            pairs += [(models.chains[chain_id].txs, ref_tx[chain_id]), (models.chains[chain_id].features,
                                                                        ref_f[chain_id])]
        for window, ref in pairs:
            assert list(window) == list(ref)
            assert len(window) == len(ref)
            # Newest first, stopping early (what a query with a limit reads).
            limit = rng.randint(0, len(ref) + 1)
            assert list(itertools.islice(reversed(window), limit)) == list(reversed(ref))[:limit]


def test_a_sparse_chain_in_big_mixed_batches_does_not_pin_whole_batches() -> None:
    """A chain with one transaction in each big mixed batch gets its events copied out; every window refers to at
    most SPARSE_EVENTS_PER_TX x (its size + one batch's transactions) values, however many batches it saw."""
    from processd.storage.records import CommitResult
    from processd.views.windows import SPARSE_EVENTS_PER_TX
    from processd.wire.columns import ColumnsBuilder

    maxlen, batch_txs = 20, 300
    models = ReadModels(maxlen, maxlen, 10)
    seq = 0
    for _commit in range(30):
        builder = ColumnsBuilder()
        for t in range(batch_txs):
            chain_id = 56 if t == 7 else 1  # chain 56: one transaction per batch
            kinds = bytes((encoding.KIND_SEEN, encoding.KIND_DECODED))
            builder.add(chain_id, b"k", (chain_id, 0, "", False), kinds, [b"s%d" % t, b"d%d" % t], [], (b"", b"", b""))
        columns = builder.build(b"", 0)
        result = CommitResult(last_seq=seq + len(columns.values), committed_ns=1, batches=1, envelopes=batch_txs)
        result.stored.append((seq + 1, columns))
        seq += len(columns.values)
        models.apply(result)
    sparse = models.chains[56].txs
    assert len(sparse) == maxlen
    assert sparse.held_values == maxlen  # copied out: only its own TX_SEEN values
    assert [value for _, _, value in sparse] == [b"s7"] * maxlen
    for window in models._tx_windows():
        assert window.held_values <= SPARSE_EVENTS_PER_TX * (maxlen + batch_txs)
    assert models.sizes()["window_held_values"] == sum(w.held_values for w in models._tx_windows())
