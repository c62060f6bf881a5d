"""Checks benchmark artifacts against the committed performance budget (``scripts/perf_budget.json``).

    python -m scripts.bench.budget --mode short [--dir artifacts/perf/check] [--budget scripts/perf_budget.json]

The budget lists checks per mode. Each check names an artifact (``<dir>/<artifact>.json``), a dotted path
into its ``results`` (``*`` matches every key of a mapping, e.g. ``rss.*.anon_slope_mib_per_min_after_warmup``)
and a ``min`` and/or ``max`` bound, with ``why`` saying what the bound protects. Ratios measured in the same
run (pipeline / naive, full path / floor) are preferred; absolute times get wide margins because the
machine is shared. Exit status 0 when every check passes, 1 on a regression, 2 when an artifact or value a
required check needs is missing (the benchmark did not run or changed its output).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from scripts.bench.harness import ARTIFACT_DIR, REPO_ROOT

DEFAULT_BUDGET = REPO_ROOT / "scripts" / "perf_budget.json"


@dataclass(frozen=True)
class Outcome:
    """The result of one check on one value."""

    artifact: str
    path: str
    value: Any
    bound: str
    status: str  # "pass", "FAIL", "missing", "skipped"
    why: str


def resolve(doc: Any, path: str) -> list[tuple[str, Any]]:
    """Values at a dotted ``path`` in ``doc`` as (concrete path, value) pairs; ``*`` expands mapping keys
    and list indexes. Missing keys yield nothing."""
    found: list[tuple[str, Any]] = [("", doc)]
    for part in path.split("."):
        nxt: list[tuple[str, Any]] = []
        for prefix, node in found:
            join = (prefix + "." if prefix else "")
            if part == "*":
                if isinstance(node, dict):
                    nxt.extend((join + str(k), v) for k, v in node.items())
                elif isinstance(node, list):
                    nxt.extend((join + str(i), v) for i, v in enumerate(node))
            elif isinstance(node, dict) and part in node:
                nxt.append((join + part, node[part]))
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                nxt.append((join + part, node[int(part)]))
        found = nxt
    return found


def evaluate(check: dict[str, Any], artifacts_dir: Path) -> list[Outcome]:
    """Runs one budget check; one outcome per resolved value (or one ``missing``/``skipped`` outcome)."""
    name, path = check["artifact"], check["path"]
    lo, hi = check.get("min"), check.get("max")
    bound = " and ".join(x for x in (f">= {lo}" if lo is not None else "", f"<= {hi}" if hi is not None else "")
                         if x)
    why = check.get("why", "")
    optional = bool(check.get("optional", False))
    missing_status = "skipped" if optional else "missing"
    file = artifacts_dir / f"{name}.json"
    if not file.exists():
        return [Outcome(name, path, None, bound, missing_status, f"no artifact {file}")]
    results = orjson.loads(file.read_bytes()).get("results", {})
    values = [(p, v) for p, v in resolve(results, path) if v is not None]
    if not values:
        return [Outcome(name, path, None, bound, missing_status, f"no value at {path}")]
    outcomes = []
    for concrete, value in values:
        if isinstance(value, bool):  # a yes/no result (e.g. "complete") checks as 1/0
            value = int(value)
        if not isinstance(value, int | float):
            outcomes.append(Outcome(name, concrete, value, bound, "missing", "not a number"))
            continue
        ok = (lo is None or value >= lo) and (hi is None or value <= hi)
        outcomes.append(Outcome(name, concrete, value, bound, "pass" if ok else "FAIL", why))
    return outcomes


def check_budget(budget: dict[str, Any], mode: str, artifacts_dir: Path) -> list[Outcome]:
    """Every outcome of the ``mode`` checks of ``budget``."""
    checks = budget.get("modes", {}).get(mode)
    if checks is None:
        raise KeyError(f"budget has no mode {mode!r}; modes: {sorted(budget.get('modes', {}))}")
    return [o for check in checks for o in evaluate(check, artifacts_dir)]


def exit_status(outcomes: list[Outcome]) -> int:
    if any(o.status == "FAIL" for o in outcomes):
        return 1
    if any(o.status == "missing" for o in outcomes):
        return 2
    return 0


def format_report(outcomes: list[Outcome]) -> str:
    lines = [f"{'status':8} {'artifact':18} {'value':>12}  {'bound':18} path / why"]
    for o in outcomes:
        value = f"{o.value:.4g}" if isinstance(o.value, int | float) and not isinstance(o.value, bool) else str(o.value)
        lines.append(f"{o.status:8} {o.artifact:18} {value:>12}  {o.bound:18} {o.path}  ({o.why})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check benchmark artifacts against the performance budget.")
    parser.add_argument("--mode", default="short", help="budget mode (short or full)")
    parser.add_argument("--dir", type=Path, default=ARTIFACT_DIR, help="directory with the artifacts")
    parser.add_argument("--budget", type=Path, default=DEFAULT_BUDGET)
    args = parser.parse_args(argv)
    budget = orjson.loads(args.budget.read_bytes())
    outcomes = check_budget(budget, args.mode, args.dir)
    print(format_report(outcomes))
    status = exit_status(outcomes)
    print({0: "perf budget: OK", 1: "perf budget: REGRESSION (see FAIL lines)",
           2: "perf budget: missing results (see missing lines)"}[status])
    return status


if __name__ == "__main__":
    sys.exit(main())
