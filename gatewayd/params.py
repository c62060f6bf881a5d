"""Pure validation of REST query parameters into typed values.

Every route declares its parameters as :class:`ParamSpec` records (also the source of the OpenAPI document).
:func:`parse_params` turns the raw query (name -> list of strings) into a dict of typed values, or raises
:class:`ParamError` with a stable code and a message that names the parameter. Nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from common import limits
from common.chains import KNOWN_CHAINS, UnknownChainError, known_chain_names, parse_chain
from common.pb.v1 import query_pb2
from gatewayd.errors import GatewaydError

UINT64_MAX = 2**64 - 1
_DIGITS = re.compile(r"[0-9]{1,20}")
_HASH = re.compile(r"0[xX][0-9a-fA-F]{64}")
#: A cursor of a merged all-chain page (gatewayd.merge): printable ASCII, bounded.
MAX_TOKEN_CHARS = 1500
TOKEN_RE = f"[0-9a-z.]{{1,{MAX_TOKEN_CHARS}}}"
_TOKEN = re.compile(TOKEN_RE)
# Bounds of the free-form parameters, so every value the OpenAPI document calls valid fits the request line
# (max_header_bytes, 8 KiB by default, even percent-encoded at 9 bytes a character): without them a valid
# chain_id or kinds padded with whitespace (which the parsers strip) was answered 431.
MAX_CHAIN_CHARS = 64
MAX_KINDS_CHARS = 64
MAX_KINDS_VALUES = limits.MAX_KINDS_VALUES
MAX_INCLUDE_CHARS = 32
MAX_INCLUDE_VALUES = 4
#: What ``include`` may add to rendered transactions: ``raw`` = their signed raw bytes (raw_tx, raw_tx_origin).
INCLUDES = ("raw",)

#: Filter parameters: name -> (EventFilter field, most values), the shared table; and their value syntax.
FILTER_PARAMS = limits.REST_FILTER_PARAMS
ADDRESS_RE = "0[xX][0-9a-fA-F]{40}"
SELECTOR_RE = "0[xX][0-9a-fA-F]{8}"
#: A method name as Solidity spells identifiers (a value that is also a selector is taken as a selector).
METHOD_NAME_RE = "[A-Za-z_$][A-Za-z0-9_$]{0,127}"
PROTOCOL_RE = "[a-z0-9_.-]{1,64}"
_ITEM_RES = {"addresses": ADDRESS_RE, "methods": f"(?:{SELECTOR_RE}|{METHOD_NAME_RE})", "protocols": PROTOCOL_RE}
_ITEM_CHARS = {"addresses": 42, "methods": 128, "protocols": 64}
UINT256_MAX = 2**256 - 1

#: REST names of event kinds, in the order of the protobuf enum (the shared table: processd checks the same set).
EVENT_KINDS = limits.EVENT_KINDS


class ParamError(GatewaydError, ValueError):
    """A request parameter is missing, unknown or malformed (HTTP 400)."""

    status = 400

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


def _show(value: str) -> str:
    """The offending value quoted and cut short, safe to echo back."""
    return repr(value[:64] + ("..." if len(value) > 64 else ""))


def parse_chain_param(name: str, value: str) -> int:
    """A chain id or known chain name (at most :data:`MAX_CHAIN_CHARS` characters) -> chain id."""
    try:
        if len(value) > MAX_CHAIN_CHARS:
            raise UnknownChainError(value)
        return parse_chain(value)
    except UnknownChainError:
        longer = f" (longer than {MAX_CHAIN_CHARS} characters)" if len(value) > MAX_CHAIN_CHARS else ""
        raise ParamError(
            "unknown_chain",
            f"{name}: unknown chain {_show(value)}{longer}; use a positive chain id or one of {known_chain_names()}",
            name,
        ) from None


def parse_uint(name: str, value: str, minimum: int, maximum: int, code: str = "out_of_range") -> int:
    """A plain decimal integer (ASCII digits only, no sign or spaces) within ``minimum..maximum``."""
    if not _DIGITS.fullmatch(value):
        raise ParamError(
            "invalid_integer", f"{name} must be an integer in {minimum}..{maximum}, got {_show(value)}", name
        )
    number = int(value)
    if not minimum <= number <= maximum:
        raise ParamError(code, f"{name} must be in {minimum}..{maximum}, got {number}", name)
    return number


def parse_hash(name: str, value: str) -> bytes:
    """A 0x-prefixed 32-byte hex transaction hash (either case) -> 32 raw bytes."""
    if not _HASH.fullmatch(value):
        raise ParamError(
            "invalid_hash", f"{name} must be 0x followed by 64 hex digits (a 32-byte hash), got {_show(value)}", name
        )
    return bytes.fromhex(value[2:])


def parse_kinds(name: str, values: list[str]) -> tuple[int, ...]:
    """Comma-separated (or repeated) event kind names -> protobuf EventKind values, deduplicated, in order."""
    if len(values) > MAX_KINDS_VALUES:
        raise ParamError("invalid_kind", f"{name} is given {len(values)} times; at most {MAX_KINDS_VALUES}", name)
    kinds: list[int] = []
    for value in values:
        if len(value) > MAX_KINDS_CHARS:
            raise ParamError("invalid_kind", f"{name}: longer than {MAX_KINDS_CHARS} characters: {_show(value)}", name)
        for part in value.split(","):
            kind = EVENT_KINDS.get(part.strip().lower())
            if kind is None:
                raise ParamError(
                    "invalid_kind", f"{name}: unknown event kind {_show(part)}; use {', '.join(EVENT_KINDS)}", name
                )
            if kind not in kinds:
                kinds.append(kind)
    return tuple(kinds)


def parse_include(name: str, values: list[str]) -> frozenset[str]:
    """Comma-separated (or repeated) names of what to add to the rendering (:data:`INCLUDES`), exactly as
    written (lowercase, no spaces)."""
    if len(values) > MAX_INCLUDE_VALUES:
        raise ParamError("invalid_include", f"{name} is given {len(values)} times; at most {MAX_INCLUDE_VALUES}",
                         name)
    out: set[str] = set()
    for value in values:
        if len(value) > MAX_INCLUDE_CHARS:
            raise ParamError("invalid_include", f"{name}: longer than {MAX_INCLUDE_CHARS} characters: {_show(value)}",
                             name)
        for part in value.split(","):
            if part not in INCLUDES:
                raise ParamError("invalid_include", f"{name}: unknown value {_show(part)}; use {', '.join(INCLUDES)}",
                                 name)
            out.add(part)
    return frozenset(out)


def item_pattern(kind: str) -> str:
    """The pattern (no anchors) of one item of a list parameter of ``kind``."""
    return f"(?:{_ITEM_RES[kind]})"


def list_chars(kind: str, most: int) -> int:
    """The longest value of a comma-separated list parameter of ``kind`` with ``most`` items."""
    return most * (_ITEM_CHARS[kind] + 1) - 1


def parse_list(name: str, kind: str, value: str, most: int) -> tuple[str, ...]:
    """A comma-separated list of at most ``most`` items of ``kind`` (addresses, methods, protocols), exactly as
    written (no spaces); duplicates are kept once."""
    if len(value) > list_chars(kind, most):
        raise ParamError("invalid_filter", f"{name}: longer than {list_chars(kind, most)} characters", name)
    items = value.split(",")
    if len(items) > most:
        raise ParamError("invalid_filter", f"{name}: at most {most} comma-separated values, got {len(items)}", name)
    pattern = re.compile(_ITEM_RES[kind])
    for item in items:
        if not pattern.fullmatch(item):
            what = {"addresses": "0x followed by 40 hex digits (an address)",
                    "methods": "a method name or 0x followed by 8 hex digits (a selector)",
                    "protocols": "a protocol label (a-z, 0-9, _ . -)"}[kind]
            raise ParamError("invalid_filter", f"{name}: each value must be {what}, got {_show(item)}", name)
    return tuple(dict.fromkeys(items))


def parse_uint256(name: str, value: str) -> int:
    """A plain decimal integer 0..2**256-1 (ASCII digits only, at most 78)."""
    if not re.fullmatch(r"[0-9]{1,78}", value) or int(value) > UINT256_MAX:
        raise ParamError("out_of_range", f"{name} must be an integer in 0..2**256-1, got {_show(value)}", name)
    return int(value)


#: Routes whose ``min_score`` is the request's own (per opportunity: ListOpportunitiesRequest.min_score), not
#: the filter's (a transaction with an opportunity scoring at least that).
MIN_SCORE_OF_REQUEST = frozenset({"opps_recent", "snapshot"})


def event_filter(p: Mapping[str, Any], route: str) -> query_pb2.EventFilter | None:
    """The ``EventFilter`` of ``route``'s parsed filter parameters (AND across parameters, OR within one), or
    None when none is given: the request to processd then carries no filter, exactly as before filters."""
    with_min_score = route not in MIN_SCORE_OF_REQUEST
    f = query_pb2.EventFilter()
    for name, (field, _) in FILTER_PARAMS.items():
        for item in p.get(name) or ():
            if field == "methods" and re.fullmatch(SELECTOR_RE, item):
                f.selectors.append(bytes.fromhex(item[2:]))
            elif field == "methods" or field == "protocols":
                getattr(f, field).append(item)
            else:
                getattr(f, field).append(bytes.fromhex(item[2:]))
    if p.get("min_value_wei"):
        value = p["min_value_wei"]
        f.min_value = value.to_bytes((value.bit_length() + 7) // 8, "big")
    if p.get("min_profit_wei"):
        value = p["min_profit_wei"]
        f.min_profit_wei = value.to_bytes((value.bit_length() + 7) // 8, "big")
    if with_min_score and p.get("min_score"):
        f.min_score = p["min_score"]
    return f if f.ByteSize() else None


#: The lifecycle statuses /transactions filters by (``status=``), REST name -> TxLifecycleStatus.
LIFECYCLE_STATUSES: Mapping[str, int] = {
    "pending": query_pb2.TX_LIFECYCLE_STATUS_PENDING, "included": query_pb2.TX_LIFECYCLE_STATUS_INCLUDED,
    "replaced": query_pb2.TX_LIFECYCLE_STATUS_REPLACED, "dropped": query_pb2.TX_LIFECYCLE_STATUS_DROPPED}


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One query parameter: how to parse it, its default and its documentation."""

    name: str
    #: "chain", "uint", "cursor", "token" (an opaque cursor), "kinds", "include", "uint256", "status" or a list kind
    #: ("addresses", "methods", "protocols": ``maximum`` is then the most values).
    kind: str
    description: str
    default: Any = None
    minimum: int = 0
    maximum: int = UINT64_MAX

    def parse(self, values: list[str]) -> Any:
        """Typed value of the parameter from its raw values (one unless the kind allows repetition)."""
        if self.kind == "kinds":
            return parse_kinds(self.name, values)
        if self.kind == "include":
            return parse_include(self.name, values)
        if len(values) != 1:
            raise ParamError(
                "duplicate_parameter", f"{self.name} is given {len(values)} times; give it once", self.name
            )
        value = values[0]
        if self.kind == "token":
            if not _TOKEN.fullmatch(value):
                raise ParamError("invalid_cursor", f"{self.name} must be a cursor this gateway gave (next_cursor), "
                                 f"got {_show(value)}", self.name)
            return value
        if self.kind == "chain":
            return parse_chain_param(self.name, value)
        if self.kind in _ITEM_RES:
            return parse_list(self.name, self.kind, value, self.maximum)
        if self.kind == "uint256":
            return parse_uint256(self.name, value)
        if self.kind == "status":
            if value not in LIFECYCLE_STATUSES:
                raise ParamError("invalid_status", f"{self.name} must be one of {', '.join(LIFECYCLE_STATUSES)}, "
                                 f"got {value[:40]!r}", self.name)
            return LIFECYCLE_STATUSES[value]
        code = "invalid_cursor" if self.kind == "cursor" else "out_of_range"
        return parse_uint(self.name, value, self.minimum, self.maximum, code)


def _chain() -> ParamSpec:
    return ParamSpec(
        "chain_id",
        "chain",
        "Only this chain: a numeric chain id or a known name (" + ", ".join(KNOWN_CHAINS) + "). Omit for all chains.",
        default=0,
    )


def _limit(route: str, what: str, name: str = "limit") -> ParamSpec:
    default, maximum = limits.REST_PAGE_LIMITS[(route, name)]
    return ParamSpec(name, "uint", f"Maximum number of {what} returned.", default, 1, maximum)


def _min_score() -> ParamSpec:
    return ParamSpec("min_score", "uint", f"Only opportunities scoring at least this (0..{limits.MAX_SCORE}).", 0, 0,
                     limits.MAX_SCORE)


def _from_seq(description: str, default: int | None = 0) -> ParamSpec:
    return ParamSpec("from_seq_id", "cursor", description, default, 0, UINT64_MAX)


def _merged_cursor(what: str) -> ParamSpec:
    return ParamSpec("cursor", "token", f"Only with several processd shards, on all-chain reads: {what}. Give "
                     "next_cursor of the previous page as it is (opaque; docs/gatewayd.md#several-processd-shards-"
                     "by-chain). Omit for the first page.", None)


def _kinds() -> ParamSpec:
    return ParamSpec(
        "kinds", "kinds", "Only these event kinds, comma-separated: " + ", ".join(EVENT_KINDS) + ". Omit for all.", ()
    )


def _include() -> ParamSpec:
    return ParamSpec(
        "include", "include", "Add to each transaction: raw = its signed raw bytes (raw_tx, 0x hex EIP-2718 "
        "encoding, and raw_tx_origin). Comma-separated or repeated. Omit for none.", frozenset())


_FILTER_HELP = {
    "from": ("addresses", "Only transactions sent by one of these addresses"),
    "to": ("addresses", "Only transactions to one of these addresses (a contract creation has none)"),
    "method": ("methods", "Only transactions calling one of these methods: a decoded method name (e.g. transfer) "
               "or a 4-byte selector (0x + 8 hex digits)"),
    "protocol": ("protocols", "Only transactions of one of these protocols (features.protocol, e.g. uniswap_v2)"),
    "token_in": ("addresses", "Only transactions whose features.token_in is one of these"),
    "token_out": ("addresses", "Only transactions whose features.token_out is one of these"),
}


def _filters(min_score: bool = True) -> tuple[ParamSpec, ...]:
    """The filter parameters (AND across them, OR within one; docs/gatewayd.md#filters)."""
    specs = [ParamSpec(name, kind, f"{text}; comma-separated, at most {FILTER_PARAMS[name][1]}.", (), 1,
                       FILTER_PARAMS[name][1]) for name, (kind, text) in _FILTER_HELP.items()]
    specs.append(ParamSpec("min_value_wei", "uint256", "Only transactions whose value is at least this many wei "
                           "(decimal, 0..2**256-1).", 0, 0, UINT256_MAX))
    specs.append(ParamSpec("min_profit_wei", "uint256", "Only transactions with an opportunity valued on pool "
                           "state at a net profit of at least this many wei (decimal, 0..2**256-1; on /opps/recent: "
                           "only such opportunities); 0 = any.", 0, 0, UINT256_MAX))
    if min_score:
        specs.append(ParamSpec("min_score", "uint", "Only transactions with an opportunity scoring at least this "
                               f"(0..{limits.MAX_SCORE}); 0 = any.", 0, 0, limits.MAX_SCORE))
    return tuple(specs)


def _specs(*specs: ParamSpec) -> dict[str, ParamSpec]:
    return {spec.name: spec for spec in specs}


#: Query parameters of every route, by route name (the name is also the OpenAPI operationId).
ROUTE_PARAMS: dict[str, dict[str, ParamSpec]] = {
    "healthz": {},
    "openapi": {},
    "docs": {},
    "snapshot": _specs(
        _chain(),
        _limit("snapshot", "recent transactions", "tx_limit"),
        _limit("snapshot", "top opportunities", "opp_limit"),
        _limit("snapshot", "recent feature records", "feature_limit"),
        ParamSpec("coverage_top", "uint", "Per chain, the decode coverage (decoded / failed / unknown calls) of "
                  "this many busiest selectors of its recent transactions; 0 (default) = none.", 0, 0,
                  limits.MAX_COVERAGE_SELECTORS),
        _min_score(),
        _include(),
    ),
    "transactions": _specs(
        _chain(),
        _limit("transactions", "transactions"),
        ParamSpec(
            "before_seq_id",
            "cursor",
            "Only transactions with a seq_id below this (exclusive); 0 = from the newest. Use next_before_seq_id "
            "of the previous page (a page of big transactions is cut short by size: truncated).",
            0,
        ),
        ParamSpec("status", "status", "Only transactions in this lifecycle status: pending, included, replaced or "
                  "dropped (omit for any). A status-filtered page examines at most processd's scan bound and says "
                  "where to go on (next_before_seq_id).", 0),
        _include(),
        *_filters(),
    ),
    "transactions_all": _specs(
        _chain(),
        _from_seq("First seq_id to return (inclusive); 0 = from the oldest. Use next_from_seq_id of the last page."),
        _limit("transactions_all", "transactions"),
        _include(),
        *_filters(),
    ),
    "transaction": _specs(_chain(), _include()),
    "features_recent": _specs(_chain(), _limit("features_recent", "feature records"), *_filters()),
    "blocks_recent": _specs(
        _chain(),
        _limit("blocks_recent", "blocks"),
        ParamSpec("before_seq_id", "cursor", "Only blocks whose block event has a seq_id below this (exclusive); 0 = "
                  "from the newest. Use next_before_seq_id of the previous page.", 0),
    ),
    "opps_recent": _specs(_chain(), _limit("opps_recent", "opportunities"), _min_score(), *_filters(min_score=False)),
    "events": _specs(
        _from_seq("First seq_id to return (inclusive); 0 = from the oldest retained. Use next_from_seq_id."),
        _limit("events", "events"),
        _chain(),
        _kinds(),
        _include(),
        *_filters(),
    ),
    "events_stream": _specs(
        _from_seq(
            "Replay from this seq_id (inclusive) before going live; omit to receive only new events. "
            "A Last-Event-ID header takes precedence (resume after that id).",
            default=None,
        ),
        _chain(),
        _kinds(),
        _include(),
        *_filters(),
    ),
}


#: Routes whose all-chain reads page with a per-shard ``cursor`` on a gateway in front of several processd shards.
CURSOR_ROUTES = ("transactions", "transactions_all", "blocks_recent", "events")


def route_params(sharded: bool) -> dict[str, dict[str, ParamSpec]]:
    """The parameters of every route: :data:`ROUTE_PARAMS`, plus ``cursor`` on :data:`CURSOR_ROUTES` for a
    gateway with several processd shards (a one-processd gateway does not take it: unknown_parameter)."""
    if not sharded:
        return ROUTE_PARAMS
    cursor = _merged_cursor("where the previous page ended, on every shard")
    return {route: {**specs, "cursor": cursor} if route in CURSOR_ROUTES else specs
            for route, specs in ROUTE_PARAMS.items()}


def parse_params(raw: Mapping[str, list[str]], specs: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """Typed values for every parameter of ``specs`` (defaults filled in), from the raw query.

    Raises :class:`ParamError`: ``unknown_parameter`` for a name the route does not take, and the parse
    errors of each parameter.
    """
    values: dict[str, Any] = {}
    for name, given in raw.items():
        spec = specs.get(name)
        if spec is None:
            known = ", ".join(specs) or "none"
            raise ParamError(
                "unknown_parameter", f"unknown query parameter {_show(name)}; this route takes: {known}", name
            )
        values[name] = spec.parse(given)
    for name, spec in specs.items():
        if name not in values:
            values[name] = spec.default
    return values
