"""The C page mapper (processd/export/_colmap.c through colmap.columns_of_page) gives exactly the columns the
protobuf path gives (mapper.columns_of on the parsed page): on a real processd's pages (every kind, its framing of
an opportunity's seq as a second body), on hand-built pages of every kind, on derandomized property-based pages,
and on mutated and truncated bytes, where it either declines (the protobuf path maps the page) or agrees; never a
crash."""

from __future__ import annotations

import asyncio
import functools
import random
from dataclasses import replace
from typing import Any

import grpc
import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.pb.v1 import events_pb2, query_pb2, tx_pb2
from common.testing.clickhouse import ClickHouseServer
from processd.api.server import ProcessdServer
from processd.export import colmap, source
from processd.export.config import ExportConfig
from processd.export.errors import MalformedPage
from processd.export.exporter import Exporter
from processd.export.mapper import columns_of
from processd.export.schema import DATA_TABLES
from tests.export._helpers import check_export, fill_query_log, log_events
from tests.export.test_mapper import MAX_U256, _events

pytestmark = pytest.mark.skipif(not colmap.available(), reason="processd/export/_colmap is not compiled")

DERANDOMIZED = settings(derandomize=True, deadline=None, max_examples=200,
                        suppress_health_check=[HealthCheck.too_slow])


def _page(events: list[events_pb2.Event], tail: bytes = b"") -> bytes:
    resp = query_pb2.ScanEventsResponse(events=events, next_seq_id=2**40 + 9, last_seq_id=99, truncated=True)
    return resp.SerializeToString() + tail


def _framed(event: bytes) -> bytes:
    """One event's bytes as a ScanEventsResponse's ``events`` field (as processd frames its stored values)."""
    return b"\x0a" + _varint(len(event)) + event


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes([*out, n])


def _decoded(raw: bytes) -> Any:
    return colmap._colmap.decode(colmap.plan(), raw)


def _assert_same(raw: bytes) -> None:
    """The page's columns both ways, equal in values and in types (the Native encoder packs ints, not bools)."""
    resp = query_pb2.ScanEventsResponse.FromString(raw)
    events = resp.events
    expected, got = columns_of(events), colmap.columns_of_page(raw, lambda: events)
    for table in DATA_TABLES:
        assert got[table.name] == expected[table.name], table.name
        for mine, theirs in zip(got[table.name], expected[table.name], strict=True):
            assert [type(v) for v in mine] == [type(v) for v in theirs], table.name
    # what the exporter reads of a page before mapping it, from the bytes
    summary = colmap.page_summary(raw)
    if summary is not None:
        seqs = (events[0].seq_id, events[-1].seq_id) if events else (0, 0)
        assert summary == (len(events), *seqs, resp.next_seq_id, resp.last_seq_id)


def test_every_kind_maps_as_protobuf_does_and_the_planned_kinds_in_c() -> None:
    events = _events()
    raw = _page(events)
    _assert_same(raw)
    decoded = _decoded(raw)
    assert decoded is not None
    planned = [i for i, e in enumerate(events) if e.kind in colmap.PLANNED]
    assert decoded[1] == [i for i in range(len(events)) if i not in planned]  # the others: by protobuf
    assert len(decoded[0][0][0]) == len(events)  # every events row from C


def test_a_body_given_twice_is_merged_as_protobuf_merges_it() -> None:
    """processd frames a stored opportunity's seq as a second OppDetected body after the stored one; a second
    TxSeen body may also set and append fields: each occurrence read into the same row is protobuf's merge."""
    opp = events_pb2.Event(seq_id=3, kind=events_pb2.EVENT_KIND_OPP_DETECTED, opp_detected=events_pb2.OppDetected(
        opportunity=events_pb2.Opportunity(kind=1, score=7, reasons=["a"], protocol="p")))
    more = events_pb2.Event(opp_detected=events_pb2.OppDetected(opportunity=events_pb2.Opportunity(
        seq_id=3, reasons=["b"], score=300, notional_wei=b"")))
    tx = events_pb2.Event(seq_id=4, kind=events_pb2.EVENT_KIND_TX_SEEN, tx_seen=events_pb2.TxSeen(
        tx=tx_pb2.TxEnvelope(sender=b"\x01" * 20, value=b"\x05", input=b"\xaa\xbb\xcc\xdd\xee")))
    tx_more = events_pb2.Event(tx_seen=events_pb2.TxSeen(tx=tx_pb2.TxEnvelope(value=b"\x00", gas_price=b"\x02")))
    raw = b"".join(_framed(e.SerializeToString() + m.SerializeToString()) for e, m in ((opp, more), (tx, tx_more)))
    parsed = query_pb2.ScanEventsResponse.FromString(raw).events
    assert list(parsed[0].opp_detected.opportunity.reasons) == ["a", "b"] and parsed[1].tx_seen.tx.value == b"\x00"
    assert _decoded(raw) is not None
    _assert_same(raw)


def test_what_c_does_not_reproduce_it_declines() -> None:
    seen = events_pb2.Event(seq_id=1, kind=events_pb2.EVENT_KIND_TX_SEEN, tx_seen=events_pb2.TxSeen())
    other_body = events_pb2.Event(tx_decoded=events_pb2.TxDecoded()).SerializeToString()
    wrong_wire = bytes([0x18 | 2, 1, 0])  # kind (a varint) as length-delimited: protobuf keeps it as unknown
    bad_utf8 = events_pb2.Event(source_id="x").SerializeToString().replace(b"x", b"\xff")
    for tail in (other_body, wrong_wire):
        raw = _framed(seen.SerializeToString() + tail)
        assert _decoded(raw) is None
        _assert_same(raw)  # the protobuf path maps it
    assert _decoded(_page([seen]) + _framed(bad_utf8)) is None
    wide = events_pb2.Event(kind=events_pb2.EVENT_KIND_TX_SEEN, tx_seen=events_pb2.TxSeen(tx=tx_pb2.TxEnvelope(
        value=b"\x01" * 65)))  # wider than _colmap's decimals: declined, and protobuf writes its digits
    assert _decoded(_page([wide])) is None
    _assert_same(_page([wide]))


def test_amounts_of_every_width_are_exact_digits() -> None:
    values = [b"", b"\x00", b"\x00\x00\x07", (2**64 - 1).to_bytes(8, "big"), (2**64).to_bytes(9, "big"),
              (10**27).to_bytes(12, "big"), MAX_U256.to_bytes(32, "big"), b"\x00" * 30 + b"\x01\x00",
              (10**150).to_bytes(64, "big"), bytes(range(1, 65))]
    events = [events_pb2.Event(seq_id=i + 1, kind=events_pb2.EVENT_KIND_TX_DECODED,
                               tx_decoded=events_pb2.TxDecoded(features=events_pb2.TxFeatures(
                                   value=v, amount_in=v, gas_price=values[-1 - i])))
              for i, v in enumerate(values)]
    raw = _page(events)
    assert _decoded(raw) is not None
    _assert_same(raw)


_bytes = st.binary(max_size=40)
_u64 = st.integers(0, 2**64 - 1)
_u32 = st.integers(0, 2**32 - 1)
_text = st.text(max_size=12)
_amount = st.one_of(st.binary(max_size=3), st.binary(min_size=8, max_size=33))


@st.composite
def _event(draw: st.DrawFn) -> events_pb2.Event:
    kind = draw(st.sampled_from([*colmap.PLANNED, events_pb2.EVENT_KIND_REORG, 0, 77]))
    ev = events_pb2.Event(seq_id=draw(_u64), chain_id=draw(_u64), kind=kind, tx_hash=draw(_bytes),
                          first_seen_unix_ns=draw(_u64), received_unix_ns=draw(_u64), source_id=draw(_text))
    if kind == events_pb2.EVENT_KIND_TX_SEEN:
        tx = ev.tx_seen.tx
        tx.source_id, tx.sender, tx.to, tx.nonce = draw(_text), draw(_bytes), draw(_bytes), draw(_u64)
        tx.value, tx.gas, tx.tx_type, tx.input = draw(_amount), draw(_u64), draw(_u32), draw(st.binary(max_size=70))
        for name in ("gas_price", "max_fee_per_gas", "max_priority_fee_per_gas", "r"):
            if draw(st.booleans()):
                setattr(tx, name, draw(_amount))
    elif kind == events_pb2.EVENT_KIND_TX_DECODED:
        f = ev.tx_decoded.features
        f.protocol, f.category, f.method, f.selector = draw(_text), draw(st.integers(-3, 9)), draw(_text), draw(_bytes)
        f.decoded, f.decode_error, f.calldata_len = draw(st.booleans()), draw(_text), draw(_u32)
        f.token_in, f.token_out, f.recipient = draw(_bytes), draw(_bytes), draw(_bytes)
        f.value, f.gas_price, f.priority_fee = draw(_amount), draw(_amount), draw(_amount)
        f.path.extend(draw(st.lists(_bytes, max_size=3)))
        f.fee_tiers.extend(draw(st.lists(_u32, max_size=3)))
        for name in ("amount_in", "amount_out_min", "amount_in_max", "amount_out"):
            if draw(st.booleans()):
                setattr(f, name, draw(_amount))
        if draw(st.booleans()):
            f.deadline = draw(_u64)
    elif kind == events_pb2.EVENT_KIND_OPP_DETECTED:
        o = ev.opp_detected.opportunity
        o.kind, o.score, o.protocol, o.slippage_bps = draw(st.integers(-2, 6)), draw(_u32), draw(_text), draw(_u32)
        o.token_in, o.token_out = draw(_bytes), draw(_bytes)
        o.reasons.extend(draw(st.lists(_text, max_size=3)))
        if draw(st.booleans()):
            o.notional_wei = draw(_amount)
    elif kind == events_pb2.EVENT_KIND_TX_SOURCE_SEEN and draw(st.booleans()):
        ev.tx_source_seen.tx_seq_id = draw(_u64)
        ev.tx_source_seen.sighting.source_id = draw(_text)
        ev.tx_source_seen.sighting.seen_unix_ns = draw(_u64)
    elif kind == events_pb2.EVENT_KIND_TX_INCLUDED and draw(st.booleans()):
        b = ev.tx_included
        b.block_number, b.block_hash, b.index, b.status = draw(_u64), draw(_bytes), draw(_u32), draw(st.integers(-1, 4))
        b.inclusion_latency_ms, b.tx_seq_id, b.block_seq_id, b.reincluded = (draw(_u64), draw(_u64), draw(_u64),
                                                                             draw(st.booleans()))
    elif kind == events_pb2.EVENT_KIND_TX_REPLACED:
        r = ev.tx_replaced
        r.by_hash, r.fee_bump_bps, r.cancel = draw(_bytes), draw(st.integers(-(2**63), 2**63 - 1)), draw(st.booleans())
        r.tx_seq_id, r.by_block = draw(_u64), draw(st.booleans())
    elif kind == events_pb2.EVENT_KIND_TX_DROPPED:
        d = ev.tx_dropped
        d.reason, d.tx_seq_id, d.source_id = draw(st.integers(-1, 5)), draw(_u64), draw(_text)
    elif kind == events_pb2.EVENT_KIND_REORG:
        ev.reorg.depth = draw(_u32)
    return ev


@DERANDOMIZED
@given(st.lists(_event(), max_size=8))
def test_property_pages_map_as_protobuf_does(events: list[events_pb2.Event]) -> None:
    raw = _page(events)
    assert _decoded(raw) is not None and colmap.page_summary(raw) is not None
    _assert_same(raw)


@settings(DERANDOMIZED, max_examples=800)  # most mutations break the page: enough that some do not
@given(st.lists(_event(), min_size=1, max_size=4), st.data())
def test_property_mutated_bytes_never_crash_and_never_disagree(events: list[events_pb2.Event],
                                                                data: st.DataObject) -> None:
    raw = bytearray(_page(events))
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    for _ in range(data.draw(st.integers(1, 4))):
        what = rng.random()
        if what < 0.5:
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        elif what < 0.8:
            del raw[rng.randrange(len(raw)):]
        else:
            raw.insert(rng.randrange(len(raw) + 1), rng.randrange(256))
        if not raw:
            return
    mutated = bytes(raw)
    _decoded(mutated)  # whatever protobuf makes of them: no crash
    colmap.page_summary(mutated)
    try:
        query_pb2.ScanEventsResponse.FromString(mutated)
    except DecodeError:  # protobuf refuses the page: the exporter never maps it
        return
    _assert_same(mutated)


async def test_a_processd_log_maps_in_c_page_by_page(processd: ProcessdServer) -> None:
    """processd's own pages (stored values framed as they are; blocks, pool states, inclusions beside the
    transactions): every page mapped by _colmap, and equal to the protobuf path."""
    addr = f"127.0.0.1:{processd.port}"
    await fill_query_log(addr)
    pages = []
    async with grpc.aio.insecure_channel(addr, options=[("grpc.max_receive_message_length", 64 << 20)]) as ch:
        scan = ch.unary_unary("/mempulse.v1.Query/ScanEvents",
                              request_serializer=query_pb2.ScanEventsRequest.SerializeToString,
                              response_deserializer=None)
        seq = 1
        while True:
            raw = await scan(query_pb2.ScanEventsRequest(from_seq_id=seq, limit=1000))
            pages.append(raw)
            resp = query_pb2.ScanEventsResponse.FromString(raw)
            seq = resp.next_seq_id
            if seq > resp.last_seq_id:
                break
    assert len(pages) > 2
    kinds = set()
    for raw in pages:
        assert _decoded(raw) is not None and colmap.page_summary(raw) is not None
        _assert_same(raw)
        kinds.update(e.kind for e in query_pb2.ScanEventsResponse.FromString(raw).events)
    # in C: transactions, features, opportunities, sightings, inclusions; by protobuf: blocks, pool states
    assert set(colmap.PLANNED) & kinds == set(colmap.PLANNED) - {events_pb2.EVENT_KIND_TX_REPLACED,
                                                                events_pb2.EVENT_KIND_TX_DROPPED}
    assert {events_pb2.EVENT_KIND_BLOCK, events_pb2.EVENT_KIND_POOL_STATE} <= kinds


def test_a_page_protobuf_refuses_is_malformed_and_not_retried() -> None:
    """Bytes protobuf cannot parse, whichever path meets them first: a MalformedPage (reading the page again gives
    the same bytes), never an exception that ends the reader unnoticed."""
    broken = _page(_events()[:3])[:-7] + b"\x0a\x05\xff\xff"  # an event field cut short
    assert colmap.page_summary(broken) is None and _decoded(broken) is None
    with pytest.raises(MalformedPage) as raised:
        source._page_of(broken, 1)
    assert not raised.value.retriable
    page = source.Page(None, 9, broken, summary=colmap.PageSummary(1, 1, 1, 2, 9))
    with pytest.raises(MalformedPage):
        colmap.columns_of_page(page.raw, lambda: page.events)


async def test_without_the_extension_the_export_is_the_same(clickhouse: ClickHouseServer, processd: ProcessdServer,
                                                            export_config: ExportConfig,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """An install where _colmap did not compile (no C compiler): every page parsed and mapped by protobuf, the
    export equal to the log all the same, and the same rows as the C mapper writes into another database."""
    addr = f"127.0.0.1:{processd.port}"
    await fill_query_log(addr)
    events = await asyncio.to_thread(log_events, addr)
    cfg = replace(export_config, exit_at_head=True, batch_rows=100_000)
    async with Exporter(cfg) as exporter:
        await asyncio.wait_for(exporter.wait_closed(), 120)
    monkeypatch.setattr(colmap, "_colmap", None)
    monkeypatch.setattr(colmap, "plan", functools.cache(colmap.plan.__wrapped__))  # for this test only
    assert not colmap.available() and colmap.page_summary(_page(events[:2])) is None
    plain = replace(cfg, database=f"{cfg.database}_plain")
    async with Exporter(plain) as exporter:
        await asyncio.wait_for(exporter.wait_closed(), 120)
    check_export(clickhouse.query, plain.database, events)
    for table in DATA_TABLES:
        columns = ", ".join(name for name, _ in table.columns)
        both = [clickhouse.query(f"SELECT {columns} FROM {db}.{table.name} ORDER BY seq")
                for db in (cfg.database, plain.database)]
        assert both[0] == both[1], table.name
