"""The one table of query limits, shared by gatewayd (REST parameters) and processd (Query RPC checks).

gatewayd refuses a REST value outside these bounds with a 400; processd answers INVALID_ARGUMENT (or clamps a
page size) for the same values arriving over gRPC from any other client. Both read them from here so the two
checks cannot drift apart (``tests/test_limits.py`` holds them to it).
"""

from __future__ import annotations

from types import MappingProxyType

from common.chains import MAX_CHAIN_ID
from common.pb.v1 import events_pb2

__all__ = [
    "ADDRESS_BYTES",
    "DEFAULT_PAGE_LIMIT",
    "EVENT_KINDS",
    "FILTER_LIMITS",
    "HASH_BYTES",
    "MAX_CHAIN_ID",
    "MAX_FILTER_ADDRESSES",
    "MAX_FILTER_TOKENS",
    "MAX_KINDS_VALUES",
    "MAX_PAGE_LIMIT",
    "MAX_SCORE",
    "MAX_VALUE_BYTES",
    "REST_FILTER_PARAMS",
    "REST_PAGE_LIMITS",
    "SELECTOR_BYTES",
    "SNAPSHOT_DEFAULT_LIMIT",
]

#: A Query page size of 0 means this (processd's ``default_page_limit`` default).
DEFAULT_PAGE_LIMIT = 100
#: Query page sizes are clamped to this (processd's ``max_page_limit`` default); no REST limit may pass it.
MAX_PAGE_LIMIT = 5000
#: A snapshot list size of 0 means this.
SNAPSHOT_DEFAULT_LIMIT = 20
#: ``min_score`` is 0..MAX_SCORE (opportunity scores are percentages).
MAX_SCORE = 100
#: A transaction hash is this many bytes.
HASH_BYTES = 32
#: Snapshot decode coverage: at most this many selectors per chain (``coverage_top``; 0 = none).
MAX_COVERAGE_SELECTORS = 64
#: An address is this many bytes, a method selector this many.
ADDRESS_BYTES = 20
SELECTOR_BYTES = 4
#: At most this many ``kinds`` values in one REST request.
MAX_KINDS_VALUES = 8

#: Event kinds a query may filter on: REST name -> protobuf enum value (in the enum's order).
EVENT_KINDS: MappingProxyType[str, int] = MappingProxyType({
    "tx_seen": events_pb2.EVENT_KIND_TX_SEEN,
    "tx_decoded": events_pb2.EVENT_KIND_TX_DECODED,
    "opp_detected": events_pb2.EVENT_KIND_OPP_DETECTED,
    "tx_source_seen": events_pb2.EVENT_KIND_TX_SOURCE_SEEN,
    "tx_included": events_pb2.EVENT_KIND_TX_INCLUDED,
    "tx_replaced": events_pb2.EVENT_KIND_TX_REPLACED,
    "tx_dropped": events_pb2.EVENT_KIND_TX_DROPPED,
    "block": events_pb2.EVENT_KIND_BLOCK,
    "reorg": events_pb2.EVENT_KIND_REORG,
    "pool_state": events_pb2.EVENT_KIND_POOL_STATE,
})

#: REST page-size parameters: (route, parameter) -> (default, maximum). Every maximum is at most MAX_PAGE_LIMIT.
REST_PAGE_LIMITS: MappingProxyType[tuple[str, str], tuple[int, int]] = MappingProxyType({
    ("snapshot", "tx_limit"): (SNAPSHOT_DEFAULT_LIMIT, 200),
    ("snapshot", "opp_limit"): (SNAPSHOT_DEFAULT_LIMIT, 200),
    ("snapshot", "feature_limit"): (SNAPSHOT_DEFAULT_LIMIT, 200),
    ("transactions", "limit"): (25, 200),
    ("transactions_all", "limit"): (1000, MAX_PAGE_LIMIT),
    ("features_recent", "limit"): (25, 200),
    ("opps_recent", "limit"): (25, 200),
    ("events", "limit"): (DEFAULT_PAGE_LIMIT, 1000),
    ("blocks_recent", "limit"): (25, 200),
})

#: Bounds of one ``EventFilter`` (query.proto) and of the REST filter parameters that build it: field -> (most
#: values, most bytes or characters per value). A subscriber cannot send a 10 MB address list: gatewayd answers
#: 400 and processd INVALID_ARGUMENT past these. ``senders``, ``to`` and ``addresses`` share MAX_FILTER_ADDRESSES,
#: ``tokens_in`` and ``tokens_out`` share MAX_FILTER_TOKENS (the matcher's index holds every value).
FILTER_LIMITS: MappingProxyType[str, tuple[int, int]] = MappingProxyType({
    "chain_ids": (64, 0),
    "senders": (1000, ADDRESS_BYTES),
    "to": (1000, ADDRESS_BYTES),
    "addresses": (1000, ADDRESS_BYTES),
    "selectors": (256, SELECTOR_BYTES),
    "methods": (256, 128),
    "protocols": (64, 64),
    "tokens_in": (256, ADDRESS_BYTES),
    "tokens_out": (256, ADDRESS_BYTES),
})
MAX_FILTER_ADDRESSES = 1000
MAX_FILTER_TOKENS = 256
#: ``min_value`` is a uint256: at most 32 big-endian bytes (78 decimal digits in REST).
MAX_VALUE_BYTES = 32

#: REST filter parameters (gatewayd: ``/events/stream`` and the list routes): name -> (``EventFilter`` field, most
#: comma-separated values). Smaller than FILTER_LIMITS so a request with every filter parameter at its bound
#: still fits gatewayd's request line (max_header_bytes, 8 KiB: 100 addresses are 4.3 KB); longer lists go
#: over gRPC. ``method`` fills ``selectors`` (0x + 8 hex digits) or ``methods`` (a name), value by value.
REST_FILTER_PARAMS: MappingProxyType[str, tuple[str, int]] = MappingProxyType({
    "from": ("senders", 64),
    "to": ("to", 64),
    "method": ("methods", 16),
    "protocol": ("protocols", 16),
    "token_in": ("tokens_in", 16),
    "token_out": ("tokens_out", 16),
})
