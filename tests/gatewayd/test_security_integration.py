"""API keys, per-key rate limits, CORS and processd outages, through the real gatewayd and a real processd."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from common.testing.synth import synthetic_envelopes

from .conftest import CHAINS

pytestmark = pytest.mark.integration

PROTECTED = [
    "/dashboard/snapshot",
    "/transactions",
    "/transactions/all",
    "/features/recent",
    "/opps/recent",
    "/events",
    "/openapi.json",
    "/docs",
    "/transactions/0x" + "ab" * 32,
]


def test_api_keys(processd_factory, gateway_factory, tmp_path: Path) -> None:
    p = processd_factory()
    p.push(synthetic_envelopes(30, seed=1, chain_ids=CHAINS))
    keys_file = tmp_path / "keys"
    keys_file.write_text("# ops\nfile-key-0123456789\n")
    g = gateway_factory(
        p.addr, "--api-keys-file", str(keys_file), "--rate-limit-rps", "0", "--auth-failure-limit-per-min", "0",
        env={"MEMPULSE_GATEWAYD_API_KEYS": "env-key-abcdef"},
    )
    with g.client() as http:
        for path in PROTECTED:
            resp = http.get(path)
            assert resp.status_code == 401, path
            assert resp.json()["error"]["code"] == "missing_api_key" and resp.headers["www-authenticate"] == "Bearer"
            for wrong in [
                {"x-api-key": "env-key-abcde"},
                {"x-api-key": "ENV-KEY-ABCDEF"},
                {"authorization": "Bearer nope"},
                {"authorization": "Basic env-key-abcdef"},
            ]:
                resp = http.get(path, headers=wrong)
                assert resp.status_code == 401, (path, wrong)
        good = [
            {"x-api-key": "env-key-abcdef"},
            {"x-api-key": "file-key-0123456789"},
            {"authorization": "Bearer env-key-abcdef"},
        ]
        for headers in good:
            resp = http.get("/transactions", headers=headers)
            assert resp.status_code == 200 and len(resp.json()["transactions"]) == 25
        # Health and metrics stay open for probes and scrapers.
        assert http.get("/healthz").status_code == 200
        assert http.get("/metrics").status_code == 200
    log = g.proc.output()
    assert "env-key-abcdef" not in log and "file-key-0123456789" not in log, "keys never reach the logs"


def test_burst_over_the_limit_gets_429_with_retry_after(processd_factory, gateway_factory) -> None:
    p = processd_factory()
    p.push(synthetic_envelopes(10, seed=2, chain_ids=CHAINS))
    g = gateway_factory(
        p.addr, "--rate-limit-rps", "0.5", "--rate-limit-burst", "5", "--auth-failure-limit-per-min", "30",
        "--auth-failure-burst", "5", env={"MEMPULSE_GATEWAYD_API_KEYS": "key-a,key-b"}
    )
    with g.client(**{"x-api-key": "key-a"}) as a, g.client(**{"x-api-key": "key-b"}) as b:
        statuses = [a.get("/transactions", params={"limit": 1}).status_code for _ in range(5)]
        assert statuses == [200] * 5
        resp = a.get("/transactions", params={"limit": 1})
        assert resp.status_code == 429 and resp.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(resp.headers["retry-after"]) <= 2
        # Each key has its own bucket.
        assert b.get("/transactions", params={"limit": 1}).status_code == 200
        # 401s are answered before the key's limiter: an unknown key cannot drain a real key's bucket...
        with g.client(**{"x-api-key": "key-c"}) as c:
            assert [c.get("/transactions").status_code for _ in range(5)] == [401] * 5
            # ...but failed attempts spend the client address's own bucket: no guessing keys at line rate.
            guessing = c.get("/transactions")
            assert guessing.status_code == 429 and int(guessing.headers["retry-after"]) >= 1
        # While that bucket is empty the address is refused before any key is compared, a real key included.
        assert b.get("/transactions", params={"limit": 1}).status_code == 429
        metrics = a.get("/metrics").text
        assert 'mempulse_gatewayd_errors_total{code="rate_limited"} 3.0' in metrics
        assert "mempulse_gatewayd_ratelimit_keys 2.0" in metrics
        assert "mempulse_gatewayd_auth_failure_addresses 1.0" in metrics


def test_right_key_is_refused_while_the_address_is_throttled(processd_factory, gateway_factory) -> None:
    """Issue 14: the address's failure bucket is consulted BEFORE the key is compared. Before, a right guess got
    200 whatever the bucket held, so guessing ran at line rate (90/s against a 5 rps limit) and a hit was
    noticed at once. 0.5 tokens/s: no token comes back during the few requests below."""
    p = processd_factory()
    g = gateway_factory(
        p.addr, "--auth-failure-limit-per-min", "30", "--auth-failure-burst", "3",
        env={"MEMPULSE_GATEWAYD_API_KEYS": "right-key"},
    )
    with g.client() as http:
        guesses = [http.get("/transactions", headers={"x-api-key": f"guess-{i}"}).status_code for i in range(3)]
        assert guesses == [401] * 3
        hit = http.get("/transactions", headers={"x-api-key": "right-key"})
        assert hit.status_code == 429, "a right guess from a throttled address must not be told it is right"
        assert hit.json()["error"]["code"] == "rate_limited"
        retry_after = int(hit.headers["retry-after"])
        assert 1 <= retry_after <= 2
        assert http.get("/transactions", headers={"authorization": "Bearer right-key"}).status_code == 429
        assert http.get("/transactions", headers={"x-api-key": "guess-x"}).status_code == 429
        # Once a token is back the right key works again (it does not spend the failure bucket)...
        time.sleep(retry_after + 0.1)
        assert http.get("/transactions", headers={"x-api-key": "right-key"}).status_code == 200
        assert http.get("/transactions", headers={"x-api-key": "right-key"}).status_code == 200
        # ...and the next wrong guess spends that token: the address is throttled again, right key included.
        assert http.get("/transactions", headers={"x-api-key": "guess-y"}).status_code == 401
        assert http.get("/transactions", headers={"x-api-key": "right-key"}).status_code == 429
        # Routes without auth stay open to probes and scrapers.
        assert http.get("/metrics").status_code == 200


def test_failed_keys_have_their_own_limit_even_with_the_request_rate_limit_off(
        processd_factory, gateway_factory) -> None:
    """Failed keys are throttled by their own low limit (default 60/min, burst 20), not by the request rate
    limit: with that off (or at its default 100/s) guessing ran at line rate."""
    p = processd_factory()
    g = gateway_factory(p.addr, "--rate-limit-rps", "0", env={"MEMPULSE_GATEWAYD_API_KEYS": "right-key"})
    with g.client() as http:
        statuses = [http.get("/transactions", headers={"x-api-key": f"guess-{i}"}).status_code for i in range(40)]
        assert statuses == [401] * 20 + [429] * 20
        assert http.get("/transactions", headers={"x-api-key": "right-key"}).status_code == 429
        assert http.get("/healthz").status_code == 200  # public routes stay open to probes
    metrics = httpx.get(f"{g.url}/metrics").text
    assert 'mempulse_gatewayd_errors_total{code="rate_limited"} 21.0' in metrics


def test_cors_off_by_default_and_configurable(processd_factory, gateway_factory) -> None:
    p = processd_factory()
    plain = gateway_factory(p.addr)
    with plain.client() as http:
        resp = http.get("/transactions", headers={"origin": "https://evil.example"})
        assert resp.status_code == 200 and "access-control-allow-origin" not in resp.headers
        assert http.options("/transactions", headers={"origin": "https://evil.example"}).status_code == 405
    cors = gateway_factory(p.addr, "--cors-origins", "https://dash.example", env={"MEMPULSE_GATEWAYD_API_KEYS": "k1"})
    with cors.client() as http:
        pre = http.options(
            "/transactions", headers={"origin": "https://dash.example", "access-control-request-method": "GET"}
        )
        assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == "https://dash.example"
        assert "x-api-key" in pre.headers["access-control-allow-headers"]
        resp = http.get("/transactions", headers={"origin": "https://dash.example", "x-api-key": "k1"})
        assert resp.status_code == 200 and resp.headers["access-control-allow-origin"] == "https://dash.example"
        denied = http.get("/transactions", headers={"origin": "https://evil.example", "x-api-key": "k1"})
        assert "access-control-allow-origin" not in denied.headers
        # Errors carry CORS headers too, so browsers can read them.
        err = http.get("/transactions", headers={"origin": "https://dash.example"})
        assert err.status_code == 401 and err.headers["access-control-allow-origin"] == "https://dash.example"


def wait_status(http: httpx.Client, path: str, status: int, timeout_s: float = 20.0) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        resp = http.get(path)
        if resp.status_code == status or time.monotonic() > deadline:
            return resp
        time.sleep(0.1)


def test_processd_down_503_then_recovery(processd_factory, gateway_factory) -> None:
    p = processd_factory()
    envelopes = synthetic_envelopes(60, seed=3, chain_ids=CHAINS)
    p.push(envelopes)
    g = gateway_factory(p.addr, "--grpc-timeout-ms", "500", "--rate-limit-rps", "0")
    with g.client() as http:
        assert http.get("/transactions").status_code == 200
        p.stop()
        # Answers may come from the micro-cache for up to cache_ttl_ms (50 ms) after the last good call, by
        # design; once processd is known down, every route answers 503.
        assert wait_status(http, "/transactions", 503, timeout_s=5).status_code == 503
        for path in [
            "/transactions",
            "/transactions/all",
            "/dashboard/snapshot",
            "/features/recent",
            "/opps/recent",
            "/events",
            "/events/stream",
            "/transactions/0x" + envelopes[0].hash.hex(),
        ]:
            resp = http.get(path)
            assert resp.status_code == 503, (path, resp.status_code, resp.text)
            assert resp.json()["error"]["code"] == "processd_unavailable" and resp.headers["retry-after"] == "1"
        health = http.get("/healthz")
        assert health.status_code == 503 and health.json()["processd"]["status"] == "unavailable"
        assert http.get("/openapi.json").status_code == 200  # the gateway itself stays up
        p.start()
        resp = wait_status(http, "/transactions", 200)
        assert resp.status_code == 200, resp.text
        assert len(resp.json()["transactions"]) == 25
        assert wait_status(http, "/healthz", 200).json()["status"] == "ok"
        metrics = http.get("/metrics").text
        assert 'mempulse_gatewayd_grpc_errors_total{grpc_code="UNAVAILABLE",method="ListTransactions"}' in metrics


def test_processd_never_started(gateway_factory) -> None:
    from common.testing.netutil import free_port

    g = gateway_factory(f"127.0.0.1:{free_port()}", "--grpc-timeout-ms", "300")
    with g.client() as http:
        resp = http.get("/dashboard/snapshot")
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "processd_unavailable"
