"""pyproject.toml: the runtime dependencies are what the daemons import; grpc/protobuf bounds fit the generated code.

The third-party imports of the runtime code (ingestd, processd, gatewayd and common's runtime modules: all of common
but the dev tooling in common/testing/) and of the dev tools that run on the runtime install (the demo and the
traffic generator, with the common/testing modules they import) are found by walking their source with ``ast``
(every ``import``, also the ones inside functions; ``if TYPE_CHECKING:`` blocks excluded), and mapped to
distributions with ``importlib.metadata.packages_distributions``. They must equal pyproject's runtime dependencies
less :data:`DELIBERATE_EXTRAS`, both ways: an import of a package that is not a runtime dependency breaks a
runtime-only install (``./scripts/demo`` installs ``pip install -e .`` without the dev extras), and a runtime
dependency nobody imports is weight for every install.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_PACKAGES = ("common", "ingestd", "processd", "gatewayd")
#: The dev tooling inside common: not runtime code, not in the wheel (tests/test_packaging.py).
DEV_TOOLING = ROOT / "common" / "testing"
#: Runtime code with an optional dependency group of its own: (source dir, extra). Its imports must be the runtime
#: dependencies plus exactly that extra (the daemons never import it, so a plain install runs without the extra).
EXTRA_PACKAGES = ((ROOT / "processd" / "export", "export"),)
#: Dev tools that run on the runtime install: ``./scripts/demo`` and ``scripts/generate`` (scripts/_env.sh, level
#: runtime).
RUNTIME_INSTALL_TOOLS = ("common.testing.demo", "common.testing.generate")

#: Runtime dependencies that no runtime module imports, on purpose (each says why in pyproject.toml).
DELIBERATE_EXTRAS = {
    "sniffio": "httpcore imports it on every async request; missing, each request pays a failed import",
    "uvloop": "Sanic runs its workers on uvloop when it is importable",
}


def _norm(name: str) -> str:
    """PEP 503 normalized distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(node: ast.AST) -> Iterator[str]:
    """Absolute module names imported anywhere under ``node``, skipping ``if TYPE_CHECKING:`` bodies."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import):
            yield from (alias.name for alias in child.names)
        elif isinstance(child, ast.ImportFrom):
            if child.level == 0 and child.module:
                yield child.module
                # ``from common import testing`` imports the module common.testing
                yield from (f"{child.module}.{alias.name}" for alias in child.names)
        elif isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield from _imports(other)
            continue
        yield from _imports(child)


def imports_of(path: Path) -> Iterator[str]:
    """Absolute module names imported by the source file ``path`` (see :func:`_imports`)."""
    return _imports(ast.parse(path.read_text(), str(path)))


def runtime_sources() -> list[Path]:
    """The source files of the runtime code: the runtime packages less common/testing/."""
    return [path for package in RUNTIME_PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
            if DEV_TOOLING not in path.parents]


def core_sources() -> list[Path]:
    """:func:`runtime_sources` less the :data:`EXTRA_PACKAGES` (what a plain ``pip install mempulse`` runs)."""
    extras = [src for src, _ in EXTRA_PACKAGES]
    return [path for path in runtime_sources() if not any(src in path.parents for src in extras)]


def _source_of(module: str) -> Path | None:
    """The file of one of our modules (``common.testing.stack`` -> common/testing/stack.py), None for others."""
    base = ROOT.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def runtime_install_sources() -> list[Path]:
    """:func:`runtime_sources` plus :data:`RUNTIME_INSTALL_TOOLS` and every common/testing module they import,
    directly or not (and common/testing/__init__.py, which importing any of them runs)."""
    todo = [path for module in RUNTIME_INSTALL_TOOLS if (path := _source_of(module))]
    assert len(todo) == len(RUNTIME_INSTALL_TOOLS), f"not found: {RUNTIME_INSTALL_TOOLS}"
    todo.append(DEV_TOOLING / "__init__.py")
    tools: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in tools:
            continue
        tools.add(path)
        todo.extend(dep for module in imports_of(path) if module.startswith("common.testing")
                    if (dep := _source_of(module)))
    return [*core_sources(), *sorted(tools)]


def third_party_imports(sources: list[Path] | None = None) -> dict[str, set[str]]:
    """Top-level third-party module name -> the runtime (and runtime-install tool) source files importing it
    (or the files of ``sources``)."""
    ours = {*RUNTIME_PACKAGES, "__future__"}
    found: dict[str, set[str]] = {}
    for path in runtime_install_sources() if sources is None else sources:
        for module in imports_of(path):
            top = module.partition(".")[0]
            if top not in sys.stdlib_module_names and top not in ours:
                found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def _pyproject() -> dict:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)


def runtime_requirements() -> dict[str, Requirement]:
    reqs = (Requirement(line) for line in _pyproject()["project"]["dependencies"])
    return {_norm(req.name): req for req in reqs}


def test_runtime_dependencies_are_what_the_runtime_packages_import() -> None:
    dists = packages_distributions()
    imported: dict[str, set[str]] = {}
    unmapped = []
    for module, files in third_party_imports().items():
        owners = dists.get(module)
        if not owners:
            unmapped.append(f"{module} (imported by {sorted(files)}) belongs to no installed distribution")
            continue
        # e.g. google -> protobuf; a namespace shared by several installed distributions would list them all
        for owner in owners:
            imported.setdefault(_norm(owner), set()).update(files)
    assert not unmapped, unmapped
    declared = runtime_requirements()
    extras = {_norm(name) for name in DELIBERATE_EXTRAS}
    missing = {dist: sorted(files) for dist, files in imported.items() if dist not in declared}
    assert not missing, f"imported by runtime code but not in pyproject's runtime dependencies: {missing}"
    unused = sorted(set(declared) - set(imported) - extras)
    assert not unused, f"runtime dependencies no runtime module imports (move to [dev] or drop): {unused}"
    assert extras <= set(declared), f"allow-listed extras that are no longer dependencies: {extras - set(declared)}"
    imported_extras = sorted(extras & set(imported))
    assert not imported_extras, f"now imported, so no longer deliberate extras: {imported_extras}"


def test_runtime_dependencies_have_compatible_ranges() -> None:
    """Each runtime dependency is ``>=x.y`` (the oldest we support) and ``<`` a major release above it (the next
    major after the newest one known to work; for a 0.x package, whose minors may break, a 0.y release): no exact
    pins, no open tops."""
    for name, req in runtime_requirements().items():
        ops = {spec.operator: Version(spec.version) for spec in req.specifier}
        assert set(ops) == {">=", "<"}, f"{name}: want '>=x.y,<next major', got '{req.specifier}'"
        low, high = ops[">="], ops["<"]
        if high.major == 0:
            assert len(high.release) == 2 and high > low, f"{name}: {high} is not a 0.x minor above {low}"
        else:
            assert high.release == (high.major,) and high.major > low.major, f"{name}: {high} is no major above {low}"


def _generated_versions() -> tuple[Version, Version]:
    """(protobuf gencode version, grpc generated version) of the committed code, the same in every file."""
    pb_dir = ROOT / "common" / "pb" / "v1"
    protobuf = {re.search(r"^# Protobuf Python Version: (\S+)$", p.read_text(), re.M).group(1)  # type: ignore[union-attr]
                for p in pb_dir.glob("*_pb2.py")}
    grpc = {re.search(r"^GRPC_GENERATED_VERSION = '([^']+)'$", p.read_text(), re.M).group(1)  # type: ignore[union-attr]
            for p in pb_dir.glob("*_pb2_grpc.py")}
    assert len(protobuf) == 1 and len(grpc) == 1, (protobuf, grpc)
    return Version(protobuf.pop()), Version(grpc.pop())


def test_grpc_and_protobuf_bounds_match_the_generated_code() -> None:
    """The generated code refuses an older runtime (protobuf checks the gencode version at import; the *_grpc.py
    files check grpcio), so each lower bound is exactly the generated version, and grpcio-tools is pinned to it."""
    protobuf_gen, grpc_gen = _generated_versions()
    runtime = runtime_requirements()

    def bounds(name: str) -> tuple[Version, Version]:
        ops = {spec.operator: Version(spec.version) for spec in runtime[name].specifier}
        return ops[">="], ops["<"]

    assert bounds("protobuf") == (protobuf_gen, Version(f"{protobuf_gen.major + 1}"))
    for name in ("grpcio", "grpcio-health-checking", "grpcio-reflection"):
        assert bounds(name)[0] == grpc_gen, f"{name} lower bound != generated grpc version {grpc_gen}"
    dev = {_norm(Requirement(line).name): Requirement(line) for line in _pyproject()["project"]["optional-dependencies"]
           ["dev"]}
    assert str(dev["grpcio-tools"].specifier) == f"=={grpc_gen}"


def _distributions(modules: dict[str, set[str]]) -> set[str]:
    dists = packages_distributions()
    missing = sorted(m for m in modules if not dists.get(m))
    assert not missing, f"imported but in no installed distribution: {missing}"
    return {_norm(owner) for module in modules for owner in dists[module]}


def test_each_extra_package_imports_the_runtime_dependencies_plus_its_extra() -> None:
    """processd/export imports clickhouse-driver, which only its ``export`` extra declares: an import of anything
    else would break ``pip install mempulse[export]``, and an extra nobody imports is dead weight."""
    optional = _pyproject()["project"]["optional-dependencies"]
    runtime = set(runtime_requirements())
    for src, extra in EXTRA_PACKAGES:
        declared = {_norm(Requirement(line).name) for line in optional[extra]}
        imported = _distributions(third_party_imports(sorted(src.rglob("*.py"))))
        assert imported - runtime == declared, (f"{src.name}: imports beyond the runtime dependencies "
                                                f"{sorted(imported - runtime)}, [{extra}] declares {sorted(declared)}")
        # the dev install (scripts/_env.sh level dev) has every extra, so the extra's code is tested
        assert f"mempulse[{extra}]" in optional["dev"], f"[dev] does not include mempulse[{extra}]"
