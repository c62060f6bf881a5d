"""Pure functions from ``mempulse.v1.Event`` messages to row tuples of the tables in :mod:`.schema`.

No I/O and no state: the same event always gives the same rows (what makes a replayed batch identical to the
first, so ReplacingMergeTree can collapse it). Row order is the table's column order.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from common.pb.v1 import events_pb2
from processd.export.schema import DATA_TABLES, EVENTS, FEATURES, OPPORTUNITIES, TRANSACTIONS, TX_SOURCES, Table

Row = tuple[Any, ...]
_NS = 1_000_000_000
_TX_SEEN = events_pb2.EVENT_KIND_TX_SEEN
_TX_DECODED = events_pb2.EVENT_KIND_TX_DECODED
_OPP_DETECTED = events_pb2.EVENT_KIND_OPP_DETECTED
_TX_SOURCE_SEEN = events_pb2.EVENT_KIND_TX_SOURCE_SEEN
#: Event kind -> its value in the ``events.kind`` Enum8 (the names without the EVENT_KIND_ prefix).
KIND_NAMES = {value: name.removeprefix("EVENT_KIND_") for name, value in events_pb2.EventKind.items()}
CATEGORY_NAMES = {value: name.removeprefix("TX_CATEGORY_") for name, value in events_pb2.TxCategory.items()}
OPP_KIND_NAMES = {value: name.removeprefix("OPPORTUNITY_KIND_") for name, value in events_pb2.OpportunityKind.items()}


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
    return (*_head(ev), KIND_NAMES.get(ev.kind, "UNSPECIFIED"), ev.source_id)


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


#: Event kind -> (its detail table, the row function). A kind not listed (a newer processd's lifecycle events)
#: still gets its ``events`` row, so the log stays complete; its details wait for a table of their own.
DETAIL: dict[int, tuple[Table, Any]] = {
    _TX_SEEN: (TRANSACTIONS, transaction_row),
    _TX_DECODED: (FEATURES, features_row),
    _OPP_DETECTED: (OPPORTUNITIES, opportunity_row),
    _TX_SOURCE_SEEN: (TX_SOURCES, source_row),
}


def empty_rows() -> dict[str, list[Row]]:
    """One empty row list per data table, by table name."""
    return {table.name: [] for table in DATA_TABLES}


def add_rows(rows: dict[str, list[Row]], events: Iterable[events_pb2.Event]) -> None:
    """Appends the rows of ``events`` (each: its ``events`` row and its detail row) to ``rows``."""
    ev_rows = rows[EVENTS.name]
    for ev in events:
        ev_rows.append(event_row(ev))
        detail = DETAIL.get(ev.kind)
        if detail is not None:
            rows[detail[0].name].append(detail[1](ev))
