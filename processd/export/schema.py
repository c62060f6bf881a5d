"""The ClickHouse tables the exporter writes, as column lists and the DDL built from them.

Kept within what ClickHouse 18.16 (Debian's package) understands, which is the oldest server supported:

* hashes and addresses are raw bytes in ``FixedString(32)`` / ``FixedString(20)`` (``hex()`` to read them;
  ``Nullable`` where the log may have none: a creation's ``to``, an undecoded token);
* uint256 amounts (wei, token units) are exact decimal ``String``s: 18.16 has no ``UInt256`` and ``Decimal``
  stops at 38 digits, while amounts reach 78 (an "infinite" approval is 2**256-1). ``toFloat64(x)`` or
  ``toDecimal128(x, 0)`` (when it fits) turns them into numbers in a query; ``Nullable`` keeps an unknown
  amount apart from a known 0, as the log does;
* labels are plain ``String`` (``LowCardinality`` is experimental in 18.16) and closed sets are ``Enum8``;
* times are ``UInt64`` unix nanoseconds as the log has them, plus a ``DateTime`` (seconds, UTC) of the first
  sighting for partitions and time buckets (``DateTime64`` came in 20.1).

docs/export.md#upgrading gives the ALTERs to ``UInt256`` / ``LowCardinality`` on newer servers.

Every table is ``ReplacingMergeTree`` ordered by ``(chain_id, seq)``: a row is identified by its event's seq, so
a replayed insert collapses into the first at merge time (and ``FINAL`` collapses it at read time). The exporter
does not rely on that (it skips what ClickHouse already holds: :mod:`processd.export.sink`), it is the backstop.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Bump when a table changes shape; stored in ``export_cursor.schema_version`` for the next exporter to check.
SCHEMA_VERSION = 1

_EVENT_KIND = "Enum8('UNSPECIFIED' = 0, 'TX_SEEN' = 1, 'TX_DECODED' = 2, 'OPP_DETECTED' = 3, 'TX_SOURCE_SEEN' = 4)"
_CATEGORY = "Enum8('UNSPECIFIED' = 0, 'SWAP' = 1, 'TRANSFER' = 2, 'APPROVAL' = 3, 'OTHER' = 4)"
_OPP_KIND = ("Enum8('UNSPECIFIED' = 0, 'SANDWICH_CANDIDATE' = 1, 'BACKRUN_CANDIDATE' = 2, "
             "'ARB_CANDIDATE' = 3)")
_HASH = "FixedString(32)"
_ADDR = "FixedString(20)"
_U256 = "String"
_OPT_U256 = "Nullable(String)"

#: Columns every table starts with, in this order (the mapper's rows start with them too).
_HEAD: tuple[tuple[str, str], ...] = (
    ("chain_id", "UInt64"),
    ("seq", "UInt64"),
    ("tx_hash", _HASH),
    ("first_seen", "DateTime"),
    ("first_seen_ns", "UInt64"),
    ("received_ns", "UInt64"),
)


@dataclass(frozen=True, slots=True)
class Table:
    """One exported table: its name and columns (name, ClickHouse type) in row order."""

    name: str
    columns: tuple[tuple[str, str], ...]
    doc: str

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)


EVENTS = Table("events", (*_HEAD, ("kind", _EVENT_KIND), ("source_id", "String")),
               "one row per event of the log, every kind (the completeness check: seqs per chain)")
TRANSACTIONS = Table("transactions", (
    *_HEAD,
    ("source_id", "String"),
    ("sender", _ADDR),
    ("to_address", f"Nullable({_ADDR})"),  # NULL: contract creation
    ("nonce", "UInt64"),
    ("value", _U256),
    ("gas", "UInt64"),
    ("gas_price", _OPT_U256),
    ("max_fee_per_gas", _OPT_U256),
    ("max_priority_fee_per_gas", _OPT_U256),
    ("tx_type", "UInt8"),
    ("selector", "String"),  # first 4 bytes of input (fewer when the input is shorter)
    ("input_len", "UInt32"),
    ("input", "String"),
), "TX_SEEN: the pending transaction as first seen")
FEATURES = Table("features", (
    *_HEAD,
    ("protocol", "String"),
    ("category", _CATEGORY),
    ("method", "String"),
    ("selector", "String"),
    ("decoded", "UInt8"),
    ("decode_error", "String"),
    ("token_in", f"Nullable({_ADDR})"),
    ("token_out", f"Nullable({_ADDR})"),
    ("amount_in", _OPT_U256),
    ("amount_out_min", _OPT_U256),
    ("amount_in_max", _OPT_U256),
    ("amount_out", _OPT_U256),
    ("path", f"Array({_ADDR})"),
    ("fee_tiers", "Array(UInt32)"),
    ("recipient", f"Nullable({_ADDR})"),
    ("deadline", "Nullable(UInt64)"),
    ("value", _U256),
    ("gas_price", _U256),
    ("priority_fee", _U256),
    ("calldata_len", "UInt32"),
), "TX_DECODED: decoded calldata features")
OPPORTUNITIES = Table("opportunities", (
    *_HEAD,
    ("kind", _OPP_KIND),
    ("score", "UInt8"),
    ("reasons", "Array(String)"),
    ("protocol", "String"),
    ("token_in", f"Nullable({_ADDR})"),
    ("token_out", f"Nullable({_ADDR})"),
    ("notional_wei", _OPT_U256),
    ("slippage_bps", "UInt32"),
), "OPP_DETECTED: ranked opportunities (join transactions on (chain_id, tx_hash) for sender and router)")
TX_SOURCES = Table("tx_sources", (
    *_HEAD,
    ("source_id", "String"),
    ("seen_ns", "UInt64"),
    ("tx_seq", "UInt64"),
), "TX_SOURCE_SEEN: a later source's own first sighting of a stored transaction")

#: The data tables, in insert order (``events`` last: a reader that sees an event row finds its details).
DATA_TABLES: tuple[Table, ...] = (TRANSACTIONS, FEATURES, OPPORTUNITIES, TX_SOURCES, EVENTS)

#: The resume cursor: one row per batch (ReplacingMergeTree keeps the highest next_seq per name at merge time;
#: readers take max(next_seq)). Always a plain table on the server the exporter talks to, never sharded.
CURSOR_TABLE = "export_cursor"


def local_name(table: Table, cluster: str) -> str:
    """The name of a table's storage: ``<name>_local`` on each shard when distributed, else ``<name>``."""
    return f"{table.name}_local" if cluster else table.name


def _columns_sql(table: Table) -> str:
    return ",\n    ".join(f"`{name}` {kind}" for name, kind in table.columns)


def storage_ddl(database: str, table: Table, cluster: str = "") -> str:
    """CREATE TABLE of a table's storage (ReplacingMergeTree by (chain_id, seq), monthly partitions)."""
    return (f"CREATE TABLE IF NOT EXISTS `{database}`.`{local_name(table, cluster)}` (\n    {_columns_sql(table)}\n)"
            " ENGINE = ReplacingMergeTree() PARTITION BY toYYYYMM(first_seen) ORDER BY (chain_id, seq)")


def distributed_ddl(database: str, table: Table, cluster: str) -> str:
    """CREATE TABLE of the Distributed table over the shards' ``<name>_local``, sharded by chain_id (so a chain's
    rows, and every query per chain, stay on one shard)."""
    return (f"CREATE TABLE IF NOT EXISTS `{database}`.`{table.name}` (\n    {_columns_sql(table)}\n)"
            f" ENGINE = Distributed({cluster}, {database}, {local_name(table, cluster)}, chain_id)")


def cursor_ddl(database: str) -> str:
    """CREATE TABLE of the resume cursor: (name, next_seq) rows, the newest kept per name."""
    return (f"CREATE TABLE IF NOT EXISTS `{database}`.`{CURSOR_TABLE}` (\n    `name` String,\n"
            "    `next_seq` UInt64,\n    `schema_version` UInt32,\n    `written` DateTime\n)"
            " ENGINE = ReplacingMergeTree(next_seq) ORDER BY name")


def insert_sql(database: str, table: Table) -> str:
    """The INSERT of a table's rows (through the Distributed table when there is one)."""
    return f"INSERT INTO `{database}`.`{table.name}` ({', '.join(table.column_names)}) VALUES"
