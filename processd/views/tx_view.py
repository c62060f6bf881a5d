"""One stored transaction as a filter sees it (:class:`TxView`: its events' values, fields parsed at most once and
only when a filter asks) and its events framed for the subscription streams (:func:`frame_event`,
:func:`frame_values`, :func:`frame_taken`): ``SubscribeEventsResponse.events`` entries made from the stored
values as they are, without a decode and re-encode.

A :class:`TxView` parses an event value only for a field some filter checks beyond its anchor
(``processd.views.filter_index``): the TX_SEEN value for ``addresses`` / ``min_value``, the TX_DECODED value for
``methods`` / ``tokens_in`` / ``tokens_out``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from common.pb.v1 import events_pb2, tx_pb2
from processd.wire.encoding import SMALL_VARINTS, varint, varints
from processd.wire.tags import tag

if TYPE_CHECKING:
    from processd.views.filter_index import Anchor, FilterGroup

KIND_SEEN: int = events_pb2.EVENT_KIND_TX_SEEN
KIND_DECODED: int = events_pb2.EVENT_KIND_TX_DECODED
KIND_OPP: int = events_pb2.EVENT_KIND_OPP_DETECTED
_parse_event = events_pb2.Event.FromString


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
