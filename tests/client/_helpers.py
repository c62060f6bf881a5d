"""Helpers of the client tests: the log over raw gRPC (independent of the client) and bounded reads of a
subscription."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from common.client import Event, Filter, ManySubscription, Subscription, TaggedEvent
from common.pb.v1 import events_pb2, query_pb2, query_pb2_grpc
from common.testing.ingest_push import channel
from tests.reliability._support import ProcessdProc

SEEN = events_pb2.EVENT_KIND_TX_SEEN
DECODED = events_pb2.EVENT_KIND_TX_DECODED


async def restart(proc: ProcessdProc) -> None:
    """(Re)starts the processd subprocess: Popen from the event loop's thread (the child dies with the thread that
    started it), readiness awaited off it."""
    proc.start(wait_ready=False)
    await asyncio.to_thread(proc.wait_ready)


async def raw_log(address: str) -> list[events_pb2.Event]:
    """Every event of the log, over raw gRPC."""
    out: list[events_pb2.Event] = []
    async with channel(address) as ch:
        stub = query_pb2_grpc.QueryStub(ch)
        cursor = 1
        while True:
            page = await stub.ScanEvents(query_pb2.ScanEventsRequest(from_seq_id=cursor, limit=1000))
            out.extend(page.events)
            if page.next_seq_id > page.last_seq_id:
                return out
            cursor = page.next_seq_id


def tx_index(log: list[events_pb2.Event]) -> dict[tuple[int, bytes], tuple[events_pb2.TxEnvelope, str]]:
    """(chain, hash) -> (envelope, decoded method name) of every transaction in the log."""
    envs = {(e.chain_id, e.tx_hash): e.tx_seen.tx for e in log if e.kind == SEEN}
    methods = {(e.chain_id, e.tx_hash): e.tx_decoded.features.method for e in log if e.kind == DECODED}
    return {key: (env, methods.get(key, "")) for key, env in envs.items()}


async def read_until(sub: Subscription, last_seq: int) -> list[Event]:
    """Events of ``sub`` up to and including ``last_seq``: until one at or past it arrives, or the subscription has
    handled every seq up to it and queued nothing more (so a missing last event ends the read, not the test's
    timeout)."""
    got: list[Event] = []
    while not got or got[-1].seq_id < last_seq:
        step = asyncio.ensure_future(sub.__anext__())
        while not step.done():
            if sub.resume_seq is not None and sub.resume_seq > last_seq and sub.pending == 0 and not step.done():
                step.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await step
                return got
            await asyncio.wait({step}, timeout=0.05)
        got.append(step.result())
    return got


def expected(log: list[events_pb2.Event], keep: Callable[[events_pb2.Event], bool], start: int = 1) -> list[int]:
    return [e.seq_id for e in log if e.seq_id >= start and keep(e)]


# ---- many filters on one stream ----------------------------------------------------------------------------------

Rule = Callable[[events_pb2.Event], bool]
#: Two overlapping filters: a chain 137 event of any kind, and a TX_DECODED event of any chain.
FILTERS = {7: Filter(chain_ids={137}), 9: Filter(kinds={"tx_decoded"})}
RULES: dict[int, Rule] = {7: lambda e: e.chain_id == 137, 9: lambda e: e.kind == DECODED}


def tagged(log: list[events_pb2.Event], rules: dict[int, Rule], start: int = 1) -> list[tuple[int, frozenset[int]]]:
    """(seq, ids of the rules that take it) of each event from ``start`` that some rule takes."""
    out = []
    for e in log:
        ids = frozenset(fid for fid, rule in rules.items() if rule(e))
        if e.seq_id >= start and ids:
            out.append((e.seq_id, ids))
    return out


async def take(sub: ManySubscription, count: int, got: list[TaggedEvent] | None = None) -> list[TaggedEvent]:
    """Events of ``sub`` until ``got`` holds ``count`` (bounded by a generous timeout: a missing event fails)."""
    got = [] if got is None else got

    async def read() -> None:
        async for te in sub:
            got.append(te)
            if len(got) >= count:
                return

    if len(got) < count:
        await asyncio.wait_for(read(), 60)
    return got


def pairs(got: list[TaggedEvent]) -> list[tuple[int, frozenset[int]]]:
    return [(te.event.seq_id, te.filter_ids) for te in got]
