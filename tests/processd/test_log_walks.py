"""The log walks in threads (ScanEvents and ListTransactions pages: ``processd.api.query_service``) against the
writer's map growth (``processd.storage.readgate``): the gate's order with real threads, and a real processd whose
1 MiB map grows while a client pages through ScanEvents and ListTransactions all along: every page
is answered and consistent, every batch stored, and the log audits clean."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from common.pb.v1 import query_pb2
from common.testing.ingest_push import channel, push_envelopes
from common.testing.synth import synthetic_envelopes
from processd.storage.readgate import ReadGate
from tests.processd._helpers import query_stub
from tests.processd.test_lifecycle import Factory
from tests.reliability._support import audit_log


def _until(predicate: object, what: str) -> None:
    """Polls ``predicate`` (a deadline for a hung test, not a timed assertion)."""
    deadline = time.monotonic() + 10
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.001)


def test_growth_waits_for_the_reads_in_progress_and_holds_new_ones_back() -> None:
    gate, order = ReadGate(), []
    release_read, release_growth = threading.Event(), threading.Event()

    def slow_read() -> None:
        order.append("read starts")
        release_read.wait()
        order.append("read ends")

    def growth() -> None:
        order.append("grow")
        release_growth.wait()

    reader = threading.Thread(target=gate.read, args=(slow_read,))
    reader.start()
    _until(lambda: gate.readers == 1, "the read in progress")
    grower = threading.Thread(target=gate.exclusive, args=(growth,))
    grower.start()
    _until(lambda: gate._exclusive, "the growth waiting")
    late = threading.Thread(target=gate.read, args=(lambda: order.append("late read"),))
    late.start()
    assert order == ["read starts"]  # the growth waits for the read; the late read waits for the growth
    release_read.set()
    _until(lambda: "grow" in order, "the growth")
    assert order == ["read starts", "read ends", "grow"] and gate.readers == 0
    release_growth.set()
    for t in (reader, grower, late):
        t.join(10)
    assert order == ["read starts", "read ends", "grow", "late read"] and gate.readers == 0


async def test_the_map_grows_while_pages_are_read_in_threads(server_factory: Factory, tmp_path: Path) -> None:
    data = tmp_path / "lmdb"
    srv = await server_factory(data_dir=data, map_size_mb=1, map_max_size_mb=64)
    stop = asyncio.Event()
    pages = {"scan": 0, "list": 0}
    grows_seen: set[int] = set()  # the writer's map growths as each page was read
    first_pages = asyncio.Event()

    async def reader() -> None:
        async with channel(srv.address) as ch:
            stub = query_stub(ch)
            while not stop.is_set():
                scan = await stub.ScanEvents(query_pb2.ScanEventsRequest(from_seq_id=1, limit=5000))
                seqs = [e.seq_id for e in scan.events]
                assert seqs == list(range(1, len(seqs) + 1))  # a consistent page, whatever the writer does
                pages["scan"] += 1
                listed = await stub.ListTransactions(query_pb2.ListTransactionsRequest(limit=500))
                assert len({t.tx.hash for t in listed.transactions}) == len(listed.transactions)
                pages["list"] += 1
                grows_seen.add(srv.writer.map_grows)
                first_pages.set()

    envelopes = synthetic_envelopes(12_000, seed=71)
    first = await push_envelopes(srv.address, envelopes[:100], batch_size=100)
    task = asyncio.create_task(reader())
    await asyncio.wait([asyncio.ensure_future(first_pages.wait()), task], return_when=asyncio.FIRST_COMPLETED)
    assert first_pages.is_set() and srv.writer.map_grows == 0  # pages read before the map grows
    acks = first + await push_envelopes(srv.address, envelopes[100:], batch_size=500, max_inflight=4,
                                        first_batch_seq=2)
    stop.set()
    await task
    assert sum(a.accepted for a in acks) == 12_000 and not any(a.rejected for a in acks)
    assert srv.writer.map_grows >= 1 and {0, srv.writer.map_grows} <= grows_seen  # pages read before and after
    assert pages["scan"] > 1 and pages["list"] > 1
    assert srv.query.log_walks == 0
    await srv.stop(grace_s=0.5)
    audit_log(data).assert_clean()
