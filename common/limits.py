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
    "DEFAULT_PAGE_LIMIT",
    "EVENT_KINDS",
    "HASH_BYTES",
    "MAX_CHAIN_ID",
    "MAX_KINDS_VALUES",
    "MAX_PAGE_LIMIT",
    "MAX_SCORE",
    "REST_PAGE_LIMITS",
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
#: At most this many ``kinds`` values in one REST request.
MAX_KINDS_VALUES = 8

#: Event kinds a query may filter on: REST name -> protobuf enum value (in the enum's order).
EVENT_KINDS: MappingProxyType[str, int] = MappingProxyType({
    "tx_seen": events_pb2.EVENT_KIND_TX_SEEN,
    "tx_decoded": events_pb2.EVENT_KIND_TX_DECODED,
    "opp_detected": events_pb2.EVENT_KIND_OPP_DETECTED,
    "tx_source_seen": events_pb2.EVENT_KIND_TX_SOURCE_SEEN,
    "block": events_pb2.EVENT_KIND_BLOCK,
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
