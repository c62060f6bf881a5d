"""Request coalescing and the bounded micro-cache (gatewayd.singleflight)."""

from __future__ import annotations

import asyncio

import pytest

from gatewayd.singleflight import SingleFlight


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_callers_share_one_call() -> None:
    flights: SingleFlight[int] = SingleFlight()
    calls = 0
    gate = asyncio.Event()

    async def produce() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return calls

    tasks = [asyncio.create_task(flights.run("k", produce)) for _ in range(10)]
    await asyncio.sleep(0)
    assert len(flights) == 1
    gate.set()
    assert await asyncio.gather(*tasks) == [1] * 10
    assert calls == 1 and flights.shared == 9 and len(flights) == 0
    assert await flights.run("k", produce) == 2  # no cache (ttl 0): a later call runs again


async def test_cancelled_caller_does_not_cancel_the_shared_call() -> None:
    flights: SingleFlight[str] = SingleFlight()
    gate = asyncio.Event()

    async def produce() -> str:
        await gate.wait()
        return "done"

    first = asyncio.create_task(flights.run("k", produce))
    second = asyncio.create_task(flights.run("k", produce))
    await asyncio.sleep(0)
    first.cancel()
    gate.set()
    assert await second == "done"


async def test_ttl_cache_expires_and_never_caches_errors() -> None:
    clock = Clock()
    flights: SingleFlight[int] = SingleFlight(ttl_s=0.05, clock=clock)
    calls = 0

    async def produce() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert await flights.run("k", produce) == 1
    clock.now = 0.049
    assert await flights.run("k", produce) == 1 and flights.hits == 1
    clock.now = 0.051
    assert await flights.run("k", produce) == 2

    async def fail() -> int:
        raise RuntimeError("processd down")

    for _ in range(2):
        with pytest.raises(RuntimeError):
            await flights.run("bad", fail)
    assert flights.cached == 1


async def test_cache_is_bounded() -> None:
    flights: SingleFlight[int] = SingleFlight(ttl_s=10, max_entries=3, clock=Clock())

    async def produce() -> int:
        return 1

    for i in range(100):
        await flights.run(i, produce)
    assert flights.cached == 3


async def test_per_key_ttl_overrides_default() -> None:
    clock = Clock()
    flights: SingleFlight[int] = SingleFlight(ttl_s=0.05, clock=clock)
    calls = 0

    async def produce() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert await flights.run("snap", produce, ttl_s=0.25) == 1
    clock.now = 0.2
    assert await flights.run("snap", produce, ttl_s=0.25) == 1
    assert await flights.run("tx", produce) == 2
    clock.now = 0.26
    assert await flights.run("snap", produce, ttl_s=0.25) == 3
    assert await flights.run("off", produce, ttl_s=0) == 4 and await flights.run("off", produce, ttl_s=0) == 5
