"""docs/processd.md's module table stays true: every module it names exists, and every module of processd's
rooms is in it (a package row such as ``analysis/decoding/`` covers the modules inside it)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROCESSD = ROOT / "processd"
DOC = ROOT / "docs" / "processd.md"


def table_entries(text: str) -> list[str]:
    """The backticked first cells of the table under ``## Modules``."""
    section = text.split("## Modules", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE)


def uncovered(entries: list[str], modules: list[str]) -> list[str]:
    """Modules (paths relative to processd/) that no table entry names or contains."""
    packages = tuple(e for e in entries if e.endswith("/"))
    return [m for m in modules if m not in entries and not m.startswith(packages)]


def processd_modules() -> list[str]:
    return sorted(str(p.relative_to(PROCESSD)) for p in PROCESSD.rglob("*.py")
                  if p.name not in ("__init__.py", "__main__.py"))


def test_every_entry_exists() -> None:
    entries = table_entries(DOC.read_text())
    assert len(entries) > 20
    assert [e for e in entries if not (PROCESSD / e).exists()] == []


def test_every_module_is_in_the_table() -> None:
    assert uncovered(table_entries(DOC.read_text()), processd_modules()) == []


def test_a_missing_module_is_named() -> None:
    doc = "## Modules\n\n| `a.py` | x |\n| `pkg/` | y |\n\n## Next\n| `b.py` | not in the table |\n"
    assert uncovered(table_entries(doc), ["a.py", "b.py", "pkg/c.py"]) == ["b.py"]
