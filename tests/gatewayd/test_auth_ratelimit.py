"""Pure tests of API-key auth and the token-bucket limiter."""

from __future__ import annotations

import pytest

from gatewayd.auth import ApiKeyAuth, AuthError, key_fingerprint, presented_key
from gatewayd.ratelimit import RateLimited, RateLimiter


def test_presented_key_sources() -> None:
    assert presented_key({"x-api-key": "k1"}) == "k1"
    assert presented_key({"authorization": "Bearer k2"}) == "k2"
    assert presented_key({"authorization": "bearer   k3 "}) == "k3"
    assert presented_key({"authorization": "Basic abc"}) is None
    assert presented_key({"authorization": "Bearer "}) is None
    assert presented_key({}) is None
    assert presented_key({"x-api-key": "k1", "authorization": "Bearer k2"}) == "k1"


def test_auth_off_lets_everything_through() -> None:
    auth = ApiKeyAuth([])
    assert not auth.enabled and auth.authenticate({}) is None


def test_auth_on() -> None:
    auth = ApiKeyAuth(["alpha", "beta"])
    assert auth.authenticate({"x-api-key": "beta"}) == "beta"
    assert auth.authenticate({"authorization": "Bearer alpha"}) == "alpha"
    with pytest.raises(AuthError) as info:
        auth.authenticate({})
    assert info.value.code == "missing_api_key"
    for wrong in ["alph", "alphaa", "ALPHA", "béta", "\udcff"]:
        with pytest.raises(AuthError) as info:
            auth.authenticate({"x-api-key": wrong})
        assert info.value.code == "invalid_api_key"


def test_fingerprint_does_not_contain_key() -> None:
    fp = key_fingerprint("supersecret")
    assert "supersecret" not in fp and len(fp) == 12


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_burst_then_429_with_retry_after() -> None:
    clock = Clock()
    rl = RateLimiter(rate_rps=2.0, burst=5, max_keys=10, clock=clock)
    for _ in range(5):
        rl.acquire("a")
    with pytest.raises(RateLimited) as info:
        rl.acquire("a")
    assert info.value.retry_after_s == 1
    rl.acquire("b")  # other keys are independent
    clock.now += 0.5  # one token back at 2/s
    rl.acquire("a")
    with pytest.raises(RateLimited):
        rl.acquire("a")
    clock.now += 1000  # refill is capped at burst
    for _ in range(5):
        rl.acquire("a")
    with pytest.raises(RateLimited):
        rl.acquire("a")


def test_retry_after_rounds_up_for_slow_rates() -> None:
    clock = Clock()
    rl = RateLimiter(rate_rps=0.1, burst=1, max_keys=10, clock=clock)
    rl.acquire("a")
    with pytest.raises(RateLimited) as info:
        rl.acquire("a")
    assert info.value.retry_after_s == 10


def test_table_is_bounded_lru() -> None:
    clock = Clock()
    rl = RateLimiter(rate_rps=1.0, burst=1, max_keys=3, clock=clock)
    for key in ["a", "b", "c"]:
        rl.acquire(key)
    rl_keys_before = len(rl)
    with pytest.raises(RateLimited):
        rl.acquire("a")  # a is now most recently used
    rl.acquire("d")  # evicts b (least recently used)
    assert len(rl) == rl_keys_before == 3 and rl.evictions == 1
    with pytest.raises(RateLimited):
        rl.acquire("a")  # a kept its empty bucket
    rl.acquire("b")  # b came back with a full bucket
    for i in range(1000):
        rl.acquire(f"k{i}")
    assert len(rl) == 3


def test_check_refuses_an_empty_bucket_without_taking_a_token() -> None:
    clock = Clock()
    rl = RateLimiter(rate_rps=2.0, burst=2, max_keys=10, clock=clock)
    rl.check("unknown")  # no bucket: passes, and creates none
    assert len(rl) == 0
    rl.acquire("a")
    rl.check("a")
    rl.check("a")  # checks take nothing
    rl.acquire("a")
    with pytest.raises(RateLimited) as info:
        rl.check("a")
    assert info.value.retry_after_s == 1
    clock.now += 0.5  # one token back
    rl.check("a")
    rl.acquire("a")
    with pytest.raises(RateLimited):
        rl.check("a")


def test_disabled_limiter() -> None:
    rl = RateLimiter(rate_rps=0, burst=0, max_keys=1)
    assert not rl.enabled
    for _ in range(100):
        rl.acquire("a")
    assert len(rl) == 0
