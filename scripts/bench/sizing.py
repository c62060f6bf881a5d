"""Sizing figures for docs/operations.md: LMDB bytes per stored transaction, and processd's memory per chain.

    python -m scripts.bench.sizing                          # RSS per chain (1, 8, 32 chains), synthetic traffic
    python -m scripts.bench.sizing --log data/demo/lmdb     # bytes per stored tx of an existing log (e.g. the demo's)

Memory: for each chain count, a fresh processd (default flags: 2 analysis workers) stores ``--tx-per-chain``
synthetic transactions per chain (more than the read models' per-chain windows hold, 2,000), then the RSS of the
processd process and of its analysis workers is read from /proc. Bytes: the map in use ((last page + 1) x page
size) and the size of a compacted copy (what ``mempulse-backup`` writes), each divided by the transactions in the
log (its ``chain_seq`` entries). Prints one JSON object; writes nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lmdb

from common.testing.ingest_push import push_envelopes
from common.testing.netutil import free_port
from common.testing.synth import synthetic_envelopes
from scripts.bench.harness import REPO_ROOT


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon and RssFile (LMDB's mapped pages count here) of ``pid`` in KiB (empty when it is gone)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile"):
                out[name] = int(value.split()[0])
    except OSError:
        pass
    return out


def _mib(kib: dict[str, int]) -> dict[str, float]:
    return {name: round(value / 1024, 1) for name, value in kib.items()}


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def log_bytes(path: Path) -> dict[str, Any]:
    """Transactions, events, map bytes in use and compacted-copy bytes of the log in ``path``."""
    env = lmdb.open(str(path), readonly=True, lock=False, max_dbs=8)
    try:
        with env.begin() as txn:
            txs = txn.stat(env.open_db(b"chain_seq", txn=txn, create=False))["entries"]
            events = txn.stat(env.open_db(b"events", txn=txn, create=False))["entries"]
        in_use = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
        with tempfile.TemporaryDirectory() as tmp:
            env.copy(tmp, compact=True)
            compact = (Path(tmp) / "data.mdb").stat().st_size
    finally:
        env.close()
    return {"transactions": txs, "events": events, "map_bytes_in_use": in_use, "compacted_bytes": compact,
            "bytes_per_tx_in_use": round(in_use / max(txs, 1)), "bytes_per_tx_compacted": round(compact / max(txs, 1))}


def measure_chains(chains: int, tx_per_chain: int, workdir: Path) -> dict[str, Any]:
    """A fresh processd storing ``tx_per_chain`` transactions on each of ``chains`` chains; its RSS after."""
    port = free_port()
    data = workdir / f"chains-{chains}"
    log_path = workdir / f"processd-{chains}.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "processd", "--data-dir", str(data), "--listen",
                                 f"127.0.0.1:{port}"], cwd=REPO_ROOT, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        # the port is bound before the log and the analysis workers are ready: wait for the ready line
        deadline = time.monotonic() + 60
        while b"processd listening on" not in log_path.read_bytes():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"processd did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        idle = rss_kib(proc.pid)
        envelopes = synthetic_envelopes(chains * tx_per_chain, seed=chains, chain_ids=range(1, chains + 1))
        acks = asyncio.run(push_envelopes(f"127.0.0.1:{port}", envelopes, batch_size=100))
        stored = sum(a.accepted for a in acks)
        workers = children(proc.pid)
        out = {"chains": chains, "stored": stored, "processd_mib_idle": _mib(idle),
               "processd_mib": _mib(rss_kib(proc.pid)), "children_mib": [_mib(rss_kib(w)) for w in workers]}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    out["log"] = log_bytes(data)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chains", default="1,8,32", help="chain counts to measure (comma-separated)")
    p.add_argument("--tx-per-chain", type=int, default=3000)
    p.add_argument("--log", type=Path, help="only report bytes per stored tx of this existing (stopped) log")
    args = p.parse_args(argv)
    if args.log:
        print(json.dumps(log_bytes(args.log)))
        return 0
    with tempfile.TemporaryDirectory(prefix="sizing-") as tmp:
        runs = [measure_chains(int(c), args.tx_per_chain, Path(tmp)) for c in args.chains.split(",")]
    print(json.dumps({"load_average_1m": os.getloadavg()[0], "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
