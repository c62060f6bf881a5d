"""Pure tests of query-parameter validation (gatewayd.params)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.chains import KNOWN_CHAINS
from common.pb.v1 import events_pb2
from gatewayd.params import ROUTE_PARAMS, UINT64_MAX, ParamError, event_filter, parse_hash, parse_params


def parse(route: str, **raw: str | list[str]) -> dict:
    return parse_params({k: v if isinstance(v, list) else [v] for k, v in raw.items()}, ROUTE_PARAMS[route])


def error_of(route: str, **raw: str | list[str]) -> ParamError:
    with pytest.raises(ParamError) as info:
        parse(route, **raw)
    return info.value


def test_defaults_fill_every_parameter() -> None:
    none = frozenset()
    filters = {"from": (), "to": (), "method": (), "protocol": (), "token_in": (), "token_out": (),
               "min_value_wei": 0, "min_profit_wei": 0, "min_score": 0}
    assert parse("transactions") == {"chain_id": 0, "limit": 25, "before_seq_id": 0, "status": 0, "include": none,
                                     **filters}
    assert parse("transactions", status="dropped")["status"] == 4
    assert error_of("transactions", status="gone").code == "invalid_status"
    assert parse("transactions_all") == {"chain_id": 0, "from_seq_id": 0, "limit": 1000, "include": none, **filters}
    assert parse("events") == {"from_seq_id": 0, "limit": 100, "chain_id": 0, "kinds": (), "include": none,
                               **filters}
    assert parse("events_stream")["from_seq_id"] is None
    snap = parse("snapshot")
    assert snap["tx_limit"] == 20 and snap["opp_limit"] == 20 and snap["min_score"] == 0


@pytest.mark.parametrize("name,cid", list(KNOWN_CHAINS.items()))
def test_chain_names_resolve(name: str, cid: int) -> None:
    assert parse("transactions", chain_id=name)["chain_id"] == cid
    assert parse("transactions", chain_id=name.upper())["chain_id"] == cid


def test_numeric_chain_ids() -> None:
    assert parse("opps_recent", chain_id="137")["chain_id"] == 137
    assert parse("opps_recent", chain_id="999999")["chain_id"] == 999999


@pytest.mark.parametrize("bad", ["", "0", "-1", "polygonx", "1.5", "0x1", "9" * 30, "eth mainnet"])
def test_bad_chain_names_the_parameter_and_lists_known_chains(bad: str) -> None:
    err = error_of("transactions", chain_id=bad)
    assert err.code == "unknown_chain" and err.param == "chain_id"
    assert err.message.startswith("chain_id:") and "polygon=137" in err.message and "ethereum=1" in err.message


@pytest.mark.parametrize(
    "route,param,good,bad_range",
    [
        ("transactions", "limit", ("1", "200"), ("0", "201")),
        ("transactions_all", "limit", ("1", "5000"), ("0", "5001")),
        ("events", "limit", ("1", "1000"), ("0", "1001")),
        ("features_recent", "limit", ("1", "200"), ("0", "201")),
        ("opps_recent", "min_score", ("0", "100"), ("101",)),
        ("snapshot", "tx_limit", ("1", "200"), ("0", "201")),
        ("snapshot", "opp_limit", ("1", "200"), ("0", "201")),
    ],
)
def test_integer_bounds(route: str, param: str, good: tuple[str, ...], bad_range: tuple[str, ...]) -> None:
    for value in good:
        assert parse(route, **{param: value})[param] == int(value)
    for value in bad_range:
        err = error_of(route, **{param: value})
        assert (err.code, err.param) == ("out_of_range", param) and param in err.message


@pytest.mark.parametrize("bad", ["", "abc", "-5", "+5", " 5", "5 ", "1_0", "1e3", "٣", "0x10", "5.0"])
def test_non_integers_rejected(bad: str) -> None:
    err = error_of("transactions", limit=bad)
    assert (err.code, err.param) == ("invalid_integer", "limit")


def test_cursor_bounds() -> None:
    assert parse("events", from_seq_id=str(UINT64_MAX))["from_seq_id"] == UINT64_MAX
    err = error_of("events", from_seq_id=str(UINT64_MAX + 1))
    assert (err.code, err.param) == ("invalid_cursor", "from_seq_id")
    assert error_of("transactions_all", from_seq_id="x").code == "invalid_integer"


def test_unknown_and_duplicate_parameters() -> None:
    err = error_of("transactions", chain=["1"])
    assert err.code == "unknown_parameter" and err.param == "chain" and "chain_id, limit" in err.message
    err = error_of("transactions", limit=["5", "6"])
    assert (err.code, err.param) == ("duplicate_parameter", "limit")
    assert error_of("healthz", x="1").code == "unknown_parameter"


@pytest.mark.parametrize("route", ["snapshot", "transactions", "transactions_all", "transaction", "events",
                                   "events_stream"])
def test_include_raw_on_every_route_that_renders_transactions(route: str) -> None:
    assert parse(route, include="raw")["include"] == {"raw"}
    assert parse(route, include=["raw", "raw,raw"])["include"] == {"raw"}
    for bad in ("", "RAW", " raw", "raw,", "signature", "x" * 40):
        err = error_of(route, include=bad)
        assert (err.code, err.param) == ("invalid_include", "include") and "include" in err.message
    assert error_of(route, include=["raw"] * 5).code == "invalid_include"


def test_kinds_comma_separated_or_repeated() -> None:
    assert parse("events", kinds="tx_seen,opp_detected")["kinds"] == (
        events_pb2.EVENT_KIND_TX_SEEN,
        events_pb2.EVENT_KIND_OPP_DETECTED,
    )
    assert parse("events", kinds=["tx_decoded", "TX_DECODED"])["kinds"] == (events_pb2.EVENT_KIND_TX_DECODED,)
    for bad in ["", "tx", "tx_seen,", "all"]:
        err = error_of("events", kinds=bad)
        assert (err.code, err.param) == ("invalid_kind", "kinds")


def test_hash() -> None:
    h = "0x" + "Ab" * 32
    assert parse_hash("hash", h) == bytes.fromhex("ab" * 32)
    for bad in ["", "0x", "ab" * 32, "0x" + "ab" * 31, "0x" + "ab" * 33, "0x" + "zz" * 32, "0x" + "ab" * 31 + "a "]:
        with pytest.raises(ParamError) as info:
            parse_hash("hash", bad)
        assert (info.value.code, info.value.param) == ("invalid_hash", "hash")


def test_echoed_values_are_cut_short() -> None:
    err = error_of("transactions", limit="9" * 5000)
    assert len(err.message) < 300


@given(st.dictionaries(st.text(max_size=12), st.lists(st.text(max_size=40), min_size=1, max_size=3), max_size=4))
def test_fuzz_every_route_gives_value_or_param_error(raw: dict[str, list[str]]) -> None:
    for specs in ROUTE_PARAMS.values():
        try:
            values = parse_params(raw, specs)
        except ParamError as exc:
            assert exc.code and exc.message and exc.param is not None
        else:
            assert set(values) == set(specs)


# ---- filter parameters (EventFilter) -----------------------------------------------------------------------------

A1, A2 = "0x" + "ab" * 20, "0x" + "CD" * 20


def test_filter_parameters_build_one_event_filter() -> None:
    p = parse("events_stream", **{"from": f"{A1},{A2},{A1}", "to": A2, "method": "transfer,0xa9059cbb",
                                  "protocol": "uniswap_v2", "token_in": A1, "token_out": A2,
                                  "min_value_wei": str(2**255), "min_score": "30", "min_profit_wei": "10"})
    f = event_filter(p, "events_stream")
    assert f is not None
    assert list(f.senders) == [bytes.fromhex("ab" * 20), bytes.fromhex("cd" * 20)]  # duplicates once
    assert list(f.to) == [bytes.fromhex("cd" * 20)] and list(f.methods) == ["transfer"]
    assert list(f.selectors) == [bytes.fromhex("a9059cbb")] and list(f.protocols) == ["uniswap_v2"]
    assert list(f.tokens_in) == [bytes.fromhex("ab" * 20)] and list(f.tokens_out) == [bytes.fromhex("cd" * 20)]
    assert int.from_bytes(f.min_value, "big") == 2**255 and f.min_score == 30 and f.min_profit_wei == b"\x0a"
    assert event_filter(parse("events_stream"), "events_stream") is None  # no parameter: the request as before
    # /opps/recent: min_score is the request's own (per opportunity), not the filter's.
    assert event_filter(parse("opps_recent", min_score="50"), "opps_recent") is None
    assert event_filter(parse("features_recent", min_score="50"), "features_recent").min_score == 50
    # min_profit_wei is the filter's on every route (on /opps/recent processd also applies it per opportunity)
    assert event_filter(parse("opps_recent", min_profit_wei=str(10**18)), "opps_recent").min_profit_wei == \
        (10**18).to_bytes(8, "big")


@pytest.mark.parametrize(("raw", "param"), [
    ({"from": "0x" + "ab" * 19}, "from"),
    ({"to": A1 + ", " + A2}, "to"),
    ({"to": ",".join([A1] * 65)}, "to"),
    ({"from": ",".join([A1] * 10_000)}, "from"),  # a long list is refused before it is split
    ({"method": "0x12,transfer"}, "method"),
    ({"method": "a" * 129}, "method"),
    ({"protocol": "Uniswap"}, "protocol"),
    ({"token_in": ""}, "token_in"),
    ({"min_value_wei": str(2**256)}, "min_value_wei"),
    ({"min_value_wei": "-1"}, "min_value_wei"),
    ({"min_profit_wei": str(2**256)}, "min_profit_wei"),
    ({"min_profit_wei": "1e18"}, "min_profit_wei"),
    ({"min_profit_wei": "-5"}, "min_profit_wei"),
    ({"min_score": "101"}, "min_score"),
])
@pytest.mark.parametrize("route", ["events_stream", "transactions", "features_recent", "opps_recent"])
def test_bad_filter_parameters_are_400_naming_the_parameter(route: str, raw: dict[str, str], param: str) -> None:
    err = error_of(route, **raw)
    assert err.status == 400 and err.param == param and param in err.message
