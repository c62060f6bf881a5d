"""The code of an older revision, importable next to the working tree's, for old-vs-new benchmarks in one run.

- :func:`load_package` imports one package of a revision (``git show REV:path``) under another name, its own
  imports of that package rewritten to the new name (the rest, e.g. ``processd.errors``, stays the working
  tree's): e.g. the valuation of the base revision as ``baseline_valuation``, to time both on the same inputs.
- :func:`export_tree` writes a whole revision to a directory (``git archive``), for a subprocess that runs the
  old daemon (``PYTHONPATH`` / ``cwd`` on that tree).

Nothing here changes the repository or any worktree; the files go to a temporary directory.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path
from types import ModuleType

from scripts.bench.harness import REPO_ROOT


def _git(*args: str) -> bytes:
    return subprocess.run(["git", "-C", str(REPO_ROOT), *args], check=True, capture_output=True).stdout


def load_package(rev: str, package: str, alias: str) -> ModuleType:
    """Imports ``package`` (dotted, e.g. ``processd.analysis.valuation``) as it was at ``rev`` under the top-level
    name ``alias``; its modules are ``alias.<module>``."""
    path = package.replace(".", "/")
    names = [n for n in _git("ls-tree", "--name-only", f"{rev}:{path}").decode().split() if n.endswith(".py")]
    root = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
    (root / alias).mkdir()
    for name in names:
        text = _git("show", f"{rev}:{path}/{name}").decode()
        (root / alias / name).write_text(text.replace(package, alias))
    sys.path.insert(0, str(root))
    try:
        module = importlib.import_module(alias)
        for name in names:
            if name != "__init__.py":
                importlib.import_module(f"{alias}.{name[:-3]}")
    finally:
        sys.path.remove(str(root))
    return module


def export_tree(rev: str) -> Path:
    """The whole tree of ``rev`` in a new temporary directory (``git archive``)."""
    root = Path(tempfile.mkdtemp(prefix="bench-tree-"))
    with tarfile.open(fileobj=BytesIO(_git("archive", rev)), mode="r:") as tar:
        tar.extractall(root, filter="data")
    return root


def resolve(rev: str) -> str:
    """The short commit id of ``rev``."""
    return _git("rev-parse", "--short", rev).decode().strip()


def merge_base(a: str, b: str) -> str:
    """The merge base of two revisions."""
    return _git("merge-base", a, b).decode().strip()


def dirty() -> bool:
    """Whether the working tree has uncommitted changes to tracked files."""
    return bool(_git("status", "--porcelain", "--untracked-files=no").strip())
