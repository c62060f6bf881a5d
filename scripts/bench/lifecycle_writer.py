"""The lifecycle's cost in the single writer's thread alone (issue 16): the real ``CommitWriter`` write transaction
(``LogWrite``, ``LifeWriter``, LMDB, no fsync) fed the batches of ``scripts/bench/lifecycle_bench.py``, timed with
``time.thread_time`` around each commit, for the variants of that benchmark, alternating in one run: ``lifecycle``
with the engine in the lifecycle process (``processd.storage.lifeproc``: its CPU is not the writer's thread's, and
the thread's waits for its answers are not CPU), ``lifecycle_in_thread`` with the engine in the writer's thread.

    python -m scripts.bench.lifecycle_writer [--tx 10000] [--rounds 2] [--profile lifecycle] [--out-name NAME]

The batches are prepared (``prepare_batch``: validation, analysis, encoding: the workers' part) before the clock
starts; what is timed is what one thread must do per transaction whatever the number of cores, so its inverse bounds
processd's throughput. The collector runs with processd's settings (``processd.__main__.tune_gc``). ``--profile
VARIANT`` runs that variant once more under cProfile (thread CPU time) and prints the top functions by own time
(not written to the artifact). Writes ``artifacts/perf/<out-name>.json`` (default ``lifecycle_writer``) unless
``--no-artifact``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from common.gctune import tune_gc
from common.pb.v1 import ingest_pb2
from common.testing.synth import synthetic_envelopes
from processd.analysis.analyzer import default_analyzer
from processd.analysis.prepare import prepare_batch
from processd.storage.eventlog import EventLog
from processd.storage.lifeengine import LifeEngine
from processd.storage.lifeproc import LifeProcess
from processd.storage.records import CommitResult
from processd.storage.writer import CommitJob, CommitWriter
from scripts.bench.harness import ratio, summarize, write_artifact
from scripts.bench.lifecycle_bench import CHAIN, VARIANTS, _batches

#: Batches per write transaction (the writer groups what is queued: under load, several batches per commit).
GROUP = 4


class _Quiet:
    """A CommitListener with no subscriber (the read side is not the writer's thread)."""

    def wants_events(self) -> bool:
        return False

    def committed(self, result: CommitResult) -> None:
        pass


def _jobs(loop: asyncio.AbstractEventLoop, batches: list[ingest_pb2.TxBatch]) -> list[CommitJob]:
    """CommitJobs with their preparation done (as the pipeline hands them to the writer)."""
    analyzer = default_analyzer()
    jobs = []
    for batch in batches:
        raw = batch.SerializeToString()
        received = time.time_ns()
        prepared: asyncio.Future[Any] = loop.create_future()
        prepared.set_result(prepare_batch(raw, received, analyzer, frozenset({CHAIN}), 128 * 1024))
        job = CommitJob(batch_seq=batch.batch_seq, envelopes=len(batch.envelopes), received_ns=received,
                        prepared=prepared, done=loop.create_future(), blocks=list(batch.blocks))
        jobs.append(job)
    return jobs


def writer_seconds(variant: str, batches: list[ingest_pb2.TxBatch], workdir: Path,
                   profile: cProfile.Profile | None = None) -> tuple[float, int]:
    """Writer-thread CPU seconds of committing ``batches`` in groups of GROUP, and the transactions committed."""
    loop = asyncio.new_event_loop()
    try:
        jobs = _jobs(loop, batches)
        path = workdir / variant
        shutil.rmtree(path, ignore_errors=True)
        eventlog = EventLog(path, 1 << 30, sync=False).open()
        tracker: LifeEngine | LifeProcess | None = None
        if variant == "lifecycle":
            tracker = LifeProcess(3_600_000, 200_000, 64)  # processd's defaults
        elif variant == "lifecycle_in_thread":
            tracker = LifeEngine()
        writer = CommitWriter(eventlog, _Quiet(), lifecycle=tracker)
        loop.run_until_complete(writer.start())
        spent = 0.0
        committed = 0
        for start in range(0, len(jobs), GROUP):
            group = jobs[start:start + GROUP]
            if profile is not None:
                profile.enable()
            t0 = time.thread_time()
            writer._commit(group)  # the write transaction, in this thread (the executor's work)
            spent += time.thread_time() - t0
            if profile is not None:
                profile.disable()
            committed += sum(job.accepted for job in group)
        loop.run_until_complete(writer.stop())
        eventlog.close()
        return spent, committed
    finally:
        loop.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tx", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--profile", choices=VARIANTS)
    parser.add_argument("--out-name", default="lifecycle_writer")
    parser.add_argument("--no-artifact", action="store_true")
    args = parser.parse_args(argv)
    tune_gc()  # processd's collector settings (rare collections: the tracker's objects are long-lived)
    workdir = Path(tempfile.mkdtemp(prefix="lifecycle-writer-"))
    rounds: list[dict[str, Any]] = []
    try:
        for r in range(args.rounds):
            envelopes = synthetic_envelopes(args.tx, seed=7000 + r, chain_ids=(CHAIN,))
            row: dict[str, Any] = {}
            for variant in VARIANTS:
                spent, committed = writer_seconds(variant, _batches(envelopes, variant != "blocks_off"), workdir)
                assert committed == args.tx, (variant, committed)
                row[variant] = round(spent / committed * 1e6, 2)
            row["ratio"] = ratio(row["lifecycle"], row["blocks_off"])
            row["ratio_vs_blocks_no_lifecycle"] = ratio(row["lifecycle"], row["blocks_no_lifecycle"])
            row["ratio_vs_in_thread"] = ratio(row["lifecycle"], row["lifecycle_in_thread"])
            print(f"round {r}: writer-thread us/tx {row}", flush=True)
            rounds.append(row)
        if args.profile:
            profile = cProfile.Profile(time.thread_time)
            envelopes = synthetic_envelopes(args.tx, seed=7000, chain_ids=(CHAIN,))
            writer_seconds(args.profile, _batches(envelopes, args.profile != "blocks_off"), workdir, profile)
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not args.no_artifact:
        results: dict[str, Any] = {"tx": args.tx, "group_batches": GROUP, "rounds": rounds,
                                   "ratio": summarize([row["ratio"] for row in rounds]),
                                   "ratio_vs_blocks_no_lifecycle": summarize(
                                       [row["ratio_vs_blocks_no_lifecycle"] for row in rounds]),
                                   "ratio_vs_in_thread": summarize([row["ratio_vs_in_thread"] for row in rounds])}
        for variant in VARIANTS:
            results[f"{variant}_writer_us_per_tx"] = summarize([row[variant] for row in rounds])
        print(f"wrote {write_artifact(args.out_name, results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
