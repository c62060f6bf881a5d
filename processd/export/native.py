"""The exporter's columns encoded into ClickHouse's Native format here, a whole column per C-level call where the
type allows, instead of by clickhouse-driver's column classes.

Profiled (docs/export.md#benchmark), the driver spent about 2 us per row encoding the exporter's columns, most of
it in per-value Python loops it runs before the bytes: an ``Enum8`` name looked up value by value, a ``DateTime``
checked value by value, a ``Nullable`` column's null map and defaults built value by value, an ``Array``'s
offsets summed value by value. Here those are list comprehensions or C calls over the whole column (``None in``,
``bytes(...)``, ``itertools.accumulate``, ``struct.pack``); ``String`` and ``FixedString`` data still go through
the driver's own Cython writer (``write_strings`` / ``write_fixed_strings``), which is already one C loop.

The bytes are the driver's, value for value (``tests/export/test_native.py`` inserts the same columns both ways and
reads them back equal): only who loops changes. A type this module does not know (a newer schema's) is written by
the driver's own column class, so nothing depends on the list below being complete.

:class:`NativeClient` is a clickhouse-driver ``Client`` whose INSERT takes a :class:`Columns` (the columns of one
block): the query, the server's sample block and the end of the INSERT stay the driver's; only the block's bytes
are written here, on the server's column names and types (a table whose columns differ from ours fails the INSERT
with :class:`~processd.export.errors.ColumnsMismatch`).
"""

from __future__ import annotations

import queue
import re
import struct
from collections.abc import Callable, Sequence
from itertools import accumulate, chain
from typing import Any

from clickhouse_driver import Client
from clickhouse_driver import defines as ch_defines
from clickhouse_driver.block import ColumnOrientedBlock
from clickhouse_driver.columns.service import write_column
from clickhouse_driver.protocol import ClientPacketTypes
from clickhouse_driver.varint import write_varint
from clickhouse_driver.writer import write_binary_str, write_binary_uint8

from processd.export.errors import ColumnsMismatch, FeedAborted

#: Writes one column's data (``items``, a list the encoder may not keep) to the connection's buffered writer.
Encoder = Callable[[list[Any], Any], None]

_INTS = {"UInt8": "B", "UInt16": "H", "UInt32": "I", "UInt64": "Q", "Int8": "b", "Int16": "h", "Int32": "i",
         "Int64": "q", "DateTime": "I"}
_ENUM = re.compile(r"^Enum(8|16)\((.*)\)$", re.S)
_ENUM_ITEM = re.compile(r"'((?:[^'\\]|\\.)*)'\s*=\s*(-?\d+)")


class Columns(list[list[Any]]):
    """The columns of one block to INSERT (a list, as clickhouse-driver's ``execute`` wants its data), in the
    INSERT's column order, all of the same length."""

    @property
    def rows(self) -> int:
        return len(self[0]) if self else 0


class BlockFeed(list[Any]):
    """The blocks of one INSERT, taken from ``blocks`` until a None (a list, as ``execute`` wants its data; the list
    itself stays empty). :attr:`ABORT` instead of None fails the INSERT: nothing of it is stored."""

    ABORT: Any = object()

    def __init__(self, blocks: queue.Queue[Columns | None]) -> None:
        super().__init__()
        self.blocks = blocks


def _ints(code: str) -> Encoder:
    def encode(items: list[Any], out: Any) -> None:
        out.write(struct.pack(f"<{len(items)}{code}", *items))
    return encode


def _enum(kind: str, code: str) -> Encoder:
    match = _ENUM.match(kind)
    assert match is not None
    values = {name.replace("\\'", "'"): int(value) for name, value in _ENUM_ITEM.findall(match.group(2))}
    known = set(values.values())

    def encode(items: list[Any], out: Any) -> None:
        try:  # names (the mapper's), or the values themselves
            numbers = [values[v] if v.__class__ is str else v for v in items]
        except KeyError as exc:
            raise ColumnsMismatch(f"{exc.args[0]!r} is not a value of {kind}") from None
        if not known.issuperset(numbers):
            raise ColumnsMismatch(f"{sorted(set(numbers) - known)} are not values of {kind}")
        out.write(struct.pack(f"<{len(numbers)}{code}", *numbers))
    return encode


def _strings(items: list[Any], out: Any) -> None:
    out.write_strings(items, encoding="utf-8")


def _fixed(length: int) -> Encoder:
    def encode(items: list[Any], out: Any) -> None:
        out.write_fixed_strings(items, length, encoding="utf-8")
    return encode


def _nullable(inner: Encoder, default: Any) -> Encoder:
    def encode(items: list[Any], out: Any) -> None:
        if None in items:  # one C scan; most columns of a block are all set or all unset
            out.write(bytes([v is None for v in items]))
            inner([default if v is None else v for v in items], out)
        else:
            out.write(bytes(len(items)))
            inner(items, out)
    return encode


def _array(inner: Encoder) -> Encoder:
    def encode(items: list[Any], out: Any) -> None:
        out.write(struct.pack(f"<{len(items)}Q", *accumulate(map(len, items))))
        inner(list(chain.from_iterable(items)), out)
    return encode


def encoder(kind: str) -> Encoder | None:
    """The encoder of a ClickHouse type, or None when this module does not know it (the driver writes it)."""
    if kind in _INTS:
        return _ints(_INTS[kind])
    if kind == "String":
        return _strings
    if kind.startswith("FixedString(") and kind.endswith(")"):
        return _fixed(int(kind[12:-1]))
    if kind.startswith("Enum8(") or kind.startswith("Enum16("):
        return _enum(kind, "b" if kind.startswith("Enum8(") else "h")
    if kind.startswith("Nullable(") and kind.endswith(")"):
        inner_kind = kind[9:-1]
        inner = encoder(inner_kind)
        default = _default(inner_kind)
        return _nullable(inner, default) if inner is not None and default is not None else None
    if kind.startswith("Array(") and kind.endswith(")"):
        inner = encoder(kind[6:-1])
        return _array(inner) if inner is not None else None
    return None


def _default(kind: str) -> Any:
    """The value written under a NULL (any value of the type: the null map hides it)."""
    if kind in _INTS:
        return 0
    if kind == "String" or kind.startswith("FixedString("):
        return b""
    return None


class NativeClient(Client):
    """A clickhouse-driver ``Client`` whose INSERT data may be a :class:`Columns` (one block) or a
    :class:`BlockFeed` (a block at a time as they come), written by :func:`encoder` (the driver's
    ``insert_block_size`` split does not apply). Any other data goes the driver's way."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._encoders: dict[str, Encoder | None] = {}

    def send_data(self, sample_block: Any, data: Any, types_check: bool = False, columnar: bool = False) -> int:
        if isinstance(data, Columns):
            blocks: Any = iter((data,))
        elif isinstance(data, BlockFeed):
            blocks = iter(data.blocks.get, None)
        else:
            return int(super().send_data(sample_block, data, types_check=types_check, columnar=columnar))
        spec = sample_block.columns_with_types
        conn = self.connection
        if conn.compression:
            raise ColumnsMismatch("NativeClient writes uncompressed blocks only")
        total = 0
        for block in blocks:
            if block is BlockFeed.ABORT:
                raise FeedAborted("the batch was given up")
            rows = block.rows
            if len(spec) != len(block):
                raise ColumnsMismatch(f"the server's table has columns {spec}, the block has {len(block)}")
            for column in block:
                if len(column) != rows:
                    raise ColumnsMismatch(f"columns of {rows} and {len(column)} rows in one block")
            self._write_block(conn, spec, block, rows)
            self.receive_profile_events()
            total += rows
        conn.send_data(ColumnOrientedBlock())  # an empty block ends the data
        self.receive_profile_events()
        return total

    def _write_block(self, conn: Any, spec: Sequence[tuple[str, str]], data: Columns, rows: int) -> None:
        out = conn.fout
        revision = conn.server_info.used_revision
        write_varint(ClientPacketTypes.DATA, out)
        if revision >= ch_defines.DBMS_MIN_REVISION_WITH_TEMPORARY_TABLES:
            write_binary_str("", out)  # the table name of an external table: none
        if revision >= ch_defines.DBMS_MIN_REVISION_WITH_BLOCK_INFO:
            ColumnOrientedBlock().info.write(out)
        write_varint(len(spec), out)
        write_varint(rows, out)
        for (name, kind), items in zip(spec, data, strict=True):
            write_binary_str(name, out)
            write_binary_str(kind, out)
            if revision >= ch_defines.DBMS_MIN_REVISION_WITH_CUSTOM_SERIALIZATION:
                write_binary_uint8(0, out)
            if kind not in self._encoders:
                self._encoders[kind] = encoder(kind)
            encode = self._encoders[kind]
            if encode is not None:
                encode(items, out)
            else:
                write_column(conn.context, name, kind, items, out)
        out.flush()
