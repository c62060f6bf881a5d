"""Later sources of a transaction (TxBatch.sightings) in the event log: stored once, bounded, replayed, pruned."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from common.pb.v1 import events_pb2, ingest_pb2, query_pb2, tx_pb2
from common.testing.ingest_push import channel, push_batches, push_envelopes
from common.testing.synth import synthetic_envelopes
from processd.api.server import ProcessdServer
from processd.storage.eventlog import CHAIN_SEQ, KIND_SEEN, KIND_SOURCE, U64, EventLog, decode_event
from processd.wire import encoding
from tests.processd._helpers import query_stub

SOURCE_SEEN = events_pb2.EVENT_KIND_TX_SOURCE_SEEN
Factory = Callable[..., Awaitable[ProcessdServer]]


def _sighting(env: tx_pb2.TxEnvelope, source: str, later_ns: int = 1_000_000) -> tx_pb2.TxSighting:
    return tx_pb2.TxSighting(chain_id=env.chain_id, hash=env.hash, source_id=source,
                             seen_unix_ns=env.first_seen_unix_ns + later_ns)


async def _sources(srv: ProcessdServer, env: tx_pb2.TxEnvelope) -> list[tuple[str, int]]:
    async with channel(srv.address) as ch:
        r = await query_stub(ch).GetTransaction(query_pb2.GetTransactionRequest(chain_id=env.chain_id, hash=env.hash))
    return [(s.source_id, s.first_seen_unix_ns) for s in r.transaction.sources]


async def _standings(srv: ProcessdServer, chain_id: int) -> dict[str, tuple[int, int]]:
    async with channel(srv.address) as ch:
        snap = await query_stub(ch).GetSnapshot(query_pb2.GetSnapshotRequest(chain_id=chain_id))
    return {s.source_id: (s.first_seen_wins, s.seen) for s in snap.chains[0].sources}


async def test_sightings_are_stored_once_bounded_and_replayed(server_factory: Factory, tmp_path: Path) -> None:
    srv = await server_factory(data_dir=tmp_path / "lmdb", max_sources_per_tx=3)
    envs = synthetic_envelopes(4, seed=90, chain_ids=(137,), source_id="fast")
    a, b, c, d = envs
    assert (await push_envelopes(srv.address, [a, b, c], batch_size=3))[0].accepted == 3
    bad_hash = tx_pb2.TxSighting(chain_id=137, hash=b"\x01" * 31, source_id="slow", seen_unix_ns=1)
    unknown = tx_pb2.TxSighting(chain_id=137, hash=b"\x02" * 32, source_id="slow", seen_unix_ns=1)
    sightings = [
        _sighting(a, "slow"), _sighting(a, "slow", 5), _sighting(a, "fast"),  # stored, repeat, the first source
        _sighting(b, "slow", 3), _sighting(b, "mid", 2), _sighting(b, "late", 9),  # third one: over the bound of 3
        unknown, bad_hash,
        _sighting(d, "slow"),  # its envelope is in this very batch (stored first)
    ]
    batch = ingest_pb2.TxBatch(session_id="s", batch_seq=2, envelopes=[d], sightings=sightings)
    ack = (await push_batches(srv.address, [batch]))[0]
    assert (ack.accepted, ack.sightings_stored, ack.sightings_ignored) == (1, 4, 5)
    # A resend (after a reconnect) stores nothing twice.
    again = (await push_batches(srv.address, [batch]))[0]
    assert (again.duplicates, again.sightings_stored, again.sightings_ignored) == (1, 0, 9)
    # A batch of sightings only.
    only = ingest_pb2.TxBatch(session_id="s", batch_seq=3, sightings=[_sighting(c, "slow", 7)])
    assert (await push_batches(srv.address, [only]))[0].sightings_stored == 1

    expected = {
        a.hash: [("fast", a.first_seen_unix_ns), ("slow", a.first_seen_unix_ns + 1_000_000)],
        b.hash: [("fast", b.first_seen_unix_ns), ("mid", b.first_seen_unix_ns + 2), ("slow", b.first_seen_unix_ns + 3)],
        c.hash: [("fast", c.first_seen_unix_ns), ("slow", c.first_seen_unix_ns + 7)],
        d.hash: [("fast", d.first_seen_unix_ns), ("slow", d.first_seen_unix_ns + 1_000_000)],
    }
    for env in envs:
        assert await _sources(srv, env) == expected[env.hash]
    standings = {"fast": (4, 4), "mid": (0, 1), "slow": (0, 4)}
    assert await _standings(srv, 137) == standings
    async with channel(srv.address) as ch:
        q = query_stub(ch)
        listed = await q.ListTransactions(query_pb2.ListTransactionsRequest(chain_id=137, limit=10))
        assert {t.tx.hash: [(s.source_id, s.first_seen_unix_ns) for s in t.sources]
                for t in listed.transactions} == expected
        scan = await q.ScanEvents(query_pb2.ScanEventsRequest(chain_id=137, kinds=[SOURCE_SEEN], limit=100))
        seen_seq = {t.tx.hash: t.seq_id for t in listed.transactions}
    assert len(scan.events) == 5
    for e in scan.events:
        assert e.kind == SOURCE_SEEN and e.source_id == e.tx_source_seen.sighting.source_id
        assert e.tx_source_seen.tx_seq_id == seen_seq[e.tx_hash]
    # Every SOURCE event has its own chain_seq entry; the transactions' entries still list only their events.
    log = srv.eventlog
    assert log.env is not None
    with log.env.begin() as txn:
        kinds = {U64.unpack(k)[0]: v[0] for k, v in txn.cursor(db=log.events_db)}
        index = {CHAIN_SEQ.unpack(k)[1]: bytes(v) for k, v in txn.cursor(db=log.chain_db)}
    assert {s for s, v in index.items() if v == bytes((KIND_SOURCE,))} == {s for s, k in kinds.items()
                                                                              if k == KIND_SOURCE}
    assert all(kinds[s] == KIND_SEEN for s, v in index.items() if v[0] == KIND_SEEN)
    digest = srv.models.digest()
    await srv.stop(grace_s=0.5)

    # The log is the source of truth: a restart reads the same sources and counters back.
    srv2 = await server_factory(data_dir=tmp_path / "lmdb", max_sources_per_tx=3)
    for env in envs:
        assert await _sources(srv2, env) == expected[env.hash]
    assert await _standings(srv2, 137) == standings
    assert srv2.models.digest() == digest


async def test_sightings_are_pruned_with_their_transaction(server_factory: Factory) -> None:
    srv = await server_factory(retention_max_events=40)
    old = synthetic_envelopes(10, seed=91, chain_ids=(1,), source_id="fast")
    await push_envelopes(srv.address, old, batch_size=10)
    batch = ingest_pb2.TxBatch(session_id="s", batch_seq=5, sightings=[_sighting(e, "slow") for e in old])
    assert (await push_batches(srv.address, [batch]))[0].sightings_stored == 10
    newer = synthetic_envelopes(200, seed=92, chain_ids=(1,), source_id="fast")
    await push_envelopes(srv.address, newer, batch_size=10, first_batch_seq=10)
    log = srv.eventlog
    assert log.env is not None
    with log.env.begin() as txn:
        retained = {U64.unpack(k)[0]: decode_event(v, U64.unpack(k)[0]) for k, v in txn.cursor(db=log.events_db)}
        index = {CHAIN_SEQ.unpack(k)[1] for k, _ in txn.cursor(db=log.chain_db)}
        sources = sum(1 for _ in txn.cursor(db=log.sources_db))
    assert all(e.tx_hash not in {o.hash for o in old} for e in retained.values())
    assert sources == 0  # the old transactions' sightings went with them
    assert index == {s for s, e in retained.items() if e.kind in (KIND_SEEN, KIND_SOURCE)}
    assert await _standings(srv, 1) == {"fast": (210, 210), "slow": (0, 10)}  # cumulative, not reduced by pruning


def test_hand_encoded_source_event_matches_protobuf() -> None:
    for env in synthetic_envelopes(50, seed=93):
        header = encoding.event_header(env.chain_id, env.hash, env.first_seen_unix_ns, 77, "slow-source")
        value = encoding.source_seen_value(header, env.chain_id, env.hash, "slow-source", env.first_seen_unix_ns + 9,
                                           1234567)
        want = events_pb2.Event(
            chain_id=env.chain_id, kind=SOURCE_SEEN, tx_hash=env.hash, first_seen_unix_ns=env.first_seen_unix_ns,
            received_unix_ns=77, source_id="slow-source", tx_source_seen=events_pb2.TxSourceSeen(
                sighting=tx_pb2.TxSighting(chain_id=env.chain_id, hash=env.hash, source_id="slow-source",
                                           seen_unix_ns=env.first_seen_unix_ns + 9), tx_seq_id=1234567))
        assert value[0] == KIND_SOURCE and decode_event(value, 5) == events_pb2.Event(seq_id=5, **_fields(want))


def _fields(event: events_pb2.Event) -> dict[str, object]:
    return {f.name: v for f, v in event.ListFields()}


def test_a_log_written_before_tx_sources_opens_and_gets_it(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "lmdb", 64 << 20).open()
    assert log.env is not None
    with log.env.begin(write=True) as txn:
        txn.drop(log.sources_db, delete=True)  # as a log of the five databases before this change
    log.close()
    again = EventLog(tmp_path / "lmdb", 64 << 20).open()  # no DamagedLogError for the missing database
    try:
        assert again.env is not None
        with again.env.begin() as txn:
            assert b"tx_sources" in {bytes(k) for k, _ in txn.cursor()}
    finally:
        again.close()


async def test_later_sources_share_the_page_byte_budget(server_factory: Factory) -> None:
    srv = await server_factory(max_page_bytes=16 << 10, max_sources_per_tx=16)
    envs = synthetic_envelopes(20, seed=94, chain_ids=(1,), source_id="fast")
    await push_envelopes(srv.address, envs, batch_size=20)
    # 10 sources of 250 characters each: ~2.7 KB per transaction, beside a ~0.5 KB event value.
    names = [f"{i}-" + "s" * 248 for i in range(10)]
    sightings = [_sighting(e, name) for e in envs for name in names]
    assert (await push_batches(srv.address, [ingest_pb2.TxBatch(session_id="s", batch_seq=9,
                                                                sightings=sightings)]))[0].sightings_stored == 200
    for ascending in (True, False):
        seen: list[int] = []
        cursor, pages = 0, 0
        async with channel(srv.address) as ch:
            while True:
                page = await query_stub(ch).ListTransactions(query_pb2.ListTransactionsRequest(
                    chain_id=1, limit=100, cursor=cursor, ascending=ascending))
                pages += 1
                assert page.ByteSize() <= 2 * (16 << 10)
                assert all(len(t.sources) == 11 for t in page.transactions)
                seen += [t.seq_id for t in page.transactions]
                if not page.next_cursor:
                    break
                assert page.truncated
                cursor = page.next_cursor
        assert pages > 2 and sorted(seen) == sorted(set(seen)) and len(seen) == 20  # all, once, in pieces


async def test_duplicate_envelope_from_another_source_is_a_later_sighting(server_factory: Factory,
                                                                          tmp_path: Path) -> None:
    """One ingestd per node: each sends its own envelope of a transaction both nodes saw. The second to reach
    processd is a duplicate (stored once, acked as a duplicate) whose source becomes a later sighting with its own
    first-seen time; a resend of either (same source) records nothing."""
    srv = await server_factory(data_dir=tmp_path / "lmdb")
    a, b = synthetic_envelopes(2, seed=91, chain_ids=(137,), source_id="node-a")
    from_b = tx_pb2.TxEnvelope()
    from_b.CopyFrom(a)
    from_b.source_id, from_b.first_seen_unix_ns = "node-b", a.first_seen_unix_ns + 7_000
    twice = tx_pb2.TxEnvelope()
    twice.CopyFrom(b)
    twice.source_id = "node-b"
    first = (await push_envelopes(srv.address, [a], batch_size=1))[0]
    # another node's copy of a, and b with its own copy in the same batch (the second one is the duplicate)
    second = (await push_batches(srv.address, [ingest_pb2.TxBatch(session_id="n", batch_seq=1,
                                                                   envelopes=[from_b, b, twice])]))[0]
    assert (first.accepted, second.accepted, second.duplicates) == (1, 1, 2)
    assert (second.sightings_stored, second.sightings_ignored) == (0, 0)  # not TxBatch.sightings
    resend = (await push_batches(srv.address, [ingest_pb2.TxBatch(session_id="n", batch_seq=1,
                                                                   envelopes=[from_b, b, twice])]))[0]
    assert (resend.accepted, resend.duplicates) == (0, 3)
    assert await _sources(srv, a) == [("node-a", a.first_seen_unix_ns), ("node-b", a.first_seen_unix_ns + 7_000)]
    assert await _sources(srv, b) == [("node-a", b.first_seen_unix_ns), ("node-b", b.first_seen_unix_ns)]
    assert await _standings(srv, 137) == {"node-a": (2, 2), "node-b": (0, 2)}
    async with channel(srv.address) as ch:
        scan = await query_stub(ch).ScanEvents(query_pb2.ScanEventsRequest(chain_id=137, kinds=[SOURCE_SEEN],
                                                                           limit=10))
    assert [e.source_id for e in scan.events] == ["node-b", "node-b"]


async def test_a_commit_retried_after_map_growth_counts_its_sightings_once(server_factory: Factory) -> None:
    """A group whose write transaction hits MapFull is aborted, the map grows and the same group is written again:
    the acks count what the committed attempt stored, not the aborted attempt's sightings on top of it.

    The small batch with sightings goes first and the large one (over the 1 MiB map) second, in one group (a long
    flush interval lets both join), so the first attempt stores the sightings before it runs out of map."""
    srv = await server_factory(map_size_mb=1, map_max_size_mb=64, flush_interval_ms=2000)
    first, *rest = synthetic_envelopes(6001, seed=73)
    small = ingest_pb2.TxBatch(session_id="s", batch_seq=1, envelopes=[first],
                               sightings=[_sighting(first, "slow"), _sighting(first, "mid", 2)])
    large = ingest_pb2.TxBatch(session_id="s", batch_seq=2, envelopes=rest)
    acks = await push_batches(srv.address, [small, large], max_inflight=2)
    assert srv.writer.commits == 1 and srv.writer.map_grows >= 1  # one group, retried after growing
    assert (acks[0].accepted, acks[0].sightings_stored, acks[0].sightings_ignored) == (1, 2, 0)
    assert acks[1].accepted == 6000
    assert [s for s, _ in await _sources(srv, first)] == ["synth", "mid", "slow"]  # in the order each saw it
