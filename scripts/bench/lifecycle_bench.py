"""Transaction lifecycle cost (issue 16): processd CPU per committed transaction with lifecycle tracking on vs the
same build with no blocks (so no tracking), paired in one run; and the cost of applying one block of N tracked
transactions.

    python -m scripts.bench.lifecycle_bench [--tx 20000] [--rounds 2] [--out-name lifecycle] [--baseline PATH]

* **paired CPU**: per round, a fresh ``python -m processd`` (sync durability, default analysis workers) per variant,
  the variants alternating (``lifecycle``, ``lifecycle_in_thread``, ``blocks_no_lifecycle``, ``blocks_off``, then
  again). Both get the identical
  transactions (synthetic, one chain, batches of 500, one stream, as many batches unacked as ingestd sends by
  default, ``outbound_max_unacked_batches`` = 64, or ``--max-inflight``: with 8 the commit's latency, not its
  throughput, bounds the stream); ``lifecycle`` also
  gets a first block (tracking starts) and after every 1,000 transactions a block including 500 of them (each
  block: TX_INCLUDED events, a restart floor, the latency window). The figures are processd's CPU per committed
  transaction, of its process tree (workers included, from /proc) and of its main process alone (the event loop
  and the single writer's thread share its GIL: the serial part, which bounds throughput once the analysis is
  spread over workers), the throughput (tx/s), and per round the ratios lifecycle / blocks_off and lifecycle /
  blocks_no_lifecycle (the same blocks stored, no tracking) of each, and lifecycle / lifecycle_in_thread; the issue's
  target is the throughput ratio ``tx_per_s_ratio`` >= 0.85 (the lifecycle costs at most 15 % of it). With
  ``--baseline PATH`` (a checkout of older code, e.g. ``git worktree add`` or ``git archive`` of a commit), a fifth
  variant, ``lifecycle_baseline``, runs that tree's processd with the lifecycle on, in the same alternation, and each
  round gives this tree's lifecycle over it (``ratio_vs_baseline``, ``main_ratio_vs_baseline``,
  ``tx_per_s_ratio_vs_baseline``): old vs new in one run.
* **apply one block**: the tracker alone (``LifecycleTracker.block`` with N tracked pending transactions, all in
  the block), and end to end through processd (the ack latency of a batch holding one block of N stored
  transactions, commit and fsync included), for N = 100, 1,000, 5,000.

Writes ``artifacts/perf/<out-name>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common.gctune import tune_gc
from common.pb.v1 import block_pb2, ingest_pb2, tx_pb2
from common.testing.ingest_push import push_batches
from common.testing.netutil import free_port, wait_for_port
from common.testing.procfs import cpu_seconds
from common.testing.synth import synthetic_envelopes
from ingestd.config import IngestConfig
from processd.storage.lifecycle import LifecycleTracker
from processd.storage.lifestate import Pending
from scripts.bench.harness import ratio, summarize, tree_cpu_seconds, write_artifact

ROOT = Path(__file__).resolve().parents[2]
CHAIN = 137
BATCH = 500
#: lifecycle: blocks and tracking (the engine in the lifecycle process, the default); lifecycle_in_thread: the same
#: with the engine in the single writer's thread; blocks_no_lifecycle: the same blocks, lifecycle_enabled=false (the
#: BLOCK events' own cost); blocks_off: no block at all (so nothing tracked).
VARIANTS = ("lifecycle", "lifecycle_in_thread", "blocks_no_lifecycle", "blocks_off")
#: The environment of each variant's processd.
VARIANT_ENV: dict[str, dict[str, str]] = {"lifecycle_in_thread": {"MEMPULSE_PROCESSD_LIFECYCLE_PROCESS": "false"},
                                          "blocks_no_lifecycle": {"MEMPULSE_PROCESSD_LIFECYCLE_ENABLED": "false"}}


def _block(number: int, timestamp: int, txs: list[tx_pb2.TxEnvelope]) -> block_pb2.BlockEnvelope:
    return block_pb2.BlockEnvelope(
        chain_id=CHAIN, number=number, hash=number.to_bytes(4, "big") * 8, parent_hash=b"\x01" * 32,
        timestamp=timestamp, source_id="bench", seen_unix_ns=timestamp * 10**9, tx_count=len(txs),
        txs=[block_pb2.IncludedTx(hash=t.hash, index=i, sender=t.sender, nonce=t.nonce,
                                  status=block_pb2.TX_STATUS_OK, gas_used=21000) for i, t in enumerate(txs)])


def _batches(envelopes: list[tx_pb2.TxEnvelope], with_blocks: bool) -> list[ingest_pb2.TxBatch]:
    """The transactions in batches of BATCH; with blocks: a first block, then one per 1,000 transactions."""
    t0 = min(e.first_seen_unix_ns for e in envelopes) // 10**9
    out: list[ingest_pb2.TxBatch] = []
    seq = 1
    if with_blocks:
        out.append(ingest_pb2.TxBatch(session_id="bench", batch_seq=seq, blocks=[_block(1, t0, [])]))
        seq += 1
    number = 1
    for start in range(0, len(envelopes), BATCH):
        chunk = envelopes[start:start + BATCH]
        batch = ingest_pb2.TxBatch(session_id="bench", batch_seq=seq, envelopes=chunk)
        seq += 1
        if with_blocks and (start // BATCH) % 2 == 1:
            number += 1
            batch.blocks.append(_block(number, t0 + 12 * number, envelopes[start - BATCH:start:2] + chunk[::2]))
        out.append(batch)
    return out


class Processd:
    """``python -m processd`` on a fresh data dir."""

    def __init__(self, workdir: Path, name: str, env: dict[str, str] | None = None, tree: Path = ROOT) -> None:
        self.port = free_port()
        self.data = workdir / name
        log_path = workdir / f"{name}.log"
        self.log = log_path.open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "processd", "--data-dir", str(self.data), "--listen",
                                      f"127.0.0.1:{self.port}"], cwd=tree, stdout=self.log,
                                     stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        deadline = time.monotonic() + 60
        while b"processd listening on" not in log_path.read_bytes():  # (the event log is open: it serves)
            assert self.proc.poll() is None and time.monotonic() < deadline, "processd did not start"
            time.sleep(0.05)
        assert wait_for_port("127.0.0.1", self.port, 10), "processd did not start"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cpu(self) -> float:
        value = tree_cpu_seconds(self.proc.pid)
        assert value is not None
        return value

    def main_cpu(self) -> float:
        """The main process alone: its event loop and the single writer's thread share its GIL, the serial part."""
        value = cpu_seconds(self.proc.pid)
        assert value is not None
        return value

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()


#: Unacked batches on the bench's stream: what ingestd sends by default.
MAX_INFLIGHT = IngestConfig.outbound_max_unacked_batches


def paired_cpu(tx: int, rounds: int, workdir: Path, baseline: Path | None = None,
               max_inflight: int = MAX_INFLIGHT) -> dict[str, Any]:
    """CPU per committed transaction, lifecycle vs blocks_off, alternating per round (module doc); with
    ``baseline`` (a checkout of older code), also ``lifecycle_baseline``: its processd, lifecycle on, same input."""
    per_round: list[dict[str, Any]] = []
    variants = (*VARIANTS, "lifecycle_baseline") if baseline is not None else VARIANTS
    for r in range(rounds):
        envelopes = synthetic_envelopes(tx, seed=7000 + r, chain_ids=(CHAIN,))
        row: dict[str, Any] = {}
        for variant in variants:
            batches = _batches(envelopes, variant != "blocks_off")
            tree = baseline if variant == "lifecycle_baseline" and baseline is not None else ROOT
            p = Processd(workdir, f"{variant}-{r}", VARIANT_ENV.get(variant), tree)
            try:
                time.sleep(0.5)
                before, main_before = p.cpu(), p.main_cpu()
                started = time.perf_counter()
                acks = asyncio.run(push_batches(p.address, batches, max_inflight=max_inflight))
                elapsed = time.perf_counter() - started
                cpu, main_cpu = p.cpu() - before, p.main_cpu() - main_before
            finally:
                p.stop()
            committed = sum(a.accepted for a in acks)
            assert committed == tx, (variant, committed)
            row[variant] = {"cpu_us_per_tx": round(cpu / committed * 1e6, 2),
                            "main_cpu_us_per_tx": round(main_cpu / committed * 1e6, 2),
                            "tx_per_s": round(committed / elapsed), "blocks": sum(a.blocks_stored for a in acks)}
        life, off, no_life = row["lifecycle"], row["blocks_off"], row["blocks_no_lifecycle"]
        row["ratio"] = ratio(life["cpu_us_per_tx"], off["cpu_us_per_tx"])
        row["ratio_vs_blocks_no_lifecycle"] = ratio(life["cpu_us_per_tx"], no_life["cpu_us_per_tx"])
        row["main_ratio"] = ratio(life["main_cpu_us_per_tx"], off["main_cpu_us_per_tx"])
        row["main_ratio_vs_blocks_no_lifecycle"] = ratio(life["main_cpu_us_per_tx"], no_life["main_cpu_us_per_tx"])
        # throughput kept: lifecycle tx/s over the other's (the target: >= 0.85)
        row["tx_per_s_ratio"] = ratio(life["tx_per_s"], off["tx_per_s"])
        row["tx_per_s_ratio_vs_blocks_no_lifecycle"] = ratio(life["tx_per_s"], no_life["tx_per_s"])
        # the lifecycle process vs the engine in the writer's thread (what it changed)
        in_thread = row["lifecycle_in_thread"]
        row["main_ratio_vs_in_thread"] = ratio(life["main_cpu_us_per_tx"], in_thread["main_cpu_us_per_tx"])
        row["ratio_vs_in_thread"] = ratio(life["cpu_us_per_tx"], in_thread["cpu_us_per_tx"])
        row["tx_per_s_ratio_vs_in_thread"] = ratio(life["tx_per_s"], in_thread["tx_per_s"])
        row["in_thread_tx_per_s_ratio"] = ratio(in_thread["tx_per_s"], off["tx_per_s"])
        if baseline is not None:  # this tree's lifecycle vs the older code's, same input, same run
            old = row["lifecycle_baseline"]
            row["ratio_vs_baseline"] = ratio(life["cpu_us_per_tx"], old["cpu_us_per_tx"])
            row["main_ratio_vs_baseline"] = ratio(life["main_cpu_us_per_tx"], old["main_cpu_us_per_tx"])
            row["tx_per_s_ratio_vs_baseline"] = ratio(life["tx_per_s"], old["tx_per_s"])
            row["baseline_tx_per_s_ratio"] = ratio(old["tx_per_s"], off["tx_per_s"])
        per_round.append(row)
        print(f"round {r}: {row}", flush=True)
    out: dict[str, Any] = {"rounds": per_round}
    for key in ("ratio", "ratio_vs_blocks_no_lifecycle", "main_ratio", "main_ratio_vs_blocks_no_lifecycle",
                "tx_per_s_ratio", "tx_per_s_ratio_vs_blocks_no_lifecycle", "main_ratio_vs_in_thread",
                "ratio_vs_in_thread", "tx_per_s_ratio_vs_in_thread", "in_thread_tx_per_s_ratio",
                *(("ratio_vs_baseline", "main_ratio_vs_baseline", "tx_per_s_ratio_vs_baseline",
                   "baseline_tx_per_s_ratio") if baseline is not None else ())):
        out[key] = summarize([row[key] for row in per_round])
    if baseline is not None:
        out["baseline"] = str(baseline)
    for variant in variants:
        for figure in ("cpu_us_per_tx", "main_cpu_us_per_tx", "tx_per_s"):
            out[f"{variant}_{figure}"] = summarize([row[variant][figure] for row in per_round])
    return out


def tracker_block_us(n: int, repeat: int = 5) -> float:
    """The state machine alone: one block including N tracked pending transactions (median of ``repeat``; the
    collector tuned as in processd: the caller ran ``tune_gc``)."""
    times = []
    for _ in range(repeat):
        t = LifecycleTracker(max_pending=n + 1)
        t.block(_block(1, 1_700_000_000, []), 1)
        envelopes = []
        for i in range(n):
            p = Pending(seq=i + 2, tx_hash=i.to_bytes(32, "big"), sender=(i % 997).to_bytes(20, "big"), nonce=i // 997,
                        fee=10**9, first_seen_ns=1_700_000_000 * 10**9, cancel=False)
            t.pending(CHAIN, p)
            envelopes.append(tx_pb2.TxEnvelope(hash=p.tx_hash, sender=p.sender, nonce=p.nonce))
        block = _block(2, 1_700_000_012, envelopes)
        started = time.perf_counter()
        t.block(block, n + 2)
        times.append(time.perf_counter() - started)
    times.sort()
    return round(times[len(times) // 2] * 1e6, 1)


def block_ack_ms(n: int, workdir: Path) -> float:
    """End to end: the ack latency of one batch holding a block of N stored, tracked transactions."""
    envelopes = synthetic_envelopes(n, seed=9000 + n, chain_ids=(CHAIN,))
    t0 = min(e.first_seen_unix_ns for e in envelopes) // 10**9
    p = Processd(workdir, f"block-{n}")
    try:
        first = [ingest_pb2.TxBatch(session_id="b", batch_seq=1, blocks=[_block(1, t0, [])])]
        first += [ingest_pb2.TxBatch(session_id="b", batch_seq=2 + i // BATCH, envelopes=envelopes[i:i + BATCH])
                  for i in range(0, n, BATCH)]
        asyncio.run(push_batches(p.address, first, max_inflight=8))
        started = time.perf_counter()
        [ack] = asyncio.run(push_batches(p.address, [ingest_pb2.TxBatch(
            session_id="b", batch_seq=10**6, blocks=[_block(2, t0 + 12, envelopes)])]))
        elapsed = time.perf_counter() - started
        assert ack.blocks_stored == 1
    finally:
        p.stop()
    return round(elapsed * 1e3, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tx", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out-name", default="lifecycle")
    parser.add_argument("--baseline", type=Path, help="a checkout of older code: adds its lifecycle as a variant")
    parser.add_argument("--skip-apply-block", action="store_true", help="the paired CPU only")
    parser.add_argument("--max-inflight", type=int, default=MAX_INFLIGHT,
                        help="unacked batches on the stream (default: ingestd's, %(default)s)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="lifecycle-bench-"))
    try:
        results: dict[str, Any] = {"tx": args.tx, "batch": BATCH, "max_inflight": args.max_inflight}
        results["paired_cpu"] = paired_cpu(args.tx, args.rounds, workdir,
                                           args.baseline.resolve() if args.baseline else None, args.max_inflight)
        results["apply_block"] = {}
        tune_gc()  # (processd's collector settings for the in-process tracker figures)
        for n in () if args.skip_apply_block else (100, 1000, 5000):
            tracker_us = tracker_block_us(n)
            results["apply_block"][str(n)] = {"tracker_us": tracker_us, "tracker_us_per_tx": round(tracker_us / n, 2),
                                              "ack_ms": block_ack_ms(n, workdir)}
        print(results["apply_block"], flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    path = write_artifact(args.out_name, results)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
