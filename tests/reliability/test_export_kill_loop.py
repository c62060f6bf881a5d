"""kill -9 loop of the ClickHouse exporter: exactly once across crashes of the exporter and of ClickHouse.

While a resending client streams transactions (with blocks and pool states in every fourth batch, so every table
of the export goes through the kills) into a real processd, the exporter (``python -m processd.export``,
a subprocess) is SIGKILLed at random moments, and every other round ClickHouse itself is SIGKILLed and restarted
while the exporter runs (the exporter waits it out and resumes by itself). At the end a backfill run
(``--exit-at-head``) finishes the export, and every table equals the log per chain: the same (chain_id, seq)
rows, none twice even before merges, and the same with FINAL.

Short mode (default pytest run): 3 rounds. Long mode (scripts/reliability): 20, or
``MEMPULSE_RELIABILITY_EXPORT_KILLS``. Run twice: in-process, and with two batch worker processes
(``--map-workers 2``: two batches in flight, so a kill can leave rows of both past the cursor), whose workers must
die with each killed exporter (no orphan left inserting).
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

import pytest

from common.testing.clickhouse import ClickHouseServer
from common.testing.process import ManagedProcess, child_env, python_module_argv
from common.testing.procfs import descendants
from common.testing.synth import synthetic_envelopes
from tests.export._helpers import CHAINS, block_batch, check_export, log_events, pool_batch, require_clickhouse
from tests.reliability._support import ROOT, ProcessdProc, ResendingPusher, knob, wait_until, write_artifact

pytestmark = pytest.mark.integration

_RESUMED = re.compile(r"resuming at seq (\d+) \((\d+) rows past the cursor already stored\)")


def _exporter(proc: ProcessdProc, ch: ClickHouseServer, log_path: Path, *extra: str) -> ManagedProcess:
    argv = python_module_argv("processd.export", "--processd", proc.addr, "--clickhouse", ch.address,
                              "--database", "killed", "--batch-rows", "400", "--flush-interval-ms", "30", *extra)
    return ManagedProcess("export", argv, log_path, env=child_env({"MEMPULSE_EXPORT_RETRY_BACKOFF_MS": "100"}),
                          cwd=ROOT, stop_timeout_s=20)


def _gone(pids: list[int]) -> bool:
    return not any(Path(f"/proc/{pid}").exists() for pid in pids)


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("map_workers", [0, 2])
def test_export_kill9_loop_is_exactly_once(tmp_path: Path, map_workers: int) -> None:
    require_clickhouse()
    workers = ("--map-workers", str(map_workers))
    rounds = knob("export_kills", 3, 20)
    seed = knob("seed", 11, int(time.time()))
    rng = random.Random(seed)
    envelopes = synthetic_envelopes(600 * (rounds + 1), seed=seed, chain_ids=CHAINS)
    proc = ProcessdProc(tmp_path / "lmdb", tmp_path / "processd.log", "--flush-interval-ms", "2",
                        "--analysis-workers", "0")
    ch = ClickHouseServer(tmp_path / "clickhouse")
    exporter = _exporter(proc, ch, tmp_path / "export.log", *workers)
    batches = len(envelopes) // 50
    # paced so that the log grows during every round (each about 0.9 s plus restarts)
    pusher = ResendingPusher(proc.addr, envelopes, batch_size=50, max_inflight=4, pace_s=rounds * 1.2 / batches)
    for i, batch in enumerate(pusher.batches):
        if i % 4 == 0:  # blocks and pool states among the transactions: every table goes through the kills
            batch.blocks.extend(block_batch(batch.envelopes, i + 1).blocks)
            batch.pools.extend(pool_batch(i + 1, pairs=2).pools)
    ch_restarts = 0
    killed_with_children = 0  # rounds whose killed exporter had processes of its own (mapping workers)
    try:
        proc.start()
        ch.start()
        pusher.start()
        exporter.start(wait_ready=False)
        for i in range(rounds):
            # the kill lands while it exports (reading, mapping, inside an INSERT, between INSERTs), not while
            # Python imports
            wait_until(lambda: "resuming at seq" in exporter.output(), 60, "the exporter resuming",
                       alive=[exporter])
            if i == 0:
                # the first kill waits for a first batch (on a loaded machine the exporter and its worker can take
                # longer to start than every random delay below, and then no round would show a resume past seq 1)
                wait_until(lambda: ch.query("SELECT count() FROM killed.export_cursor")[0][0], 120,
                           "the exporter's first batch", alive=[exporter])
            time.sleep(rng.uniform(0.05, 0.6))
            if i % 2 == 1:  # ClickHouse dies mid-export; the exporter is left running through it
                assert ch.kill() == -9
                time.sleep(rng.uniform(0.0, 0.4))
                ch.start()
                ch_restarts += 1
                time.sleep(rng.uniform(0.0, 0.5))
            children = descendants(exporter.pid) if exporter.pid else []
            killed_with_children += bool(children)
            status = exporter.kill()
            assert status == -9, f"round {i}: the exporter exited with {status} before the kill:\n{exporter.log_tail()}"
            # its mapping workers (and multiprocessing's resource tracker) die with it
            wait_until(lambda pids=children: _gone(pids), 10,
                       f"round {i}: the killed exporter's processes {children} exiting")
            exporter.start(wait_ready=False)
        pusher.wait_done(120)
        exporter.kill()
        final = _exporter(proc, ch, tmp_path / "export.log", "--exit-at-head", *workers)
        final.start(wait_ready=False)
        assert final.wait(180) == 0, final.log_tail()
        events = log_events(proc.addr)
        assert {e.kind for e in events} >= {8, 10}, "no blocks or pool states in the log: their tables untested"
        check_export(ch.query, "killed", events)
        log_text = (tmp_path / "export.log").read_text()
        resumes = [(int(s), int(n)) for s, n in _RESUMED.findall(log_text)]
        partial = sum(1 for _, n in resumes if n)
        write_artifact("export_kill_loop" if not map_workers else "export_kill_loop_map_workers", {
            "seed": seed, "rounds": rounds, "map_workers": map_workers, "exporter_kills": rounds + 1,
            "clickhouse_kills": ch_restarts,
            "events": len(events), "block_and_pool_events": sum(1 for e in events if e.kind in (8, 10)),
            "resumes": len(resumes), "resumes_over_a_partly_written_batch": partial,
            "chains": len(CHAINS),
        })
        assert len(resumes) >= rounds + 1 and resumes[-1][0] > 1, resumes
        if map_workers:  # the orphan check above saw workers to check
            assert killed_with_children, "no round killed an exporter that had started its mapping workers"
    finally:
        pusher.stop()
        exporter.stop()
        proc.stop()
        ch.stop()
