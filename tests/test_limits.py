"""gatewayd's REST checks and processd's Query checks read one table (common.limits) and agree on it."""

from __future__ import annotations

import pytest

from common import limits
from gatewayd.params import EVENT_KINDS, ROUTE_PARAMS, ParamError, parse_params
from processd.api import query_service
from processd.config import ProcessdConfig


def test_every_rest_page_limit_comes_from_the_table_and_fits_processd() -> None:
    rest = {(route, name): (spec.default, spec.maximum)
            for route, specs in ROUTE_PARAMS.items() for name, spec in specs.items() if name.endswith("limit")}
    assert rest == dict(limits.REST_PAGE_LIMITS)
    # processd clamps every page to its max_page_limit: a REST maximum above it would be cut silently.
    processd_max = ProcessdConfig.__dataclass_fields__["max_page_limit"].default
    assert processd_max == limits.MAX_PAGE_LIMIT
    assert all(1 <= default <= maximum <= processd_max for default, maximum in rest.values())


def test_kinds_scores_and_chains_agree() -> None:
    assert query_service.VALID_KINDS == frozenset(EVENT_KINDS.values()) == frozenset(limits.EVENT_KINDS.values())
    assert ROUTE_PARAMS["opps_recent"]["min_score"].maximum == limits.MAX_SCORE
    assert query_service.QueryService._score(limits.MAX_SCORE) == limits.MAX_SCORE
    with pytest.raises(query_service.BadRequestError):
        query_service.QueryService._score(limits.MAX_SCORE + 1)
    assert query_service.QueryService._chain(limits.MAX_CHAIN_ID) == limits.MAX_CHAIN_ID
    with pytest.raises(query_service.BadRequestError):
        query_service.QueryService._chain(limits.MAX_CHAIN_ID + 1)
    with pytest.raises(ParamError):
        parse_params({"chain_id": [str(limits.MAX_CHAIN_ID + 1)]}, ROUTE_PARAMS["events"])
    assert parse_params({"chain_id": [str(limits.MAX_CHAIN_ID)]}, ROUTE_PARAMS["events"])["chain_id"] == (
        limits.MAX_CHAIN_ID)


def test_rest_filter_bounds_fit_the_filter_bounds_processd_checks() -> None:
    """Every REST filter list gatewayd accepts is one processd accepts (shared table, common/limits.py)."""
    for name, (field, most) in limits.REST_FILTER_PARAMS.items():
        assert 0 < most <= limits.FILTER_LIMITS[field][0], name
    assert limits.REST_FILTER_PARAMS["from"][1] + limits.REST_FILTER_PARAMS["to"][1] <= limits.MAX_FILTER_ADDRESSES
    tokens = limits.REST_FILTER_PARAMS["token_in"][1] + limits.REST_FILTER_PARAMS["token_out"][1]
    assert tokens <= limits.MAX_FILTER_TOKENS
