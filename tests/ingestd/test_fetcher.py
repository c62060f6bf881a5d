"""BatchFetcher against a real anvil, with the fault proxy for bad upstream behaviour."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from common.testing.anvil import AnvilNode
from common.testing.faultproxy import FaultProxy, Faults
from common.testing.netutil import free_port
from ingestd.config import ChainConfig
from ingestd.fetcher import BatchFetcher
from ingestd.startup import EndpointCheckError, check_endpoint

pytestmark = pytest.mark.integration


def _raw(hashes: list[str]) -> list[bytes]:
    return [bytes.fromhex(h[2:]) for h in hashes]


def _check_found(outcome_found: list, requested: list[bytes]) -> None:
    assert sorted(h for h, _ in outcome_found) == sorted(requested)
    for h, tx in outcome_found:  # matched by id, not by position
        assert tx["hash"] == "0x" + h.hex()


async def test_batch_fetch_direct_with_unknown_hashes(pending_anvil: tuple[AnvilNode, list[str]]) -> None:
    node, hashes = pending_anvil
    real = _raw(hashes[:40])
    unknown = [bytes([i]) * 32 for i in range(1, 4)]
    async with BatchFetcher([node.http_url]) as fetcher:
        outcome = await fetcher.fetch(real + unknown)
    _check_found(outcome.found, real)
    assert sorted(outcome.gone) == sorted(unknown)
    assert outcome.failed == [] and outcome.attempts == 1 and fetcher.requests == 1


async def test_in_flight_is_bounded(pending_anvil: tuple[AnvilNode, list[str]]) -> None:
    node, hashes = pending_anvil
    async with FaultProxy(node.http_url, Faults(latency_ms=40)) as proxy, \
            BatchFetcher([proxy.http_url], max_in_flight=3) as fetcher:
        outcomes = await asyncio.gather(*(fetcher.fetch(_raw(hashes[i:i + 5])) for i in range(0, 60, 5)))
        assert all(len(o.found) == 5 for o in outcomes)
        assert fetcher.requests == 12
        assert fetcher.peak_in_flight == 3  # reached, never exceeded
        assert proxy.stats["http_max_concurrent"] <= 3  # as seen from the upstream side


async def test_429_burst_is_retried_with_backoff(pending_anvil: tuple[AnvilNode, list[str]]) -> None:
    node, hashes = pending_anvil
    errors: Counter[str] = Counter()
    async with FaultProxy(node.http_url, Faults(http_429_next=2)) as proxy, \
            BatchFetcher([proxy.http_url], retries=3, backoff_s=0.01,
                         on_error=lambda ep, code: errors.update([code])) as fetcher:
        outcome = await fetcher.fetch(_raw(hashes[:20]))
        assert proxy.stats["http_429"] == 2
    _check_found(outcome.found, _raw(hashes[:20]))
    assert outcome.attempts == 3 and errors == {"http_429": 2}


async def test_rpc_limit_errors_rotate_to_fallback(pending_anvil: tuple[AnvilNode, list[str]]) -> None:
    node, hashes = pending_anvil
    errors: Counter[tuple[str, str]] = Counter()
    async with FaultProxy(node.http_url, Faults(rpc_error_rate=1.0, rpc_error_code=-32005)) as bad, \
            FaultProxy(node.http_url) as good, \
            BatchFetcher([bad.http_url, good.http_url], backoff_s=0.01, cooldown_s=60,
                         on_error=lambda ep, code: errors.update([(ep, code)])) as fetcher:
        first = await fetcher.fetch(_raw(hashes[:10]))
        second = await fetcher.fetch(_raw(hashes[10:20]))  # primary cooling down: starts on the fallback
        assert bad.stats["rpc_error"] == 1 and good.stats["http_requests"] == 2
    _check_found(first.found, _raw(hashes[:10]))
    _check_found(second.found, _raw(hashes[10:20]))
    assert first.attempts == 2 and second.attempts == 1
    assert errors == {(bad.http_url, "-32005"): 10}  # per-item errors are counted per item


async def test_unreachable_primary_and_timeouts_fall_back(pending_anvil: tuple[AnvilNode, list[str]]) -> None:
    node, hashes = pending_anvil
    dead = f"http://127.0.0.1:{free_port()}"
    errors: Counter[str] = Counter()
    async with FaultProxy(node.http_url, Faults(slow_ms=2000)) as slow, \
            BatchFetcher([dead, slow.http_url, node.http_url], timeout_s=0.3, backoff_s=0.01,
                         on_error=lambda ep, code: errors.update([code])) as fetcher:
        outcome = await fetcher.fetch(_raw(hashes[:10]))
    _check_found(outcome.found, _raw(hashes[:10]))
    assert errors == {"transport": 1, "timeout": 1} and outcome.attempts == 3


async def test_reordered_partial_and_missing_items(pending_anvil: tuple[AnvilNode, list[str]]) -> None:
    node, hashes = pending_anvil
    faults = Faults(reorder=True, partial_error_rate=0.3, drop_item_rate=0.2, rpc_error_code=-32005)
    errors: Counter[str] = Counter()
    async with FaultProxy(node.http_url, faults, seed=7) as proxy, \
            BatchFetcher([proxy.http_url], retries=20, backoff_s=0.001, cooldown_s=0,
                         on_error=lambda ep, code: errors.update([code])) as fetcher:
        outcome = await fetcher.fetch(_raw(hashes))
        assert proxy.stats["batches_reordered"] >= 1
        assert proxy.stats["items_errored"] >= 1 and proxy.stats["items_dropped"] >= 1
    _check_found(outcome.found, _raw(hashes))  # every item eventually, each matched to its own hash
    assert outcome.gone == [] and outcome.failed == []
    assert errors["-32005"] >= 1 and errors["missing_item"] >= 1


async def test_null_results_are_gone(pending_anvil: tuple[AnvilNode, list[str]]) -> None:
    node, hashes = pending_anvil
    async with FaultProxy(node.http_url, Faults(null_rate=1.0)) as proxy, \
            BatchFetcher([proxy.http_url]) as fetcher:
        outcome = await fetcher.fetch(_raw(hashes[:15]))
    assert sorted(outcome.gone) == sorted(_raw(hashes[:15])) and outcome.found == [] and outcome.attempts == 1


async def test_malformed_body_is_retried(pending_anvil: tuple[AnvilNode, list[str]]) -> None:
    node, hashes = pending_anvil
    errors: Counter[str] = Counter()
    async with FaultProxy(node.http_url, Faults(malformed_next=1)) as proxy, \
            BatchFetcher([proxy.http_url], backoff_s=0.001, on_error=lambda ep, code: errors.update([code])) as f:
        outcome = await f.fetch(_raw(hashes[:10]))
    _check_found(outcome.found, _raw(hashes[:10]))
    assert errors == {"malformed_response": 1}


async def test_exhausted_retries_and_non_retriable_items_fail_per_item(
        pending_anvil: tuple[AnvilNode, list[str]]) -> None:
    node, hashes = pending_anvil
    async with FaultProxy(node.http_url, Faults(http_429_rate=1.0)) as proxy, \
            BatchFetcher([proxy.http_url], retries=2, backoff_s=0.001) as fetcher:
        outcome = await fetcher.fetch(_raw(hashes[:5]))
        assert proxy.stats["http_429"] == 3
    assert outcome.attempts == 3 and sorted(outcome.failed) == sorted((h, "http_429") for h in _raw(hashes[:5]))
    # A per-item "invalid params" error fails that item at once, without retries; the rest succeed.
    async with FaultProxy(node.http_url, Faults(partial_error_rate=0.5, rpc_error_code=-32602), seed=3) as proxy, \
            BatchFetcher([proxy.http_url], retries=3, backoff_s=0.001) as fetcher:
        outcome = await fetcher.fetch(_raw(hashes[:20]))
    failed = {h for h, code in outcome.failed if code == "-32602"}
    assert failed and len(failed) == len(outcome.failed) and outcome.attempts == 1
    assert len(outcome.found) + len(failed) == 20


async def test_oversized_body_is_abandoned_at_the_cap_then_retried(pending_anvil: tuple[AnvilNode, list[str]]) -> None:
    # Issue 14: a 300 MB answer was read whole (743 MiB RSS). The padded answer is valid JSON (leading
    # whitespace), chunked without content-length: only a byte count while reading can stop it.
    node, hashes = pending_anvil
    errors: Counter[str] = Counter()
    faults = Faults(oversized_next=1, oversized_bytes=64 << 20, oversized_chunked=True)
    async with FaultProxy(node.http_url, faults) as proxy, \
            BatchFetcher([proxy.http_url], retries=2, backoff_s=0.01, max_response_bytes=1 << 20,
                         on_error=lambda ep, code: errors.update([code])) as fetcher:
        outcome = await fetcher.fetch(_raw(hashes[:20]))
        await asyncio.sleep(0.2)  # let the proxy notice the closed connection
        assert proxy.stats["oversized"] == 1
        # ingestd stopped reading: far less than the 64 MiB offered went out (loopback buffers hold a few MB).
        assert proxy.stats["oversized_bytes_sent"] < 24 << 20
    _check_found(outcome.found, _raw(hashes[:20]))  # the retry got them
    assert outcome.attempts == 2 and errors == {"response_too_large": 1}


async def test_always_oversized_fails_every_hash_with_its_code(pending_anvil: tuple[AnvilNode, list[str]]) -> None:
    node, hashes = pending_anvil
    faults = Faults(oversized_rate=1.0, oversized_bytes=8 << 20)  # with content-length: refused before reading
    async with FaultProxy(node.http_url, faults) as proxy, \
            BatchFetcher([proxy.http_url], retries=2, backoff_s=0.01, max_response_bytes=1 << 20) as fetcher:
        outcome = await fetcher.fetch(_raw(hashes[:10]))
        assert proxy.stats["oversized"] == 3
    assert outcome.found == [] and outcome.gone == []
    assert sorted(outcome.failed) == sorted((h, "response_too_large") for h in _raw(hashes[:10]))


async def test_startup_check_stops_reading_an_oversized_answer(pending_anvil: tuple[AnvilNode, list[str]]) -> None:
    node, _ = pending_anvil
    chain = ChainConfig(137, "polygon", (), ())
    faults = Faults(oversized_rate=1.0, oversized_bytes=64 << 20, oversized_chunked=True,
                    fault_methods=frozenset({"eth_chainId"}))
    async with FaultProxy(node.http_url, faults) as proxy:
        with pytest.raises(EndpointCheckError) as info:
            await check_endpoint(chain, proxy.http_url, 5.0, max_response_bytes=1 << 20)
        await asyncio.sleep(0.2)
        assert proxy.stats["oversized_bytes_sent"] < 24 << 20
        faults.oversized_rate = 0.0
        await check_endpoint(chain, proxy.http_url, 5.0, max_response_bytes=1 << 20)  # a normal answer passes
    assert "larger than 1048576 bytes" in str(info.value) and "\n" not in str(info.value)


async def test_a_slow_drip_answer_is_cut_by_the_whole_request_deadline(
        pending_anvil: tuple[AnvilNode, list[str]]) -> None:
    # Every 64-byte piece arrives well within the per-read timeout, so only a deadline on the whole request
    # stops an answer dripped over several seconds from holding a fetch slot that long.
    node, hashes = pending_anvil
    errors: Counter[str] = Counter()
    faults = Faults(oversized_next=1, oversized_bytes=64 * 200, oversized_chunked=True, drip_ms=100)
    async with FaultProxy(node.http_url, faults) as proxy, \
            BatchFetcher([proxy.http_url], timeout_s=1.0, retries=2, backoff_s=0.01,
                         on_error=lambda ep, code: errors.update([code])) as fetcher:
        outcome = await fetcher.fetch(_raw(hashes[:10]))
        assert proxy.stats["oversized"] == 1
    _check_found(outcome.found, _raw(hashes[:10]))  # the retry got them
    assert outcome.attempts == 2 and errors == {"timeout": 1}


async def test_answers_are_asked_uncompressed_so_the_body_cap_counts_what_arrives() -> None:
    async with BatchFetcher(["http://127.0.0.1:9"]) as fetcher:
        assert fetcher._client.headers["accept-encoding"] == "identity"
