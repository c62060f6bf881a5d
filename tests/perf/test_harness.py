"""Tests of the benchmark harness helpers (statistics, RSS sampling, rate search, artifacts)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.testing.procfs import cpu_seconds, descendants
from scripts.bench.harness import (
    RssSampler,
    StepResult,
    linear_slope,
    percentile,
    read_artifact,
    stepped_rate_search,
    summarize,
    tree_cpu_seconds,
    write_artifact,
)


def test_percentile_matches_linear_interpolation() -> None:
    data = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentile(data, 0) == 1.0
    assert percentile(data, 50) == 3.0
    assert percentile(data, 100) == 5.0
    assert percentile(data, 25) == 2.0
    assert percentile([1.0, 2.0], 50) == 1.5
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(data, 101)


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1, max_size=200))
def test_percentiles_are_ordered_and_bounded(values: list[float]) -> None:
    p50, p99 = percentile(values, 50), percentile(values, 99)
    assert min(values) <= p50 <= p99 <= max(values)


def test_summarize_and_empty() -> None:
    s = summarize([float(i) for i in range(1, 101)])
    assert s["n"] == 100 and s["max"] == 100.0 and s["p50"] == 50.5
    assert summarize([])["p99"] is None


def test_linear_slope() -> None:
    xs = [0.0, 1.0, 2.0, 3.0]
    assert linear_slope(xs, [2 * x + 1 for x in xs]) == pytest.approx(2.0)
    assert linear_slope(xs, [7.0] * 4) == 0.0
    assert linear_slope([1.0], [1.0]) == 0.0


def test_rss_sampler_sees_growth_of_a_child() -> None:
    # A child that allocates 8 MiB every 50 ms: the sampler must report a clearly positive slope.
    code = "import time\nblocks=[]\nfor _ in range(40):\n    blocks.append(bytearray(8<<20)); time.sleep(0.05)\n"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        with RssSampler({"child": proc.pid}, interval_s=0.1) as sampler:
            proc.wait(timeout=30)
        summary = sampler.summary(warmup_fraction=0.0)["child"]
    finally:
        proc.kill()
        proc.wait()
    assert summary["samples"] >= 5
    assert summary["max_mib"] > summary["start_mib"] + 50
    assert summary["slope_mib_per_min_after_warmup"] > 0
    assert summary["anon_slope_mib_per_min_after_warmup"] > 0
    assert summary["max_anon_mib"] > 200


def _fake_system(capacity: float):
    def run(rate: float) -> StepResult:
        accepted = int(rate * 10)
        delivered = accepted if rate <= capacity else int(capacity * 10)
        return StepResult(rate, offered=accepted, accepted=accepted, delivered=delivered, duration_s=10.0)
    return run


def test_stepped_rate_search_stops_at_first_lossy_step() -> None:
    result = stepped_rate_search(_fake_system(capacity=300), [400, 100, 200, 800])
    assert result["best_target_rate"] == 200
    assert [s["target_rate"] for s in result["steps"]] == [100, 200, 400]
    assert "drop ratio" in result["stop_reason"]


def test_stepped_rate_search_stops_when_source_saturates() -> None:
    def run(rate: float) -> StepResult:
        accepted = int(min(rate, 150) * 10)
        return StepResult(rate, offered=int(rate * 10), accepted=accepted, delivered=accepted, duration_s=10.0)
    result = stepped_rate_search(run, [100, 200, 400, 800])
    assert result["best_target_rate"] == 400
    assert "saturated" in result["stop_reason"]


def test_artifact_roundtrip(tmp_path: Path) -> None:
    path = write_artifact("unit", {"x": 1.5, "nested": {"a": [1, 2]}}, directory=tmp_path, mode="short")
    assert path == tmp_path / "unit.json"
    doc = read_artifact(path)
    assert doc["results"] == {"x": 1.5, "nested": {"a": [1, 2]}}
    assert doc["mode"] == "short" and doc["machine"]["cpu_count"] == os.cpu_count()
    with pytest.raises(ValueError):
        write_artifact("../escape", {}, directory=tmp_path)


def test_tree_sampling_counts_the_child_a_launcher_runs() -> None:
    # Like anvil's npm launcher: the parent is small, the child it runs holds the memory.
    child = "import time; b = bytearray(96 << 20); time.sleep(3)"
    proc = subprocess.Popen(["/bin/sh", "-c", f'"{sys.executable}" -c "{child}"; true'])
    try:
        time.sleep(1.5)
        assert descendants(proc.pid), "the shell's child should be visible in /proc"
        sampler = RssSampler({}, interval_s=0.1)
        sampler.add("flat", proc.pid)
        sampler.add("tree", proc.pid, tree=True)
        with sampler:
            time.sleep(0.3)
        summary = sampler.summary(warmup_fraction=0.0)
    finally:
        proc.kill()
        proc.wait()
    assert summary["tree"]["max_mib"] > 90 > summary["flat"]["max_mib"]


def test_tree_cpu_counts_the_workers_of_a_process() -> None:
    """Issue 20: the ingest benchmark read processd's main PID only and missed its analysis workers' CPU."""
    worker = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass\ntime.sleep(5)"
    proc = subprocess.Popen(["/bin/sh", "-c", f"'{sys.executable}' -c '{worker}'; true"])
    try:
        deadline = time.monotonic() + 10
        while (tree_cpu_seconds(proc.pid) or 0.0) < 0.6 and time.monotonic() < deadline:
            time.sleep(0.1)
        main, tree = cpu_seconds(proc.pid), tree_cpu_seconds(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert main is not None and tree is not None
    assert tree >= 0.6 > main  # the busy child's CPU is in the tree figure, not in the parent's
