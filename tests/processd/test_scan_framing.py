"""ScanEvents answers its page as the stored values framed (no decode and re-encode per event): the pages parse as
the Events the log decodes (decode_event: seq_id set from the key, an opportunity's own seq_id too), for every
kind and filter, and the response's scalars are written as the protobuf library writes them."""

from __future__ import annotations

import pytest

from common.pb.v1 import events_pb2, query_pb2
from common.testing.ingest_push import channel, push_batches, push_envelopes
from common.testing.synth import synthetic_envelopes
from processd.api.server import ProcessdServer
from processd.views.tx_view import frame_event
from processd.wire.encoding import scan_response
from tests.export._helpers import block_batch, pool_batch, sighting_batch
from tests.processd._helpers import query_stub

OPP = events_pb2.EVENT_KIND_OPP_DETECTED


@pytest.mark.parametrize("next_seq, last_seq, truncated", [
    (0, 0, False), (1, 0, False), (0, 1, True), (5, 4, False), (16384, 16383, True), (2**40 + 3, 2**63, True)])
def test_scan_response_bytes_equal_the_library(next_seq: int, last_seq: int, truncated: bool) -> None:
    ev = events_pb2.Event(seq_id=7, chain_id=1, kind=OPP, tx_hash=b"\x01" * 32)
    ev.opp_detected.opportunity.seq_id = 7
    stored = bytes((OPP,)) + events_pb2.Event(chain_id=1, kind=OPP, tx_hash=b"\x01" * 32,
                                              opp_detected=events_pb2.OppDetected()).SerializeToString()
    framed = scan_response([frame_event(7, stored)], next_seq, last_seq, truncated)
    want = query_pb2.ScanEventsResponse(events=[ev], next_seq_id=next_seq, last_seq_id=last_seq, truncated=truncated)
    assert query_pb2.ScanEventsResponse.FromString(framed) == want
    # the scalars, byte for byte: an empty page is exactly what the library serializes
    assert scan_response([], next_seq, last_seq, truncated) == query_pb2.ScanEventsResponse(
        next_seq_id=next_seq, last_seq_id=last_seq, truncated=truncated).SerializeToString()


async def test_framed_pages_equal_the_decoded_log(server_factory) -> None:  # type: ignore[no-untyped-def]
    """Every kind (transactions, opportunities, sightings, blocks, pool states), unfiltered and by chain and kind,
    pages cut by count and by bytes: each page's events equal the log's decoded events."""
    server: ProcessdServer = await server_factory(max_page_bytes=64 * 1024)
    envs = synthetic_envelopes(600, seed=33, chain_ids=(1, 137))
    await push_envelopes(server.address, envs, batch_size=200)
    await push_batches(server.address, [sighting_batch(envs[::5], batch_seq=1), block_batch(envs[::2], batch_seq=2),
                                         pool_batch(batch_seq=3)])
    log = server.eventlog
    last = server.models.last_seq
    with log.begin() as txn:
        decoded, _, _ = log.scan(txn, 1, last + 1, max_examined=last + 1)
    kinds = {e.kind for e in decoded}
    assert {1, 2, 3, 4, 8, 10} <= kinds, kinds
    opps = [e for e in decoded if e.kind == OPP]
    assert opps and all(e.opp_detected.opportunity.seq_id == e.seq_id for e in opps)
    truncated = 0
    async with channel(server.address) as ch:
        q = query_stub(ch)
        for kw, want in (({}, decoded), ({"chain_id": 137}, [e for e in decoded if e.chain_id == 137]),
                         ({"kinds": [OPP, 4]}, [e for e in decoded if e.kind in (OPP, 4)])):
            got: list[events_pb2.Event] = []
            cursor = 1
            while True:
                r = await q.ScanEvents(query_pb2.ScanEventsRequest(from_seq_id=cursor, limit=300, **kw))
                got.extend(r.events)
                truncated += r.truncated
                assert r.last_seq_id == last
                if r.next_seq_id > last:
                    break
                cursor = r.next_seq_id
            assert got == want, kw
    assert truncated, "the byte budget cut some pages"
