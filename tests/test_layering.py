"""processd's rooms import in one direction only (docs/architecture.md, "processd's rooms").

wire/ knows protobuf tag bytes and imports no other room; analysis/ (pure functions of a batch, run in worker
processes) may use wire/ but never storage/, views/ or api/, so a worker never loads LMDB or the read models;
storage/ owns the LMDB layout and imports neither analysis/ nor views/ nor api/; views/ read the log through
storage/'s read side (never the commit writer); api/ wires the rooms to gRPC, and the top-level ``pipeline``
drives a batch through them (prepare, commit, publish, ack). The test walks every module's
imports with ``ast``, so a new import across a wall fails here with the module and line that made it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROCESSD = ROOT / "processd"
ROOMS = ("wire", "analysis", "storage", "views", "api", "export")
# room -> rooms (and top-level modules) it may import; its own room is always allowed
ALLOWED: dict[str, set[str]] = {
    "wire": set(),
    # the ClickHouse exporter is a Query client that runs on any machine: common only (tests/export checks too)
    "export": set(),
    "analysis": {"wire", "errors"},
    "storage": {"wire", "errors", "config"},
    "views": {"storage", "wire", "errors"},
    "api": {"wire", "analysis", "storage", "views", "errors", "config", "metrics", "pipeline"},
}
# the ingest service is a thin adapter of the pipeline: it never touches the read models itself
NOT_FROM_INGEST_SERVICE = ("processd.views",)
# storage's layout module holds the key format and structs without importing LMDB: the analysis workers build
# keys with it (and must not load LMDB)
PURE_STORAGE = {"processd.storage.layout"}
# modules only the rooms/modules that drive a commit may import, whatever the room rules say
WRITE_SIDE = {"processd.storage.writer", "processd.storage.logwrite"}
WRITE_SIDE_USERS = {"api", "storage", "pipeline", "metrics", "__main__"}


def _imports(root: Path, path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` for every processd module one file imports (``from processd.x import y`` names
    ``processd.x.y`` when y is a submodule, else ``processd.x``)."""
    tree = ast.parse(path.read_text(), str(path))
    # Imports under ``if TYPE_CHECKING:`` load nothing at run time (a worker stays free of what they name): skipped.
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", getattr(block.test, "attr", None)) == "TYPE_CHECKING"
                   for stmt in block.body for n in ast.walk(stmt)}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "processd":
            subs = [f"{node.module}.{a.name}" for a in node.names if _is_module(root, f"{node.module}.{a.name}")]
            found.extend((node.lineno, module) for module in subs or [node.module])
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "processd")
    return found


def _room_of(module: str) -> str:
    """The room (or top-level module name) a dotted processd module belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _is_module(root: Path, module: str) -> bool:
    rel = Path(*module.split("."))
    return (root / rel).with_suffix(".py").exists() or (root / rel / "__init__.py").exists()


def crossings(package: Path = PROCESSD) -> list[str]:
    """Every import of ``package`` (processd's tree) that goes through a wall, as ``file:line imports module``."""
    root = package.parent
    bad: list[str] = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(root)
        src = rel.parts[1] if len(rel.parts) > 2 else rel.stem
        for line, module in _imports(root, path):
            dst = _room_of(module)
            where = f"{rel}:{line} imports {module}"
            if str(rel) == "processd/api/ingest_service.py" and module.startswith(NOT_FROM_INGEST_SERVICE):
                bad.append(where + " (the ingest service is the pipeline's adapter)")
            elif module in WRITE_SIDE and src not in WRITE_SIDE_USERS:
                bad.append(where + " (the commit writer's side)")
            elif module in PURE_STORAGE and src == "analysis":
                continue
            elif src in ALLOWED and dst and dst != src and dst not in ALLOWED[src]:
                bad.append(where)
    return bad


def test_rooms_import_in_one_direction() -> None:
    assert crossings() == []


def test_every_room_is_a_package_the_rules_name() -> None:
    rooms = {p.name for p in PROCESSD.iterdir() if (p / "__init__.py").exists()}
    assert rooms == set(ROOMS)


def test_planted_crossings_are_found(tmp_path: Path) -> None:
    """The walk sees a wall crossing and a write-side import (so an empty list above means something)."""
    for room in ROOMS:
        (tmp_path / "processd" / room).mkdir(parents=True)
        (tmp_path / "processd" / room / "__init__.py").write_text("")
    (tmp_path / "processd" / "storage" / "eventlog.py").write_text("")
    (tmp_path / "processd" / "storage" / "writer.py").write_text("")
    (tmp_path / "processd" / "wire" / "columns.py").write_text(
        "from processd.storage import eventlog\nif TYPE_CHECKING:\n    from processd.views import x\n")
    (tmp_path / "processd" / "views" / "readmodels.py").write_text(
        "from processd.storage.eventlog import X\nfrom processd.storage.writer import Y\n")
    assert crossings(tmp_path / "processd") == [
        "processd/views/readmodels.py:2 imports processd.storage.writer (the commit writer's side)",
        "processd/wire/columns.py:1 imports processd.storage.eventlog",
    ]
