"""A ScanEvents page mapped to the exporter's columns straight from its bytes, by the C extension ``_colmap``.

Why (docs/export.md#benchmark): mapping was two thirds of the exporter's CPU, and nearly all of it was reading
upb message fields from Python, each read a new Python object and a lookup by name (3.1 us per row: the exporter
ran at 0.45 of the plain bulk insert). ``_colmap`` walks the page's wire bytes once and appends each value to
its column list, in C.

It knows nothing of mempulse's messages: this module tells it, for the events table and the detail tables of
:data:`PLANNED` kinds, which field of which message goes into which column, as what, read from the generated
descriptors (field numbers, types, presence), so a renumbered or retyped field moves with the proto or stops
this path (:func:`plan` raises; the exporter then maps every page with protobuf). Then the few conversions
Python does as cheaply (decimal strings, enum names, the selector) run on the columns.

:func:`columns_of_page` is the exporter's entry: the same columns as :func:`mapper.columns_of` on the parsed page
(``tests/export/test_colmap.py`` holds them equal: synthetic logs, every kind, property-based pages, mutated and
truncated bytes). Whatever ``_colmap`` does not reproduce exactly as protobuf reads it (a message field given
twice, a kind with another kind's body, a known field with another wire type, a string that is not UTF-8,
malformed bytes), it declines, and that page is mapped by :func:`mapper.columns_of`; events of kinds outside
:data:`PLANNED` (blocks, pool states, the lifecycle) are mapped by it too, from the parsed page. Without the
compiled extension (a source install with no C compiler), every page goes the protobuf way: slower, the same.

What it reads it checks as protobuf does (wire types, lengths, UTF-8); a field no column takes it skips as protobuf
skips an unknown field, by its length, without looking inside. So a page protobuf would refuse only for what is
inside such a field (an invalid UTF-8 string the exporter does not export) is exported, where the protobuf path
stops with :class:`~processd.export.errors.MalformedPage`; processd's encoders write no such page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, NamedTuple

from google.protobuf.descriptor import FieldDescriptor

from common.pb.v1 import events_pb2, query_pb2
from processd.export import mapper
from processd.export.mapper import (
    CATEGORY_NAMES,
    DROP_REASON_NAMES,
    KIND_NAMES,
    OPP_KIND_NAMES,
    TX_STATUS_NAMES,
    UNKNOWN_KIND,
    Columns,
)
from processd.export.schema import (
    DROPS,
    EVENTS,
    FEATURES,
    INCLUSIONS,
    OPPORTUNITIES,
    REPLACEMENTS,
    TRANSACTIONS,
    TX_SOURCES,
    Table,
)

try:
    from processd.export import _colmap  # type: ignore[attr-defined]
except ImportError:  # not compiled: the protobuf path maps every page
    _colmap = None

log = logging.getLogger(__name__)

_FD = FieldDescriptor
# _colmap's value types (its enum of the same names)
_U64, _U32, _I32, _I64, _BOOL_INT, _BYTES, _BYTES_OR_NONE, _OPT_BYTES, _STRING, _OPT_U64 = range(1, 11)
_REP_BYTES, _REP_STRING, _REP_U32, _MESSAGE, _DECIMAL, _OPT_DECIMAL = range(11, 17)
_SCALAR = {_FD.TYPE_UINT64: _U64, _FD.TYPE_UINT32: _U32, _FD.TYPE_INT32: _I32, _FD.TYPE_ENUM: _I32,
           _FD.TYPE_INT64: _I64, _FD.TYPE_BOOL: _BOOL_INT, _FD.TYPE_BYTES: _BYTES, _FD.TYPE_STRING: _STRING}
_PRESENT = {_FD.TYPE_BYTES: _OPT_BYTES, _FD.TYPE_UINT64: _OPT_U64}
_REPEATED = {_FD.TYPE_BYTES: _REP_BYTES, _FD.TYPE_STRING: _REP_STRING, _FD.TYPE_UINT32: _REP_U32}

def _under(prefix: str, names: Sequence[str]) -> tuple[str, ...]:
    return tuple(f"{prefix}.{name}" for name in names)


_AMOUNTS = ("amount_in", "amount_out_min", "amount_in_max", "amount_out")
#: A row field that is the event's own source_id (not its body's).
_EVENT_SOURCE = "@source_id"

#: Event kind -> (its table, the body field, the fields in row order (dotted: a submessage's field; ``@source_id``:
#: the event's own), those an empty value makes NULL, the uint256 amounts written as decimal digits). The fields
#: are the table's columns after the head, as read or as :data:`_FINISH` completes them. Blocks, pool states and
#: reorgs (a few per block; their rows start otherwise, and a block's hashes are repeated messages) stay with
#: the protobuf mapper.
PLANNED: dict[int, tuple[Table, str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    events_pb2.EVENT_KIND_TX_SEEN: (
        TRANSACTIONS, "tx_seen", _under("tx", (
            "source_id", "sender", "to", "nonce", "value", "gas", "gas_price", "max_fee_per_gas",
            "max_priority_fee_per_gas", "tx_type", "input")), ("tx.to",),
        _under("tx", ("value", "gas_price", "max_fee_per_gas", "max_priority_fee_per_gas"))),
    events_pb2.EVENT_KIND_TX_DECODED: (
        FEATURES, "tx_decoded", _under("features", (
            "protocol", "category", "method", "selector", "decoded", "decode_error", "token_in", "token_out",
            *_AMOUNTS, "path", "fee_tiers", "recipient", "deadline", "value", "gas_price", "priority_fee",
            "calldata_len")),
        _under("features", ("token_in", "token_out", "recipient")),
        _under("features", (*_AMOUNTS, "value", "gas_price", "priority_fee"))),
    events_pb2.EVENT_KIND_OPP_DETECTED: (
        OPPORTUNITIES, "opp_detected", _under("opportunity", (
            "kind", "score", "reasons", "protocol", "token_in", "token_out", "notional_wei", "slippage_bps")),
        _under("opportunity", ("token_in", "token_out")), ("opportunity.notional_wei",)),
    events_pb2.EVENT_KIND_TX_SOURCE_SEEN: (
        TX_SOURCES, "tx_source_seen", ("sighting.source_id", "sighting.seen_unix_ns", "tx_seq_id"), (), ()),
    events_pb2.EVENT_KIND_TX_INCLUDED: (
        INCLUSIONS, "tx_included", (_EVENT_SOURCE, "block_number", "block_hash", "index", "status",
                                    "inclusion_latency_ms", "tx_seq_id", "block_seq_id", "reincluded"), (), ()),
    events_pb2.EVENT_KIND_TX_REPLACED: (
        REPLACEMENTS, "tx_replaced", (_EVENT_SOURCE, "by_hash", "fee_bump_bps", "cancel", "tx_seq_id", "by_block"),
        (), ()),
    events_pb2.EVENT_KIND_TX_DROPPED: (DROPS, "tx_dropped", ("reason", "tx_seq_id", "source_id"), (), ()),
}

#: The Event fields of the head columns, in _colmap's order.
_HEAD = ("seq_id", "chain_id", "kind", "tx_hash", "first_seen_unix_ns", "received_unix_ns", "source_id")


def _code(fd: FieldDescriptor, none_if_empty: bool, amount: bool) -> int:
    """The ``_colmap`` type of a field, from its descriptor (KeyError: a type this path does not read)."""
    if amount:
        if fd.type != _FD.TYPE_BYTES or fd.is_repeated:
            raise KeyError(f"{fd.full_name}: an amount is bytes")
        return _OPT_DECIMAL if fd.has_presence else _DECIMAL
    if fd.is_repeated:
        return _REPEATED[fd.type]
    if fd.has_presence:
        return _PRESENT[fd.type]
    if none_if_empty:
        if fd.type != _FD.TYPE_BYTES:
            raise KeyError(f"{fd.full_name}: only bytes are NULL when empty")
        return _BYTES_OR_NONE
    return _SCALAR[fd.type]


def _default(fd: FieldDescriptor, code: int) -> Any:
    """A field's value in a row before it is read (a list: each row gets a list of its own)."""
    if code in (_REP_BYTES, _REP_STRING, _REP_U32):
        return []
    if code in (_OPT_BYTES, _OPT_U64, _BYTES_OR_NONE, _OPT_DECIMAL):
        return None
    if code == _DECIMAL:
        return "0"
    return 0 if code == _BOOL_INT else fd.default_value


def _spec(message: Any, fields: Sequence[tuple[str, int]], none: Sequence[str], amounts: Sequence[str],
          defaults: list[Any]) -> tuple[Any, ...]:
    """The spec of ``message`` (a Descriptor): each (dotted name, row slot) of ``fields``; a dotted name's first
    part is a submessage of ``message``, whose own spec reads the rest. Fills ``defaults`` by slot."""
    items: list[tuple[int, int, int, Any]] = []
    nested: dict[str, list[tuple[str, int]]] = {}
    for name, slot in fields:
        first, dot, rest = name.partition(".")
        if dot:
            nested.setdefault(first, []).append((rest, slot))
            continue
        fd = message.fields_by_name[name]
        code = _code(fd, name in none, name in amounts)
        defaults[slot] = _default(fd, code)
        items.append((fd.number, code, slot, None))
    for name, sub_fields in nested.items():
        fd = message.fields_by_name[name]
        if fd.message_type is None or fd.is_repeated:
            raise KeyError(f"{fd.full_name}: not a submessage")
        sub_none, sub_amounts = ([n.partition(".")[2] for n in names if n.startswith(f"{name}.")]
                                 for names in (none, amounts))
        items.append((fd.number, _MESSAGE, 0, _spec(fd.message_type, sub_fields, sub_none, sub_amounts, defaults)))
    return tuple(items)


def _table_plan(kind: int) -> tuple[int, int, tuple[Any, ...], tuple[Any, ...], int]:
    """One table's part of the plan: (kind, the body's field number, the body message's spec, the row's defaults,
    the slot of the event's own source_id or -1)."""
    _table, body, fields, none, amounts = PLANNED[kind]
    body_fd = events_pb2.Event.DESCRIPTOR.fields_by_name[body]
    defaults: list[Any] = [None] * len(fields)
    source_slot = fields.index(_EVENT_SOURCE) if _EVENT_SOURCE in fields else -1
    body_fields = [(name, slot) for slot, name in enumerate(fields) if slot != source_slot]
    spec = _spec(body_fd.message_type, body_fields, none, amounts, defaults)
    return kind, body_fd.number, spec, tuple(defaults), source_slot


@cache
def plan() -> Any:
    """The compiled plan (once per process), or None: no extension, or a field this path cannot read (logged)."""
    if _colmap is None:
        return None
    try:
        return _compile()
    except (KeyError, ValueError) as exc:
        log.warning("pages are mapped with protobuf, not _colmap: %s", exc)
        return None


def _compile() -> Any:
    event = events_pb2.Event.DESCRIPTOR
    kinds = max(KIND_NAMES) + 1
    page = query_pb2.ScanEventsResponse.DESCRIPTOR.fields_by_name
    return _colmap.compile_plan((
        (page["events"].number, page["next_seq_id"].number, page["last_seq_id"].number),
        tuple(event.fields_by_name[name].number for name in _HEAD),
        tuple(fd.number for fd in event.oneofs_by_name["body"].fields),
        tuple(KIND_NAMES.get(k, UNKNOWN_KIND) for k in range(kinds)), UNKNOWN_KIND,
        tuple(_table_plan(kind) for kind in PLANNED)))


def available() -> bool:
    """Whether pages are mapped by the compiled extension."""
    return plan() is not None


# ---- the conversions left to Python, column by column ----------------------------------------------------------


def _finish_transactions(cols: Columns) -> Columns:
    inputs = cols[-1]
    return [*cols[:-1], [i[:4] for i in inputs], list(map(len, inputs)), inputs]


def _finish_features(cols: Columns) -> Columns:
    cats = CATEGORY_NAMES
    return [*cols[:7], [cats.get(v, "UNSPECIFIED") for v in cols[7]], *cols[8:]]


def _finish_opportunities(cols: Columns) -> Columns:
    kinds = OPP_KIND_NAMES
    return [*cols[:6], [kinds.get(k, "UNSPECIFIED") for k in cols[6]], [s if s < 255 else 255 for s in cols[7]],
            *cols[8:]]


def _finish_inclusions(cols: Columns) -> Columns:
    names = TX_STATUS_NAMES
    return [*cols[:10], [names.get(s, "UNSPECIFIED") for s in cols[10]], *cols[11:]]


def _finish_drops(cols: Columns) -> Columns:
    names = DROP_REASON_NAMES
    return [*cols[:6], [names.get(r, "UNSPECIFIED") for r in cols[6]], *cols[7:]]


def _as_read(cols: Columns) -> Columns:
    return cols


_FINISH = {TRANSACTIONS.name: _finish_transactions, FEATURES.name: _finish_features,
           OPPORTUNITIES.name: _finish_opportunities, TX_SOURCES.name: _as_read, INCLUSIONS.name: _finish_inclusions,
           REPLACEMENTS.name: _as_read, DROPS.name: _finish_drops}


class PageSummary(NamedTuple):
    """What the exporter needs of a catch-up page before mapping it (:func:`page_summary`)."""

    #: Events in the page.
    event_count: int
    #: The first and last event's seq (0 without events).
    first_seq: int
    last_seq: int
    #: ScanEventsResponse.next_seq_id and last_seq_id.
    next_seq_id: int
    last_seq_id: int


def page_summary(raw: bytes) -> PageSummary | None:
    """A serialized ScanEventsResponse's :class:`PageSummary`, read by ``_colmap`` without building its messages
    (the protobuf parse is then needed only if the page is mapped by protobuf); None without the extension, or
    when the bytes are not plain wire data (parse them)."""
    compiled = plan()
    found = _colmap.summary(compiled, raw) if compiled is not None else None
    return PageSummary(*found) if found is not None else None


def columns_of_page(raw: bytes | None, events: Callable[[], Sequence[events_pb2.Event]]) -> dict[str, Columns]:
    """The columns of a page by table name, as :func:`mapper.columns_of` gives them for the page parsed
    (``events()``, called only when needed), mapped from ``raw`` (its bytes) by ``_colmap`` where it can."""
    compiled = plan()
    decoded = _colmap.decode(compiled, raw) if compiled is not None and raw is not None else None
    if decoded is None:
        return mapper.columns_of(events())
    tables, others = decoded
    out = mapper.empty_columns()
    out[EVENTS.name] = tables[0]
    for (table, *_), cols in zip(PLANNED.values(), tables[1:], strict=True):
        if cols[0]:
            out[table.name] = _FINISH[table.name](cols)
    if others:  # kinds without a plan: from the parsed page, with the head columns _colmap read
        parsed = events()
        mapper.detail_columns(out, [parsed[i] for i in others], mapper.pick(tables[0], others))
    return out


