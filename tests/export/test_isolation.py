"""processd/export imports nothing of processd but itself (only ``common`` and third-party packages), so the
exporter deploys on any machine with the ``export`` extra, without processd's storage or analysis code."""

from __future__ import annotations

from pathlib import Path

from tests.test_dependencies import imports_of

ROOT = Path(__file__).resolve().parents[2]
EXPORT = ROOT / "processd" / "export"


def _our_imports(path: Path) -> set[str]:
    return {m for m in imports_of(path) if m.partition(".")[0] in ("processd", "ingestd", "gatewayd", "common")}


def test_export_imports_only_common_and_itself() -> None:
    found = {str(p.relative_to(ROOT)): sorted(m for m in _our_imports(p)
                                               if not m.startswith(("common", "processd.export")))
             for p in sorted(EXPORT.rglob("*.py"))}
    assert len(found) >= 8, found  # the walk saw the package
    offending = {path: mods for path, mods in found.items() if mods}
    assert not offending, f"processd/export must import only common and itself: {offending}"


def test_common_testing_is_not_imported_by_the_exporter() -> None:
    assert not any(m.startswith("common.testing") for p in EXPORT.rglob("*.py") for m in imports_of(p))
