"""User ABIs through the real stack: processd (``MEMPULSE_PROCESSD_ABI_DIR``, its analysis worker processes,
LMDB) and gatewayd: ``features.args`` on ``/transactions/{hash}``, ``/features/recent`` and the ``tx_decoded``
events of ``/events/stream``, equal to what the analyzer decodes in this process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from common.testing.samples import fixture_envelopes
from processd.analysis.analyzer import Analyzer
from processd.analysis.decoding.userabi import load_abi_dir
from tests.processd.test_user_abis_server import expected_coverage

from .test_sse_integration import SSEReader, stream

pytestmark = pytest.mark.integration

ABIS = Path(__file__).resolve().parents[1] / "processd" / "abis"


def test_args_on_rest_and_sse(processd_factory, gateway_factory) -> None:
    p = processd_factory(env={"MEMPULSE_PROCESSD_ABI_DIR": str(ABIS)})
    analyzer = Analyzer(user_abis=load_abi_dir(ABIS))
    want: dict[str, list[dict[str, Any]]] = {}
    truncated: set[str] = set()
    envelopes = []
    for e in fixture_envelopes(1):  # every user ABI call of the fixture, and the first 200 others
        features = analyzer.analyze(e).features
        args = [{"name": a.name, "type": a.type, "value": a.value} for a in features.args]
        if features.args_truncated:
            truncated.add("0x" + e.hash.hex())
        if args or len(envelopes) - sum(map(bool, want.values())) < 200:
            want["0x" + e.hash.hex()] = args
            envelopes.append(e)
    user_calls = [h for h, args in want.items() if args]
    assert len(user_calls) > 150
    assert p.push(envelopes) == len(envelopes)
    g = gateway_factory(p.addr, "--rate-limit-rps", "0")
    with g.client() as http:
        for h in user_calls[:20]:
            features = http.get(f"/transactions/{h}").json()["features"]
            assert features["args"] == want[h] and features["decoded"] and features["protocol"] == "user_abi"
            assert features["method"] and features["args_truncated"] is (h in truncated)
        recent = http.get("/features/recent", params={"limit": 200}).json()["features"]
        assert recent and all(f["args"] == want[f["tx_hash"]] for f in recent)
        assert any(f["args"] for f in recent) and any(f["args"] == [] and f["token_in"] for f in recent)
        with stream(http, params={"from_seq_id": 1, "kinds": "tx_decoded"}) as resp:
            assert resp.status_code == 200
            messages, _ = SSEReader(resp).events(len(envelopes), timeout_s=120)
        assert {m.data["tx_hash"]: m.data["features"]["args"] for m in messages} == want


def test_decode_coverage_on_the_snapshot(processd_factory, gateway_factory) -> None:
    """``/dashboard/snapshot?coverage_top=N``: per chain, the busiest selectors of its recent transactions with how
    they decoded, equal to the analyzer's answer counted here (user ABI selectors decoded); none by default;
    bounded."""
    p = processd_factory(env={"MEMPULSE_PROCESSD_ABI_DIR": str(ABIS)})
    envelopes = fixture_envelopes(1)[:1500]  # fewer than the recent-features window (2000): all of them count
    analyzer = Analyzer(user_abis=load_abi_dir(ABIS))
    want = [{"selector": "0x" + s, "method": m, "decoded": d, "failed": f, "unknown": u}
            for s, m, d, f, u in expected_coverage([analyzer.analyze(e).features for e in envelopes], 64)]
    assert any(c["decoded"] and c["method"] == "transmit" for c in want)  # a user ABI selector is among them
    assert p.push(envelopes) == len(envelopes)
    g = gateway_factory(p.addr, "--rate-limit-rps", "0")
    with g.client() as http:
        chain = http.get("/dashboard/snapshot", params={"chain_id": 1, "coverage_top": 64}).json()["chains"][0]
        assert chain["selector_coverage"] == want
        plain = http.get("/dashboard/snapshot", params={"chain_id": 1}).json()["chains"][0]
        assert plain["selector_coverage"] == []
        bad = http.get("/dashboard/snapshot", params={"coverage_top": 65})
        assert bad.status_code == 400 and "coverage_top" in bad.json()["error"]["message"]
