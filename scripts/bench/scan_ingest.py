"""Ingest's ack latency while a client pages through the log (ScanEvents), in one run.

    python -m scripts.bench.scan_ingest [--seed-tx 100000] [--seconds 8] [--rounds 2] [--baseline PATH]

A fresh ``python -m processd`` (sync durability, default analysis workers) holds ``--seed-tx`` synthetic
transactions; then, per phase, one Ingest stream sends a batch of 20 transactions every 20 ms (1,000 tx/s) for
``--seconds`` and times each batch from its send to its ack, while: nothing else runs (``quiet``); one client pages
through ScanEvents, 5,000 events a page, back to the start at the end (``scan``); the same with a filter that
matches nothing, so each page examines ``scan_max_examined`` events (``scan_filtered``). The phases alternate over
``--rounds``. The figures: ack latency p50 / p99 / max (ms) per phase and the scan pages read and their p50 (ms);
ratios are within the run. With ``--baseline PATH`` (a checkout of older code) its processd goes through the same
phases after this tree's, and each phase's ack p99 is compared (this / baseline). Before processd read ScanEvents
pages in threads (``processd.api.query_service``), the filtered scan took the ack p99 from ~7 ms to ~220 ms.
Writes ``artifacts/perf/<out-name>.json`` (default ``scan_ingest``).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from common.pb.v1 import ingest_pb2, ingest_pb2_grpc, query_pb2, query_pb2_grpc, tx_pb2
from common.testing.ingest_push import channel, push_envelopes
from common.testing.synth import synthetic_envelopes
from scripts.bench.harness import REPO_ROOT, percentile, ratio, write_artifact
from scripts.bench.lifecycle_bench import Processd

CHAIN = 137
BATCH = 20
BATCHES_PER_S = 50
PHASES = ("quiet", "scan", "scan_filtered")
#: A value no synthetic transaction reaches: a filtered page examines the scan bound and matches nothing.
_NO_MATCH = query_pb2.EventFilter(min_value=(10**30).to_bytes(13, "big"))


async def ack_latencies_ms(address: str, envelopes: list[tx_pb2.TxEnvelope], seconds: float,
                           first_seq: int) -> list[float]:
    """Sends a batch every 1/BATCHES_PER_S s for ``seconds`` on one stream; each batch's send-to-ack time."""
    sent: dict[int, float] = {}
    out: list[float] = []

    async def requests() -> AsyncIterator[ingest_pb2.TxBatch]:
        end = time.perf_counter() + seconds
        seq, at = first_seq, 0
        while time.perf_counter() < end and at < len(envelopes):
            sent[seq] = time.perf_counter()
            yield ingest_pb2.TxBatch(session_id="scan-ingest", batch_seq=seq, envelopes=envelopes[at:at + BATCH])
            seq, at = seq + 1, at + BATCH
            await asyncio.sleep(1 / BATCHES_PER_S)

    async with channel(address) as ch:
        call = ingest_pb2_grpc.IngestStub(ch).Stream(requests())
        async for ack in call:
            out.append((time.perf_counter() - sent[ack.batch_seq]) * 1000)
    return out


async def scan_pages(address: str, stop: asyncio.Event, filtered: bool, wrap_at: int) -> list[float]:
    """Pages through ScanEvents until ``stop``; each page's time (ms)."""
    out: list[float] = []
    async with channel(address) as ch:
        stub = query_pb2_grpc.QueryStub(ch)
        cursor = 1
        while not stop.is_set():
            request = query_pb2.ScanEventsRequest(from_seq_id=cursor, limit=5000)
            if filtered:
                request.filter.CopyFrom(_NO_MATCH)
            t0 = time.perf_counter()
            page = await stub.ScanEvents(request)
            out.append((time.perf_counter() - t0) * 1000)
            cursor = page.next_seq_id if page.next_seq_id and page.next_seq_id < wrap_at else 1
    return out


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Per tree (this one, and ``--baseline``'s), a seeded processd through the phases; per round, tree and phase
    the figures."""
    trees = {"this": None, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    out: dict[str, Any] = {"seed_tx": args.seed_tx, "seconds": args.seconds, "batch": BATCH,
                           "batches_per_s": BATCHES_PER_S, "baseline": str(args.baseline) if args.baseline else None}
    for name, tree in trees.items():
        (workdir / name).mkdir()
        out[name] = await run_tree(args, workdir / name, tree)
    if args.baseline:
        out["ack_p99_this_over_baseline"] = {
            phase: [ratio(t[phase]["ack_p99_ms"], b[phase]["ack_p99_ms"])
                    for t, b in zip(out["this"], out["baseline"], strict=True)] for phase in PHASES}
    return out


async def run_tree(args: argparse.Namespace, workdir: Path, tree: Path | None) -> list[dict[str, Any]]:
    """One tree's processd, seeded, through ``--rounds`` rounds of the phases."""
    processd = Processd(workdir, "processd", tree=tree or REPO_ROOT)
    try:
        await push_envelopes(processd.address, synthetic_envelopes(args.seed_tx, seed=3, chain_ids=(CHAIN,)),
                             batch_size=500, max_inflight=16)
        live = synthetic_envelopes(int(args.seconds * BATCHES_PER_S * BATCH * len(PHASES) * args.rounds) + BATCH,
                                   seed=4, chain_ids=(CHAIN,))
        rounds: list[dict[str, Any]] = []
        at, seq = 0, 1_000_000
        for _ in range(args.rounds):
            row: dict[str, Any] = {}
            for phase in PHASES:
                stop = asyncio.Event()
                scanner = None if phase == "quiet" else asyncio.create_task(
                    scan_pages(processd.address, stop, phase == "scan_filtered", args.seed_tx))
                count = int(args.seconds * BATCHES_PER_S * BATCH)
                acks = await ack_latencies_ms(processd.address, live[at:at + count], args.seconds, seq)
                at, seq = at + count, seq + count
                stop.set()
                pages = await scanner if scanner is not None else []
                row[phase] = {"acks": len(acks), "ack_p50_ms": round(percentile(acks, 50), 2),
                              "ack_p99_ms": round(percentile(acks, 99), 2), "ack_max_ms": round(max(acks), 2),
                              "scan_pages": len(pages),
                              "scan_page_p50_ms": round(percentile(pages, 50), 2) if pages else None}
                print(tree or "this tree", phase, row[phase], flush=True)
            row["ack_p99_ratio_scan"] = ratio(row["scan"]["ack_p99_ms"], row["quiet"]["ack_p99_ms"])
            row["ack_p99_ratio_scan_filtered"] = ratio(row["scan_filtered"]["ack_p99_ms"], row["quiet"]["ack_p99_ms"])
            rounds.append(row)
        return rounds
    finally:
        processd.proc.terminate()
        processd.proc.wait(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seed-tx", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out-name", default="scan_ingest")
    parser.add_argument("--baseline", type=Path, help="a checkout of older code: its processd through the same phases")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="scan-ingest-"))
    try:
        results = asyncio.run(run(args, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"wrote {write_artifact(args.out_name, results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
