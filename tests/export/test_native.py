"""The exporter's own Native encoding (processd.export.native): what it inserts reads back exactly as what
clickhouse-driver's column classes insert from the same columns, for every table and kind; a type it does not
know is written by the driver; a table or a value that does not fit is a SchemaMismatch. And the INSERTs fed
block by block (processd.export.stream)."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import replace

import pytest
from clickhouse_driver import Client

from common.testing.clickhouse import ClickHouseServer
from processd.export.config import ExportConfig
from processd.export.errors import SchemaMismatch, SinkUnavailable
from processd.export.mapper import columns_of
from processd.export.native import Columns, NativeClient, encoder
from processd.export.schema import DATA_TABLES, EVENTS, insert_sql
from processd.export.sink import ClickHouseSink
from processd.export.stream import FEED_BLOCKS
from tests.export.test_mapper import _events as every_kind_events


def _sink(clickhouse: ClickHouseServer, database: str) -> ClickHouseSink:
    sink = ClickHouseSink(replace(ExportConfig(), clickhouse_host=clickhouse.host, clickhouse_port=clickhouse.port,
                                  database=database))
    sink.ensure_schema()
    return sink


def test_every_table_reads_back_as_the_drivers_insert(clickhouse: ClickHouseServer) -> None:
    columns = columns_of(every_kind_events())
    assert all(cols[0] for cols in columns.values()), "every table gets rows"
    native = _sink(clickhouse, "native_enc")
    _sink(clickhouse, "driver_enc").close()
    plain = Client(clickhouse.host, port=clickhouse.port)
    for table in DATA_TABLES:  # the driver's way (it rewrites the lists it is given: a copy each)
        plain.execute(insert_sql("driver_enc", table), copy.deepcopy(columns[table.name]), columnar=True)
    kept = copy.deepcopy(columns)
    native.insert(columns)
    assert columns == kept, "the columns are not rewritten"
    for table in DATA_TABLES:
        ours = plain.execute(f"SELECT * FROM native_enc.{table.name} ORDER BY chain_id, seq")
        theirs = plain.execute(f"SELECT * FROM driver_enc.{table.name} ORDER BY chain_id, seq")
        assert ours == theirs and len(ours) == len(columns[table.name][0]), table.name
    # NULLs, arrays and enums are where the encodings differ most: they are there
    (nulls,) = plain.execute("SELECT countIf(isNull(token_in)), countIf(isNotNull(token_in)), sum(length(path)) "
                             "FROM native_enc.features")
    assert nulls[0] and nulls[1] and nulls[2]
    native.close()
    plain.disconnect()


def test_a_type_it_does_not_know_goes_the_drivers_way(clickhouse: ClickHouseServer) -> None:
    assert encoder("Float64") is None and encoder("Nullable(Float64)") is None and encoder("Array(Date)") is None
    client = NativeClient(clickhouse.host, port=clickhouse.port)
    client.execute("CREATE TABLE IF NOT EXISTS default.native_mixed (a Float64, b Nullable(String), "
                   "c Array(Nullable(UInt32)), d Enum8('x' = -1, 'y' = 7)) ENGINE = Memory")
    data = Columns([[1.5, -2.25], [None, "é"], [[None, 3], []], ["y", -1]])
    assert client.execute("INSERT INTO default.native_mixed (a, b, c, d) VALUES", data) == 2
    assert client.execute("SELECT a, b, c, d FROM default.native_mixed ORDER BY a") == [
        (-2.25, "é", [], "x"), (1.5, None, [None, 3], "y")]
    # other data still goes the driver's way, on the same connection
    client.execute("INSERT INTO default.native_mixed (a, b, c, d) VALUES", [(0.0, None, [], "x")])
    assert client.execute("SELECT count() FROM default.native_mixed") == [(3,)]
    client.disconnect()


def test_a_table_or_value_that_does_not_fit_is_a_schema_mismatch(clickhouse: ClickHouseServer) -> None:
    sink = _sink(clickhouse, "native_misfit")
    columns = columns_of(every_kind_events())
    bad_kind = copy.deepcopy(columns)
    bad_kind[EVENTS.name][6][0] = "NOT_A_KIND"
    with pytest.raises(SchemaMismatch, match="NOT_A_KIND"):
        sink.insert({EVENTS.name: bad_kind[EVENTS.name]})
    short = copy.deepcopy(columns)
    short[EVENTS.name].pop()
    with pytest.raises(SchemaMismatch, match="columns"):
        sink.insert({EVENTS.name: short[EVENTS.name]})
    ragged = copy.deepcopy(columns)
    ragged[EVENTS.name][1].pop()
    with pytest.raises(SchemaMismatch, match="rows"):
        sink.insert({EVENTS.name: ragged[EVENTS.name]})
    sink.insert({EVENTS.name: columns[EVENTS.name]})  # the connection is fine after each (it reconnects)
    assert sink.execute("SELECT count() FROM native_misfit.events") == [(len(columns[EVENTS.name][0]),)]
    sink.close()


async def test_a_fed_insert_stores_its_blocks_as_one_part_and_an_aborted_one_nothing(
        clickhouse: ClickHouseServer) -> None:
    """processd.export.stream: the blocks fed to one INSERT (more than FEED_BLOCKS: the feed waits for room) make
    one part (ClickHouse squashes them); a feed given up stores none of its blocks, and the next INSERT into the
    table goes through on a new connection."""
    sink = _sink(clickhouse, "native_fed")
    events = columns_of(every_kind_events())[EVENTS.name]
    n = len(events[0])
    feed = sink.feed(EVENTS)
    for start in range(0, n, 5):  # blocks of 5 rows
        await feed.put(Columns([column[start:start + 5] for column in events]))
    assert n // 5 > FEED_BLOCKS
    feed.end()
    assert await asyncio.wrap_future(feed.done) == n
    assert sink.execute("SELECT count(), uniqExact(seq) FROM native_fed.events") == [(n, n)]
    (parts,) = sink.execute("SELECT count(), uniqExact(partition) FROM system.parts WHERE database = 'native_fed' "
                            "AND table = 'events' AND level = 0")
    assert parts[0] == parts[1], parts  # one INSERT: one part per partition, not one per block

    given_up = sink.feed(EVENTS)
    await given_up.put(Columns(events))
    given_up.abort()
    with pytest.raises(SinkUnavailable):
        await asyncio.wrap_future(given_up.done)
    after = sink.feed(EVENTS)
    await after.put(Columns([column[:3] for column in events]))
    after.end()
    assert await asyncio.wrap_future(after.done) == 3
    assert sink.execute("SELECT count() FROM native_fed.events") == [(n + 3,)]
    sink.close()
