"""schemathesis (a third-party OpenAPI fuzzer) against a LIVE gatewayd: a real processd seeded with synthetic
transactions and the real ``python -m gatewayd`` in front of it, once with auth off and once with an API key.

Every operation of the served document is exercised (schemathesis' examples, coverage and fuzzing phases:
boundary values of every parameter schema, negative data, undeclared methods) and every response must pass
all of schemathesis' checks: no 5xx, a documented status code, the documented content type, the documented
headers (Retry-After, Allow, WWW-Authenticate) and the documented body schema; valid parameters must be
accepted and invalid ones rejected (so the parameter schemas are exactly the server's validation).

Gating run: deterministic (derandomized hypothesis, no example database, a few examples per operation) and
fast. Long mode (``MEMPULSE_RELIABILITY_LONG=1``, scripts/reliability runs tests/reliability/test_fuzz.py
which reuses :func:`run_case`): randomized, many more examples.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from common.synth import synthetic_envelopes
from gatewayd.openapi import build_openapi

from .conftest import CHAINS, Gateway, Processd

API_KEY = "schemathesis-key-0123456789"
#: Examples per operation in the fuzzing phase (the coverage phase adds its deterministic boundary cases).
GATING_EXAMPLES = 5


def max_examples() -> int:
    """Fuzzing examples per operation: a few in the gating run, many in the long reliability run."""
    raw = os.environ.get("MEMPULSE_RELIABILITY_SCHEMATHESIS_EXAMPLES")
    if raw:
        return int(raw)
    return 300 if os.environ.get("MEMPULSE_RELIABILITY_LONG", "") not in ("", "0") else GATING_EXAMPLES


def long_run() -> bool:
    return os.environ.get("MEMPULSE_RELIABILITY_LONG", "") not in ("", "0")


@dataclass
class LiveStack:
    """Live gatewayds (auth off and auth on) in front of one seeded processd; a known transaction hash."""

    open_url: str
    auth_url: str
    known_hash: str


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    d: Path = tmp_path_factory.mktemp("schemathesis")
    envelopes = synthetic_envelopes(60, seed=14, chain_ids=CHAINS)
    p = Processd(d / "data", d / "processd.log").start()
    gateways: list[Gateway] = []
    try:
        assert p.push(envelopes) == len(envelopes)
        # No rate limit: a fuzzer's burst must not turn every answer into a 429 (429 is covered elsewhere).
        gateways.append(Gateway(p.addr, d / "open.log", ["--rate-limit-rps", "0"]).start())
        gateways.append(
            Gateway(p.addr, d / "auth.log", ["--rate-limit-rps", "0"], env={"MEMPULSE_API_KEYS": API_KEY}).start()
        )
        assert httpx.get(f"{gateways[0].url}/openapi.json").json() == build_openapi(auth=False, rate_limit=False)
        served = httpx.get(f"{gateways[1].url}/openapi.json", headers={"x-api-key": API_KEY}).json()
        assert served == build_openapi(auth=True, rate_limit=False)
        yield LiveStack(gateways[0].url, gateways[1].url, "0x" + envelopes[0].hash.hex())
    finally:
        for g in gateways:
            g.stop()
        p.stop()


def load_schema(auth: bool) -> Any:
    """The document a gateway with (or without) API keys serves, loaded by schemathesis (the ``live`` fixture
    checks that the served documents are exactly these)."""
    schema = schemathesis.openapi.from_dict(build_openapi(auth=auth, rate_limit=False))
    schema.config.generation.update(max_examples=max_examples(), deterministic=not long_run(), database="none")
    return schema


OPEN_SCHEMA = load_schema(auth=False)
AUTH_SCHEMA = load_schema(auth=True)

HYPOTHESIS = settings(
    max_examples=max_examples(),
    derandomize=not long_run(),
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


def run_case(case: Any, base_url: str, headers: dict[str, str] | None = None) -> None:
    """One schemathesis case against the live server, with every check.

    ``/events/stream`` is Server-Sent Events: a 200 never ends, so it cannot be read whole. Its requests are
    still generated from the document (so its parameter schemas are checked against the server's validation):
    a 200 is checked for its status and content type from the headers, then closed; anything else (400, 401,
    405, 503) is read and validated with every check.
    """
    if case.operation.path == "/events/stream":
        kwargs = case.as_transport_kwargs(base_url=base_url, headers=headers)
        with requests.request(**kwargs, stream=True, timeout=10) as resp:
            if resp.status_code == 200:
                assert case.method.upper() == "GET"
                assert resp.headers["content-type"].startswith("text/event-stream"), resp.headers
                return
            resp.content  # noqa: B018 - an error answer is short: read it whole before validating it
        case.validate_response(resp, headers=kwargs.get("headers"))
        return
    case.call_and_validate(base_url=base_url, headers=headers, timeout=10)


@pytest.mark.integration
@OPEN_SCHEMA.parametrize()
@HYPOTHESIS
def test_gateway_conforms_to_its_openapi_document_auth_off(case: Any, live: LiveStack) -> None:
    run_case(case, live.open_url)


@pytest.mark.integration
@AUTH_SCHEMA.parametrize()
@HYPOTHESIS
def test_gateway_conforms_to_its_openapi_document_auth_on(case: Any, live: LiveStack) -> None:
    run_case(case, live.auth_url, {"x-api-key": API_KEY})
