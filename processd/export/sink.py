"""The ClickHouse side of the export: schema, resume point, batched inserts, the cursor (blocking calls: the
exporter runs them in a thread).

Exactly once across restarts, without relying on merges:

1. A batch's rows go to each data table in one INSERT per table (through the Distributed table when sharded,
   with ``insert_distributed_sync=1`` so the INSERT returns only once every shard holds its part); then one row
   ``(name, next_seq)`` goes to ``export_cursor``. So every event below the cursor is in every table.
2. A kill can land anywhere in step 1, leaving some tables (or, sharded, some shards) with rows of the batch
   past the cursor and others without. On start :meth:`ClickHouseSink.resume` reads the cursor and, per table,
   the ``(chain_id, seq)`` of the rows at or past it (at most one batch: the cursor moves after each one); the
   exporter rereads the log from the cursor and skips exactly those rows.

The tables are ReplacingMergeTree on ``(chain_id, seq)`` as a backstop: if the cursor table were lost, a
re-export from the start would collapse into the existing rows at merge time (``FINAL`` reads the result).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clickhouse_driver import errors as ch_errors

from processd.export.config import ExportConfig
from processd.export.errors import ExportError, SchemaMismatch, SinkUnavailable
from processd.export.native import BlockFeed, Columns, NativeClient
from processd.export.schema import (
    CURSOR_TABLE,
    DATA_TABLES,
    SCHEMA_VERSION,
    UPGRADABLE_VERSIONS,
    Table,
    cursor_ddl,
    distributed_ddl,
    enum_values,
    insert_sql,
    local_name,
    modify_column_sql,
    storage_ddl,
)
from processd.export.stream import Feed, TableStream

log = logging.getLogger(__name__)

#: What the driver raises when the server is away, restarting or cut the connection: worth a reconnect.
_UNAVAILABLE: tuple[type[BaseException], ...] = (ch_errors.NetworkError, ch_errors.SocketTimeoutError,
                                                 ch_errors.UnexpectedPacketFromServerError, EOFError, OSError)


@dataclass(slots=True)
class ResumePoint:
    """Where an export goes on: the cursor, and per table the (chain_id, seq) already stored at or past it."""

    next_seq: int
    present: dict[str, set[tuple[int, int]]] = field(default_factory=dict)

    @property
    def present_rows(self) -> int:
        return sum(len(keys) for keys in self.present.values())


def _wrap(exc: BaseException, what: str) -> SinkUnavailable:
    return SinkUnavailable(f"ClickHouse {what}: {type(exc).__name__}: {exc}")


def _translate(exc: BaseException) -> ExportError | None:
    """The exporter's error for a failed statement, None for one that is not ClickHouse's (a bug)."""
    if isinstance(exc, _UNAVAILABLE):
        return _wrap(exc, "unavailable")
    if isinstance(exc, ch_errors.ServerException):
        # A restarting server answers some statements with errors (tables still loading, ...): try again.
        return _wrap(exc, f"error {exc.code}")
    return None


def _fed_insert(client: NativeClient, sql: str, feed: BlockFeed) -> int:
    """One INSERT of the blocks of ``feed`` (a stream's thread), its errors the exporter's."""
    try:
        return int(client.execute(sql, feed))
    except ExportError:
        raise
    except Exception as exc:
        error = _translate(exc)
        if error is None:
            raise
        raise error from exc


class ClickHouseSink:
    """One native-protocol connection to the ClickHouse server the exporter writes through."""

    def __init__(self, config: ExportConfig) -> None:
        self.config = config
        self._client: NativeClient | None = None
        #: Per table, the INSERTs fed block by block (:meth:`feed`), on connections of their own.
        self._streams: dict[str, TableStream] = {}

    def _new_client(self, host: str, port: int) -> NativeClient:
        settings: dict[str, Any] = {}
        if self.config.cluster:
            # An INSERT into a Distributed table returns once every shard stored its part (the default queues
            # the parts on local disk and sends them later, which would move the cursor past unsent rows).
            settings["insert_distributed_sync"] = 1
        return NativeClient(host, port=port, user=self.config.clickhouse_user,
                            password=self.config.clickhouse_password, connect_timeout=5, send_receive_timeout=120,
                            settings=settings)

    @property
    def client(self) -> NativeClient:
        if self._client is None:
            self._client = self._new_client(self.config.clickhouse_host, self.config.clickhouse_port)
        return self._client

    def execute(self, sql: str, params: Any = None, columnar: bool = False) -> Any:
        """Runs one statement; server-away errors become :class:`SinkUnavailable` (the connections are dropped)."""
        try:
            return self.client.execute(sql, params, columnar=columnar)
        except ExportError:  # ours already (a block that does not fit: ColumnsMismatch)
            self.close()
            raise
        except Exception as exc:
            error = _translate(exc)
            if error is None:
                raise
            self.close()
            raise error from exc

    def feed(self, table: Table) -> Feed:
        """A new INSERT into ``table`` fed block by block (:mod:`processd.export.stream`), started once the
        INSERTs into it opened before have ended."""
        stream = self._streams.get(table.name)
        if stream is None:
            host, port = self.config.clickhouse_host, self.config.clickhouse_port
            stream = self._streams[table.name] = TableStream(
                table, insert_sql(self.config.database, table), lambda: self._new_client(host, port), _fed_insert)
        return stream.open()

    def close(self) -> None:
        """Gives up the INSERTs being fed and drops the connections (the next statement reconnects). Idempotent."""
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            stream.close()
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()

    # ---- schema ------------------------------------------------------------------------------------------

    def shard_endpoints(self) -> list[tuple[str, int]]:
        """(host, native port) of every server of the configured cluster (from the server's system.clusters)."""
        rows = self.execute("SELECT host_address, port FROM system.clusters WHERE cluster = %(c)s",
                            {"c": self.config.cluster})
        if not rows:
            raise SchemaMismatch(f"ClickHouse knows no cluster {self.config.cluster!r} (remote_servers)")
        return sorted({(str(host), int(port)) for host, port in rows})

    def ensure_schema(self) -> None:
        """Creates the database and tables when missing and checks that existing ones have our columns. Sharded:
        on every server of the cluster the ``<name>_local`` storage and the Distributed tables over them (plain
        DDL per server: ON CLUSTER needs ZooKeeper), and the cursor on the server the exporter talks to."""
        db, cluster = self.config.database, self.config.cluster
        targets = self.shard_endpoints() if cluster else []
        for host, port in targets:
            shard = self._new_client(host, port)
            try:
                shard.execute(f"CREATE DATABASE IF NOT EXISTS `{db}`")
                for table in DATA_TABLES:
                    shard.execute(storage_ddl(db, table, cluster))
                for table in DATA_TABLES:  # so a query through any server sees every shard
                    shard.execute(distributed_ddl(db, table, cluster))
                upgrade_enums(shard.execute, db, cluster, f"{host}:{port}")
            except (*_UNAVAILABLE, ch_errors.ServerException) as exc:
                raise _wrap(exc, f"shard {host}:{port}") from exc
            finally:
                shard.disconnect()
        self.execute(f"CREATE DATABASE IF NOT EXISTS `{db}`")
        for table in DATA_TABLES:
            self.execute(distributed_ddl(db, table, cluster) if cluster else storage_ddl(db, table))
        self.execute(cursor_ddl(db))
        upgrade_enums(self.execute, db, cluster, f"{self.config.clickhouse_host}:{self.config.clickhouse_port}")
        self._check_columns()

    def _check_columns(self) -> None:
        rows = self.execute("SELECT table, name, type FROM system.columns WHERE database = %(db)s",
                            {"db": self.config.database})
        found: dict[str, list[tuple[str, str]]] = {}
        for table, name, kind in rows:
            found.setdefault(table, []).append((name, kind))
        for table in DATA_TABLES:
            have = found.get(table.name, [])
            want = [(name, kind.replace(" ", "")) for name, kind in table.columns]
            if [(name, kind.replace(" ", "")) for name, kind in have] != want:
                raise SchemaMismatch(f"{self.config.database}.{table.name} has columns {have}, the exporter "
                                     f"(schema {SCHEMA_VERSION}) writes {table.columns}: see docs/export.md#upgrading")
        versions = self.execute(f"SELECT DISTINCT schema_version FROM `{self.config.database}`.`{CURSOR_TABLE}` "
                                "WHERE name = %(n)s", {"n": self.config.name})
        # an older version's cursor is fine once its tables have our shape (upgrade_enums made it so)
        if any(v != SCHEMA_VERSION and v not in UPGRADABLE_VERSIONS for (v,) in versions):
            raise SchemaMismatch(f"export {self.config.name!r} was written with schema versions "
                                 f"{sorted(v for (v,) in versions)}, this exporter writes {SCHEMA_VERSION}")

    # ---- resume and write ---------------------------------------------------------------------------------

    def resume(self) -> ResumePoint:
        """The cursor of this export (1 when none yet) and the rows already stored at or past it."""
        db = self.config.database
        ((cursor,),) = self.execute(f"SELECT max(next_seq) FROM `{db}`.`{CURSOR_TABLE}` WHERE name = %(n)s",
                                    {"n": self.config.name})
        point = ResumePoint(next_seq=max(int(cursor), 1))
        point.present = {table.name: set() for table in DATA_TABLES}
        # one query for every table (a round trip each was ~5 ms, twelve of them before an export's first page)
        rows = self.execute(" UNION ALL ".join(
            f"SELECT toUInt8({i}) AS t, chain_id, seq FROM `{db}`.`{table.name}` WHERE seq >= %(s)s"
            for i, table in enumerate(DATA_TABLES)), {"s": point.next_seq})
        for i, chain_id, seq in rows:
            point.present[DATA_TABLES[i].name].add((int(chain_id), int(seq)))
        return point

    def write(self, columns: Mapping[str, Sequence[list[Any]]], next_seq: int) -> None:
        """Inserts one batch (:meth:`insert`), then moves the cursor to ``next_seq`` (:meth:`move_cursor`)."""
        self.insert(columns)
        self.move_cursor(next_seq)

    def insert(self, columns: Mapping[str, Sequence[list[Any]]]) -> None:
        """One INSERT per table that has rows, its columns encoded by :mod:`processd.export.native` (the cursor is
        the caller's: :meth:`move_cursor` once this batch and every batch before it are in)."""
        db = self.config.database
        for table in DATA_TABLES:
            table_columns = columns.get(table.name)
            if table_columns and table_columns[0]:
                self.execute(insert_sql(db, table), Columns(table_columns))

    def move_cursor(self, next_seq: int) -> None:
        """Records that every event below ``next_seq`` is in every table (one row into ``export_cursor``)."""
        self.execute(f"INSERT INTO `{self.config.database}`.`{CURSOR_TABLE}` (name, next_seq, schema_version, "
                     "written) VALUES", [(self.config.name, next_seq, SCHEMA_VERSION, int(time.time()))])


def upgrade_enums(execute: Callable[..., Any], database: str, cluster: str, server: str) -> list[str]:
    """Upgrades in place the ``Enum8`` columns of an older exporter's tables on one server: a column whose values
    are a subset of ours (``events.kind`` before BLOCK and POOL_STATE) is given ours with ``ALTER TABLE ... MODIFY
    COLUMN`` (a metadata change in ClickHouse, the parts are not rewritten; accepted by 18.16 on MergeTree and
    Distributed tables alike). Any other difference is left for the column check to report. Returns what it
    altered, as ``table.column``."""
    altered: list[str] = []
    for table in DATA_TABLES:
        names = sorted({table.name, local_name(table, cluster)})
        for column, kind in table.columns:
            want = enum_values(kind)
            if want is None:
                continue
            rows = execute("SELECT table, type FROM system.columns WHERE database = %(db)s AND name = %(c)s "
                           "AND table IN %(t)s", {"db": database, "c": column, "t": tuple(names)})
            for name, have_kind in rows:
                have = enum_values(str(have_kind))
                if have is None or have == want or not have.items() <= want.items():
                    continue
                log.warning("upgrading %s.%s.%s on %s from %s to %s", database, name, column, server, have_kind, kind)
                execute(modify_column_sql(database, str(name), column, kind))
                altered.append(f"{name}.{column}")
    return altered


def storage_names(config: ExportConfig) -> list[str]:
    """The names of the tables holding rows on each server (for tools that inspect a shard directly)."""
    return [local_name(table, config.cluster) for table in DATA_TABLES]
