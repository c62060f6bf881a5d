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
from gatewayd.errors import GatewaydError

UINT64_MAX = 2**64 - 1
_DIGITS = re.compile(r"[0-9]{1,20}")
_HASH = re.compile(r"0[xX][0-9a-fA-F]{64}")
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


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One query parameter: how to parse it, its default and its documentation."""

    name: str
    #: "chain", "uint", "cursor", "kinds" or "include".
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
        if self.kind == "chain":
            return parse_chain_param(self.name, value)
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


def _kinds() -> ParamSpec:
    return ParamSpec(
        "kinds", "kinds", "Only these event kinds, comma-separated: " + ", ".join(EVENT_KINDS) + ". Omit for all.", ()
    )


def _include() -> ParamSpec:
    return ParamSpec(
        "include", "include", "Add to each transaction: raw = its signed raw bytes (raw_tx, 0x hex EIP-2718 "
        "encoding, and raw_tx_origin). Comma-separated or repeated. Omit for none.", frozenset())


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
        _include(),
    ),
    "transactions_all": _specs(
        _chain(),
        _from_seq("First seq_id to return (inclusive); 0 = from the oldest. Use next_from_seq_id of the last page."),
        _limit("transactions_all", "transactions"),
        _include(),
    ),
    "transaction": _specs(_chain(), _include()),
    "features_recent": _specs(_chain(), _limit("features_recent", "feature records")),
    "blocks_recent": _specs(
        _chain(),
        _limit("blocks_recent", "blocks"),
        ParamSpec("before_seq_id", "cursor", "Only blocks whose block event has a seq_id below this (exclusive); 0 = "
                  "from the newest. Use next_before_seq_id of the previous page.", 0),
    ),
    "opps_recent": _specs(_chain(), _limit("opps_recent", "opportunities"), _min_score()),
    "events": _specs(
        _from_seq("First seq_id to return (inclusive); 0 = from the oldest retained. Use next_from_seq_id."),
        _limit("events", "events"),
        _chain(),
        _kinds(),
        _include(),
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
    ),
}


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
