"""The OpenAPI document is valid, lists every route and parameter, and real responses match its schemas."""

from __future__ import annotations

import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from common.synth import synthetic_envelopes
from gatewayd.app import ROUTES
from gatewayd.openapi import build_openapi
from gatewayd.params import ROUTE_PARAMS

from .conftest import CHAINS


def openapi_path(uri: str) -> str:
    return re.sub(r"<tx_hash:str>", "{hash}", uri)


def test_document_is_valid_openapi() -> None:
    validate(build_openapi())


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
    envelopes = synthetic_envelopes(90, seed=21, chain_ids=CHAINS)
    p.push(envelopes)
    g = gateway_factory(p.addr)
    with g.client() as http:
        served = http.get("/openapi.json")
        assert served.status_code == 200
        doc = served.json()
        assert doc == build_openapi()
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
        ]
        for path, params in cases:
            resp = http.get(path, params=params)
            assert resp.status_code == 200, resp.text
            template = "/transactions/{hash}" if path == f"/transactions/{h}" else path
            ref = doc["paths"][template]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
            errors = list(schema_validator(doc, ref.rsplit("/", 1)[1]).iter_errors(resp.json()))
            assert not errors, (path, [e.message for e in errors[:3]])
        bad = http.get("/transactions", params={"limit": 0})
        assert not list(schema_validator(doc, "Error").iter_errors(bad.json()))
