"""Tests of the shared helpers in ``common``: hex conversions, chain registry, fixtures, the replayer and the /proc
readers."""

from __future__ import annotations

import time

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.chains import UnknownChainError, chain_name, parse_chain
from common.hexutil import (
    HexError,
    hex_to_bytes,
    int_to_uint256,
    quantity_to_uint256,
    uint256_to_decimal,
    uint256_to_int,
)
from common.testing.fixtures import load_mainnet_calls
from common.testing.procfs import cpu_seconds, cpu_seconds_exact, rss_anon_bytes, rss_bytes
from common.testing.replay import Replayer, intrinsic_gas


@given(st.integers(min_value=0, max_value=2**256 - 1))
def test_uint256_roundtrip_is_minimal(value: int) -> None:
    raw = int_to_uint256(value)
    assert uint256_to_int(raw) == value
    assert raw == b"" or raw[0] != 0
    assert quantity_to_uint256(hex(value)) == raw
    assert uint256_to_decimal(raw) == str(value)


def test_uint256_rejects_out_of_range() -> None:
    with pytest.raises(HexError):
        int_to_uint256(2**256)
    with pytest.raises(HexError):
        int_to_uint256(-1)


@pytest.mark.parametrize("bad", ["", "0x0", "abcd", "0xzz", None, 5])
def test_hex_to_bytes_rejects_malformed(bad: object) -> None:
    with pytest.raises(HexError):
        hex_to_bytes(bad, 32)  # type: ignore[arg-type]


def test_chain_names_and_ids() -> None:
    assert parse_chain("Polygon") == 137
    assert parse_chain("8453") == 8453
    assert chain_name(1) == "ethereum"
    assert chain_name(999999) == "999999"
    with pytest.raises(UnknownChainError, match="polygon=137"):
        parse_chain("nochain")
    with pytest.raises(UnknownChainError):
        parse_chain("0")


#: Digits that str.isdigit() accepts but a chain id is not written with: superscript two, circled one,
#: Arabic-Indic and fullwidth 137.
NON_ASCII_DIGITS = ["\u00b2", "\u2460", "\u0661\u0663\u0667", "\uff11\uff13\uff17"]


@pytest.mark.parametrize("value", [*NON_ASCII_DIGITS, "1" * 4301, "9" * 20, str(2**63)])
def test_parse_chain_takes_ascii_digits_of_bounded_length_only(value: str) -> None:
    # isdigit() alone let these through to int(): a traceback (superscript two, 4,301 digits) or an id nobody typed
    with pytest.raises(UnknownChainError) as info:
        parse_chain(value)
    assert len(str(info.value)) < 400  # the value is echoed cut short


def test_bundled_fixture_is_complete() -> None:
    calls = load_mainnet_calls()
    assert len(calls) > 2200
    assert len({c.tx_hash for c in calls}) == len(calls)
    uniswap_v2_router = "0x7a250d5630b4cf539739df2c5dacb4c659f2488d"
    assert sum(1 for c in calls if c.to == uniswap_v2_router) > 50


def test_intrinsic_gas_counts_zero_and_nonzero_bytes() -> None:
    assert intrinsic_gas("0x") == 21_000
    assert intrinsic_gas("0x00ff") == 21_000 + 4 + 16


@pytest.mark.integration
async def test_replayer_puts_real_calls_in_anvils_pending_pool(anvil) -> None:
    calls = load_mainnet_calls()[:150]
    async with Replayer(anvil.http_url, batch_size=40) as replayer:
        sent = await replayer.send(calls)
    assert replayer.stats.rejected == 0, replayer.stats.errors_by_message
    assert len(sent) == len(calls)
    # Every accepted hash is a pending transaction carrying the fixture's calldata and recipient.
    async with httpx.AsyncClient() as client:
        for item in sent[::15]:
            resp = await client.post(anvil.http_url, json={"jsonrpc": "2.0", "id": 1,
                                     "method": "eth_getTransactionByHash", "params": [item.tx_hash]})
            tx = resp.json()["result"]
            assert tx["blockNumber"] is None
            assert tx["input"] == item.call.input
            assert tx["to"] == item.call.to
            assert int(tx["value"], 16) == item.call.value


@pytest.mark.parametrize("daemon", ["ingestd", "processd", "gatewayd"])
def test_every_daemon_answers_version(daemon: str) -> None:
    import importlib.metadata
    import subprocess
    import sys
    from pathlib import Path

    proc = subprocess.run([sys.executable, "-m", daemon, "--version"], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{daemon} {importlib.metadata.version('mempulse')}\n"


def test_log_throttle_lets_one_line_per_key_per_interval_and_counts_the_rest() -> None:
    from common.logthrottle import LogThrottle

    now = [0.0]
    throttle = LogThrottle(5.0, clock=lambda: now[0])
    assert throttle.allow("a") == 0
    assert throttle.allow("a") is None and throttle.allow("a", count=3) is None
    assert throttle.allow("b") == 0  # keys are independent
    now[0] = 4.9
    assert throttle.allow("a") is None
    now[0] = 5.0
    assert throttle.allow("a") == 5  # 1 + 3 + 1 held back since the last line
    assert throttle.allow("a") is None


def test_proc_readers_on_self_and_gone_pid() -> None:
    import os
    import subprocess
    import sys

    assert (rss_bytes(os.getpid()) or 0) > 1_000_000
    assert 0 < (rss_anon_bytes(os.getpid()) or 0) <= (rss_bytes(os.getpid()) or 0)
    assert cpu_seconds(os.getpid()) is not None
    # The exact reader counts this process's CPU as the process clock does (both are the scheduler's run time; a
    # second thread that runs meanwhile is counted too), and grows by what the loop below burns.
    before, clock = cpu_seconds_exact(os.getpid()), time.process_time()
    total = 0
    while time.process_time() - clock < 0.05:
        total += 1
    after, spent = cpu_seconds_exact(os.getpid()), time.process_time() - clock
    assert before is not None and after is not None
    assert spent >= 0.05 and abs((after - before) - spent) < 0.02
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert rss_bytes(proc.pid) is None
    assert cpu_seconds_exact(proc.pid) is None


@given(st.lists(st.one_of(st.floats(-10, 5000, allow_nan=False), st.sampled_from([0.5, 1.0, 2.0, 3600.0])),
                max_size=40))
def test_observe_many_gives_the_samples_of_one_observe_per_value(values: list[float]) -> None:
    """common.promutil.observe_many (one increment per bucket) against Histogram.observe per value, bounds included,
    on a labelled child (how processd uses it) and through the fallback."""
    from prometheus_client import CollectorRegistry, Histogram

    from common.promutil import observe_many

    def samples(observe: object) -> list[tuple[str, dict[str, str], float]]:
        registry = CollectorRegistry()
        hist = Histogram("h_seconds", "h", ["chain_id"], buckets=(0.5, 1, 2, 5, 3600), registry=registry)
        child = hist.labels("1")
        if observe is None:
            for v in values:
                child.observe(v)
        else:
            observe(child, values)  # type: ignore[operator]
        return [(s.name, s.labels, round(s.value, 6)) for m in registry.collect() for s in m.samples
                if not s.name.endswith("_created")]  # (a creation time, not an observation)

    class Plain:  # no per-bucket values: observe_many falls back to observe
        def __init__(self, child: object) -> None:
            self.child = child

        def observe(self, value: float) -> None:
            self.child.observe(value)  # type: ignore[attr-defined]

    assert samples(observe_many) == samples(None)
    assert samples(lambda child, vs: observe_many(Plain(child), vs)) == samples(None)
