"""Locust's CSV statistics (``--csv <prefix>`` writes ``<prefix>_stats.csv``) as plain numbers per request name:
read by the load-test runner (scripts/bench/loadtest.py), loadtests/loadtest_rest.py and the tests of the Locust
files."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


def _num(row: dict[str, str], key: str) -> float | None:
    try:
        return float(row[key])
    except (KeyError, ValueError):
        return None


def parse_stats_csv(path: Path) -> dict[str, dict[str, Any]]:
    """Locust's ``<prefix>_stats.csv`` -> {name: {requests, failures, rps, p50_ms, p99_ms, avg_ms}}."""
    out: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return out
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            name = row.get("Name") or ""
            out[name] = {
                "type": row.get("Type"),
                "requests": int(_num(row, "Request Count") or 0),
                "failures": int(_num(row, "Failure Count") or 0),
                "rps": _num(row, "Requests/s"),
                "avg_ms": _num(row, "Average Response Time"),
                "p50_ms": _num(row, "50%"),
                "p99_ms": _num(row, "99%"),
                "max_ms": _num(row, "Max Response Time"),
            }
    return out
