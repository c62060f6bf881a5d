"""The rendered-JSON cache of immutable records (gatewayd.render)."""

from __future__ import annotations

import orjson

from common.pb.v1 import query_pb2
from common.testing.synth import synthetic_envelopes
from gatewayd.render import RenderCache
from gatewayd.serializers import snapshot_json, stored_tx_json


def stored(seq: int, index: int) -> query_pb2.StoredTx:
    return query_pb2.StoredTx(seq_id=seq, tx=synthetic_envelopes(1, seed=9, start=index)[0], received_unix_ns=10**18)


def test_same_json_as_the_plain_mapper_and_reused() -> None:
    cache = RenderCache()
    tx = stored(7, 0)
    first = orjson.dumps({"t": [cache.tx(tx)]})
    assert orjson.loads(first) == {"t": [stored_tx_json(tx)]}
    assert orjson.dumps({"t": [cache.tx(tx)]}) == first and (cache.hits, cache.misses) == (1, 1)


def test_seq_reused_by_another_transaction_is_not_served_stale() -> None:
    cache = RenderCache()
    a, b = stored(1, 0), stored(1, 1)  # a fresh processd log reuses seq 1 for another transaction
    assert orjson.loads(orjson.dumps(cache.tx(a)))["hash"] != orjson.loads(orjson.dumps(cache.tx(b)))["hash"]


def test_a_transaction_with_a_new_source_is_not_served_stale() -> None:
    cache = RenderCache()
    tx = stored(5, 5)
    assert len(orjson.loads(orjson.dumps(cache.tx(tx)))["sources"]) == 1
    tx.sources.add(source_id=tx.tx.source_id, first_seen_unix_ns=tx.tx.first_seen_unix_ns)
    tx.sources.add(source_id="later", first_seen_unix_ns=tx.tx.first_seen_unix_ns + 1)
    assert [s["source_id"] for s in orjson.loads(orjson.dumps(cache.tx(tx)))["sources"]][1:] == ["later"]


def test_bounded_by_bytes() -> None:
    cache = RenderCache(max_bytes=20_000)
    for i in range(200):
        cache.tx(stored(i, i))
    assert cache.bytes <= 20_000 and 0 < len(cache) < 200


def test_snapshot_with_rendered_records_equals_plain() -> None:
    cache = RenderCache()
    snap = query_pb2.GetSnapshotResponse(recent_transactions=[stored(3, 3), stored(4, 4)], last_seq_id=4)
    assert orjson.loads(orjson.dumps(snapshot_json(snap, cache.tx, cache.feature))) == snapshot_json(snap)


async def test_render_yielding_keeps_order_and_lets_others_run() -> None:
    import asyncio

    from gatewayd.render import render_yielding

    ticks = 0
    stop = False

    async def other() -> None:
        nonlocal ticks
        while not stop:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(other())
    await asyncio.sleep(0)
    before = ticks
    out = await render_yielding(list(range(1000)), lambda x: x * 2, chunk=200)
    stop = True
    await task
    assert out == [x * 2 for x in range(1000)]
    assert ticks - before >= 4  # the loop ran other work between the 5 slices


def test_events_and_sse_frames() -> None:
    from common.pb.v1 import events_pb2
    from gatewayd.serializers import event_json
    from gatewayd.sse import format_events

    tx = stored(5, 5).tx
    events = [
        events_pb2.Event(
            seq_id=5,
            chain_id=tx.chain_id,
            kind=events_pb2.EVENT_KIND_TX_SEEN,
            tx_hash=tx.hash,
            tx_seen=events_pb2.TxSeen(tx=tx),
        ),
        events_pb2.Event(
            seq_id=6,
            chain_id=tx.chain_id,
            kind=events_pb2.EVENT_KIND_TX_DECODED,
            tx_hash=tx.hash,
            tx_decoded=events_pb2.TxDecoded(),
        ),
    ]
    cache = RenderCache()
    assert [orjson.loads(orjson.dumps(cache.event(e))) for e in events] == [event_json(e) for e in events]
    plain = format_events(events)
    assert format_events(events, cache) == plain == format_events(events, cache)
    assert plain.startswith(b"id: 5\nevent: tx_seen\ndata: {") and b"\n\nid: 6\nevent: tx_decoded\n" in plain


# -- one unrenderable record never takes a page, a catch-up or a stream down ----------------------------------


def _broken(seq: int) -> query_pb2.StoredTx:
    """A record that breaks the protobuf contract (a 33-byte uint256): what an older or buggy processd could
    send; the gateway cannot render its value as the REST contract says."""
    rec = stored(seq, seq)
    rec.tx.value = b"\x01" * 33
    return rec


def test_an_unrenderable_record_is_a_counted_marker_and_its_neighbours_render() -> None:
    from common.pb.v1 import events_pb2
    from gatewayd.serializers import event_json, opportunity_json
    from gatewayd.sse import format_events

    failures: list[str] = []
    cache = RenderCache(on_error=failures.append)
    good, bad = stored(1, 1), _broken(2)
    page = orjson.loads(orjson.dumps({"transactions": cache.txs([good, bad, stored(3, 3)])}))["transactions"]
    assert page[0] == stored_tx_json(good) and page[2] == stored_tx_json(stored(3, 3))
    marker = page[1]
    assert marker["seq_id"] == 2 and marker["chain_id"] == bad.tx.chain_id
    assert marker["hash"] == "0x" + bad.tx.hash.hex()
    assert marker["render_error"]["code"] == "unrenderable_record" and "33 bytes" in marker["render_error"]["message"]
    assert failures == ["transaction"]
    cache.tx(bad)  # cached like any record: counted once, not at every request
    assert failures == ["transaction"]

    # the same record inside the snapshot, an event page and the SSE stream
    snap = orjson.loads(orjson.dumps(snapshot_json(
        query_pb2.GetSnapshotResponse(recent_transactions=[bad, good]), cache.tx, cache.feature, cache.opportunity)))
    assert "render_error" in snap["recent_transactions"][0] and snap["recent_transactions"][1] == stored_tx_json(good)
    events = [events_pb2.Event(seq_id=s.seq_id, chain_id=s.tx.chain_id, kind=events_pb2.EVENT_KIND_TX_SEEN,
                               tx_hash=s.tx.hash, tx_seen=events_pb2.TxSeen(tx=s.tx)) for s in (good, bad)]
    docs = [orjson.loads(orjson.dumps(cache.event(e))) for e in events]
    assert docs[0] == event_json(events[0]) and docs[1]["render_error"] and docs[1]["kind"] == "tx_seen"
    frames = format_events(events, cache)
    # the broken event keeps its id, so a client's Last-Event-ID moves past it
    assert b"id: 1\nevent: tx_seen\n" in frames and b"id: 2\nevent: tx_seen\ndata: {" in frames
    assert format_events(events) == frames  # the uncached path renders the same markers
    assert failures.count("event") == 2  # cached event JSON and the SSE frame are two renderings

    opp = events_pb2.Opportunity(seq_id=9, chain_id=1, tx_hash=bad.tx.hash, kind=1, notional_wei=b"\x02" * 40)
    rendered = orjson.loads(orjson.dumps(cache.opportunities([opp, events_pb2.Opportunity(seq_id=10)])))
    assert rendered[0]["render_error"] and rendered[0]["kind"] == "sandwich_candidate"
    assert rendered[1] == opportunity_json(events_pb2.Opportunity(seq_id=10)) and failures[-1] == "opportunity"
