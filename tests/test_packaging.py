"""The built wheel holds what the daemons run on and nothing else, and the runtime code never reaches the dev tooling.

The wheel is built with ``pip wheel`` from a copy of the source tree (a stale ``build/`` or ``*.egg-info`` of this
checkout cannot change what it holds; ``--no-build-isolation``: setuptools is installed with the runtime, Sanic and
grpcio-tools require it, so the build needs no package index). Its files must be exactly the daemons' packages,
common's runtime modules and the generated code with its ``.pyi`` stubs (plus the dist-info): common/testing/ (the
dev tooling: stack supervisor, fault proxy, demo, the mainnet-call fixtures, ...), tests/, scripts/ and loadtests/
are not in it; they are used from the source tree with the editable install. The import walk checks the other side:
no runtime module imports common.testing, scripts, tests or loadtests, so the wheel alone runs the daemons; common
(common/testing included) imports no daemon; and no test outside tests/perf/ (the tests of the bench tools, see its
README) imports scripts.
"""

from __future__ import annotations

import ast
import configparser
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.test_dependencies import DEV_TOOLING, ROOT, imports_of, runtime_sources

#: Local state that is never a source, wherever it is.
_NOT_SOURCES = {".git", ".venv", ".tools", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis"}
#: Build output and run-time data at the top of the checkout.
_NOT_SOURCES_AT_TOP = {"build", "dist", "artifacts", "data"}
DAEMONS = ("ingestd", "processd", "gatewayd")


def _ignore(directory: str, names: list[str]) -> set[str]:
    top = Path(directory) == ROOT
    return {name for name in names
            if name in _NOT_SOURCES or name.endswith(".egg-info") or (top and name in _NOT_SOURCES_AT_TOP)}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "mempulse"
    shutil.copytree(ROOT, source, ignore=_ignore, symlinks=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "--disable-pip-version-check", "-q", str(source), "-w", str(work / "dist")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (built,) = (work / "dist").glob("mempulse-*.whl")
    return built


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_wheel_holds_the_runtime_and_nothing_else(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = configparser.ConfigParser()
        scripts.read_string(zf.read(entry_points).decode())
    files = {name for name in names if not name.partition("/")[0].endswith(".dist-info")}
    runtime = {_rel(path) for path in runtime_sources()} | {_rel(p) for p in (ROOT / "common" / "pb").rglob("*.pyi")}
    # the C extensions, compiled (processd/export/_colmap.c: optional, and here a compiler is there to build it)
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    runtime |= {_rel(c.with_name(c.stem + suffix)) for package in DAEMONS for c in (ROOT / package).rglob("*.c")}
    assert not runtime - files, f"runtime files missing from the wheel: {sorted(runtime - files)}"
    assert not files - runtime, f"files in the wheel that the daemons do not run: {sorted(files - runtime)}"
    # what that equality means, spelled out
    assert {"common/chains.py", "common/rawtx.py", "common/pb/v1/tx_pb2.py", "common/pb/v1/tx_pb2.pyi",
            f"processd/export/_colmap{suffix}", *(f"{daemon}/__main__.py" for daemon in DAEMONS)} <= files
    dev = sorted(name for name in files
                 if name.startswith(("common/testing/", "tests/", "scripts/", "loadtests/")) or name.endswith(".jsonl"))
    assert not dev, dev
    # every console script's module is in the wheel
    targets = dict(scripts["console_scripts"])
    assert set(targets) == {*DAEMONS, "mempulse-backup", "mempulse-export"}, targets
    for target in targets.values():
        assert target.partition(":")[0].replace(".", "/") + ".py" in files, target


def _reaching(paths: list[Path], prefixes: tuple[str, ...]) -> dict[str, list[str]]:
    """Source file -> the modules it imports that are one of ``prefixes`` or inside one."""
    found = {_rel(path): sorted({m for m in imports_of(path) if m.startswith(prefixes) or f"{m}." in prefixes})
             for path in paths}
    return {path: modules for path, modules in found.items() if modules}


def test_runtime_code_never_imports_the_dev_tooling() -> None:
    sources = runtime_sources()
    assert DEV_TOOLING / "stack.py" not in sources and ROOT / "processd" / "storage" / "writer.py" in sources
    # the walk reads absolute imports; runtime code has no other kind
    relative = [_rel(path) for path in sources if any(isinstance(node, ast.ImportFrom) and node.level
                                                       for node in ast.walk(ast.parse(path.read_text())))]
    assert not relative, relative
    assert not _reaching(sources, ("common.testing.", "scripts.", "tests.", "loadtests."))
    # the walk sees such imports where they are
    stack = _reaching([DEV_TOOLING / "stack.py"], ("common.testing.",))
    assert "common.testing.anvil" in stack["common/testing/stack.py"], stack


def test_common_imports_no_daemon() -> None:
    sources = sorted((ROOT / "common").rglob("*.py"))
    assert not _reaching(sources, tuple(f"{top}." for top in (*DAEMONS, "scripts", "tests", "loadtests")))


def test_only_the_tests_of_the_bench_tools_import_scripts() -> None:
    perf = ROOT / "tests" / "perf"
    sources = [path for path in sorted((ROOT / "tests").rglob("*.py")) if perf not in path.parents]
    assert not _reaching(sources, ("scripts.",))
    assert _reaching(sorted(perf.glob("*.py")), ("scripts.",)), "tests/perf/ is where the bench tools are tested"
