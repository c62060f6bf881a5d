"""Integration tests of the benchmark drivers on a real processd: they must count every transaction they
claim to measure (work is checked, never time)."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.testing.synth import synthetic_envelopes
from scripts.bench.grpc_boundary import build_parser, node_json, run_grpc, run_inprocess
from scripts.bench.pipeline_bench import VisibleTail


@pytest.mark.integration
def test_boundary_variants_store_every_transaction(tmp_path: Path) -> None:
    args = build_parser().parse_args(["--window", "4"])
    args.chain_id_list = [1, 137]
    raw = node_json(synthetic_envelopes(600, seed=4242, chain_ids=[1, 137]))
    inproc = run_inprocess(raw, 100, args, tmp_path)
    grpc_ = run_grpc(raw, 100, args, tmp_path)  # a fresh processd: the same hashes are new to it
    for cell in (inproc, grpc_):
        assert cell.accepted == 600
        assert len(cell.latencies_ms) == 6  # one ack per batch
        assert cell.as_dict()["cpu_us_per_tx"] > 0


def test_visible_tail_reads_appended_lines_and_partial_writes(tmp_path: Path) -> None:
    path = tmp_path / "visible.txt"
    tail = VisibleTail(path)
    assert tail.poll() == 0  # no file yet
    path.write_text("1 0xAA 100 101 102000000\n2 0xbb 100 10")
    tail.poll()
    assert tail.seen == {"0xaa": (100, 101, 102000000)}
    with path.open("a") as fh:
        fh.write("5 103000000\n")
    tail.poll()
    assert tail.seen["0xbb"] == (100, 105, 103000000) and tail.last_seq == 2


@pytest.mark.integration
def test_ingest_locustfile_pushes_batches_that_processd_stores(tmp_path: Path) -> None:
    # The gRPC locustfile against a real processd: every batch acked in full, none failed.
    from common.testing.stack import Stack, StackConfig
    from scripts.bench.loadtest import INGEST_FILE, run_locust

    env = {"MEMPULSE_PERF_OUT": str(tmp_path), "MEMPULSE_LOADTEST_BATCH_SIZE": "50"}
    with Stack(StackConfig(chains=(), ingestd=False, gatewayd=False, metrics=False)) as stack:
        result = run_locust(INGEST_FILE, stack.processd_addr, users=2, run_time_s=10, prefix="locust_ingest", env=env)
        stored = stack.wait_for(lambda: _last_seq(stack.processd_addr), 10, "processd to answer GetSnapshot")
    row = result["by_name"].get("Ingest.Stream batch=50")
    assert row is not None, result
    assert result["exit_status"] == 0
    assert row["requests"] > 0 and row["failures"] == 0
    # Every acked envelope was stored: processd's log holds at least 50 events per acked batch.
    assert stored >= 50 * row["requests"]
    assert (tmp_path / "locust_ingest.html").exists()


def _last_seq(addr: str) -> int:
    import grpc

    from common.pb.v1 import query_pb2, query_pb2_grpc

    with grpc.insecure_channel(addr) as ch:
        return int(query_pb2_grpc.QueryStub(ch).GetSnapshot(query_pb2.GetSnapshotRequest(tx_limit=1)).last_seq_id)
