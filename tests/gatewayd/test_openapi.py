"""The OpenAPI document is valid, lists every route and parameter, and real responses match its schemas."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from common.chains import UnknownChainError, parse_chain
from common.pb.v1 import block_pb2, ingest_pb2, pool_pb2
from common.testing.ingest_push import push_batches
from common.testing.synth import synthetic_envelopes, typed_envelopes
from gatewayd.app import ROUTES
from gatewayd.openapi import build_openapi
from gatewayd.params import (
    MAX_CHAIN_CHARS,
    MAX_INCLUDE_VALUES,
    MAX_KINDS_VALUES,
    ROUTE_PARAMS,
    ParamError,
    parse_include,
    parse_kinds,
    parse_uint,
)

from .conftest import CHAINS


def openapi_path(uri: str) -> str:
    return re.sub(r"<tx_hash:str>", "{hash}", uri)


@pytest.mark.parametrize(("auth", "rate_limit"), [(False, False), (False, True), (True, False), (True, True)])
def test_document_is_valid_openapi(auth: bool, rate_limit: bool) -> None:
    validate(build_openapi(auth=auth, rate_limit=rate_limit))


def test_document_lists_every_route_and_parameter() -> None:
    doc = build_openapi()
    assert set(doc["paths"]) == {openapi_path(uri) for _, uri in ROUTES}
    for name, uri in ROUTES:
        op = doc["paths"][openapi_path(uri)]["get"]
        assert op["operationId"] == name
        documented = {p["name"] for p in op["parameters"] if p["in"] == "query"}
        assert documented == set(ROUTE_PARAMS.get(name, {})), name
        assert "200" in op["responses"]


def schema_validator(doc: dict[str, Any], name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": doc["components"]})


@pytest.mark.integration
def test_real_responses_match_the_documented_schemas(processd_factory, gateway_factory) -> None:
    p = processd_factory()
    # typed_envelopes: every transaction type with its signature, lists and raw bytes (and impersonated ones)
    envelopes = synthetic_envelopes(90, seed=21, chain_ids=CHAINS) + typed_envelopes(20, seed=21, chain_ids=CHAINS)
    p.push(envelopes)
    # a block including two stored transactions of its chain and an unknown one, one reverted, one without a receipt
    first, second = [e for e in envelopes if e.chain_id == envelopes[0].chain_id][:2]
    txs = [block_pb2.IncludedTx(hash=h, index=i, sender=b"\x05" * 20, nonce=i, status=s, gas_used=21000,
                                effective_gas_price=b"\x01" if s else b"")
           for i, (h, s) in enumerate([(first.hash, block_pb2.TX_STATUS_OK), (b"\x09" * 32, 0),
                                       (second.hash, block_pb2.TX_STATUS_REVERTED)])]
    block = block_pb2.BlockEnvelope(chain_id=envelopes[0].chain_id, number=7, hash=b"\x07" * 32,
                                    parent_hash=b"\x06" * 32, timestamp=1_700_000_000, base_fee=b"\x03",
                                    source_id="node:8546", seen_unix_ns=10**18, txs=txs, tx_count=3)
    # a pool state whose reserve0 is past 2**53 (exact as a decimal string)
    pool = pool_pb2.PoolState(chain_id=envelopes[0].chain_id, pair=b"\x11" * 20, factory=b"\x12" * 20,
                              token0=b"\x13" * 20, token1=b"\x14" * 20, reserve0=(2**100 + 1).to_bytes(13, "big"),
                              reserve1=b"", block_number=7, block_hash=b"\x07" * 32,
                              source=pool_pb2.POOL_STATE_SOURCE_SYNC_LOG)
    [ack] = asyncio.run(push_batches(p.addr, [ingest_pb2.TxBatch(session_id="b", batch_seq=1, blocks=[block],
                                                                 pools=[pool])]))
    assert ack.blocks_stored == 1 and ack.pools_stored == 1
    g = gateway_factory(p.addr)
    with g.client() as http:
        served = http.get("/openapi.json")
        assert served.status_code == 200
        doc = served.json()
        # a default gateway: no API keys, rate limit on
        assert doc == build_openapi(auth=False, rate_limit=True)
        docs_page = http.get("/docs")
        assert docs_page.status_code == 200 and docs_page.headers["content-type"].startswith("text/html")
        for path in doc["paths"]:
            assert path in docs_page.text
        h = "0x" + envelopes[0].hash.hex()
        cases = [
            ("/healthz", {}),
            ("/dashboard/snapshot", {}),
            ("/transactions", {"chain_id": 137}),
            ("/transactions/all", {"limit": 50}),
            (f"/transactions/{h}", {}),
            ("/features/recent", {}),
            ("/opps/recent", {}),
            ("/events", {"limit": 300}),
            ("/blocks/recent", {}),
            ("/events", {"kinds": "block"}),
            ("/events", {"kinds": "pool_state"}),
            # with the signed raw bytes
            ("/dashboard/snapshot", {"include": "raw", "tx_limit": 200}),
            ("/transactions", {"include": "raw", "limit": 200}),
            ("/transactions/all", {"limit": 200, "include": "raw"}),
            (f"/transactions/{h}", {"include": "raw"}),
            ("/events", {"limit": 400, "include": "raw"}),
        ]
        for path, params in cases:
            resp = http.get(path, params=params)
            assert resp.status_code == 200, resp.text
            template = "/transactions/{hash}" if path == f"/transactions/{h}" else path
            ref = doc["paths"][template]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
            errors = list(schema_validator(doc, ref.rsplit("/", 1)[1]).iter_errors(resp.json()))
            assert not errors, (path, [e.message for e in errors[:3]])
        [listed] = http.get("/blocks/recent").json()["blocks"]
        assert (listed["number"], listed["tx_count"], listed["seen_pending"], listed["reverted"]) == (7, 3, 2, 1)
        [event] = http.get("/events", params={"kinds": "block"}).json()["events"]
        assert [t["status"] for t in event["block"]["txs"]] == ["ok", None, "reverted"]
        assert event["block"]["base_fee"] == "3" and event["tx_hash"] == "0x"
        [event] = http.get("/events", params={"kinds": "pool_state"}).json()["events"]
        assert event["pool_state"] == {
            "chain_id": pool.chain_id, "pair": "0x" + "11" * 20, "factory": "0x" + "12" * 20,
            "token0": "0x" + "13" * 20, "token1": "0x" + "14" * 20, "reserve0": str(2**100 + 1), "reserve1": "0",
            "block_number": 7, "block_hash": "0x" + "07" * 32, "source": "sync_log"}
        assert event["kind"] == "pool_state" and event["tx_hash"] == "0x"
        bad = http.get("/transactions", params={"limit": 0})
        assert not list(schema_validator(doc, "Error").iter_errors(bad.json()))


# ---- exactness (issue 14: mismatches found by schemathesis) ------------------------------------------------


def _op(doc: dict[str, Any], path: str) -> dict[str, Any]:
    return doc["paths"][path]["get"]


def _param(doc: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    return next(p["schema"] for p in _op(doc, path)["parameters"] if p["name"] == name)


def test_openapi_json_is_documented_as_the_json_object_it_is() -> None:
    doc = build_openapi()
    schema = _op(doc, "/openapi.json")["responses"]["200"]["content"]["application/json"]["schema"]
    assert not list(Draft202012Validator(schema).iter_errors(doc))


@pytest.mark.parametrize("auth", [False, True])
def test_security_and_401_only_when_api_keys_are_configured(auth: bool) -> None:
    doc = build_openapi(auth=auth, rate_limit=False)
    assert ("security" in doc) == auth
    assert ("securitySchemes" in doc["components"]) == auth
    for path in ("/transactions", "/events/stream", "/openapi.json"):
        responses = _op(doc, path)["responses"]
        assert ("401" in responses) == auth
        if auth:
            assert responses["401"]["headers"]["WWW-Authenticate"]["required"]
    assert "401" not in _op(doc, "/healthz")["responses"]
    assert _op(doc, "/healthz").get("security", []) == []


@pytest.mark.parametrize("rate_limit", [False, True])
def test_429_and_503_document_retry_after(rate_limit: bool) -> None:
    doc = build_openapi(rate_limit=rate_limit)
    for path in ("/transactions", "/events", "/events/stream", "/dashboard/snapshot"):
        responses = _op(doc, path)["responses"]
        assert ("429" in responses) == rate_limit
        assert responses["503"]["headers"]["Retry-After"]["required"]
        if rate_limit:
            assert responses["429"]["headers"]["Retry-After"]["required"]
    assert "429" not in _op(doc, "/healthz")["responses"]
    assert _op(doc, "/healthz")["responses"]["503"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/Health")


def _chain_ok(value: str) -> bool:
    try:
        parse_chain(value)
    except UnknownChainError:
        return False
    return len(value) <= MAX_CHAIN_CHARS


def _kinds_ok(value: str) -> bool:
    try:
        parse_kinds("kinds", [value])
    except ParamError:
        return False
    return True


CHAIN_VALUES = ["1", "137", "0", "00", "007", "-1", "+1", "1.0", "9223372036854775807", "9223372036854775808",
                "0009223372036854775807", "0000000000000000001", "00000000000000000001", "99999999999999999999",
                " 1 ", "\u30001\t", "polygon", "POLYGON", " Polygon\n", "zk\u212async", "eth", "", " ", "1 2",
                "\u00b2", "\u0661", "\uff11", "1" * 4301, " " * 63 + "1", " " * 64 + "1", "ethereum,1"]
KINDS_VALUES = ["tx_seen", "TX_SEEN", "tx_seen, opp_detected", " tx_decoded\t", "tx_seen,tx_seen", "", ",",
                "tx_seen,", "tx_seen,,tx_decoded", "tx seen", "tx_seen;tx_decoded", "all", " " * 58 + "tx_seen",
                " " * 57 + "tx_seen"]


@pytest.mark.parametrize("value", CHAIN_VALUES)
def test_chain_id_schema_accepts_exactly_what_the_server_accepts(value: str) -> None:
    schema = _param(build_openapi(), "/transactions", "chain_id")
    assert Draft202012Validator(schema).is_valid(value) == _chain_ok(value), repr(value)


@pytest.mark.parametrize("value", KINDS_VALUES)
def test_kinds_schema_accepts_exactly_what_the_server_accepts(value: str) -> None:
    schema = _param(build_openapi(), "/events", "kinds")
    assert Draft202012Validator(schema).is_valid([value]) == _kinds_ok(value), repr(value)


@pytest.mark.parametrize("value", ["raw", "raw,raw", "RAW", "", " raw", "raw,", ",raw", "raw;raw", "signature",
                                   "raw," * 8 + "raw"])
def test_include_schema_accepts_exactly_what_the_server_accepts(value: str) -> None:
    for path in ("/transactions", "/transactions/all", "/transactions/{hash}", "/events", "/events/stream",
                 "/dashboard/snapshot"):
        validator = Draft202012Validator(_param(build_openapi(), path, "include"))
        try:
            parse_include("include", [value])
            ok = True
        except ParamError:
            ok = False
        assert validator.is_valid([value]) == ok, (path, value)
        assert validator.is_valid(["raw"] * MAX_INCLUDE_VALUES)
        assert not validator.is_valid(["raw"] * (MAX_INCLUDE_VALUES + 1))


def test_kinds_is_a_bounded_repeatable_parameter() -> None:
    schema = _param(build_openapi(), "/events", "kinds")
    validator = Draft202012Validator(schema)
    assert validator.is_valid(["tx_seen"] * MAX_KINDS_VALUES)
    assert not validator.is_valid(["tx_seen"] * (MAX_KINDS_VALUES + 1))
    parse_kinds("kinds", ["tx_seen"] * MAX_KINDS_VALUES)
    with pytest.raises(ParamError):
        parse_kinds("kinds", ["tx_seen"] * (MAX_KINDS_VALUES + 1))


@pytest.mark.parametrize("value", ["0", "18446744073709551614", "18446744073709551615", "00000000000000000001",
                                   "000000000000000000001", "-1", "1 ", "a", "99999999999999999999"])
def test_last_event_id_schema_accepts_exactly_what_the_stream_accepts(value: str) -> None:
    schema = next(p["schema"] for p in _op(build_openapi(), "/events/stream")["parameters"]
                  if p["name"] == "Last-Event-ID")
    try:
        parse_uint("Last-Event-ID", value, 0, 2**64 - 2)
        ok = True
    except ParamError:
        ok = False
    assert Draft202012Validator(schema).is_valid(value) == ok, value


def test_path_hash_schema_takes_either_case() -> None:
    schema = next(p["schema"] for p in _op(build_openapi(), "/transactions/{hash}")["parameters"]
                  if p["name"] == "hash")
    validator = Draft202012Validator(schema)
    assert validator.is_valid("0X" + "Ab" * 32) and validator.is_valid("0x" + "ab" * 32)
    assert not validator.is_valid("0x" + "ab" * 31) and not validator.is_valid("ab" * 33)


@pytest.mark.integration
def test_405_names_the_allowed_methods(processd_factory, gateway_factory) -> None:
    g = gateway_factory(processd_factory().addr)
    with g.client() as http:
        for method in ("POST", "DELETE", "TRACE"):
            resp = http.request(method, "/transactions")
            assert resp.status_code == 405, (method, resp.status_code)
            assert resp.headers.get("allow") == "GET", (method, resp.headers)
            assert resp.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(("auth", "auth_failure_limit", "documented"),
                         [(True, True, True), (True, False, False), (False, True, False)])
def test_429_is_documented_for_the_failed_key_limit_only_with_api_keys(
        auth: bool, auth_failure_limit: bool, documented: bool) -> None:
    doc = build_openapi(auth=auth, rate_limit=False, auth_failure_limit=auth_failure_limit)
    assert ("429" in _op(doc, "/transactions")["responses"]) == documented
    assert "429" not in _op(doc, "/healthz")["responses"]


def test_a_gateway_with_keys_documents_429_even_without_a_request_rate_limit() -> None:
    from gatewayd.app import Gateway
    from gatewayd.config import GatewayConfig

    gateway = Gateway(GatewayConfig(api_keys=frozenset({"k"}), rate_limit_rps=0))
    assert "429" in _op(orjson.loads(gateway.openapi_body), "/transactions")["responses"]
