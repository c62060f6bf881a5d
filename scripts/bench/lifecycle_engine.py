"""The lifecycle engine's CPU per transaction (issue 16), old code vs new in one run: the engine calls of the
single writer (``LifeEngine.stored``, ``block``, ``gone``, ``finish``) for the batches of
``scripts/bench/lifecycle_bench.py`` are recorded once, then replayed on a fresh engine of each source tree, the
trees alternating per round, each in its own ``python`` process.

    python -m scripts.bench.lifecycle_engine --baseline /path/to/old/checkout [--tx 20000] [--rounds 3]

Per tree and round: the engine's thread CPU per committed transaction (what the lifecycle process spends in the
engine), and the pickling of each request and answer (what ``processd.storage.lifeproc`` adds on both sides of the
pipe: dumps and loads); the ratio new / baseline of each. The answers of both trees are compared by digest (the
log is written from them: equal answers, equal log; the TX_SEEN seqs of a group compared as ints, whatever form a
tree sends them in), and the run fails if they differ. Writes
``artifacts/perf/<out-name>.json`` (default ``lifecycle_engine``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pickle
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

#: Run in each tree's process: replays the recorded calls (argv: calls file, transactions); prints JSON.
_REPLAY = """
import hashlib, json, pickle, sys, time
from processd.__main__ import tune_gc
from processd.storage.lifeengine import LifeEngine
try:
    from processd.wire.lifeencoding import life_values
except ImportError:  # (a tree from before the lifecycle's encoding had its own module)
    from processd.wire.encoding import life_values
tune_gc()
life_values([], 0, "")  # (warm-up: the encoder's tables are made on first use, once per process)
calls = pickle.load(open(sys.argv[1], "rb"))
n = int(sys.argv[2])
engine = LifeEngine()
spent = pickled = 0.0
digest = hashlib.sha256()


def same_form(group):
    # A LifeGroup's TX_SEEN seqs as ints (-1 for a REORG), however the tree carries them (packed u64 before).
    if group is None:
        return None
    seqs = [int.from_bytes(s, "big") if s else -1 for s in group[4]] if group[4] and type(group[4][0]) is bytes \
        else list(group[4])
    return (*group[:4], seqs, group[5])


def comparable(name, answer):
    if name == "stored":
        return (same_form(answer[0]), answer[1])
    if name == "block":  # (p50, included, [the listed hashes: trees before 2026-12-05,] group, snapshot)
        return (*answer[:2], same_form(answer[-2]), answer[-1])
    if name == "gone":
        return (answer[0], [same_form(g) for g in answer[1]])
    return answer


for name, args in calls:
    t0 = time.thread_time()
    answer = getattr(engine, name)(*args)
    t1 = time.thread_time()
    request, reply = pickle.dumps((name, args), 5), pickle.dumps((True, answer), 5)
    pickle.loads(request)
    pickle.loads(reply)
    pickled += time.thread_time() - t1
    spent += t1 - t0
    digest.update(pickle.dumps(comparable(name, answer), 5))
print(json.dumps({"engine_us_per_tx": round(spent / n * 1e6, 3), "pickle_us_per_tx": round(pickled / n * 1e6, 3),
                  "digest": digest.hexdigest()}))
"""


def record_calls(tx: int, path: Path) -> int:
    """Runs the real writer (in-thread engine) over the bench's batches, recording each engine call's arguments
    into ``path``; returns the transactions committed."""
    from common.testing.synth import synthetic_envelopes
    from processd.storage.eventlog import EventLog
    from processd.storage.lifeengine import LifeEngine
    from processd.storage.writer import CommitWriter
    from scripts.bench.lifecycle_bench import CHAIN, _batches
    from scripts.bench.lifecycle_writer import GROUP, _jobs, _Quiet

    calls: list[tuple[str, tuple[Any, ...]]] = []

    def recorded(name: str) -> Callable[..., Any]:
        engine_method = getattr(LifeEngine, name)

        def method(self: LifeEngine, *args: Any) -> Any:
            calls.append((name, args))
            return engine_method(self, *args)
        return method

    # (the writer's calls: stored and block by LifeEngine.send, gone and finish directly)
    Recording = type("Recording", (LifeEngine,), {name: recorded(name) for name in ("stored", "block", "gone",
                                                                                    "finish")})

    loop = asyncio.new_event_loop()
    workdir = Path(tempfile.mkdtemp(prefix="lifecycle-engine-"))
    try:
        jobs = _jobs(loop, _batches(synthetic_envelopes(tx, seed=7000, chain_ids=(CHAIN,)), True))
        eventlog = EventLog(workdir / "log", 1 << 30, sync=False).open()
        writer = CommitWriter(eventlog, _Quiet(), lifecycle=Recording())
        loop.run_until_complete(writer.start())
        committed = 0
        for start in range(0, len(jobs), GROUP):
            group = jobs[start:start + GROUP]
            writer._commit(group)
            committed += sum(job.accepted for job in group)
        loop.run_until_complete(writer.stop())
        eventlog.close()
    finally:
        loop.close()
        shutil.rmtree(workdir, ignore_errors=True)
    calls = [call for call in calls if call[0] != "rebuild_env"]
    path.write_bytes(pickle.dumps(calls, pickle.HIGHEST_PROTOCOL))
    return committed


def replay(tree: Path, calls: Path, tx: int) -> dict[str, Any]:
    """The replay in a ``python`` process importing ``tree``."""
    out = subprocess.run([sys.executable, "-c", _REPLAY, str(calls), str(tx)], cwd=tree, check=True,
                         capture_output=True, text=True, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"})
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    from scripts.bench.harness import ratio, summarize, write_artifact

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--baseline", type=Path, required=True, help="a checkout of the code to compare against")
    parser.add_argument("--tx", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out-name", default="lifecycle_engine")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="lifecycle-engine-"))
    rounds: list[dict[str, Any]] = []
    try:
        calls = workdir / "calls.pickle"
        committed = record_calls(args.tx, calls)
        assert committed == args.tx, committed
        for r in range(args.rounds):
            row: dict[str, Any] = {}
            for name, tree in (("baseline", args.baseline.resolve()), ("new", ROOT)):
                row[name] = replay(tree, calls, args.tx)
            assert row["baseline"]["digest"] == row["new"]["digest"], "the trees' engines answer differently"
            for figure in ("engine_us_per_tx", "pickle_us_per_tx"):
                row[f"{figure}_ratio"] = ratio(row["new"][figure], row["baseline"][figure])
            print(f"round {r}: {json.dumps(row)}", flush=True)
            rounds.append(row)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results: dict[str, Any] = {"tx": args.tx, "baseline": str(args.baseline), "rounds": rounds,
                               "answers_equal": True}
    for name in ("baseline", "new"):
        for figure in ("engine_us_per_tx", "pickle_us_per_tx"):
            results[f"{name}_{figure}"] = summarize([row[name][figure] for row in rounds])
    for figure in ("engine_us_per_tx_ratio", "pickle_us_per_tx_ratio"):
        results[figure] = summarize([row[figure] for row in rounds])
    print(f"wrote {write_artifact(args.out_name, results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
