"""The filter index: the distinct filters (:class:`FilterGroup`) indexed so that 1,000 filters cost about what one
does.

Each filter is indexed under one of its set-valued fields (its *anchor*, the most selective it has): per anchored
field, a dict from each value some filter asked for to the filters asking. A commit's stored batches carry the
anchors' values as columns (``BatchColumns.to`` / ``sender`` / ``selector`` / ``chain``, filled by the analysis
workers, which read those fields anyway), so matching a batch (``processd.views.filter_match.match_batch``) is one
C-level ``map`` of each anchored field's dict over its column; only the transactions found there get a
``TxView``, and only the filters found are checked in full (when they ask about more than their anchor). Cost
grows with the matches, not with the subscribers, and a transaction no filter asks about costs a dict lookup per
anchored field. Filters anchored on a field parsed from the events (tokens, methods, protocols) or without an
anchor (chain, kinds, min value, min score only) see every transaction through a view, as the catch-up does on
log values (:meth:`FilterIndex.collect`).

Under each anchor value an :class:`Anchor` sorts its groups by what taking a transaction costs them. Groups of
SubscribeMany streams that take a transaction as it is (no other field, no kinds) need no view at all: on a
field with a column their ids per stream are tables (value -> ``ManyEvent.filter_ids``, :class:`ColumnAnchors`),
which ``processd.views.many`` maps over the stored batch's columns per stream
(``processd.views.filter_match.StreamBatch``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from common.pb.v1 import query_pb2
from processd.views.filter_model import TxFilter
from processd.views.tx_view import TxView
from processd.wire.encoding import varint
from processd.wire.tags import tag

if TYPE_CHECKING:
    from processd.views.filter_match import StreamBatch

_IDS_TAG = tag(query_pb2.ManyEvent, "filter_ids")

#: Anchor fields, most selective first: (TxFilter attribute, what the transaction has there).
_ANCHORS: tuple[tuple[str, Callable[[TxView], object]], ...] = (
    ("to", lambda tx: tx.envelope().to),
    ("senders", lambda tx: tx.envelope().sender),
    ("tokens_in", lambda tx: tx.features().token_in),
    ("tokens_out", lambda tx: tx.features().token_out),
    ("selectors", lambda tx: tx.envelope().input[:4]),
    ("methods", lambda tx: tx.features().method),
    ("protocols", TxView.protocol),
    ("chain_ids", lambda tx: tx.chain),
)
#: The anchors a stored batch has a column for (``BatchColumns``, filled by the analysis workers): matched per
#: batch with one C-level ``map`` of the anchor's table over the column, no view and no parse per transaction.
_COLUMN_ANCHORS: dict[str, str] = {"to": "to", "senders": "sender", "selectors": "selector", "chain_ids": "chain"}
_seq_of = attrgetter("seq")
#: (chain, tx hash) -> (seq of its TX_SEEN, its events' values), or (0, []) when not stored.
TxLookup = Callable[[int, bytes], tuple[int, list[bytes]]]
_bytes_of = attrgetter("all_bytes")
_count_of = attrgetter("all_count")


class FilterGroup:
    """The subscribers of one distinct filter, and the transactions it takes from what is being matched."""

    __slots__ = ("anchor", "anchors", "filter", "many", "many_packed", "members", "recheck", "sightings", "txs")

    def __init__(self, event_filter: TxFilter) -> None:
        self.filter = event_filter
        self.members: set[Any] = set()
        #: SubscribeMany streams with this filter: stream -> the stream's ids of it (a stream may add one filter
        #: under several ids).
        self.many: dict[Any, list[int]] = {}
        #: Per stream, its ids of this filter packed (``ManyEvent.filter_ids``), made when they change.
        self.many_packed: dict[Any, bytes] = {}
        #: The field it is indexed under (None: checked against every transaction), and whether a transaction
        #: found there must still be checked against its other fields.
        self.anchor: str | None = None
        self.recheck = True
        #: The index entries it is listed in (one per value of its anchor), told when its subscribers change.
        self.anchors: list[Anchor] = []
        #: Transactions taken, in seq order (after :meth:`FilterIndex.finish`), and the sightings taken meanwhile.
        self.txs: list[TxView] = []
        self.sightings: list[TxView] = []

    @property
    def listed(self) -> bool:
        """Whether what it takes goes to its ``txs``: it has SubscribeEvents subscribers, or no SubscribeMany
        stream either (a catch-up's or a scan's own group). A group of streams only is told apart by the ids
        on each transaction (:attr:`TxView.takers`, :attr:`TxView.anchors`) and needs no list."""
        return bool(self.members or not self.many)

    def changed(self) -> None:
        """Its subscribers or stream ids changed: the index entries it is in sort it again (no index rebuild)."""
        for anchor in self.anchors:
            anchor.sort()

    def frames(self, from_seq: int = 0) -> list[tuple[bytes, int]]:
        """Its transactions' events of the filter's kinds, framed (bytes, events), those with any."""
        kinds = self.filter.kinds
        return [entry for tx in self.txs if (entry := tx.framed(kinds, from_seq))[1]]

    def joined(self) -> tuple[list[bytes], int, int]:
        """:meth:`frames` as (bytes of each, events in all, bytes in all); without kinds, C-level over frames
        made once per transaction when it was taken (:meth:`FilterIndex.collect`)."""
        if not self.filter.kinds:
            txs = self.txs
            parts = list(map(_bytes_of, txs))
            return parts, sum(map(_count_of, txs)), sum(map(len, parts))
        frames = self.frames()
        parts = [b for b, _ in frames]
        return parts, sum(n for _, n in frames), sum(map(len, parts))


class Anchor:
    """The groups indexed under one value of an anchored field, sorted by what a transaction found there costs
    them (:meth:`sort`, when the index is built and when a group's subscribers change):

    * ``checked``: groups that ask about more than their anchor, each checking the transaction in full;
    * ``listed``: the others whose ``txs`` take it (:attr:`FilterGroup.listed`);
    * ``kinded``: the others with SubscribeMany streams and ``kinds``, each among the transaction's takers;
    * the others with streams and without kinds, all at once: their ids are ``packed`` here per stream. At
      1,000 filters a transaction is taken by ~10 groups of streams: one join of ids per stream, made when they
      change. On a field with a batch column (``column``), they are also the column's tables per stream (value
      -> ids field: :class:`ColumnAnchors`), which a stored batch's transactions are looked up in C-level, with
      no view; elsewhere (a view-field anchor, the catch-up) the transaction lists the anchor
      (:attr:`TxView.anchors`).
    """

    __slots__ = ("checked", "column", "fields", "general", "groups", "kinded", "listed", "packed", "table", "value")

    def __init__(self, value: object, column: ColumnAnchors | None, table: dict[object, Anchor]) -> None:
        self.value = value
        self.column = column
        #: The index table it is listed in (under ``value``), which lets go of it once it has no group.
        self.table = table
        self.groups: list[FilterGroup] = []
        self.checked: list[FilterGroup] = []
        self.listed: list[FilterGroup] = []
        self.kinded: list[FilterGroup] = []
        #: Per stream, its ids of every group taken at once, packed, and as the ``ManyEvent.filter_ids`` field.
        self.packed: dict[Any, bytes] = {}
        self.fields: dict[Any, bytes] = {}
        #: Whether a transaction found here needs a view: it has groups that are checked, listed or kinded.
        self.general = False

    def sort(self) -> None:
        """Sorts its groups into the lists above (from their current subscribers and ids)."""
        plain = [g for g in self.groups if not g.recheck]
        self.checked = [g for g in self.groups if g.recheck]
        self.listed = [g for g in plain if g.listed]
        self.kinded = [g for g in plain if g.many and g.filter.kinds]
        packed: dict[Any, list[bytes]] = {}
        for g in plain:
            if not g.filter.kinds:
                for stream, ids in g.many_packed.items():
                    packed.setdefault(stream, []).append(ids)
        self.packed = {stream: b"".join(ids) for stream, ids in packed.items()}
        old = self.fields
        self.fields = {stream: _IDS_TAG + varint(len(ids)) + ids for stream, ids in self.packed.items()}
        self.general = bool(self.checked or self.listed or self.kinded)
        if self.column is not None:
            self.column.update(self, old)


class ColumnAnchors:
    """The anchors of one field with a batch column (``BatchColumns.to`` / ``sender`` / ``selector`` /
    ``chain``), as tables a column is mapped over (C level): ``table`` (value -> :class:`Anchor`, every one),
    ``general`` (value -> anchor, those whose transactions need a view: ``Anchor.general``) and, per stream,
    value -> the ``ManyEvent.filter_ids`` field of its groups there that take at once (``streams``). Kept up to
    date by :meth:`Anchor.sort`."""

    __slots__ = ("general", "name", "streams", "table")

    def __init__(self, name: str) -> None:
        self.name = name
        self.table: dict[object, Anchor] = {}
        self.general: dict[object, Anchor] = {}
        self.streams: dict[Any, dict[object, bytes]] = {}

    def update(self, anchor: Anchor, old_fields: dict[Any, bytes]) -> None:
        """Takes ``anchor``'s new ``general`` and ``fields`` (its ``old_fields`` are let go)."""
        value = anchor.value
        if anchor.general:
            self.general[value] = anchor
        else:
            self.general.pop(value, None)
        for stream in old_fields.keys() - anchor.fields.keys():
            table = self.streams[stream]
            del table[value]
            if not table:
                del self.streams[stream]
        for stream, field in anchor.fields.items():
            self.streams.setdefault(stream, {})[value] = field


class FilterIndex:
    """The distinct filters (their groups), indexed so matching costs per transaction, not per filter.

    Each group is indexed under one set-valued field (its anchor, the most selective it has): per anchored field,
    a dict from each value some filter asked for to the groups asking. A transaction's own value of each
    anchored field is looked up (from the batch's columns: ``filter_match.match_batch``; from its view: :meth:`collect`)
    and it is appended straight to the groups found there (after a check of their other fields, if they have
    any), so a commit costs a dict lookup per transaction and field plus an append per delivery, whatever the
    number of filters; the groups it touched are listed (``touched``), so the fan-out visits only those. Groups
    without an anchor check every transaction.
    """

    def __init__(self, groups: Iterable[FilterGroup]) -> None:
        #: Every group, in the order they came (a dict: a group leaves in O(1)).
        self.groups: dict[FilterGroup, None] = {}
        self.unanchored: list[FilterGroup] = []
        #: Per anchored field, its value -> :class:`Anchor` (a column field's is its ``ColumnAnchors.table``).
        self._tables: dict[str, dict[object, Anchor]] = {}
        self._columns: dict[str, ColumnAnchors] = {}
        for g in groups:
            self._insert(g)
        for table in self._tables.values():
            for anchor in table.values():
                anchor.sort()
        #: The groups that took anything in this round (transactions or sightings), in no particular order.
        self.touched: list[FilterGroup] = []
        #: The transactions and sightings this round that groups with SubscribeMany streams took (each once, its
        #: ``takers`` those groups), in no particular order.
        self.many_txs: list[TxView] = []
        #: The stored batches of this round, for the streams: what their column anchors hold for each stream
        #: (``Anchor.fields``) is read C-level per stream, and only the views in them are walked.
        self.stream_batches: list[StreamBatch] = []
        self._fields()

    def _insert(self, g: FilterGroup) -> None:
        """Lists ``g`` under each value of its anchor (its anchors are sorted by the caller)."""
        g.anchors = []  # a group is in one index at a time: the hub's latest, or a catch-up's own
        self.groups[g] = None
        if not self._anchor(g):
            self.unanchored.append(g)
            return
        name = g.anchor
        assert name is not None  # set by _anchor
        table = self._tables.get(name)
        column = self._columns.get(name)
        if table is None:
            if name in _COLUMN_ANCHORS:
                column = self._columns[name] = ColumnAnchors(_COLUMN_ANCHORS[name])
            table = self._tables[name] = {} if column is None else column.table
        for value in getattr(g.filter, name):
            anchor = table.get(value)
            if anchor is None:
                anchor = table[value] = Anchor(value, column, table)
            anchor.groups.append(g)
            g.anchors.append(anchor)

    def _fields(self) -> None:
        """The lists a round walks, from the anchored fields in use (when a field gains or loses its table)."""
        tables = self._tables
        #: Per anchored field: its getter and the groups of each value (the values any filter asked for).
        self.fields = [(name, get, tables[name]) for name, get in _ANCHORS if name in tables]
        #: For ``match_columns``: the anchored fields a stored batch has a column for, and whether any group
        #: needs a view of every transaction (unanchored, or anchored on a field parsed from the events: tokens,
        #: methods, protocols), with those fields.
        self.columns = [self._columns[name] for name, _, _ in self.fields if name in self._columns]
        self.view_fields = [field for field in self.fields if field[0] not in _COLUMN_ANCHORS]
        self.per_tx = bool(self.unanchored or self.view_fields)

    def update(self, added: Iterable[FilterGroup] = (), removed: Iterable[FilterGroup] = (),
               changed: Iterable[FilterGroup] = ()) -> None:
        """Between rounds: indexes the ``added`` groups, takes out the ``removed`` ones (their last subscriber and
        stream id are gone) and sorts again the entries of the ``changed`` ones (their subscribers or ids), each
        entry these touch once. Only the entries of their anchors' values change: at 1,000 filters a rebuild of
        the whole index took ~50 ms of the event loop, in the next commit's fan-out."""
        dirty: dict[Anchor, None] = {}
        for g in removed:
            del self.groups[g]
            if g.anchor is None:
                self.unanchored.remove(g)
            for anchor in g.anchors:
                anchor.groups.remove(g)
                dirty[anchor] = None
            g.anchors = []
        for g in added:
            self._insert(g)
            dirty.update(dict.fromkeys(g.anchors))
        for g in changed:
            dirty.update(dict.fromkeys(g.anchors))
        for anchor in dirty:
            anchor.sort()  # without a removed group: a column's tables let go of what it put there
            if not anchor.groups:
                del anchor.table[anchor.value]
        for name in [name for name, table in self._tables.items() if not table]:
            del self._tables[name]
            self._columns.pop(name, None)
        self._fields()

    @staticmethod
    def _anchor(g: FilterGroup) -> bool:
        f = g.filter
        either = f.selectors and f.methods  # one OR condition over two fields: neither can be an anchor alone
        for name, _ in _ANCHORS:
            if getattr(f, name) and not (either and name in ("selectors", "methods")):
                g.anchor = name
                rest: dict[str, Any] = {name: frozenset(), "kinds": frozenset()}
                g.recheck = replace(f, **rest) != TxFilter()
                return True
        return False

    def candidates(self, tx: TxView) -> list[FilterGroup]:
        """The groups ``tx`` may match (a probe without taking, for a sighting's transaction)."""
        found = list(self.unanchored)
        for _, get, table in self.fields:
            anchor = table.get(get(tx))
            if anchor is not None:
                found.extend(anchor.groups)
        return found

    def begin(self) -> None:
        """Starts a round of matching (a commit, a catch-up chunk): forgets what the last one's groups took."""
        for g in self.touched:
            g.txs = []
            g.sightings = []
        self.touched = []
        self.many_txs = []
        self.stream_batches = []

    def collect(self, tx: TxView, fields: list[tuple[str, Callable[[TxView], object], dict[object, Anchor]]]
                | None = None, many: list[TxView] | None = None) -> bool:
        """Gives one transaction (in seq order within the round) to the groups that take it, among the unanchored
        and those anchored on ``fields`` (default: every anchored field); returns whether any did (the caller
        frames it then, once for all of them: ``frame_taken``)."""
        taken = False
        touched = self.touched
        if many is None:
            many = self.many_txs
        for g in self.unanchored:
            if g.filter.matches(tx):
                _give(g, tx, touched, many)
                taken = True
        for _, get, table in self.fields if fields is None else fields:
            anchor = table.get(get(tx))
            if anchor is not None:
                taken = take(anchor, tx, touched, many) or taken
        return taken

    def sighted(self, g: FilterGroup, sighting: TxView) -> None:
        """Gives a sighting to ``g`` (merged with its transactions in seq order by :meth:`finish`)."""
        if not g.txs and not g.sightings:
            self.touched.append(g)
        g.sightings.append(sighting)
        if g.many:
            if not sighting.takers:
                self.many_txs.append(sighting)
            sighting.takers.append(g)

    def finish(self) -> None:
        """Ends a round: each group's sightings merged with its transactions, in seq order (a transaction reaches
        a group at most once, through its anchor's one value, so ``txs`` is already in order)."""
        for g in self.touched:
            if g.sightings:
                g.txs = sorted([*g.txs, *g.sightings], key=_seq_of)


def take(anchor: Anchor, tx: TxView, touched: list[FilterGroup], many: list[TxView], packed: bool = True) -> bool:
    """Gives ``tx`` to the groups of ``anchor`` (found under its value of their anchor field) that take it: at
    once when the anchor is all they ask (the groups of streams only without kinds: the anchor, once, unless
    ``packed`` is False: a batch's column anchors are read per stream from the batch), else after a check of the
    rest; returns whether any did."""
    listed = anchor.listed
    for g in listed:
        if not g.txs and not g.sightings:  # once per round (sightings come first)
            touched.append(g)
        g.txs.append(tx)
    taken = bool(listed)
    packed = packed and bool(anchor.packed)
    if packed or anchor.kinded:
        if not tx.anchors and not tx.takers:  # listed once per round
            many.append(tx)
        if packed:
            tx.anchors.append(anchor)
        tx.takers.extend(anchor.kinded)
        taken = True
    for g in anchor.checked:
        if g.filter.matches(tx):
            _give(g, tx, touched, many)
            taken = True
    return taken


def _give(g: FilterGroup, tx: TxView, touched: list[FilterGroup], many: list[TxView]) -> None:
    """Gives ``tx`` to one group that takes it: its ``txs`` when it is listed, its streams through ``tx.takers``
    (``many`` lists ``tx`` once per round)."""
    if g.listed:
        if not g.txs and not g.sightings:
            touched.append(g)
        g.txs.append(tx)
    if g.many:
        if not tx.anchors and not tx.takers:
            many.append(tx)
        tx.takers.append(g)
