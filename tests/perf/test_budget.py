"""Tests of the performance budget checker and the README table renderer on hand-made artifacts."""

from __future__ import annotations

from pathlib import Path

import orjson

from scripts.bench.budget import DEFAULT_BUDGET, check_budget, exit_status, resolve
from scripts.bench.harness import write_artifact
from scripts.bench.render_table import ROWS, render


def test_resolve_with_wildcards() -> None:
    doc = {"rss": {"a": {"slope": 1.0}, "b": {"slope": 3.0}, "c": {}}, "steps": [{"x": 1}, {"x": 2}]}
    assert resolve(doc, "rss.*.slope") == [("rss.a.slope", 1.0), ("rss.b.slope", 3.0)]
    assert resolve(doc, "steps.1.x") == [("steps.1.x", 2)]
    assert resolve(doc, "steps.*.x") == [("steps.0.x", 1), ("steps.1.x", 2)]
    assert resolve(doc, "nope.x") == []


def _budget() -> dict:
    return {"modes": {"short": [
        {"artifact": "a", "path": "ratio", "min": 5},
        {"artifact": "a", "path": "rss.*.slope", "max": 2},
        {"artifact": "a", "path": "complete", "min": 1},
        {"artifact": "absent", "path": "x", "max": 1, "optional": True},
    ]}}


def test_budget_passes_fails_and_reports_missing(tmp_path: Path) -> None:
    write_artifact("a", {"ratio": 6.0, "rss": {"p": {"slope": 0.5}, "q": {"slope": 1.0}}, "complete": True},
                   directory=tmp_path)
    outcomes = check_budget(_budget(), "short", tmp_path)
    assert [o.status for o in outcomes] == ["pass", "pass", "pass", "pass", "skipped"]
    assert exit_status(outcomes) == 0

    write_artifact("a", {"ratio": 4.0, "rss": {"p": {"slope": 0.5}, "q": {"slope": 9.0}}, "complete": False},
                   directory=tmp_path)
    outcomes = check_budget(_budget(), "short", tmp_path)
    assert [o.status for o in outcomes] == ["FAIL", "pass", "FAIL", "FAIL", "skipped"]
    assert exit_status(outcomes) == 1

    write_artifact("a", {"rss": {}}, directory=tmp_path)
    outcomes = check_budget(_budget(), "short", tmp_path)
    assert exit_status(outcomes) == 2 and outcomes[0].status == "missing"


def test_committed_budget_is_valid() -> None:
    budget = orjson.loads(DEFAULT_BUDGET.read_bytes())
    for mode in ("short", "full"):
        for check in budget["modes"][mode]:
            assert {"artifact", "path", "why"} <= check.keys()
            assert "min" in check or "max" in check


def test_render_table_shows_values_and_missing(tmp_path: Path) -> None:
    write_artifact("pipeline", {"target_load": {"achieved_tx_s": 1234.5, "drop_ratio": 0.001,
                                                "ingest_to_visible_ms": {"p50": 12.3, "p99": 45.6, "max": 80}}},
                   directory=tmp_path)
    table = render(tmp_path)
    assert "| 1,234 |" in table or "| 1,235 |" in table
    assert "0.100%" in table and "45.6" in table
    assert table.count("not measured") == sum(1 for r in ROWS if r.artifact != "pipeline") + 2
    assert "perf_tx_pipeline_baseline.sh" in table
