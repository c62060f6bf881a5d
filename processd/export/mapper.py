"""Pure functions from ``mempulse.v1.Event`` messages to the rows of the tables in :mod:`processd.export.schema`.

No I/O and no state: the same event always gives the same rows (what makes a replayed batch identical to the
first, so ReplacingMergeTree can collapse it). Row order is the table's column order. One function per table
maps an event to a row tuple (the reference, in the style of ethereum-etl's mappers); :func:`columns_of` builds
the same values a whole column at a time: what the exporter inserts for the pages the C mapper
(:mod:`processd.export.colmap`) does not map, and the oracle that mapper is tested against.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from common.pb.v1 import block_pb2, events_pb2, pool_pb2
from processd.export.schema import (
    BLOCKS,
    DATA_TABLES,
    DROPS,
    EVENTS,
    FEATURES,
    INCLUSIONS,
    OPPORTUNITIES,
    POOL_STATES,
    REORGS,
    REPLACEMENTS,
    TRANSACTIONS,
    TX_SOURCES,
    Table,
)

Row = tuple[Any, ...]
_NS = 1_000_000_000
_TX_SEEN = events_pb2.EVENT_KIND_TX_SEEN
_TX_DECODED = events_pb2.EVENT_KIND_TX_DECODED
_OPP_DETECTED = events_pb2.EVENT_KIND_OPP_DETECTED
_TX_SOURCE_SEEN = events_pb2.EVENT_KIND_TX_SOURCE_SEEN
_BLOCK = events_pb2.EVENT_KIND_BLOCK
_POOL_STATE = events_pb2.EVENT_KIND_POOL_STATE
_TX_INCLUDED = events_pb2.EVENT_KIND_TX_INCLUDED
_TX_REPLACED = events_pb2.EVENT_KIND_TX_REPLACED
_TX_DROPPED = events_pb2.EVENT_KIND_TX_DROPPED
_REORG = events_pb2.EVENT_KIND_REORG
#: What ``events.kind`` says of a kind this exporter's proto does not know (a newer processd's): the row is still
#: written (the export stays complete by seq), and the exporter counts it (mempulse_export_unknown_kinds_total).
UNKNOWN_KIND = "UNSPECIFIED"
#: Event kind -> its value in the ``events.kind`` Enum8 (the names without the EVENT_KIND_ prefix).
KIND_NAMES = {value: name.removeprefix("EVENT_KIND_") for name, value in events_pb2.EventKind.items()}
CATEGORY_NAMES = {value: name.removeprefix("TX_CATEGORY_") for name, value in events_pb2.TxCategory.items()}
OPP_KIND_NAMES = {value: name.removeprefix("OPPORTUNITY_KIND_") for name, value in events_pb2.OpportunityKind.items()}
POOL_SOURCE_NAMES = {value: name.removeprefix("POOL_STATE_SOURCE_")
                     for name, value in pool_pb2.PoolStateSource.items()}
TX_STATUS_NAMES = {value: name.removeprefix("TX_STATUS_") for name, value in block_pb2.TxStatus.items()}
DROP_REASON_NAMES = {value: name.removeprefix("DROP_REASON_") for name, value in events_pb2.DropReason.items()}


def u256(raw: bytes) -> str:
    """A big-endian uint256 as exact decimal digits ("" and b"\\x00" are both "0")."""
    return str(int.from_bytes(raw, "big"))


def _opt_u256(msg: Any, field: str) -> str | None:
    """An ``optional bytes`` uint256: its decimal digits when set (a set empty value is 0), None when not set."""
    return str(int.from_bytes(getattr(msg, field), "big")) if msg.HasField(field) else None


def _head(ev: events_pb2.Event) -> Row:
    first = ev.first_seen_unix_ns
    return (ev.chain_id, ev.seq_id, ev.tx_hash, first // _NS, first, ev.received_unix_ns)


def event_row(ev: events_pb2.Event) -> Row:
    """The ``events`` row of any event."""
    return (*_head(ev), KIND_NAMES.get(ev.kind, UNKNOWN_KIND), ev.source_id)


def transaction_row(ev: events_pb2.Event) -> Row:
    """The ``transactions`` row of a TX_SEEN event."""
    tx = ev.tx_seen.tx
    data = tx.input
    return (*_head(ev), tx.source_id, tx.sender, tx.to or None, tx.nonce, u256(tx.value), tx.gas,
            _opt_u256(tx, "gas_price"), _opt_u256(tx, "max_fee_per_gas"), _opt_u256(tx, "max_priority_fee_per_gas"),
            tx.tx_type, data[:4], len(data), data)


def features_row(ev: events_pb2.Event) -> Row:
    """The ``features`` row of a TX_DECODED event."""
    f = ev.tx_decoded.features
    return (*_head(ev), f.protocol, CATEGORY_NAMES.get(f.category, "UNSPECIFIED"), f.method, f.selector,
            int(f.decoded), f.decode_error, f.token_in or None, f.token_out or None, _opt_u256(f, "amount_in"),
            _opt_u256(f, "amount_out_min"), _opt_u256(f, "amount_in_max"), _opt_u256(f, "amount_out"),
            list(f.path), list(f.fee_tiers), f.recipient or None, f.deadline if f.HasField("deadline") else None,
            u256(f.value), u256(f.gas_price), u256(f.priority_fee), f.calldata_len)


def opportunity_row(ev: events_pb2.Event) -> Row:
    """The ``opportunities`` row of an OPP_DETECTED event."""
    o = ev.opp_detected.opportunity
    return (*_head(ev), OPP_KIND_NAMES.get(o.kind, "UNSPECIFIED"), min(o.score, 255), list(o.reasons), o.protocol,
            o.token_in or None, o.token_out or None, _opt_u256(o, "notional_wei"), o.slippage_bps)


def source_row(ev: events_pb2.Event) -> Row:
    """The ``tx_sources`` row of a TX_SOURCE_SEEN event."""
    body = ev.tx_source_seen
    return (*_head(ev), body.sighting.source_id, body.sighting.seen_unix_ns, body.tx_seq_id)


def block_row(ev: events_pb2.Event) -> Row:
    """The ``blocks`` row of a BLOCK event."""
    body = ev.block
    b = body.block
    first = ev.first_seen_unix_ns
    return (ev.chain_id, ev.seq_id, first // _NS, first, ev.received_unix_ns, ev.source_id, b.number, b.hash,
            b.parent_hash, b.timestamp, u256(b.base_fee) if b.base_fee else None, b.tx_count, body.seen_pending,
            int(b.truncated), [t.hash for t in b.txs])


def pool_state_row(ev: events_pb2.Event) -> Row:
    """The ``pool_states`` row of a POOL_STATE event."""
    p = ev.pool_state.state
    received = ev.received_unix_ns
    return (ev.chain_id, ev.seq_id, received // _NS, received, p.pair, p.factory, p.token0, p.token1, u256(p.reserve0),
            u256(p.reserve1), p.block_number, p.block_hash, POOL_SOURCE_NAMES.get(p.source, "UNSPECIFIED"))


def inclusion_row(ev: events_pb2.Event) -> Row:
    """The ``inclusions`` row of a TX_INCLUDED event."""
    b = ev.tx_included
    return (*_head(ev), ev.source_id, b.block_number, b.block_hash, b.index,
            TX_STATUS_NAMES.get(b.status, "UNSPECIFIED"), b.inclusion_latency_ms, b.tx_seq_id, b.block_seq_id,
            int(b.reincluded))


def replacement_row(ev: events_pb2.Event) -> Row:
    """The ``replacements`` row of a TX_REPLACED event."""
    b = ev.tx_replaced
    return (*_head(ev), ev.source_id, b.by_hash, b.fee_bump_bps, int(b.cancel), b.tx_seq_id, int(b.by_block))


def drop_row(ev: events_pb2.Event) -> Row:
    """The ``drops`` row of a TX_DROPPED event."""
    b = ev.tx_dropped
    return (*_head(ev), DROP_REASON_NAMES.get(b.reason, "UNSPECIFIED"), b.tx_seq_id, b.source_id)


def reorg_row(ev: events_pb2.Event) -> Row:
    """The ``reorgs`` row of a REORG event."""
    r = ev.reorg
    received = ev.received_unix_ns
    return (ev.chain_id, ev.seq_id, received // _NS, received, ev.source_id, r.number, r.new_hash, r.depth,
            list(r.orphaned_hashes), r.unincluded, int(r.too_deep))


#: Event kind -> (its detail table, the row function). A kind not listed (a newer processd's) still gets its
#: ``events`` row, so the log stays complete; its details wait for a table of their own.
DETAIL: dict[int, tuple[Table, Any]] = {
    _TX_SEEN: (TRANSACTIONS, transaction_row),
    _TX_DECODED: (FEATURES, features_row),
    _OPP_DETECTED: (OPPORTUNITIES, opportunity_row),
    _TX_SOURCE_SEEN: (TX_SOURCES, source_row),
    _BLOCK: (BLOCKS, block_row),
    _POOL_STATE: (POOL_STATES, pool_state_row),
    _TX_INCLUDED: (INCLUSIONS, inclusion_row),
    _TX_REPLACED: (REPLACEMENTS, replacement_row),
    _TX_DROPPED: (DROPS, drop_row),
    _REORG: (REORGS, reorg_row),
}


def rows_of(events: Iterable[events_pb2.Event]) -> dict[str, list[Row]]:
    """The rows of ``events`` by table name: each event's ``events`` row and its detail row (the reference
    mapping; the exporter uses :func:`columns_of`, which :func:`tests.export.test_mapper` holds equal to it)."""
    rows: dict[str, list[Row]] = {table.name: [] for table in DATA_TABLES}
    ev_rows = rows[EVENTS.name]
    for ev in events:
        ev_rows.append(event_row(ev))
        detail = DETAIL.get(ev.kind)
        if detail is not None:
            rows[detail[0].name].append(detail[1](ev))
    return rows


# ---- whole columns at once (the protobuf mapper: colmap's fallback) ------------------------------------------
# The same values as the row functions above, built a column at a time with list comprehensions (no per-row
# tuple or call) and inserted with columnar=True (no transposition in the driver): about twice as fast as rows.
# Profiled (docs/export.md#benchmark), the mapping is the exporter's largest cost and nearly all of it is reading
# fields: each attribute read of a upb message builds a new Python object (an int, a bytes copy, a str, a
# submessage wrapper). So the code below reads each field once, walks the repeated container once (indexing or
# iterating it builds a wrapper per element: a plain list is walked for free after that), and converts each
# distinct amount once per page.

Columns = list[list[Any]]
#: Columns every table starts with (schema._HEAD): chain_id, seq, tx_hash, first_seen, first_seen_ns, received_ns.
_HEAD_LEN = 6
#: The head column of received_ns.
_RECEIVED_COL = 5


def _head_columns(evs: list[events_pb2.Event]) -> Columns:
    firsts = [e.first_seen_unix_ns for e in evs]
    return [[e.chain_id for e in evs], [e.seq_id for e in evs], [e.tx_hash for e in evs],
            [f // _NS for f in firsts], firsts, [e.received_unix_ns for e in evs]]


def _decimal(values: Sequence[bytes]) -> list[str]:
    """Big-endian uint256s as decimal strings, each distinct value converted once: in a page of a pool's
    transactions most amounts repeat (gas prices, tips, a zero value), and a dict hit is several times cheaper
    than int.from_bytes + str. The dict lives for one call: bounded by the page."""
    digits = {v: str(int.from_bytes(v, "big")) for v in set(values)}
    return [digits[v] for v in values]


def _opt_col(msgs: list[Any], field: str) -> list[str | None]:
    """An ``optional bytes`` uint256 column: decimal digits when set (a set empty value is "0"), None when not.
    The value is read first and HasField asked only of the empty ones (unset, or set to 0): a read and a
    HasField cost about the same, and a set value needs the read anyway."""
    get = attrgetter(field)
    raw = [get(m) for m in msgs]
    present = [v for v in raw if v]
    if not present:  # nothing set, or only zeros
        return ["0" if m.HasField(field) else None for m in msgs]
    digits = {v: str(int.from_bytes(v, "big")) for v in set(present)}
    return [digits[v] if v else ("0" if m.HasField(field) else None) for m, v in zip(msgs, raw, strict=True)]


def pick(head: Columns, index: list[int]) -> Columns:
    """The head columns (the first six of ``head``) of the events at ``index`` (cheaper than reading them from the
    messages again)."""
    return [[column[i] for i in index] for column in head[:_HEAD_LEN]]


def _transactions_columns(evs: list[events_pb2.Event], head: Columns) -> Columns:
    txs = [e.tx_seen.tx for e in evs]
    inputs = [t.input for t in txs]
    return [*head, [t.source_id for t in txs], [t.sender for t in txs], [t.to or None for t in txs],
            [t.nonce for t in txs], _decimal([t.value for t in txs]), [t.gas for t in txs],
            _opt_col(txs, "gas_price"), _opt_col(txs, "max_fee_per_gas"), _opt_col(txs, "max_priority_fee_per_gas"),
            [t.tx_type for t in txs], [i[:4] for i in inputs], [len(i) for i in inputs], inputs]


class _SetFields:
    """A wide message read with one ``ListFields()`` call per message instead of one attribute read per column:
    ListFields returns only the fields that are set, as (descriptor, value) pairs, so a message whose columns are
    mostly at their defaults (a TxFeatures: most transactions are no swap) costs its set fields only. The values
    land in a row that starts as the defaults (:attr:`template`), and the rows are transposed at C level."""

    def __init__(self, descriptor: Any, none: Iterable[str] = ()) -> None:
        fields = list(descriptor.fields)
        #: descriptor -> column index (the descriptors ListFields returns are the message's own objects)
        self.slot = {fd: i for i, fd in enumerate(fields)}
        #: unset fields: None for a field with presence (unknown), a repeated one and those in ``none`` (an empty
        #: address is NULL in ClickHouse); the proto default for the others
        self.template = [None if fd.has_presence or fd.is_repeated or fd.name in none else fd.default_value
                         for fd in fields]
        self.index = {fd.name: i for i, fd in enumerate(fields)}

    def columns(self, msgs: list[Any]) -> list[tuple[Any, ...]]:
        """One tuple per field of the message (``index`` says which), in the order of ``msgs``."""
        slot, template = self.slot, self.template
        if not msgs:
            return [() for _ in template]
        rows = []
        for m in msgs:
            row = template.copy()
            for fd, value in m.ListFields():
                row[slot[fd]] = value
            rows.append(row)
        return list(zip(*rows, strict=True))


_FEATURE_FIELDS = _SetFields(events_pb2.TxFeatures.DESCRIPTOR, none=("token_in", "token_out", "recipient"))


def _opt_decimal(values: Sequence[bytes | None]) -> list[str | None]:
    """An ``optional bytes`` uint256 column read with ListFields: None when not set, else its decimal digits (a set
    empty value is "0"); each distinct value converted once."""
    digits = {v: str(int.from_bytes(v, "big")) for v in set(values) if v is not None}
    return [None if v is None else digits[v] for v in values]


def _features_columns(evs: list[events_pb2.Event], head: Columns) -> Columns:
    cols = _FEATURE_FIELDS.columns([e.tx_decoded.features for e in evs])
    f = _FEATURE_FIELDS.index
    cats = CATEGORY_NAMES
    return [*head, list(cols[f["protocol"]]), [cats.get(c, "UNSPECIFIED") for c in cols[f["category"]]],
            list(cols[f["method"]]), list(cols[f["selector"]]), [1 if d else 0 for d in cols[f["decoded"]]],
            list(cols[f["decode_error"]]), list(cols[f["token_in"]]), list(cols[f["token_out"]]),
            _opt_decimal(cols[f["amount_in"]]), _opt_decimal(cols[f["amount_out_min"]]),
            _opt_decimal(cols[f["amount_in_max"]]), _opt_decimal(cols[f["amount_out"]]),
            [list(p) if p else [] for p in cols[f["path"]]], [list(t) if t else [] for t in cols[f["fee_tiers"]]],
            list(cols[f["recipient"]]), list(cols[f["deadline"]]), _decimal(cols[f["value"]]),
            _decimal(cols[f["gas_price"]]), _decimal(cols[f["priority_fee"]]), list(cols[f["calldata_len"]])]


def _opportunities_columns(evs: list[events_pb2.Event], head: Columns) -> Columns:
    os_ = [e.opp_detected.opportunity for e in evs]
    kinds = OPP_KIND_NAMES
    return [*head, [kinds.get(o.kind, "UNSPECIFIED") for o in os_], [min(o.score, 255) for o in os_],
            [list(o.reasons) for o in os_], [o.protocol for o in os_], [o.token_in or None for o in os_],
            [o.token_out or None for o in os_], _opt_col(os_, "notional_wei"), [o.slippage_bps for o in os_]]


def _sources_columns(evs: list[events_pb2.Event], head: Columns) -> Columns:
    sightings = [e.tx_source_seen for e in evs]
    seen = [b.sighting for b in sightings]
    return [*head, [s.source_id for s in seen], [s.seen_unix_ns for s in seen], [b.tx_seq_id for b in sightings]]


def _blocks_columns(evs: list[events_pb2.Event], head: Columns) -> Columns:
    bodies = [e.block for e in evs]
    bs = [b.block for b in bodies]
    fees = [b.base_fee for b in bs]
    fee_digits = _decimal([f for f in fees if f])
    it = iter(fee_digits)
    chain, seq, _, first_s, first_ns, received = head
    return [chain, seq, first_s, first_ns, received, [e.source_id for e in evs], [b.number for b in bs],
            [b.hash for b in bs], [b.parent_hash for b in bs], [b.timestamp for b in bs],
            [next(it) if f else None for f in fees], [b.tx_count for b in bs], [b.seen_pending for b in bodies],
            [int(b.truncated) for b in bs], [[t.hash for t in b.txs] for b in bs]]


def _pool_states_columns(evs: list[events_pb2.Event], head: Columns) -> Columns:
    ps = [e.pool_state.state for e in evs]
    received = head[5]
    sources = POOL_SOURCE_NAMES
    return [head[0], head[1], [r // _NS for r in received], received, [p.pair for p in ps], [p.factory for p in ps],
            [p.token0 for p in ps], [p.token1 for p in ps], _decimal([p.reserve0 for p in ps]),
            _decimal([p.reserve1 for p in ps]), [p.block_number for p in ps], [p.block_hash for p in ps],
            [sources.get(p.source, "UNSPECIFIED") for p in ps]]


def _inclusions_columns(evs: list[events_pb2.Event], head: Columns) -> Columns:
    bs = [e.tx_included for e in evs]
    names = TX_STATUS_NAMES
    return [*head, [e.source_id for e in evs], [b.block_number for b in bs], [b.block_hash for b in bs],
            [b.index for b in bs], [names.get(b.status, "UNSPECIFIED") for b in bs],
            [b.inclusion_latency_ms for b in bs], [b.tx_seq_id for b in bs], [b.block_seq_id for b in bs],
            [int(b.reincluded) for b in bs]]


def _replacements_columns(evs: list[events_pb2.Event], head: Columns) -> Columns:
    bs = [e.tx_replaced for e in evs]
    return [*head, [e.source_id for e in evs], [b.by_hash for b in bs], [b.fee_bump_bps for b in bs],
            [int(b.cancel) for b in bs], [b.tx_seq_id for b in bs], [int(b.by_block) for b in bs]]


def _drops_columns(evs: list[events_pb2.Event], head: Columns) -> Columns:
    bs = [e.tx_dropped for e in evs]
    names = DROP_REASON_NAMES
    return [*head, [names.get(b.reason, "UNSPECIFIED") for b in bs], [b.tx_seq_id for b in bs],
            [b.source_id for b in bs]]


def _reorgs_columns(evs: list[events_pb2.Event], head: Columns) -> Columns:
    rs = [e.reorg for e in evs]
    received = head[5]
    return [head[0], head[1], [r // _NS for r in received], received, [e.source_id for e in evs],
            [r.number for r in rs], [r.new_hash for r in rs], [r.depth for r in rs],
            [list(r.orphaned_hashes) for r in rs], [r.unincluded for r in rs], [int(r.too_deep) for r in rs]]


_DETAIL_COLUMNS = {
    _TX_SEEN: (TRANSACTIONS, _transactions_columns),
    _TX_DECODED: (FEATURES, _features_columns),
    _OPP_DETECTED: (OPPORTUNITIES, _opportunities_columns),
    _TX_SOURCE_SEEN: (TX_SOURCES, _sources_columns),
    _BLOCK: (BLOCKS, _blocks_columns),
    _POOL_STATE: (POOL_STATES, _pool_states_columns),
    _TX_INCLUDED: (INCLUSIONS, _inclusions_columns),
    _TX_REPLACED: (REPLACEMENTS, _replacements_columns),
    _TX_DROPPED: (DROPS, _drops_columns),
    _REORG: (REORGS, _reorgs_columns),
}


def empty_columns() -> dict[str, Columns]:
    """One empty list per column of every data table, by table name."""
    return {table.name: [[] for _ in table.columns] for table in DATA_TABLES}


def columns_of(events: Sequence[events_pb2.Event]) -> dict[str, Columns]:
    """The rows of ``events`` as columns, by table name (the same values as :func:`rows_of`, transposed)."""
    out = empty_columns()
    if not events:
        return out
    evs = list(events)  # one walk of the (protobuf) repeated container; the list is walked for free below
    kinds = [e.kind for e in evs]
    head = _head_columns(evs)
    names = KIND_NAMES
    out[EVENTS.name] = [*head, [names.get(k, UNKNOWN_KIND) for k in kinds], [e.source_id for e in evs]]
    detail_columns(out, evs, head, kinds)
    return out


def detail_columns(out: dict[str, Columns], evs: list[events_pb2.Event], head: Columns,
                   kinds: Sequence[int] | None = None) -> None:
    """Sets ``out``'s detail tables to the columns of ``evs`` (whose head columns are ``head``), by kind."""
    if kinds is None:
        kinds = [e.kind for e in evs]
    by_kind: dict[int, list[int]] = {kind: [] for kind in _DETAIL_COLUMNS}
    for i, kind in enumerate(kinds):  # one pass sorts the events by kind (a kind without a table: no detail)
        index = by_kind.get(kind)
        if index is not None:
            index.append(i)
    for kind, (table, build) in _DETAIL_COLUMNS.items():
        index = by_kind[kind]
        if index:
            out[table.name] = build([evs[i] for i in index], pick(head, index))


def extend_columns(into: dict[str, Columns], more: dict[str, Columns]) -> None:
    """Appends the columns of ``more`` to those of ``into``, table by table."""
    for table, cols in more.items():
        if cols[0]:
            for dst, src in zip(into[table], cols, strict=True):
                dst.extend(src)


def unknown_kinds(columns: dict[str, Columns]) -> list[int]:
    """The seqs of the ``events`` rows whose kind this exporter does not know (written as UNKNOWN_KIND)."""
    events = columns[EVENTS.name]
    kinds = events[_HEAD_LEN]
    if UNKNOWN_KIND not in kinds:  # the usual case: one C-level scan
        return []
    return [seq for seq, kind in zip(events[1], kinds, strict=True) if kind == UNKNOWN_KIND]


def row_count(columns: Columns) -> int:
    """Rows held by one table's columns."""
    return len(columns[0])


@dataclass(slots=True)
class BatchSummary:
    """What the exporter keeps of a batch it wrote, for its metrics and hook (the columns themselves stay where
    they were mapped: in a worker process, with ``map_workers``). Taken before the INSERT: the driver rewrites
    the lists it is given (enum names to values, NULLs to defaults)."""

    #: Rows by table name.
    rows: dict[str, int]
    #: The ``events`` rows' ``received_ns``, in seq order (the lag of each event once the batch is written).
    received_ns: list[int]
    #: Seqs of the events of a kind this exporter does not know (:func:`unknown_kinds`).
    unknown_seqs: list[int]


def summary_of(columns: dict[str, Columns]) -> BatchSummary:
    """The :class:`BatchSummary` of a batch's columns."""
    return BatchSummary({table: row_count(cols) for table, cols in columns.items()},
                        list(columns[EVENTS.name][_RECEIVED_COL]), unknown_kinds(columns))
