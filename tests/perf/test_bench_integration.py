"""Integration tests of the benchmark drivers on a real processd: they must count every transaction they
claim to measure (work is checked, never time)."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.synth import synthetic_envelopes
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
