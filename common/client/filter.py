"""What a subscription delivers: :class:`Filter`, and the transaction facts its client-side fields are judged on."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from common import limits
from common.client import _convert
from common.client.errors import InvalidArgumentError
from common.client.records import EventKind
from common.pb.v1 import query_pb2

_ADDRESS = re.compile(r"0x[0-9a-f]{40}")
_SELECTOR = re.compile(r"0x[0-9a-f]{8}")
_T = TypeVar("_T")
#: processd's largest chain id (``common/limits.py``: a chain id fits an int64).
MAX_CHAIN_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class TxFacts:
    """The facts of one transaction that the client-side fields of a :class:`Filter` look at."""

    sender: str
    to: str | None
    value: int
    selector: str | None
    #: The decoded method name ("" when the selector is unknown); None until the features are known.
    method: str | None = None


def _addresses(name: str, values: Iterable[str]) -> frozenset[str]:
    if isinstance(values, str):
        raise InvalidArgumentError(f"{name} must be a collection of addresses, not one string")
    out = set()
    for value in values:
        text = value.lower() if isinstance(value, str) else value
        if not isinstance(text, str) or not _ADDRESS.fullmatch(text):
            raise InvalidArgumentError(f"{name}: {value!r:.60} is not a 0x-prefixed 20-byte hex address")
        out.add(text)
    return _bounded(name, frozenset(out))


def _bounded(name: str, values: frozenset[_T], pb_name: str = "") -> frozenset[_T]:
    """``values`` if there are at most as many as processd takes in that ``EventFilter`` field (common.limits)."""
    most = limits.FILTER_LIMITS[pb_name or name][0]
    if len(values) > most:
        raise InvalidArgumentError(f"{name}: at most {most} values, got {len(values)}")
    return values


def _protocols(values: Iterable[str]) -> frozenset[str]:
    if isinstance(values, str):
        raise InvalidArgumentError("protocols must be a collection of labels, not one string")
    most_chars = limits.FILTER_LIMITS["protocols"][1]
    out = set()
    for value in values:
        if not isinstance(value, str) or not 0 < len(value) <= most_chars:
            raise InvalidArgumentError(f"protocols: {value!r:.60} is not a label of 1..{most_chars} characters")
        out.add(value)
    return _bounded("protocols", frozenset(out))


@dataclass(frozen=True, slots=True)
class Filter:
    """Which events a subscription delivers. Every field left empty matches everything; fields combine with AND,
    the values inside one field with OR.

    Every field is sent to processd as an ``EventFilter`` (query.proto) and applied there: only matching events
    cross the network. ``chain_ids`` and ``kinds`` (:class:`EventKind` or their names, ``"tx_seen"``, ...) judge
    the event; the others judge the event's transaction (so they select every kind of event of a matching
    transaction: its ``tx_seen``, ``tx_decoded``, ``opp_detected`` and ``tx_source_seen`` events):

    - ``senders``: the transaction's ``from`` is one of these addresses;
    - ``to``: its ``to`` is one of these (a contract creation has no ``to`` and never matches);
    - ``addresses``: its ``from`` or its ``to`` is one of these (to follow an address either way);
    - ``methods``: its decoded method name (``"swapExactETHForTokens"``) or its 4-byte selector (``"0x7ff36ab5"``)
      is one of these;
    - ``min_value_wei``: it sends at least this much native value;
    - ``protocols``: its decoded protocol label (``"uniswap_v2"``) is one of these;
    - ``tokens_in`` / ``tokens_out``: the token its decoded swap takes in / gives out is one of these addresses;
    - ``min_score``: one of its opportunities scores at least this (0 = no bound, 1..100).

    A processd older than the ``EventFilter`` (it does not answer ``mempulse-filter: applied``) applies only one
    chain and the kinds; the client then judges senders, to, addresses, methods and min_value_wei itself, as
    earlier releases did: it asks for the transactions' ``tx_seen`` (and, for method names, ``tx_decoded``) events
    as well and drops what does not match, looking up with ``GetTransaction`` a transaction whose facts it has not
    seen on the stream. ``protocols``, the tokens and ``min_score`` need processd's filter: against an older
    processd the subscription ends with :class:`InvalidArgumentError`.
    """

    # Any collection is accepted; each is stored as a frozenset of canonical values (lowercase addresses and
    # selectors, EventKind members), so equal filters compare and hash equal.
    chain_ids: Collection[int] = field(default=frozenset())
    kinds: Collection[EventKind | str] = field(default=frozenset())
    senders: Collection[str] = field(default=frozenset())
    to: Collection[str] = field(default=frozenset())
    addresses: Collection[str] = field(default=frozenset())
    methods: Collection[str] = field(default=frozenset())
    min_value_wei: int = 0
    protocols: Collection[str] = field(default=frozenset())
    tokens_in: Collection[str] = field(default=frozenset())
    tokens_out: Collection[str] = field(default=frozenset())
    min_score: int = 0
    #: An opportunity valued on pool state at this net profit (wei) or more; processd applies it (a processd
    #: older than the valuation ignores it).
    min_profit_wei: int = 0

    def __post_init__(self) -> None:
        # Normalize any iterables into frozensets of canonical values, so equal filters compare equal and the
        # stream never judges an event against a malformed value.
        if isinstance(self.kinds, str):
            raise InvalidArgumentError("kinds must be a collection of kinds, not one string")
        try:
            chains = frozenset(self.chain_ids)
            kinds_in = frozenset(self.kinds)
        except TypeError:
            raise InvalidArgumentError("chain_ids and kinds must be collections (e.g. {1, 137})") from None
        for chain in chains:
            if not isinstance(chain, int) or isinstance(chain, bool) or not 0 < chain <= MAX_CHAIN_ID:
                raise InvalidArgumentError(f"chain_ids: {chain!r} is not a chain id (1 .. 2**63-1)")
        kinds = set()
        for kind in kinds_in:
            try:
                kinds.add(EventKind(kind))
            except ValueError:
                raise InvalidArgumentError(
                    f"kinds: {kind!r} is not one of {', '.join(k.value for k in EventKind)}"
                ) from None
        methods = set()
        if isinstance(self.methods, str):
            raise InvalidArgumentError("methods must be a collection of names or selectors, not one string")
        for method in self.methods:
            if isinstance(method, str) and method.lower().startswith("0x"):
                if not _SELECTOR.fullmatch(method.lower()):
                    raise InvalidArgumentError(f"methods: {method!r:.60} is not a 0x 4-byte selector")
                methods.add(method.lower())
            elif isinstance(method, str) and method.isidentifier():
                methods.add(method)
            else:
                raise InvalidArgumentError(f"methods: {method!r:.60} is neither a method name nor a selector")
        if not isinstance(self.min_value_wei, int) or isinstance(self.min_value_wei, bool) or self.min_value_wei < 0:
            raise InvalidArgumentError(f"min_value_wei must be an int >= 0, got {self.min_value_wei!r}")
        if self.min_value_wei.bit_length() > 8 * limits.MAX_VALUE_BYTES:
            raise InvalidArgumentError(f"min_value_wei must be below 2**256, got {self.min_value_wei!r}")
        if (not isinstance(self.min_score, int) or isinstance(self.min_score, bool)
                or not 0 <= self.min_score <= limits.MAX_SCORE):
            raise InvalidArgumentError(f"min_score must be an int in 0..{limits.MAX_SCORE}, got {self.min_score!r}")
        if (not isinstance(self.min_profit_wei, int) or isinstance(self.min_profit_wei, bool)
                or not 0 <= self.min_profit_wei < 1 << 256):
            raise InvalidArgumentError(f"min_profit_wei must be an int in 0..2**256-1, got {self.min_profit_wei!r}")
        self._set_canonical(chains, frozenset(kinds), frozenset(methods))

    def _set_canonical(self, chains: frozenset[int], kinds: frozenset[EventKind], methods: frozenset[str]) -> None:
        """Stores every collection field as its frozenset of canonical values, within processd's bounds."""
        _bounded("chain_ids", chains)
        selectors = frozenset(m for m in methods if m.startswith("0x"))
        _bounded("methods (selectors)", selectors, "selectors")
        _bounded("methods (names)", methods - selectors, "methods")
        values = {
            "chain_ids": chains, "kinds": kinds, "methods": methods,
            "senders": _addresses("senders", self.senders), "to": _addresses("to", self.to),
            "addresses": _addresses("addresses", self.addresses), "protocols": _protocols(self.protocols),
            "tokens_in": _addresses("tokens_in", self.tokens_in),
            "tokens_out": _addresses("tokens_out", self.tokens_out),
        }
        if len(values["senders"]) + len(values["to"]) + len(values["addresses"]) > limits.MAX_FILTER_ADDRESSES:
            raise InvalidArgumentError(f"senders, to and addresses: at most {limits.MAX_FILTER_ADDRESSES} together")
        if len(values["tokens_in"]) + len(values["tokens_out"]) > limits.MAX_FILTER_TOKENS:
            raise InvalidArgumentError(f"tokens_in and tokens_out: at most {limits.MAX_FILTER_TOKENS} together")
        for name, value in values.items():
            object.__setattr__(self, name, value)

    # ---- how the subscription applies it -------------------------------------------------------------------

    @property
    def server_chain_id(self) -> int:
        """The chain id processd filters on (0 = all: none or several chains asked for)."""
        return next(iter(self.chain_ids)) if len(self.chain_ids) == 1 else 0

    @property
    def needs_tx_facts(self) -> bool:
        """True when a client-side field judges the event's transaction."""
        return bool(self.senders or self.to or self.addresses or self.methods or self.min_value_wei)

    @property
    def needs_server_filter(self) -> bool:
        """True when a field only processd can judge is set (the client has no fallback for it)."""
        return bool(self.protocols or self.tokens_in or self.tokens_out or self.min_score or self.min_profit_wei)

    @property
    def needs_method_name(self) -> bool:
        """True when ``methods`` holds a name, which only the transaction's features say."""
        return any(not m.startswith("0x") for m in self.methods)

    @property
    def server_kinds(self) -> frozenset[EventKind]:
        """The kinds processd sends (empty = all): ``kinds`` plus those the client-side fields read facts from."""
        kinds = frozenset(EventKind(k) for k in self.kinds)
        if not kinds or not self.needs_tx_facts:
            return kinds
        extra = {EventKind.TX_SEEN}
        if self.needs_method_name:
            extra.add(EventKind.TX_DECODED)
        return kinds | extra

    def to_pb(self) -> query_pb2.EventFilter | None:
        """The ``EventFilter`` processd applies (None for a filter that takes everything)."""
        out = query_pb2.EventFilter(
            chain_ids=sorted(self.chain_ids),
            kinds=sorted(_convert.KIND_TO_PB[EventKind(k)] for k in self.kinds),
            senders=[bytes.fromhex(a[2:]) for a in sorted(self.senders)],
            to=[bytes.fromhex(a[2:]) for a in sorted(self.to)],
            addresses=[bytes.fromhex(a[2:]) for a in sorted(self.addresses)],
            selectors=[bytes.fromhex(m[2:]) for m in sorted(self.methods) if m.startswith("0x")],
            methods=sorted(m for m in self.methods if not m.startswith("0x")),
            protocols=sorted(self.protocols),
            tokens_in=[bytes.fromhex(a[2:]) for a in sorted(self.tokens_in)],
            tokens_out=[bytes.fromhex(a[2:]) for a in sorted(self.tokens_out)],
            min_score=self.min_score,
        )
        if self.min_value_wei:
            out.min_value = self.min_value_wei.to_bytes((self.min_value_wei.bit_length() + 7) // 8, "big")
        if self.min_profit_wei:
            out.min_profit_wei = self.min_profit_wei.to_bytes((self.min_profit_wei.bit_length() + 7) // 8, "big")
        return out if out.ByteSize() else None

    def matches_header(self, chain_id: int, kind: EventKind) -> bool:
        """Whether an event of ``chain_id`` and ``kind`` passes ``chain_ids`` and ``kinds``."""
        return (not self.chain_ids or chain_id in self.chain_ids) and (not self.kinds or kind in self.kinds)

    def matches_tx(self, facts: TxFacts) -> bool:
        """Whether a transaction with these facts passes the client-side fields (its method must be known when
        ``needs_method_name``)."""
        if self.senders and facts.sender not in self.senders:
            return False
        if self.to and facts.to not in self.to:
            return False
        if self.addresses and facts.sender not in self.addresses and facts.to not in self.addresses:
            return False
        if facts.value < self.min_value_wei:
            return False
        if self.methods and facts.selector not in self.methods and facts.method not in self.methods:
            return False
        return True
