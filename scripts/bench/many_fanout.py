"""SubscribeMany fan-out in-process: CPU per transaction of the hub's work for one stream of N filters of ~1%.

    python -m scripts.bench.many_fanout [--filters 1000] [--blocks 3] [--rounds 8] [--compare-root /tmp/base]
        [--out-name many_fanout]

``filter_bench`` measures the whole of processd with a gRPC subscriber on the same 2 cores; one pass's ratio
there swings by more than a change of a few tenths of a microsecond per transaction makes. This one times only
what the fan-out adds on processd's main process (issue 18): ``SubscriptionHub.publish_commit`` of commits of
stored batches (real ``prepare_batch`` output of the synthetic traffic, 4 commits of 4 batches of 500
transactions per round, their columns unpickled afresh each round so no hash or cache is warm from the round
before) to one ``ManyStream`` holding ``filter_bench.make_filters(N)``, and the stream's messages taken as
``SubscribeMany`` sends them (``Subscriber.take_message``). Thread CPU (``time.thread_time``) per transaction,
the median of ``--rounds`` after two rounds of warm-up.

With ``--compare-root`` (another checkout, e.g. ``git archive`` of the base commit) the same runs from that tree
too, in blocks that alternate (new, old, old, new, ...: a child process per block, this tree's script on that
tree's packages), and the artifact holds each block's figures and the new/old ratio of each adjacent pair.

The client's side: the messages of this tree are parsed whole and counted as ``filter_bench``'s subscriber counts
them (``filter_bench.count_many``) and as it counted them before (two C-level passes, one per field), in
alternation in this process; per transaction.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import time
from itertools import compress
from operator import attrgetter
from pathlib import Path
from typing import Any

from scripts.bench.harness import ratio, write_artifact

ROOT = Path(__file__).resolve().parents[2]
BATCHES = 16
TX_PER_BATCH = 500
BATCHES_PER_COMMIT = 4
WARMUP_ROUNDS = 2


def _fanout_rounds(filters: int, rounds: int) -> dict[str, Any]:
    """The measurement, in the tree whose packages come first on ``sys.path``; returns per-round figures and
    the messages of the last round (for the client's side)."""
    from common.pb.v1 import ingest_pb2
    from common.testing.synth import synthetic_envelopes
    from processd.analysis.analyzer import Analyzer
    from processd.analysis.prepare import prepare_batch
    from processd.storage.records import CommitResult
    from processd.views.filter_model import compile_filter
    from processd.views.subscribers import ManyStream
    from processd.views.subscriptions import SubscriptionHub
    from scripts.bench.filter_bench import _event_filter, make_filters
    from scripts.bench.processd_bench import CHAINS

    raw = [pickle.dumps(prepare_batch(ingest_pb2.TxBatch(
        session_id="m", batch_seq=k + 1, envelopes=synthetic_envelopes(TX_PER_BATCH, seed=1000 + k, chain_ids=CHAINS),
    ).SerializeToString(), 1_700_000_000_000_000_000, Analyzer(), frozenset(), 128 * 1024)) for k in range(BATCHES)]
    hub = SubscriptionHub(filters + 16, 1 << 40)
    hub.message_events, hub.message_bytes = 500, 1 << 20  # the service's bounds (query_service)
    stream = ManyStream(1 << 40, max(filters, 1))
    hub.add_stream(stream)
    hub.change_filters(stream, [(i, compile_filter(_event_filter(spec)))
                                for i, spec in enumerate(make_filters(filters))], [])
    stream.buffer.clear()
    stream.buffered_events = 0
    seq, per_round = 1000, []
    messages: list[bytes] = []
    for r in range(WARMUP_ROUNDS + rounds):
        commits = []
        columns = [pickle.loads(b) for b in raw]
        for i in range(0, BATCHES, BATCHES_PER_COMMIT):
            result = CommitResult(last_seq=0, committed_ns=0, batches=BATCHES_PER_COMMIT, envelopes=0, first_seq=seq)
            for cols in columns[i:i + BATCHES_PER_COMMIT]:
                result.add_stored(seq, cols)
                seq += len(cols.values)
            result.last_seq = seq - 1
            commits.append(result)
        messages = []
        started = time.thread_time()
        for result in commits:
            hub.publish_commit(result)
            while stream.buffer:
                messages.append(stream.take_message(500, 1 << 20, hub.last_seq))
        spent = time.thread_time() - started
        if r >= WARMUP_ROUNDS:
            per_round.append(round(spent / (BATCHES * TX_PER_BATCH) * 1e6, 3))
    return {"us_per_tx": per_round, "median_us_per_tx": statistics.median(per_round), "messages": len(messages),
            "bytes_per_tx": round(sum(map(len, messages)) / (BATCHES * TX_PER_BATCH), 1), "_messages": messages}


def _count_two_passes(msg: Any) -> tuple[int, int]:
    """How ``filter_bench``'s subscriber counted before ``count_many``: one C-level pass per field."""
    events = msg.events
    ids = list(map(len, map(attrgetter("filter_ids"), events)))
    seen = sum(compress(ids, map(1 .__eq__, map(attrgetter("event.kind"), events))))  # EVENT_KIND_TX_SEEN
    return sum(ids), seen


def _client(messages: list[bytes], repeats: int = 5) -> dict[str, Any]:
    """The subscriber's parse and count per transaction, ``count_many`` against the two passes, alternating."""
    from common.pb.v1 import events_pb2, query_pb2
    from scripts.bench.filter_bench import count_many

    assert events_pb2.EVENT_KIND_TX_SEEN == 1
    parse = query_pb2.SubscribeManyResponse.FromString
    assert all(count_many(parse(m)) == _count_two_passes(parse(m)) for m in messages)
    txs = BATCHES * TX_PER_BATCH
    figures: dict[str, list[float]] = {"count_many": [], "two_passes": []}
    for _ in range(repeats):
        for name, count in (("count_many", count_many), ("two_passes", _count_two_passes)):
            started = time.process_time()
            for m in messages:
                count(parse(m))
            figures[name].append(round((time.process_time() - started) / txs * 1e6, 3))
    medians = {name: statistics.median(v) for name, v in figures.items()}
    return {"us_per_tx": figures, "median_us_per_tx": medians,
            "count_many_vs_two_passes": ratio(medians["count_many"], medians["two_passes"])}


def _block(root: Path | None, filters: int, rounds: int) -> dict[str, Any]:
    """One block in a child process, from ``root``'s packages (this tree's when None)."""
    # This file run by path (the other tree may not have it), its imports from that tree's packages.
    where, path = str(root or ROOT), str(Path(__file__).resolve())
    code = (f"import json, runpy, sys; sys.path.insert(0, {where!r}); m = runpy.run_path({path!r}); "
            f"r = m['_fanout_rounds']({filters}, {rounds}); r.pop('_messages'); print(json.dumps(r))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=root or ROOT,
                         env={**os.environ, "PYTHONPATH": str(root or ROOT)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> dict[str, Any]:
    trees = {"new": None, **({"old": Path(args.compare_root)} if args.compare_root else {})}
    blocks: list[dict[str, Any]] = []
    for b in range(args.blocks):
        order = list(trees) if b % 2 == 0 else list(trees)[::-1]
        for tree in order:
            blocks.append({"tree": tree, "block": b, **_block(trees[tree], args.filters, args.rounds)})
            print(f"block {b} {tree}: {blocks[-1]['median_us_per_tx']} us/tx, {blocks[-1]['messages']} messages",
                  flush=True)
    out: dict[str, Any] = {"filters": args.filters, "rounds": args.rounds, "tx_per_round": BATCHES * TX_PER_BATCH,
                           "blocks": blocks}
    for tree in trees:
        out[f"{tree}_median_us_per_tx"] = statistics.median(
            x for blk in blocks if blk["tree"] == tree for x in blk["us_per_tx"])
    if args.compare_root:
        pairs = [ratio(*(next(blk["median_us_per_tx"] for blk in blocks if blk["block"] == b and blk["tree"] == t)
                         for t in ("new", "old"))) for b in range(args.blocks)]
        out["compare_root"] = args.compare_root
        out["new_vs_old_per_block"] = pairs
        out["new_vs_old"] = ratio(out["new_median_us_per_tx"], out["old_median_us_per_tx"])
    out["client"] = _client(_fanout_rounds(args.filters, 1)["_messages"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--filters", type=int, default=1000)
    parser.add_argument("--blocks", type=int, default=3, help="blocks per tree (alternating order)")
    parser.add_argument("--rounds", type=int, default=8, help="measured rounds per block (after 2 of warm-up)")
    parser.add_argument("--compare-root", default=None, help="another checkout of mempulse, measured the same way")
    parser.add_argument("--out-name", default="many_fanout")
    args = parser.parse_args()
    results = run(args)
    path = write_artifact(args.out_name, results)
    print(json.dumps({k: v for k, v in results.items() if k != "blocks"}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
