"""processd with ``abi_dir`` end to end: the analysis worker processes decode with the user ABIs (they arrive with
the process arguments), the records in LMDB carry method + args, and a bad ABI directory stops processd at start."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from common.envconfig import ConfigError
from common.pb.v1 import events_pb2, query_pb2
from common.testing.ingest_push import channel, push_envelopes
from common.testing.samples import fixture_envelopes
from processd.analysis.analyzer import Analyzer
from processd.analysis.decoding.userabi import load_abi_dir
from processd.api.server import ProcessdServer
from processd.views.coverage import MAX_COVERAGE_SELECTORS
from tests.processd._helpers import make_config, query_stub

ABIS = Path(__file__).resolve().parent / "abis"


@pytest.mark.parametrize("workers", [0, 2])
async def test_stored_features_carry_the_args(server_factory, workers: int) -> None:
    envelopes = fixture_envelopes(1)
    local = Analyzer(user_abis=load_abi_dir(ABIS))
    want = {e.hash: local.analyze(e).features for e in envelopes}
    user_calls = [h for h, f in want.items() if f.args]
    assert len(user_calls) > 150
    server: ProcessdServer = await server_factory(abi_dir=ABIS, analysis_workers=workers)
    await push_envelopes(server.address, envelopes, batch_size=200)
    async with channel(server.address) as ch:
        q = query_stub(ch)
        for h in user_calls[:40]:
            got = (await q.GetTransaction(query_pb2.GetTransactionRequest(chain_id=1, hash=h))).features.features
            assert got == want[h] and got.decoded and got.args and got.protocol == "user_abi"
        # a built-in call keeps its features and has no args
        builtin = next(e.hash for e in envelopes if want[e.hash].category == 1)  # TX_CATEGORY_SWAP
        got = (await q.GetTransaction(query_pb2.GetTransactionRequest(chain_id=1, hash=builtin))).features.features
        assert got == want[builtin] and not got.args and got.token_in


def expected_coverage(features: list[events_pb2.TxFeatures], top_n: int) -> list[tuple[str, str, int, int, int]]:
    """(selector hex, method, decoded, failed, unknown) of the busiest selectors, counted the obvious way."""
    calls = Counter(f.selector for f in features if f.selector)
    busiest = sorted(calls, key=lambda s: (-calls[s], s))[:top_n]
    def row(s: bytes) -> tuple[str, str, int, int, int]:
        mine = [f for f in features if f.selector == s]
        return (s.hex(), next((f.method for f in mine if f.decoded), ""), sum(f.decoded for f in mine),
                sum(not f.decoded and bool(f.method) for f in mine), sum(not f.method for f in mine))
    return [row(s) for s in busiest]


@pytest.mark.parametrize("with_abis", [False, True])
async def test_decode_coverage_by_selector(server_factory, with_abis: bool) -> None:
    """Over the chain's recent-features window (the newest 300 here): the user ABI's selectors move from unknown
    to decoded."""
    envelopes = fixture_envelopes(1)
    local = Analyzer(user_abis=load_abi_dir(ABIS)) if with_abis else Analyzer()
    window = [local.analyze(e).features for e in envelopes[-300:]]
    server: ProcessdServer = await server_factory(abi_dir=ABIS if with_abis else None, recent_features=300)
    await push_envelopes(server.address, envelopes, batch_size=500)
    got = [(c.selector.hex(), c.method, c.decoded, c.failed, c.unknown)
           for c in server.models.selector_coverage(1, 40)]
    assert got == expected_coverage(window, 40)
    transmit = next(row for row in got if row[0] == "c9807539")  # Chainlink OCR transmit, in no built-in table
    assert (transmit[2] > 0 and transmit[4] == 0) if with_abis else (transmit[2] == 0 and transmit[4] > 0)
    assert len(server.models.selector_coverage(1, 1000)) == MAX_COVERAGE_SELECTORS
    assert server.models.selector_coverage(999, 10) == []
    # GetSnapshot serves it per chain when asked (coverage_top), capped, and not at all by default
    async with channel(server.address) as ch:
        q = query_stub(ch)
        snap = await q.GetSnapshot(query_pb2.GetSnapshotRequest(chain_id=1, coverage_top=40))
        assert [(c.selector.hex(), c.method, c.decoded, c.failed, c.unknown)
                for c in snap.chains[0].selector_coverage] == got
        capped = await q.GetSnapshot(query_pb2.GetSnapshotRequest(chain_id=1, coverage_top=1000))
        assert len(capped.chains[0].selector_coverage) == MAX_COVERAGE_SELECTORS
        plain = await q.GetSnapshot(query_pb2.GetSnapshotRequest(chain_id=1))
        assert len(plain.chains[0].selector_coverage) == 0


def test_bad_abi_dir_refused_before_anything_opens(tmp_path: Path) -> None:
    bad = tmp_path / "abis"
    bad.mkdir()
    (bad / "token.json").write_text('{"abi": [{"type": "function", "name": "f", "inputs": [{"type": "uint3"}]}]}')
    with pytest.raises(ConfigError, match=r"ABI file .*token\.json: function f: unsupported ABI type 'uint3'"):
        ProcessdServer(make_config(tmp_path / "lmdb", abi_dir=bad))
    assert not (tmp_path / "lmdb").exists()
    done = subprocess.run([sys.executable, "-m", "processd", "--data-dir", str(tmp_path / "lmdb"), "--abi-dir",
                           str(bad)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "token.json: function f: unsupported ABI type 'uint3'" in done.stderr
