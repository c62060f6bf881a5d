"""No function of the runtime packages is longer than MAX_LINES (docs/contributing.md: small functions).

Runtime = what the wheel ships: ingestd/, processd/, gatewayd/ and common/ without common/testing/ (dev tooling)
and common/pb/ (generated). A function's length runs from its ``def`` line to its last line, nested functions
included (and counted again on their own).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ("common", "ingestd", "processd", "gatewayd")
NOT_RUNTIME = (ROOT / "common" / "testing", ROOT / "common" / "pb")
MAX_LINES = 80

# Functions allowed over the limit (none: add one only with a comment saying why it cannot be split).
ALLOWED: set[str] = set()


def function_lengths(root: Path = ROOT) -> dict[str, int]:
    """``path::name`` -> lines of every function and method of the runtime packages (the longest when a name
    repeats in a file)."""
    out: dict[str, int] = {}
    for package in RUNTIME:
        for path in sorted((root / package).rglob("*.py")):
            if any(path.is_relative_to(skip) for skip in NOT_RUNTIME):
                continue
            rel = path.relative_to(root).as_posix()
            for node in ast.walk(ast.parse(path.read_text(), filename=rel)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    key = f"{rel}::{node.name}"
                    length = (node.end_lineno or node.lineno) - node.lineno + 1
                    out[key] = max(out.get(key, 0), length)
    return out


def test_no_runtime_function_is_longer_than_the_limit() -> None:
    lengths = function_lengths()
    too_long = {name: n for name, n in lengths.items() if n > MAX_LINES and name not in ALLOWED}
    assert not too_long, f"functions over {MAX_LINES} lines (split them): {too_long}"


def test_the_allowlist_holds_only_functions_still_too_long() -> None:
    lengths = function_lengths()
    stale = {name: lengths.get(name) for name in ALLOWED if lengths.get(name, 0) <= MAX_LINES}
    assert not stale, f"split or gone, remove from ALLOWED in tests/test_function_size.py: {stale}"
