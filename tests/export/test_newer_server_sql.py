"""The exporter's SQL on a current ClickHouse: the DDL, the column check, the resume queries and every example
query of docs/export.md, run by ClickHouse 26.x's own engine in-process (chDB, the ``chdb-core`` package), on the
rows the mapper makes of a synthetic log, compared with the same oracles as against 18.16
(:mod:`tests.export.test_queries_doc`).

No server binary newer than Debian's 18.16 is installable on these machines and ``chdb-core`` is a 500 MB wheel,
so it is not part of the dev install and this module is skipped without it. To run it::

    pip install chdb-core && python -m pytest -q tests/export/test_newer_server_sql.py

The native-protocol insert path (clickhouse-driver) is not exercised here: chDB has no TCP server; the rows go in
as SQL literals with the same values, columns and types the exporter inserts.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from common.pb.v1 import events_pb2
from processd.api.server import ProcessdServer
from processd.export.mapper import rows_of
from processd.export.schema import CURSOR_TABLE, DATA_TABLES, SCHEMA_VERSION, cursor_ddl, storage_ddl
from tests.export._helpers import check_export, fill_query_log, log_events
from tests.export.test_queries_doc import ORACLES, _close, doc_queries
from tests.processd._helpers import make_config

chdb_session = pytest.importorskip("chdb.session", reason="chdb-core (ClickHouse's engine in-process) not installed")

pytestmark = pytest.mark.integration

DB = "mempulse"
#: UTC times and plain 64-bit numbers in the JSON answers (the 18.16 tests read them over the native protocol).
_SETTINGS = " SETTINGS session_timezone = 'UTC', output_format_json_quote_64bit_integers = 0"


def _literal(value: Any) -> str:
    """A ClickHouse VALUES literal of one mapped value (bytes as \\xHH escapes: FixedString takes raw bytes)."""
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return "'" + "".join(f"\\x{b:02x}" for b in value) + "'"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return str(int(value))


class Engine:
    """One chDB session (a ClickHouse engine in this process, its data in a temporary directory)."""

    def __init__(self, path: Path) -> None:
        self.session = chdb_session.Session(str(path))

    def execute(self, sql: str) -> None:
        self.session.query(sql)

    def query(self, sql: str) -> list[list[Any]]:
        """Rows of a SELECT; DateTime values as unix seconds, as the native-protocol tests compare them."""
        answer = json.loads(str(self.session.query(sql.rstrip().rstrip(";") + _SETTINGS, "JSONCompact")))
        times = [i for i, col in enumerate(answer["meta"]) if col["type"].startswith("DateTime")]
        rows = answer["data"]
        for row in rows:
            for i in times:
                row[i] = int(datetime.strptime(row[i], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp())
        return rows


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> list[events_pb2.Event]:
    """The events of a real processd's log: 1500 transactions on three chains plus later sightings, blocks and pool
    states."""

    async def build() -> list[events_pb2.Event]:
        server = ProcessdServer(make_config(tmp_path_factory.mktemp("lmdb"), analysis_workers=0))
        await server.start()
        try:
            addr = f"127.0.0.1:{server.port}"
            await fill_query_log(addr)
            return await asyncio.to_thread(log_events, addr)
        finally:
            await server.stop(grace_s=0.5)

    return asyncio.run(build())


@pytest.fixture(scope="module")
def engine(log: list[events_pb2.Event], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """The schema created by the exporter's DDL and the log's rows inserted, with the cursor after the last."""
    eng = Engine(tmp_path_factory.mktemp("chdb"))
    eng.execute(f"CREATE DATABASE IF NOT EXISTS `{DB}`")
    for table in DATA_TABLES:
        eng.execute(storage_ddl(DB, table))
    eng.execute(cursor_ddl(DB))
    for table in DATA_TABLES:
        rows = rows_of(log)[table.name]
        for start in range(0, len(rows), 2000):
            values = ", ".join("(" + ", ".join(map(_literal, row)) + ")" for row in rows[start:start + 2000])
            eng.execute(f"INSERT INTO `{DB}`.`{table.name}` ({', '.join(table.column_names)}) VALUES {values}")
    eng.execute(f"INSERT INTO `{DB}`.`{CURSOR_TABLE}` (name, next_seq, schema_version, written) VALUES "
                f"('default', {log[-1].seq_id + 1}, {SCHEMA_VERSION}, 1700000000)")
    yield eng


def test_the_column_check_accepts_the_tables_it_created(engine: Engine) -> None:
    """system.columns spells every type as the exporter's check compares it (else a newer server would be
    refused with SchemaMismatch at start: processd.export.sink.ClickHouseSink._check_columns)."""
    rows = engine.query(f"SELECT table, name, type FROM system.columns WHERE database = '{DB}'")
    for table in DATA_TABLES:
        have = [(name, kind.replace(" ", "")) for t, name, kind in rows if t == table.name]
        assert have == [(name, kind.replace(" ", "")) for name, kind in table.columns], table.name


def test_the_resume_queries_and_completeness(engine: Engine, log: Sequence[events_pb2.Event]) -> None:
    """The queries a resume runs (the cursor; the rows at or past it) and the exactly-once check's queries."""
    ((cursor,),) = engine.query(f"SELECT max(next_seq) FROM `{DB}`.`{CURSOR_TABLE}` WHERE name = 'default'")
    assert cursor == log[-1].seq_id + 1
    tail = log[-40].seq_id
    past = engine.query(f"SELECT chain_id, seq FROM `{DB}`.`events` WHERE seq >= {tail}")
    assert sorted((c, s) for c, s in past) == sorted((e.chain_id, e.seq_id) for e in log[-40:])
    check_export(engine.query, DB, log)


@pytest.mark.parametrize("name", list(doc_queries()))
def test_doc_query_on_a_current_engine(name: str, engine: Engine, log: Sequence[events_pb2.Event]) -> None:
    got = engine.query(doc_queries()[name])
    want = [list(row) for row in ORACLES[name](log)]
    assert want, f"{name}: the oracle finds nothing in the synthetic log: the test would prove nothing"
    assert len(got) == len(want) and all(map(_close, got, want)), f"{name}:\n got {got[:5]}\nwant {want[:5]}"
