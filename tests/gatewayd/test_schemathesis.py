"""schemathesis (a third-party OpenAPI fuzzer) against a LIVE gatewayd: a real processd seeded with synthetic
transactions and the real ``python -m gatewayd`` in front of it, once with auth off and once with an API key.

Every operation of the served document is exercised (schemathesis' examples, coverage and fuzzing phases:
boundary values of every parameter schema, negative data, undeclared methods) and every response must pass
all of schemathesis' checks: no 5xx, a documented status code, the documented content type, the documented
headers (Retry-After, Allow, WWW-Authenticate) and the documented body schema; valid parameters must be
accepted and invalid ones rejected (so the parameter schemas are exactly the server's validation).

Gating run: deterministic (schemathesis ``deterministic`` generation and derandomized hypothesis, no example
database, 5 fuzzing examples per operation) and fast, so it cannot fail on a seed. Long mode
(``MEMPULSE_RELIABILITY_LONG=1``: scripts/reliability runs this file after tests/reliability): randomized, 300
fuzzing examples per operation (``MEMPULSE_RELIABILITY_SCHEMATHESIS_EXAMPLES``), figures written to
artifacts/reliability/schemathesis.json.

``/events/stream`` (SSE) is generated and checked like the others, except that a 200 is judged on its status
and content type only (its body never ends): see :func:`run_case`.
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks

from common.testing.synth import synthetic_envelopes, typed_envelopes
from gatewayd.openapi import build_openapi
from gatewayd.openapi_params import PATH_HASH
from tests.reliability._support import knob, long_mode, write_artifact

from .conftest import CHAINS, Gateway, Processd

API_KEY = "schemathesis-key-0123456789"
#: Fuzzing-phase examples per operation (the examples and coverage phases add their own deterministic cases):
#: a few in the gating run, many in the long run (scripts/reliability --schemathesis-examples).
EXAMPLES = knob("schemathesis_examples", 5, 300)
_KNOWN_HASH = re.compile(PATH_HASH["pattern"])
load_all_checks()
#: Every check schemathesis has, given explicitly (not left to the defaults of its config).
ALL_CHECKS = CHECKS.get_all()
assert {"not_a_server_error", "status_code_conformance", "content_type_conformance", "response_headers_conformance",
        "response_schema_conformance", "positive_data_acceptance", "negative_data_rejection",
        "unsupported_method"} <= {check.__name__ for check in ALL_CHECKS}
#: (auth, operation) -> status code -> responses seen, reported at the end of the module (artifact in long mode).
TALLY: dict[str, Counter[int]] = defaultdict(Counter)


@dataclass
class LiveStack:
    """Live gatewayds (auth off and auth on) in front of one seeded processd; a known transaction hash."""

    open_url: str
    auth_url: str
    known_hash: str


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    d: Path = tmp_path_factory.mktemp("schemathesis")
    envelopes = synthetic_envelopes(60, seed=14, chain_ids=CHAINS) + typed_envelopes(10, seed=14, chain_ids=CHAINS)
    p = Processd(d / "data", d / "processd.log").start()
    gateways: list[Gateway] = []
    try:
        assert p.push(envelopes) == len(envelopes)
        # No rate limit: a fuzzer's burst must not turn every answer into a 429 (429 is covered elsewhere).
        gateways.append(Gateway(p.addr, d / "open.log", ["--rate-limit-rps", "0"]).start())
        gateways.append(
            Gateway(p.addr, d / "auth.log", ["--rate-limit-rps", "0", "--auth-failure-limit-per-min", "0"],
                    env={"MEMPULSE_GATEWAYD_API_KEYS": API_KEY}).start()
        )
        assert httpx.get(f"{gateways[0].url}/openapi.json").json() == build_openapi(auth=False, rate_limit=False)
        served = httpx.get(f"{gateways[1].url}/openapi.json", headers={"x-api-key": API_KEY}).json()
        assert served == build_openapi(auth=True, rate_limit=False)
        started = time.monotonic()
        yield LiveStack(gateways[0].url, gateways[1].url, "0x" + envelopes[0].hash.hex())
        figures = {
            "seconds": round(time.monotonic() - started, 1),
            "examples_setting": EXAMPLES,
            "randomized": long_mode(),
            "requests": sum(sum(c.values()) for c in TALLY.values()),
            "by_operation": {op: {str(k): v for k, v in sorted(c.items())} for op, c in sorted(TALLY.items())},
        }
        gets = {op: sum(c.values()) for op, c in figures["by_operation"].items() if " GET " in op}
        print(f"\nschemathesis: {figures['requests']} requests in {figures['seconds']} s; GET cases: {gets}")
        write_artifact("schemathesis", figures)
    finally:
        for g in gateways:
            g.stop()
        p.stop()


def load_schema(auth: bool) -> Any:
    """The document a gateway with (or without) API keys serves, loaded by schemathesis (the ``live`` fixture
    checks that the served documents are exactly these)."""
    schema = schemathesis.openapi.from_dict(build_openapi(auth=auth, rate_limit=False))
    schema.config.generation.update(max_examples=EXAMPLES, deterministic=not long_mode(), database="none")
    # Invalid data may be refused before any parameter is read: 413 / 431 when the (fuzzed) request is larger
    # than max_request_bytes / max_header_bytes. Both are documented answers; schemathesis' default list of
    # rejection codes lacks them (found by the long run: a 9 KB query of junk arrays answered 431).
    schema.config.checks.negative_data_rejection.expected_statuses = ["400", "401", "404", "405", "413", "431"]
    return schema


OPEN_SCHEMA = load_schema(auth=False)
AUTH_SCHEMA = load_schema(auth=True)

HYPOTHESIS = settings(
    max_examples=EXAMPLES,
    derandomize=not long_mode(),
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


def run_case(case: Any, base_url: str, known_hash: str, headers: dict[str, str] | None = None) -> None:
    """One schemathesis case against the live server, with every check.

    ``/events/stream`` is Server-Sent Events: a 200 never ends, so it cannot be read whole. Its requests are
    still generated from the document (so its parameter schemas are checked against the server's validation):
    a 200 is checked for its status and content type from the headers, then closed; anything else (400, 401,
    405, 503) is read and validated with every check.

    A drawn transaction hash is never stored, so half of the valid ones are swapped for a stored one (the 200
    of ``/transactions/{hash}`` is checked too; the case stays valid, so no check changes meaning).
    """
    tally = TALLY[f"{'auth' if headers else 'open'} {case.method.upper()} {case.operation.path}"]
    hash_ = (case.path_parameters or {}).get("hash")
    if isinstance(hash_, str) and _KNOWN_HASH.fullmatch(hash_) and int(hash_[-1], 16) % 2 == 0:
        case.path_parameters["hash"] = known_hash
    if case.operation.path == "/events/stream":
        kwargs = case.as_transport_kwargs(base_url=base_url, headers=headers)
        with requests.request(**kwargs, stream=True, timeout=10) as resp:
            tally[resp.status_code] += 1
            if resp.status_code == 200:
                assert case.method.upper() == "GET"
                assert resp.headers["content-type"].startswith("text/event-stream"), resp.headers
                return
            resp.content  # noqa: B018 - an error answer is short: read it whole before validating it
        case.validate_response(resp, checks=ALL_CHECKS, headers=kwargs.get("headers"))
        return
    tally[case.call_and_validate(base_url=base_url, headers=headers, checks=ALL_CHECKS, timeout=10).status_code] += 1


@pytest.mark.integration
@OPEN_SCHEMA.parametrize()
@HYPOTHESIS
def test_gateway_conforms_to_its_openapi_document_auth_off(case: Any, live: LiveStack) -> None:
    run_case(case, live.open_url, live.known_hash)


@pytest.mark.integration
@AUTH_SCHEMA.parametrize()
@HYPOTHESIS
def test_gateway_conforms_to_its_openapi_document_auth_on(case: Any, live: LiveStack) -> None:
    run_case(case, live.auth_url, live.known_hash, {"x-api-key": API_KEY})
