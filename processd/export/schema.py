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

import re
from dataclasses import dataclass

from common.pb.v1 import block_pb2, events_pb2, pool_pb2

#: Bump when a table changes shape; stored in ``export_cursor.schema_version`` for the next exporter to check.
#: 2: ``events.kind`` holds every kind of the proto (BLOCK, POOL_STATE, ...), tables ``blocks`` and ``pool_states``.
#: 3: the transaction lifecycle's tables ``inclusions``, ``replacements``, ``drops`` and ``reorgs``.
SCHEMA_VERSION = 3
#: Older schema versions whose tables :meth:`processd.export.sink.ClickHouseSink.ensure_schema` upgrades in place
#: (1: ``events.kind`` an Enum8 of the first four kinds only, no blocks / pool_states tables; 2: no lifecycle
#: tables). Missing tables are created; nothing else changes shape.
UPGRADABLE_VERSIONS = frozenset({1, 2})


def enum8(prefix: str, items: list[tuple[str, int]]) -> str:
    """An ``Enum8`` of a proto enum's values, named without ``prefix`` (the names the mapper writes). A value past
    Enum8's range fails here, with the fix in the message, rather than as a DDL error the exporter would retry."""
    outside = [name for name, value in items if not -128 <= value <= 127]
    if outside:
        raise ValueError(f"{outside} do not fit an Enum8 (-128..127): declare the column Enum16 and bump "
                         "SCHEMA_VERSION")
    values = ", ".join(f"'{name.removeprefix(prefix)}' = {value}" for name, value in sorted(items, key=lambda i: i[1]))
    return f"Enum8({values})"


#: Every event kind this exporter's proto knows: a kind added to the proto becomes a value without an edit here
#: (an existing table is upgraded in place at start: the values of an older Enum8 are a subset of these).
_EVENT_KIND = enum8("EVENT_KIND_", events_pb2.EventKind.items())
_POOL_SOURCE = enum8("POOL_STATE_SOURCE_", pool_pb2.PoolStateSource.items())
_TX_STATUS = enum8("TX_STATUS_", block_pb2.TxStatus.items())
_DROP_REASON = enum8("DROP_REASON_", events_pb2.DropReason.items())
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
    """One exported table: its name, columns (name, ClickHouse type) in row order, and its partition key.
    The first two columns are always ``chain_id`` and ``seq`` (the resume reads them by position)."""

    name: str
    columns: tuple[tuple[str, str], ...]
    doc: str
    partition: str = "toYYYYMM(first_seen)"

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
BLOCKS = Table("blocks", (
    ("chain_id", "UInt64"),
    ("seq", "UInt64"),
    ("first_seen", "DateTime"),  # when ingestd learnt of the block
    ("first_seen_ns", "UInt64"),
    ("received_ns", "UInt64"),
    ("source_id", "String"),  # the source that announced the head
    ("number", "UInt64"),
    ("hash", _HASH),
    ("parent_hash", _HASH),
    ("timestamp", "DateTime"),  # the block's own timestamp
    ("base_fee", _OPT_U256),  # NULL: a chain without EIP-1559
    ("tx_count", "UInt32"),  # every transaction of the block
    ("seen_pending", "UInt32"),  # of tx_hashes, those processd had stored as pending before the block
    ("truncated", "UInt8"),  # 1: tx_hashes holds the first ingestd sent only (tx_count has them all)
    ("tx_hashes", f"Array({_HASH})"),  # in block order (join transactions on (chain_id, tx_hash) for inclusion)
), "BLOCK: a block of the chain as ingestd reported it")
POOL_STATES = Table("pool_states", (
    ("chain_id", "UInt64"),
    ("seq", "UInt64"),
    ("received", "DateTime"),  # when processd stored the state (the event has no first sighting)
    ("received_ns", "UInt64"),
    ("pair", _ADDR),
    ("factory", _ADDR),
    ("token0", _ADDR),
    ("token1", _ADDR),
    ("reserve0", _U256),  # token0 units
    ("reserve1", _U256),  # token1 units
    ("block_number", "UInt64"),  # the reserves hold after this block
    ("block_hash", _HASH),
    ("source", _POOL_SOURCE),  # how ingestd read them: GET_RESERVES or SYNC_LOG
), "POOL_STATE: a Uniswap V2-style pair's reserves as of a block", partition="toYYYYMM(received)")

# The transaction lifecycle (issue 16): what happened to a pending transaction, one row per lifecycle event. The
# head's first_seen is the transaction's (its partition and time buckets are those of its transactions row).
INCLUSIONS = Table("inclusions", (
    *_HEAD,
    ("source_id", "String"),  # the source that announced the block
    ("block_number", "UInt64"),
    ("block_hash", _HASH),
    ("tx_index", "UInt32"),  # position in the block
    ("status", _TX_STATUS),  # receipt status: OK, REVERTED, UNSPECIFIED (no receipt)
    ("inclusion_latency_ms", "UInt64"),  # block timestamp - first seen (clamped at 0)
    ("tx_seq", "UInt64"),  # seq of the transaction's TX_SEEN
    ("block_seq", "UInt64"),  # seq of the BLOCK that included it
    ("reincluded", "UInt8"),  # 1: included again in a new branch after a reorg un-included it
), "TX_INCLUDED: a tracked pending transaction included in a block")
REPLACEMENTS = Table("replacements", (
    *_HEAD,
    ("source_id", "String"),
    ("by_hash", _HASH),  # the replacing transaction
    ("fee_bump_bps", "Int64"),  # the replacement's bid over this one's, basis points (0: a bid unknown)
    ("cancel", "UInt8"),  # 1: a 0-value self-transfer without calldata
    ("tx_seq", "UInt64"),
    ("by_block", "UInt8"),  # 1: the replacement was seen included in a block
), "TX_REPLACED: a tracked pending transaction replaced by another of its sender and nonce")
DROPS = Table("drops", (
    *_HEAD,
    ("reason", _DROP_REASON),  # EXPIRED, EVICTED, NONCE_PASSED
    ("tx_seq", "UInt64"),
    ("source_id", "String"),  # EVICTED: the source whose node no longer knew it
), "TX_DROPPED: a tracked pending transaction that left the pool without being included")
REORGS = Table("reorgs", (
    ("chain_id", "UInt64"),
    ("seq", "UInt64"),
    ("received", "DateTime"),  # when processd stored the block that caused it (the event has no first sighting)
    ("received_ns", "UInt64"),
    ("source_id", "String"),
    ("number", "UInt64"),  # the new block's height
    ("new_hash", _HASH),
    ("depth", "UInt32"),  # stored blocks of the chain it orphans
    ("orphaned_hashes", f"Array({_HASH})"),  # lowest height first
    ("unincluded", "UInt32"),  # transactions pending again
    ("too_deep", "UInt8"),  # 1: deeper than processd's lifecycle_max_reorg_depth
), "REORG: a block at a height processd had seen with another hash", partition="toYYYYMM(received)")

#: The data tables, in insert order (``events`` last: a reader that sees an event row finds its details).
DATA_TABLES: tuple[Table, ...] = (TRANSACTIONS, FEATURES, OPPORTUNITIES, TX_SOURCES, BLOCKS, POOL_STATES,
                                  INCLUSIONS, REPLACEMENTS, DROPS, REORGS, EVENTS)

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
            f" ENGINE = ReplacingMergeTree() PARTITION BY {table.partition} ORDER BY (chain_id, seq)")


def distributed_ddl(database: str, table: Table, cluster: str) -> str:
    """CREATE TABLE of the Distributed table over the shards' ``<name>_local``, sharded by chain_id (so a chain's
    rows, and every query per chain, stay on one shard)."""
    return (f"CREATE TABLE IF NOT EXISTS `{database}`.`{table.name}` (\n    {_columns_sql(table)}\n)"
            f" ENGINE = Distributed({cluster}, {database}, {local_name(table, cluster)}, chain_id)")


def modify_column_sql(database: str, name: str, column: str, kind: str) -> str:
    """ALTER of one column's type (an Enum8 given more values: a metadata change, no data is rewritten)."""
    return f"ALTER TABLE `{database}`.`{name}` MODIFY COLUMN `{column}` {kind}"


def enum_values(kind: str) -> dict[str, int] | None:
    """The values of an ``Enum8(...)`` type as ClickHouse reports it (system.columns), else None."""
    match = re.fullmatch(r"Enum8\((.*)\)", kind.strip())
    if match is None:
        return None
    pairs = re.findall(r"'((?:[^'\\]|\\.)*)'\s*=\s*(-?\d+)", match.group(1))
    return {name: int(value) for name, value in pairs}


def cursor_ddl(database: str) -> str:
    """CREATE TABLE of the resume cursor: (name, next_seq) rows, the newest kept per name."""
    return (f"CREATE TABLE IF NOT EXISTS `{database}`.`{CURSOR_TABLE}` (\n    `name` String,\n"
            "    `next_seq` UInt64,\n    `schema_version` UInt32,\n    `written` DateTime\n)"
            " ENGINE = ReplacingMergeTree(next_seq) ORDER BY name")


def insert_sql(database: str, table: Table) -> str:
    """The INSERT of a table's rows (through the Distributed table when there is one)."""
    return f"INSERT INTO `{database}`.`{table.name}` ({', '.join(table.column_names)}) VALUES"
