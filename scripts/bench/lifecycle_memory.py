"""The lifecycle tracker's memory per tracked transaction (issue 16 follow-up), this tree's tracker against a base
revision's, in one run.

    python -m scripts.bench.lifecycle_memory [--n 200000] [--base HEAD] [--rounds 3] [--out-name lifecycle_memory]

Per variant (``new``: ``processd/storage/lifecycle.py`` of this tree; ``base``: the same file at ``--base``, loaded
from git as a module of its own), a fresh tracker with one chain tracks ``--n`` pending transactions, built as the
writer builds them (``LIFE_ROW.iter_unpack`` of packed rows, one :class:`Pending` tuple each, batches of 500 through
``pending_many``). Senders: three quarters of the transactions have a sender of their own, the rest come five nonces
per sender (mempools are mostly one transaction per sender, with some busy senders). Then 5 % of the tracked ones are
replaced by a pending transaction of the same (sender, nonce), so their originals are held (bug 19).

Figures:

* **bytes per entry** (tracked + held): the traced memory (``tracemalloc``) the tracker holds after the build
  (garbage collected, the inputs dropped), over the entries;
* **the split**, by structure: a walk of the chain's structures in a fixed order, each object counted once, by the
  first structure that reaches it (``pending`` the hash -> entry dict itself, ``entries`` the tracked entries and the
  objects they hold, ``by_sender`` the (sender, nonce) index, ``expiry`` the heap, ``order`` the tracking order,
  ``replaced`` / ``replaced_at`` the held ones and their index); shared immortal objects (small ints, bools, empty
  bytes) are not counted;
* **RSS**: the resident set's growth per entry over the same build, in a fresh process per variant (includes what
  the allocator cannot give back: the freed inputs leave holes in the arenas the kept objects share; a running
  processd reuses them for the next batches);
* **CPU** of the single writer's thread in the tracker (no tracemalloc): ``pending_many`` per tracked transaction,
  applying a block that includes 5,000 of them (per included transaction), and a block past the TTL expiring the
  rest (per expired transaction), each part timed from a fresh ``gc.collect()`` (which of the two variants meets
  a collection of the older generations in one block otherwise depends on how many containers it allocated before:
  noise of +-30 %), median of ``--rounds`` rounds, the
  variants alternating within each round, and the ratios new / base.

Writes ``artifacts/perf/<out-name>.json``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.util
import os
import subprocess
import sys
import time
import tracemalloc
from collections import deque
from pathlib import Path
from types import ModuleType
from typing import Any

from common.pb.v1 import block_pb2
from processd.storage.lifeengine import pendings_of_rows
from processd.wire.columns import LIFE_ROW
from scripts.bench.harness import ratio, write_artifact

ROOT = Path(__file__).resolve().parents[2]
MODULE = "processd/storage/lifecycle.py"
CHAIN = 137
BATCH = 500
T0 = 1_700_000_000
CPU_FIGURES = ("pending_many_us_per_tx", "apply_block_us_per_tx", "expire_us_per_tx")
#: The rows of :func:`rss_child` (made before its baseline).
packed_rows_cache: bytes | None = None
STRUCTURES = ("pending", "entries", "by_sender", "replaced", "replaced_at", "expiry", "order")


def load_tracker_module(base: str | None) -> ModuleType:
    """This tree's lifecycle module (``base`` None) or the file at git revision ``base``, as a separate module."""
    if base is None:
        import processd.storage.lifecycle as module
        return module
    source = subprocess.run(["git", "show", f"{base}:{MODULE}"], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout
    spec = importlib.util.spec_from_loader(f"_lifecycle_{base.replace('/', '_')}", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (dataclasses resolve annotations through sys.modules)
    exec(compile(source, f"{base}:{MODULE}", "exec"), module.__dict__)  # (our own file, at a revision)
    return module


def _sender(i: int, n: int) -> bytes:
    """Three quarters of the transactions: a sender each; the rest: five nonces per sender."""
    single = n * 3 // 4
    return ((i if i < single else n + (i - single) // 5) + 1).to_bytes(20, "big")


def _nonce(i: int, n: int) -> int:
    single = n * 3 // 4
    return 1000 + (0 if i < single else (i - single) % 5)


def packed_rows(n: int) -> bytes:
    """``LIFE_ROW`` s of ``n`` transactions (as the workers pack them)."""
    if packed_rows_cache is not None and len(packed_rows_cache) == n * LIFE_ROW.size:
        return packed_rows_cache
    return b"".join(LIFE_ROW.pack((i + 1).to_bytes(32, "big"), _sender(i, n), _nonce(i, n),
                                  (30_000_000_000 + i).to_bytes(32, "big"), (T0 - 60) * 10**9 + i * 1000, False)
                    for i in range(n))


def feed(module: ModuleType, tracker: Any, rows: bytes, first_seq: int) -> int:
    """Feeds the rows as the writer does (``LifeWriter.stored``: a Pending per row, ``pending_many`` per batch)."""
    new = functools.partial(tuple.__new__, module.Pending)  # (as lifewrite's _new_pending: a C-level constructor)
    unpacked = list(LIFE_ROW.iter_unpack(rows))
    offsets = range(len(unpacked))  # (seen_at: the seq of row t is first + t)
    seq = first_seq
    for b in range(0, len(unpacked), BATCH):
        positions = range(b, min(b + BATCH, len(unpacked)))
        if module.Pending._fields[0] == "seq":  # the base's order (seq, then a LIFE_ROW's fields), its writer's code
            txs = [new((seq - b + offsets[t], *unpacked[t], False)) for t in positions]
        else:  # this tree's construction (LifeWriter.stored's)
            txs = pendings_of_rows(unpacked, positions, seq - b, offsets)
        tracker.pending_many(CHAIN, txs)
        seq += len(txs)
    return seq


def _block(number: int, timestamp: int, rows: list[tuple[bytes, bytes, int]]) -> block_pb2.BlockEnvelope:
    return block_pb2.BlockEnvelope(
        chain_id=CHAIN, number=number, hash=number.to_bytes(4, "big") * 8, parent_hash=b"\x01" * 32,
        timestamp=timestamp, txs=[block_pb2.IncludedTx(hash=h, index=i, sender=s, nonce=nonce,
                                                       status=block_pb2.TX_STATUS_OK)
                                  for i, (h, s, nonce) in enumerate(rows)])


def build(module: ModuleType, n: int) -> tuple[Any, int]:
    """A tracker holding ``n`` tracked transactions, 5 % of them replaced (the originals held)."""
    tracker = module.LifecycleTracker(max_pending=2 * n)
    tracker.block(_block(1, T0 - 120, []), 1)
    seq = feed(module, tracker, packed_rows(n), 2)
    replaced = n // 20
    # replacements: the same (sender, nonce) as the first ``replaced`` single-sender ones, another hash, higher fee
    rows = b"".join(LIFE_ROW.pack((10**9 + i).to_bytes(32, "big"), _sender(i, n), _nonce(i, n),
                                  (40_000_000_000 + i).to_bytes(32, "big"), (T0 - 30) * 10**9 + i, False)
                    for i in range(replaced))
    feed(module, tracker, rows, seq)
    assert (tracker.tracked, tracker.held) == (n, replaced), (tracker.tracked, tracker.held)
    return tracker, n + replaced


_IMMORTAL = {id(x) for x in (True, False, None, b"", *range(-5, 257))}


def _deep(obj: Any, seen: set[int]) -> int:
    """Bytes of ``obj`` and what it references (containers, tuples), objects in ``seen`` not counted again."""
    total = 0
    stack = [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen or id(o) in _IMMORTAL:
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, (tuple, list, deque, set, frozenset)):
            stack.extend(o)
    return total


def split(tracker: Any) -> dict[str, int]:
    """Bytes per structure of the chain's state (module doc: each object counted by the first structure)."""
    life = tracker.chains[CHAIN]
    seen: set[int] = set()
    out = {"pending": sys.getsizeof(life.pending)}
    seen.add(id(life.pending))
    out["entries"] = sum(_deep(k, seen) + _deep(v, seen) for k, v in life.pending.items())
    for name in STRUCTURES[2:]:
        out[name] = _deep(getattr(life, name), seen)
    return out


def memory(module: ModuleType, n: int) -> dict[str, Any]:
    """Traced bytes the tracker holds per entry, and the split."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tracker, entries = build(module, n)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    parts = split(tracker)
    del tracker
    gc.collect()
    return {"entries": entries, "traced_bytes": held, "bytes_per_entry": round(held / entries, 1),
            "split_bytes_per_entry": {k: round(v / entries, 1) for k, v in parts.items()},
            "split_total_bytes_per_entry": round(sum(parts.values()) / entries, 1),
            "projected_mb_at_200000": round(held / entries * 200_000 / 1e6, 1)}


def cpu(module: ModuleType, n: int, block_n: int = 5000) -> dict[str, float]:
    """Writer-thread CPU in the tracker: pending_many per transaction, a block of ``block_n`` per included one, a
    block past the TTL per expired one."""
    rows = packed_rows(n)
    tracker = module.LifecycleTracker(max_pending=2 * n)
    tracker.block(_block(1, T0 - 120, []), 1)
    gc.collect()  # (each timed part starts from an empty young generation: the collections in it are its own)
    started = time.process_time()
    seq = feed(module, tracker, rows, 2)
    pending_s = time.process_time() - started
    listed = [(r[0], r[1], r[2]) for r in LIFE_ROW.iter_unpack(rows[:block_n * LIFE_ROW.size])]
    block = _block(2, T0, listed)
    gc.collect()
    started = time.process_time()
    outcome = tracker.block(block, seq)
    block_s = time.process_time() - started
    assert outcome.included_tracked == block_n
    gc.collect()
    started = time.process_time()  # the rest expire (the heap popped in first-seen order)
    outcome = tracker.block(_block(3, T0 + 7200, []), seq + 1)
    expire_s = time.process_time() - started
    assert len(outcome.events) == n - block_n and tracker.tracked == 0
    return {"pending_many_us_per_tx": round(pending_s / n * 1e6, 3),
            "apply_block_us_per_tx": round(block_s / block_n * 1e6, 3),
            "expire_us_per_tx": round(expire_s / (n - block_n) * 1e6, 3)}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_child(base: str | None, n: int) -> float:
    """In a fresh process (``--rss-child``): the resident set's growth per entry over :func:`build` (its inputs
    packed, and their unpacked rows allocated and freed once, before the baseline)."""
    module = load_tracker_module(base)
    rows = packed_rows(n)
    junk = list(LIFE_ROW.iter_unpack(rows))
    del junk
    global packed_rows_cache
    packed_rows_cache = rows
    gc.collect()
    before = _rss_bytes()
    _tracker, entries = build(module, n)  # (kept alive by the name until the reading below)
    gc.collect()
    return round((_rss_bytes() - before) / entries, 1)


def rss(base: str | None, n: int) -> float:
    """:func:`rss_child` of ``base`` (None: this tree) in a subprocess."""
    out = subprocess.run([sys.executable, "-m", "scripts.bench.lifecycle_memory", "--rss-child", base or "",
                          "--n", str(n)], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return float(out.split()[-1])


def _median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--base", default="HEAD")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpu-n", type=int, default=50_000)
    parser.add_argument("--out-name", default="lifecycle_memory")
    parser.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child is not None:
        print(rss_child(args.rss_child or None, args.n))
        return 0
    from common.gctune import tune_gc
    tune_gc()  # (processd's collector settings)
    variants = {"base": load_tracker_module(args.base), "new": load_tracker_module(None)}
    results: dict[str, Any] = {"n": args.n, "base": args.base, "memory": {}, "cpu_rounds": []}
    for name, module in variants.items():
        results["memory"][name] = memory(module, args.n)
        results["memory"][name]["rss_bytes_per_entry"] = rss(args.base if name == "base" else None, args.n)
        print(name, results["memory"][name], flush=True)
    for _ in range(args.rounds):
        row = {name: cpu(module, args.cpu_n) for name, module in variants.items()}
        results["cpu_rounds"].append(row)
        print(row, flush=True)
    results["cpu"] = {name: {k: _median([r[name][k] for r in results["cpu_rounds"]])
                             for k in CPU_FIGURES} for name in variants}
    base, new = results["memory"]["base"], results["memory"]["new"]
    results["bytes_per_entry_ratio"] = ratio(new["bytes_per_entry"], base["bytes_per_entry"])
    results["cpu_ratio"] = {k: ratio(results["cpu"]["new"][k], results["cpu"]["base"][k])
                            for k in CPU_FIGURES}
    path = write_artifact(args.out_name, results)
    print(f"wrote {path}: bytes/entry {base['bytes_per_entry']} -> {new['bytes_per_entry']},"
          f" cpu {results['cpu_ratio']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
