"""Server-side event filters: an ``EventFilter`` compiled once per subscription or query, matched per transaction.

A :class:`TxFilter` is the normalized, hashable form of an ``EventFilter`` (sets, ints), so subscribers with the
same filter share one (``processd.views.subscriptions`` groups them) and a commit is matched once per distinct
filter, not once per subscriber.

:class:`FilterIndex` makes 1,000 filters cost about what one does: each filter is indexed under one of its
set-valued fields (its *anchor*, the most selective it has): per anchored field, a dict from each value some
filter asked for to the filters asking. A commit's stored batches carry the anchors' values as columns
(``BatchColumns.to`` / ``sender`` / ``selector`` / ``chain``, filled by the analysis workers, which read those
fields anyway), so matching a batch is one C-level ``map`` of each anchored field's dict over its column; only the
transactions found there get a :class:`TxView`, and only the filters found are checked in full (when they ask
about more than their anchor). Cost grows with the matches, not with the subscribers, and a transaction no
filter asks about costs a dict lookup per anchored field. A :class:`TxView` parses an event value only for a
field some filter checks beyond its anchor: the TX_SEEN value for ``addresses`` / ``min_value``, the TX_DECODED
value for ``methods`` / ``tokens_in`` / ``tokens_out``. Filters anchored on those (or without an anchor: chain,
kinds, min value, min score only) see every transaction through a view, as the catch-up does on log values.

Under each anchor value an :class:`Anchor` sorts its groups by what taking a transaction costs them. Groups of
SubscribeMany streams that take a transaction as it is (no other field, no kinds) need no view at all: on a
field with a column their ids per stream are tables (value -> ``ManyEvent.filter_ids``, :class:`ColumnAnchors`),
which ``processd.views.many`` maps over the stored batch's columns per stream (:class:`StreamBatch`).

Semantics (query.proto, ``EventFilter``): AND across fields (selectors and methods are one), OR within a field;
a transaction's events are taken or skipped together, then ``kinds`` picks among them; a TX_SOURCE_SEEN event
matches on its chain and kind, and on the other fields by its transaction as read from the log
(:func:`add_sighting`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import compress
from operator import attrgetter
from typing import Any

from common import limits
from common.pb.v1 import events_pb2, query_pb2, tx_pb2
from processd.errors import ProcessdError
from processd.storage.eventlog import EventLog
from processd.wire.columns import BatchColumns
from processd.wire.encoding import SMALL_VARINTS, varint, varints
from processd.wire.tags import tag

KIND_SEEN: int = events_pb2.EVENT_KIND_TX_SEEN
KIND_DECODED: int = events_pb2.EVENT_KIND_TX_DECODED
KIND_OPP: int = events_pb2.EVENT_KIND_OPP_DETECTED
VALID_KINDS = frozenset(limits.EVENT_KINDS.values())
#: A set that no stored event has (chain 0 and kind 0 are never stored): the combination of a request's own
#: chain_id / kinds with a filter's that share nothing.
NOTHING = frozenset({0})
_parse_event = events_pb2.Event.FromString


class FilterError(ProcessdError):
    """An ``EventFilter`` value is out of bounds (answered INVALID_ARGUMENT, naming the field)."""

    retriable = False


@dataclass(frozen=True, slots=True)
class TxFilter:
    """A compiled ``EventFilter``: each set empty = any; hashable, so equal filters share one group."""

    chain_ids: frozenset[int] = frozenset()
    kinds: frozenset[int] = frozenset()
    senders: frozenset[bytes] = frozenset()
    to: frozenset[bytes] = frozenset()
    #: Sender or recipient (one condition over two fields: never an anchor).
    addresses: frozenset[bytes] = frozenset()
    selectors: frozenset[bytes] = frozenset()
    methods: frozenset[str] = frozenset()
    protocols: frozenset[str] = frozenset()
    tokens_in: frozenset[bytes] = frozenset()
    tokens_out: frozenset[bytes] = frozenset()
    min_value: int = 0
    min_score: int = 0
    #: An opportunity valued with a net profit of at least this many wei (0 = no bound).
    min_profit_wei: int = 0

    @property
    def tx_fields(self) -> bool:
        """Whether it asks about anything beyond chains and kinds (then sightings never match)."""
        return bool(self.senders or self.to or self.addresses or self.selectors or self.methods or self.protocols
                    or self.tokens_in or self.tokens_out or self.min_value or self.min_score or self.min_profit_wei)

    def matches(self, tx: TxView) -> bool:
        """Whether transaction ``tx`` matches every field set (cheapest fields first)."""
        if self.chain_ids and tx.chain not in self.chain_ids:
            return False
        if self.protocols and tx.protocol() not in self.protocols:
            return False
        if self.min_score and tx.max_score() < self.min_score:
            return False
        if self.min_profit_wei and tx.max_net_profit() < self.min_profit_wei:
            return False
        if self.senders or self.to or self.addresses or self.min_value:
            env = tx.envelope()
            if self.addresses and env.sender not in self.addresses and env.to not in self.addresses:
                return False
            if self.senders and env.sender not in self.senders:
                return False
            if self.to and env.to not in self.to:
                return False
            if self.min_value and int.from_bytes(env.value, "big") < self.min_value:
                return False
        if self.tokens_in or self.tokens_out:
            features = tx.features()
            if self.tokens_in and features.token_in not in self.tokens_in:
                return False
            if self.tokens_out and features.token_out not in self.tokens_out:
                return False
        # Selectors and method names are one condition (REST's `method` mixes them): either may match.
        if self.selectors or self.methods:
            return bool((self.selectors and tx.envelope().input[:4] in self.selectors)
                        or (self.methods and tx.features().method in self.methods))
        return True

    def matches_sighting(self, chain_id: int, kind: int, tx: TxView | None) -> bool:
        """Whether a TX_SOURCE_SEEN event matches: its chain and kind, and its transaction (``tx``, read from the
        log; None when it is not there) when the filter asks about transaction fields."""
        if (self.chain_ids and chain_id not in self.chain_ids) or (self.kinds and kind not in self.kinds):
            return False
        return not self.tx_fields or (tx is not None and self.matches(tx))


class TxView:
    """One stored transaction as its events' values (``values[start:end]``, TX_SEEN first, at seqs from
    ``seq``), with the fields a filter reads parsed at most once and only when asked for, and its events framed
    for a SubscribeEvents message at most once per set of kinds."""

    __slots__ = ("_env", "_events", "_features", "_framed", "_protocol", "_scores", "all_bytes", "all_count",
                 "anchors", "batch_frames", "chain", "end", "seq", "start", "takers", "values")

    def __init__(self, chain: int, values: Sequence[bytes], start: int, end: int, seq: int,
                 protocol: str | None = None, scores: dict[int, int] | None = None,
                 env: tx_pb2.TxEnvelope | None = None) -> None:
        """``protocol`` and ``scores`` (event offset -> opportunity score) come from the commit's columns when
        it has them, ``env`` when the caller parsed it already; otherwise they are parsed from the values when a
        filter asks."""
        self.chain = chain
        self.values = values
        self.start = start
        self.end = end
        self.seq = seq
        self._protocol = protocol
        self._scores = scores
        self._env = env
        self._features: events_pb2.TxFeatures | None = None
        self._framed: dict[frozenset[int], tuple[bytes, int]] | None = None
        #: All its events framed (:meth:`frame_all`, once it is taken), read C-level by ``attrgetter``.
        self.all_bytes = b""
        self.all_count = 0
        #: Every event of its batch framed (by :func:`frame_taken`, when it framed the whole batch), indexed as
        #: ``values``: :meth:`event_frames` slices its own from them.
        self.batch_frames: list[bytes] | None = None
        self._events: list[bytes] | None = None
        #: What SubscribeMany streams took it this round (``FilterIndex.many_txs`` lists it): the anchors whose
        #: groups took it as it is, without kinds (their ids packed per stream: :attr:`Anchor.packed`), and the
        #: other groups with streams that took it, one by one.
        self.anchors: list[Anchor] = []
        self.takers: list[FilterGroup] = []

    def frame_all(self) -> None:
        """Frames all its events once (the usual case: a filter without ``kinds``)."""
        if not self.all_count:
            self.all_bytes, self.all_count = self._frame(frozenset(), 0)

    def event_frames(self) -> list[bytes]:
        """Each of its events framed apart (:func:`frame_event`), in seq order: for SubscribeMany, which tags
        each event with its filters. Sliced from the batch's frames when :func:`frame_taken` made them, else
        framed here; once."""
        events = self._events
        if events is None:
            frames = self.batch_frames
            if frames is not None:
                events = frames[self.start:self.end]
            else:
                base = self.seq - self.start
                events = [frame_event(base + i, self.values[i]) for i in range(self.start, self.end)]
            self._events = events
        return events

    def envelope(self) -> tx_pb2.TxEnvelope:
        """The ``TxEnvelope`` (parsed from the TX_SEEN value on first use)."""
        env = self._env
        if env is None:
            # A bytes slice, not a memoryview: upb parses bytes faster than it copies a memoryview (~30%).
            env = self._env = _parse_event(self.values[self.start][1:]).tx_seen.tx
        return env

    def features(self) -> events_pb2.TxFeatures:
        """The ``TxFeatures`` (parsed from the TX_DECODED value on first use)."""
        features = self._features
        if features is None:
            features = self._features = _parse_event(self.values[self.start + 1][1:]).tx_decoded.features
        return features

    def protocol(self) -> str:
        if self._protocol is None:
            self._protocol = self.features().protocol
        return self._protocol

    def max_score(self) -> int:
        """The best score among its opportunities (0 without any): from the columns' scores when given."""
        scores = self._scores
        if scores is not None:
            return max((scores.get(i, 0) for i in range(self.start + 2, self.end)), default=0)
        values = self.values
        return max((_parse_event(values[i][1:]).opp_detected.opportunity.score
                    for i in range(self.start + 2, self.end)), default=0)

    def max_net_profit(self) -> int:
        """The best net profit (wei) among its valued opportunities (0 without any): parsed from their values."""
        values = self.values
        best = 0
        for i in range(self.start + 2, self.end):
            net = int.from_bytes(_parse_event(values[i][1:]).opp_detected.opportunity.net_profit_wei, "big")
            if net > best:
                best = net
        return best

    def framed(self, kinds: frozenset[int], from_seq: int = 0) -> tuple[bytes, int]:
        """Its events of ``kinds`` (all when empty) from ``from_seq`` on as ``SubscribeEventsResponse.events``
        entries, joined, and how many they are; computed once per set of kinds (shared by every filter)."""
        if from_seq > self.seq:
            return self._frame(kinds, from_seq)
        if not kinds:
            self.frame_all()
            return self.all_bytes, self.all_count
        cache = self._framed
        if cache is None:
            cache = self._framed = {}
        entry = cache.get(kinds)
        if entry is None:
            entry = cache[kinds] = self._frame(kinds, 0)
        return entry

    def _frame(self, kinds: frozenset[int], from_seq: int) -> tuple[bytes, int]:
        values, base = self.values, self.seq - self.start
        parts = [frame_event(base + offset, values[offset]) for offset in range(self.start, self.end)
                 if (not kinds or values[offset][0] in kinds) and base + offset >= from_seq]
        return b"".join(parts), len(parts)


def frame_event(seq: int, value: bytes) -> bytes:
    """One ``SubscribeEventsResponse.events`` entry (field 1) of the stored ``value``: ``Event.seq_id`` (field 1)
    then the stored Event fields (the value minus its kind byte). Protobuf fields may come in any order, so this
    parses as the Event ScanEvents returns for the same seq; an OPP_DETECTED value also gets its opportunity's
    ``seq_id``, which the stored value leaves to the key (storage/layout.py, as ``decode_event`` does)."""
    body = _opp_body(seq, value) if value[0] == KIND_OPP else value[1:]
    seq_field = varint(seq)
    return b"\x0a%b\x08%b%b" % (varint(len(body) + 1 + len(seq_field)), seq_field, body)


def _opp_body(seq: int, value: bytes) -> bytes:
    """The Event fields of a stored OPP_DETECTED ``value`` with ``opportunity.seq_id`` set: the stored fields,
    then ``opp_detected { opportunity { seq_id } }`` once more. Protobuf merges the occurrences of an embedded
    message field (and the last occurrence of a scalar wins), so this parses as the Event with the seq set, the
    Event ``decode_event`` makes, without the parse and serialize that cost ~4 us an opportunity."""
    return b"%b%b" % (value[1:], opp_seq_field(seq))  # value may be a memoryview (a scan's)


def opp_seq_field(seq: int) -> bytes:
    """``opp_detected { opportunity { seq_id } }`` as Event fields: what an OPP_DETECTED event gets after its
    stored fields (:func:`_opp_body`)."""
    seq_field = _OPP_SEQ_TAG + varint(seq)
    opportunity = _OPPORTUNITY_TAG + varint(len(seq_field)) + seq_field
    return b"%b%b%b" % (_OPP_DETECTED_TAG, varint(len(opportunity)), opportunity)


_OPP_DETECTED_TAG = tag(events_pb2.Event, "opp_detected")
_OPPORTUNITY_TAG = tag(events_pb2.OppDetected, "opportunity")
_OPP_SEQ_TAG = tag(events_pb2.Opportunity, "seq_id")
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

    __slots__ = ("checked", "column", "fields", "general", "groups", "kinded", "listed", "packed", "value")

    def __init__(self, value: object = None, column: ColumnAnchors | None = None) -> None:
        self.value = value
        self.column = column
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


class StreamBatch:
    """What a stored batch gave SubscribeMany streams in a round, tagged per stream by
    ``processd.views.many.tagged_entries``: its first seq and columns, the index's column fields (their tables
    per stream: :class:`ColumnAnchors`), and the views that groups with streams took apart (``views``:
    ``TxView.takers`` and view-field anchors)."""

    __slots__ = ("cols", "columns", "first", "seq_fields", "views")

    def __init__(self, first: int, cols: BatchColumns, columns: list[ColumnAnchors], views: list[TxView]) -> None:
        self.first = first
        self.cols = cols
        self.columns = columns
        self.views = views
        #: Each event's ``Event.seq_id`` field (and an opportunity's ``seq_id``: :func:`opp_seq_field`), made
        #: by the first stream that tags the batch, for the others.
        self.seq_fields: list[bytes] | None = None


class FilterIndex:
    """The distinct filters (their groups), indexed so matching costs per transaction, not per filter.

    Each group is indexed under one set-valued field (its anchor, the most selective it has): per anchored field,
    a dict from each value some filter asked for to the groups asking. A transaction's own value of each
    anchored field is looked up (from the batch's columns: :func:`match_batch`; from its view: :meth:`collect`)
    and it is appended straight to the groups found there (after a check of their other fields, if they have
    any), so a commit costs a dict lookup per transaction and field plus an append per delivery, whatever the
    number of filters; the groups it touched are listed (``touched``), so the fan-out visits only those. Groups
    without an anchor check every transaction.
    """

    def __init__(self, groups: Iterable[FilterGroup]) -> None:
        self.groups = list(groups)
        self.unanchored = [g for g in self.groups if not self._anchor(g)]
        tables: dict[str, dict[object, Anchor]] = {}
        columns: dict[str, ColumnAnchors] = {}
        for g in self.groups:
            g.anchors = []  # a group is in one index at a time: the hub's latest, or a catch-up's own
            if g.anchor is not None:
                column = None
                if g.anchor in _COLUMN_ANCHORS:
                    column = columns.get(g.anchor)
                    if column is None:
                        column = columns[g.anchor] = ColumnAnchors(_COLUMN_ANCHORS[g.anchor])
                table = tables.setdefault(g.anchor, {} if column is None else column.table)
                for value in getattr(g.filter, g.anchor):
                    anchor = table.get(value)
                    if anchor is None:
                        anchor = table[value] = Anchor(value, column)
                    anchor.groups.append(g)
                    g.anchors.append(anchor)
        for table in tables.values():
            for anchor in table.values():
                anchor.sort()
        #: Per anchored field: its getter and the groups of each value (the values any filter asked for).
        self.fields = [(name, get, tables[name]) for name, get in _ANCHORS if name in tables]
        #: The groups that took anything in this round (transactions or sightings), in no particular order.
        self.touched: list[FilterGroup] = []
        #: The transactions and sightings this round that groups with SubscribeMany streams took (each once, its
        #: ``takers`` those groups), in no particular order.
        self.many_txs: list[TxView] = []
        #: The stored batches of this round, for the streams: what their column anchors hold for each stream
        #: (``Anchor.fields``) is read C-level per stream, and only the views in them are walked.
        self.stream_batches: list[StreamBatch] = []
        #: For :func:`match_columns`: the anchored fields a stored batch has a column for, and whether any group
        #: needs a view of every transaction (unanchored, or anchored on a field parsed from the events: tokens,
        #: methods, protocols), with those fields.
        self.columns = [columns[name] for name, _, _ in self.fields if name in columns]
        self.view_fields = [field for field in self.fields if field[0] not in _COLUMN_ANCHORS]
        self.per_tx = bool(self.unanchored or self.view_fields)

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
        frames it then, once for all of them: :func:`frame_taken`)."""
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
                taken = _take(anchor, tx, touched, many) or taken
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


# ---- compiling a request's filter -------------------------------------------------------------------------------


def _bounded(name: str, values: Sequence[object]) -> None:
    most, size = limits.FILTER_LIMITS[name]
    if len(values) > most:
        raise FilterError(f"filter.{name}: at most {most} values, got {len(values)}")
    if size and name in ("methods", "protocols"):
        for v in values:
            if not v or len(v) > size:  # type: ignore[arg-type]
                raise FilterError(f"filter.{name}: each value 1..{size} characters")
    elif size:
        for v in values:
            if len(v) != size:  # type: ignore[arg-type]
                raise FilterError(f"filter.{name}: each value must be {size} bytes, got {len(v)}")  # type: ignore[arg-type]


def _check_counts(pb: query_pb2.EventFilter) -> None:
    for name in limits.FILTER_LIMITS:
        _bounded(name, getattr(pb, name))
    if len(pb.senders) + len(pb.to) + len(pb.addresses) > limits.MAX_FILTER_ADDRESSES:
        raise FilterError(f"filter.senders, filter.to and filter.addresses: at most {limits.MAX_FILTER_ADDRESSES} "
                          "addresses together")
    if len(pb.tokens_in) + len(pb.tokens_out) > limits.MAX_FILTER_TOKENS:
        raise FilterError(f"filter.tokens_in and filter.tokens_out: at most {limits.MAX_FILTER_TOKENS} tokens together")
    for chain_id in pb.chain_ids:
        if not 0 < chain_id <= limits.MAX_CHAIN_ID:
            raise FilterError(f"filter.chain_ids: {chain_id} out of range 1..{limits.MAX_CHAIN_ID}")
    bad = set(pb.kinds) - VALID_KINDS
    if bad:
        raise FilterError(f"filter.kinds: unknown event kinds {sorted(bad)}")
    if len(pb.min_value) > limits.MAX_VALUE_BYTES:
        raise FilterError(f"filter.min_value: at most {limits.MAX_VALUE_BYTES} bytes, got {len(pb.min_value)}")
    if pb.min_score > limits.MAX_SCORE:
        raise FilterError(f"filter.min_score must be 0..{limits.MAX_SCORE}, got {pb.min_score}")
    if len(pb.min_profit_wei) > limits.MAX_VALUE_BYTES:
        raise FilterError(f"filter.min_profit_wei: at most {limits.MAX_VALUE_BYTES} bytes, "
                          f"got {len(pb.min_profit_wei)}")


def _combine(own: frozenset[int], theirs: frozenset[int]) -> frozenset[int]:
    """AND of a request's own set and the filter's (empty = any)."""
    if not own or not theirs:
        return own or theirs
    return own & theirs or NOTHING


def compile_filter(pb: query_pb2.EventFilter | None, chain_id: int = 0, kinds: Iterable[int] = (),
                   min_score: int = 0) -> TxFilter:
    """The :class:`TxFilter` of a request: its ``filter`` ANDed with its older ``chain_id`` / ``kinds`` (and
    ``min_score``: the larger). Raises :class:`FilterError` naming the field past its bound."""
    own_chains = frozenset({chain_id}) if chain_id else frozenset()
    if pb is None:
        return TxFilter(chain_ids=own_chains, kinds=frozenset(kinds), min_score=min_score)
    _check_counts(pb)
    return TxFilter(
        chain_ids=_combine(own_chains, frozenset(pb.chain_ids)),
        kinds=_combine(frozenset(kinds), frozenset(pb.kinds)),
        senders=frozenset(pb.senders), to=frozenset(pb.to), addresses=frozenset(pb.addresses),
        selectors=frozenset(pb.selectors),
        methods=frozenset(pb.methods), protocols=frozenset(pb.protocols),
        tokens_in=frozenset(pb.tokens_in), tokens_out=frozenset(pb.tokens_out),
        min_value=int.from_bytes(pb.min_value, "big"), min_score=max(min_score, pb.min_score),
        min_profit_wei=int.from_bytes(pb.min_profit_wei, "big"),
    )


# ---- matching what a commit stored, or what the log holds ----------------------------------------------------


def match_columns(index: FilterIndex, stored: Iterable[tuple[int, BatchColumns]],
                  sightings: Iterable[tuple[int, int, int, bytes]] = (), lookup: TxLookup | None = None) -> None:
    """Gives each group of ``index`` the transactions it takes from a commit's stored batches ``(first seq,
    columns)`` and the ``sightings`` it takes (:func:`add_sighting`), in seq order (:func:`match_batch`)."""
    index.begin()
    for event in sightings:
        add_sighting(index, event, lookup)
    for first, cols in stored:
        match_batch(index, first, cols)
    index.finish()


def match_batch(index: FilterIndex, first: int, cols: BatchColumns) -> None:
    """One stored batch (its events at seqs from ``first``). Per anchored field with a column (to, sender,
    selector, chain), the field's table is mapped over the column (C level); only the transactions found there
    get a view (built once, shared by the groups that take it), and only the groups found are checked in full,
    when they ask about more than their anchor. The other groups (unanchored, or anchored on tokens, methods,
    protocols) see every transaction, through :meth:`FilterIndex.collect`. Each group is reached through one
    field, in the batch's order, so its transactions stay in seq order. The taken transactions are framed once
    (:func:`frame_taken`)."""
    values, seen_at, chains, fkeys, fkey_of = cols.values, cols.seen_at, cols.chain, cols.fkeys, cols.fkey_of
    n, nvalues = len(seen_at), len(values)
    scores = {offset: score for offset, _, score in cols.opps}
    taken: dict[int, TxView] = {}
    touched = index.touched
    many: list[TxView] = []  # the views groups with streams took apart (StreamBatch.views)
    for column in index.columns:
        if not column.general:
            continue  # streams only there: read per stream from the batch (StreamBatch)
        hits = list(map(column.general.get, getattr(cols, column.name)))
        for t in compress(range(n), hits):
            tx = taken.get(t)
            if tx is None:
                start = seen_at[t]
                tx = TxView(chains[t], values, start, seen_at[t + 1] if t + 1 < n else nvalues, first + start,
                            fkeys[fkey_of[t]][2], scores)
            if _take(hits[t], tx, touched, many, False):  # type: ignore[arg-type]  # compress: not None
                taken[t] = tx
    if index.per_tx:
        fields = index.view_fields
        for t in range(n):
            tx = taken.get(t)
            if tx is None:
                start = seen_at[t]
                tx = TxView(chains[t], values, start, seen_at[t + 1] if t + 1 < n else nvalues, first + start,
                            fkeys[fkey_of[t]][2], scores)
            if index.collect(tx, fields, many):
                taken[t] = tx
    index.stream_batches.append(StreamBatch(first, cols, index.columns, many))
    if taken:
        frame_taken(list(taken.values()), values, first, n)


def _take(anchor: Anchor, tx: TxView, touched: list[FilterGroup], many: list[TxView], packed: bool = True) -> bool:
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


def frame_taken(taken: list[TxView], values: list[bytes], first: int, txs: int) -> None:
    """Frames the transactions ``taken`` from one stored batch (``values`` at seqs from ``first``, ``txs``
    transactions): when they are most of it (many subscribers), every event of the batch in one comprehension
    (about half the cost of framing them one transaction at a time), else each taken one."""
    if 2 * len(taken) < txs:
        for tx in taken:
            tx.frame_all()
        return
    frames = frame_values(values, first)
    join = b"".join
    for tx in taken:
        tx.all_bytes = join(frames[tx.start:tx.end])
        tx.all_count = tx.end - tx.start
        tx.batch_frames = frames


def frame_values(values: list[bytes], first: int) -> list[bytes]:
    """Every one of ``values`` (at seqs from ``first``) framed as :func:`frame_event` does, in one comprehension:
    seq varints by blocks (:func:`~processd.wire.encoding.varints`), lengths from the table."""
    small = SMALL_VARINTS
    return [b"\x0a%b\x08%b%b" % (small[k] if (k := len(v) + len(s)) < 16384 else varint(k), s, v[1:])
            if v[0] != KIND_OPP else frame_event(seq, v)
            for v, s, seq in zip(values, varints(first, len(values)), range(first, first + len(values)), strict=True)]


def add_sighting(index: FilterIndex, event: tuple[int, int, int, bytes], lookup: TxLookup | None) -> None:
    """Gives a TX_SOURCE_SEEN ``event`` ``(seq, chain, kind, value)`` to the groups it matches: on chain and
    kind, and for a filter of transaction fields on its transaction, read from the log with ``lookup`` (once,
    and only when such a filter exists: sightings come only from chains with several sources)."""
    seq, chain_id, kind, value = event
    tx: TxView | None = None
    groups = [g for g in index.groups if not g.filter.tx_fields]
    if lookup is not None and len(groups) < len(index.groups):
        tx_hash = _parse_event(value[1:]).tx_hash
        first, values = lookup(chain_id, tx_hash)
        if values:
            tx = TxView(chain_id, values, 0, len(values), first)
            if tx.envelope().hash == tx_hash:  # the index key holds the hash's first 16 bytes
                groups.extend(g for g in index.candidates(tx) if g.filter.tx_fields)
            else:
                tx = None
    sighting = TxView(chain_id, [value], 0, 1, seq)
    for g in groups:
        if g.filter.matches_sighting(chain_id, kind, tx):
            sighting.frame_all()
            index.sighted(g, sighting)


def match_raw(index: FilterIndex, events: Sequence[tuple[int, int, int, bytes]],
              lookup: TxLookup | None = None) -> None:
    """Gives each group of ``index`` what it takes from ``events`` ``(seq, chain, kind, value)`` read from the
    log, whose seqs are consecutive. A transaction is its TX_SEEN and the TX_DECODED / OPP_DETECTED events
    right after it; events before the first TX_SEEN whose transaction is not in ``events`` are skipped (the
    caller reads from a little earlier and frames from its cursor on); sightings: :func:`add_sighting`."""
    index.begin()
    values = [e[3] for e in events]
    n = len(events)
    i = 0
    while i < n:
        seq, chain_id, kind, _ = events[i]
        if kind != KIND_SEEN:
            if kind not in (KIND_DECODED, KIND_OPP):  # a sighting, on its own
                add_sighting(index, events[i], lookup)
            i += 1
            continue
        end = i + 1
        while end < n and events[end][2] in (KIND_DECODED, KIND_OPP):
            end += 1
        if end > i + 1:  # a transaction's TX_DECODED always follows its TX_SEEN; without it, it is cut
            tx = TxView(chain_id, values, i, end, seq)
            if index.collect(tx):
                tx.frame_all()
        i = end
    index.finish()


class LogMatcher:
    """Matches stored transactions by the seq of any of their events, for the list endpoints: one short cursor
    walk in the caller's read transaction (``EventLog.tx_values``) per transaction, remembered per request (a
    transaction's opportunities share the answer)."""

    def __init__(self, eventlog: EventLog, event_filter: TxFilter) -> None:
        self._log = eventlog
        self._filter = event_filter
        self._memo: dict[int, bool] = {}

    def __call__(self, txn: Any, seq: int, chain_id: int = 0) -> bool:
        first, values = self._log.tx_values(txn, seq)
        if not values:
            return False
        hit = self._memo.get(first)
        if hit is None:
            tx = TxView(chain_id, values, 0, len(values), first)
            if not chain_id:
                tx.chain = tx.envelope().chain_id
            hit = self._memo[first] = self._filter.matches(tx)
        return hit
