"""The scripts of examples/ run as users run them (``python examples/<script>.py --target host:port``) against
a seeded processd, replaying its log (``--from-seq 1``) and stopping after ``--max-events``; what they print or
write is checked against a ScanEvents walk of the log."""

from __future__ import annotations

import asyncio
import csv
import os
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from common.pb.v1 import events_pb2
from common.testing.ingest_push import push_envelopes
from common.testing.synth import synthetic_envelopes
from processd.api.server import ProcessdServer
from tests.client._helpers import raw_log, tx_index

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DECODED = events_pb2.EVENT_KIND_TX_DECODED
OPP = events_pb2.EVENT_KIND_OPP_DETECTED


async def run_example(script: str, *args: str) -> list[str]:
    """Runs ``examples/<script>`` to completion and returns its stdout lines (fails on a non-zero exit)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / script), *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 120)  # a guard against a hang, not a measurement
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode()[-2000:]
    return out.decode().splitlines()


@pytest.fixture
async def rich(seeded: ProcessdServer) -> ProcessdServer:
    """The seeded processd with 600 more transactions, so that ETH-in swaps on chain 1 are among them."""
    await push_envelopes(seeded.address, synthetic_envelopes(600, seed=70), batch_size=200, session_id="rich")
    return seeded


def _seq(line: str) -> int:
    return int(line.split()[0])


async def test_large_swaps(rich: ProcessdServer) -> None:
    log = await raw_log(rich.address)
    swaps = [e for e in log if e.kind == DECODED and e.chain_id == 1
             and e.tx_decoded.features.category == events_pb2.TX_CATEGORY_SWAP]
    assert swaps, "no swap on chain 1 in the seed: the test is blind"
    lines = await run_example("large_swaps.py", "--target", rich.address, "--chain", "1", "--min-eth", "0",
                              "--from-seq", "1", "--max-events", str(len(swaps)))
    assert [_seq(line) for line in lines] == [e.seq_id for e in swaps]
    assert all(f"0x{e.tx_hash.hex()}" in line and " ETH " in line for e, line in zip(swaps, lines, strict=True))
    # --min-eth at the largest native value among them keeps only the swaps sending at least that much.
    valued = sorted(int.from_bytes(e.tx_decoded.features.value, "big") for e in swaps)
    assert valued[-1] > 0, "no ETH-in swap on chain 1 in the seed: the value filter is not exercised"
    want = [e.seq_id for e in swaps if int.from_bytes(e.tx_decoded.features.value, "big") >= valued[-1]]
    assert len(want) < len(swaps)
    eth = str(Decimal(valued[-1]) / 10**18)  # exact: a float would round the threshold past the value
    lines = await run_example("large_swaps.py", "--target", rich.address, "--min-eth", eth, "--from-seq", "1",
                              "--max-events", str(len(want)))
    assert [_seq(line) for line in lines] == want


async def test_follow_address(seeded: ProcessdServer) -> None:
    log = await raw_log(seeded.address)
    txs = tx_index(log)
    counts: dict[str, int] = {}
    for env, _ in txs.values():
        for addr in {env.sender, env.to} - {b""}:
            counts["0x" + addr.hex()] = counts.get("0x" + addr.hex(), 0) + 1
    address = max(counts, key=lambda a: counts[a])
    want = [e.seq_id for e in log
            if address in {"0x" + txs[(e.chain_id, e.tx_hash)][0].sender.hex(),
                           "0x" + txs[(e.chain_id, e.tx_hash)][0].to.hex()}]
    assert len(want) >= 4, "the busiest address of the seed has too few events to tell anything"
    lines = await run_example("follow_address.py", address.upper().replace("0X", "0x"), "--target", seeded.address,
                              "--from-seq", "1", "--max-events", str(len(want)))
    assert [_seq(line) for line in lines] == want
    assert any("tx_seen" in line and (f"from={address}" in line or f"to={address}" in line) for line in lines)


async def test_watch_addresses(seeded: ProcessdServer) -> None:
    log = await raw_log(seeded.address)
    txs = tx_index(log)
    counts: dict[str, int] = {}
    for env, _ in txs.values():
        for addr in {env.sender, env.to} - {b""}:
            counts["0x" + addr.hex()] = counts.get("0x" + addr.hex(), 0) + 1
    watched = sorted(counts, key=lambda a: (-counts[a], a))[:2]
    want = []
    for e in log:
        env = txs[(e.chain_id, e.tx_hash)][0]
        who = [a for a in watched if a in ("0x" + env.sender.hex(), "0x" + env.to.hex())]
        if who:
            want.append(f"{e.seq_id} {','.join(who)}")
    assert len(want) >= 8 and len({w.split()[1] for w in want}) >= 2, "the seed's addresses tell too little"
    lines = await run_example("watch_addresses.py", *watched, "--target", seeded.address, "--from-seq", "1",
                              "--max-events", str(len(want)))
    assert [" ".join(line.split()[:2]) for line in lines] == want


async def test_opportunities_csv(seeded: ProcessdServer, tmp_path: Path) -> None:
    log = await raw_log(seeded.address)
    opps = [e for e in log if e.kind == OPP]
    scores = sorted(e.opp_detected.opportunity.score for e in opps)
    min_score = scores[len(scores) // 2]
    want = [e for e in opps if e.opp_detected.opportunity.score >= min_score]
    assert 0 < len(want) < len(opps), "the score threshold selects nothing or everything: the test is blind"
    out = tmp_path / "opps.csv"
    await run_example("opportunities_csv.py", "--target", seeded.address, "--min-score", str(min_score),
                      "--out", str(out), "--from-seq", "1", "--max-events", str(len(want)))
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(int(r["seq_id"]), r["tx_hash"], int(r["score"])) for r in rows] == [
        (e.seq_id, "0x" + e.tx_hash.hex(), e.opp_detected.opportunity.score) for e in want]
    assert all(r["reasons"] and r["kind"].endswith("_candidate") for r in rows)
