"""Server-side event filters: an ``EventFilter`` compiled once per subscription or query (:func:`compile_filter`,
bounds checked: :class:`FilterError`) into a :class:`TxFilter`, matched per transaction.

A :class:`TxFilter` is the normalized, hashable form of an ``EventFilter`` (sets, ints), so subscribers with the
same filter share one (``processd.views.subscriptions`` groups them) and a commit is matched once per distinct
filter, not once per subscriber: ``processd.views.filter_index`` indexes the distinct filters,
``processd.views.filter_match`` matches them on what a commit stored or the log holds, and a transaction is
seen through a ``processd.views.tx_view.TxView``.

Semantics (query.proto, ``EventFilter``): AND across fields (selectors and methods are one), OR within a field;
a transaction's events are taken or skipped together, then ``kinds`` picks among them; a TX_SOURCE_SEEN event
matches on its chain and kind, and on the other fields by its transaction as read from the log
(``processd.views.filter_match.add_sighting``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from common import limits
from common.pb.v1 import query_pb2
from processd.errors import ProcessdError

if TYPE_CHECKING:
    from processd.views.tx_view import TxView

VALID_KINDS = frozenset(limits.EVENT_KINDS.values())
#: A set that no stored event has (chain 0 and kind 0 are never stored): the combination of a request's own
#: chain_id / kinds with a filter's that share nothing.
NOTHING = frozenset({0})


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
