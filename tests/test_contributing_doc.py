"""docs/contributing.md stays true: every repository path it names in backticks exists, and every name it gives as
``path.py::name`` (``path.py::Class.method``) is defined in that file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "contributing.md"

_CODE = re.compile(r"`([^`\n]+)`")
#: A relative path: segments of word characters, dots and dashes (a glob's ``*`` allowed), optionally ending in /.
_PATH = re.compile(r"^\.?[\w*][\w.*-]*(?:/[\w.*-]+)*/?$")
#: What a file name ends with, for a backticked name with no slash (``pyproject.toml``, ``.env.example``).
_FILE_SUFFIXES = (".py", ".md", ".proto", ".toml", ".json", ".yml", ".yaml", ".binpb", ".example", ".sh", ".service")


def _candidates(text: str) -> list[tuple[str, list[str]]]:
    """(path, names) of every backticked span that starts with something shaped like a repository path."""
    out: list[tuple[str, list[str]]] = []
    for span in _CODE.findall(text):
        word = span.split()[0] if span.split() else ""
        word = word.removeprefix("./")
        path, *names = word.split("::")
        path = path.split("#", 1)[0]
        if not _PATH.match(path):
            continue
        if "/" not in path and not path.startswith(".") and not path.endswith(_FILE_SUFFIXES):
            continue  # a module, a word, a value: not a path
        out.append((path, names))
    return out


def _problems(text: str, root: Path) -> list[str]:
    problems: list[str] = []
    for path, names in _candidates(text):
        matches = sorted(root.glob(path.rstrip("/"))) if "*" in path else [root / path.rstrip("/")]
        if not matches or not all(m.exists() for m in matches):
            problems.append(f"{path}: no such file or directory")
            continue
        if not names:
            continue
        source = matches[0].read_text()
        for name in (part for n in names for part in n.split(".")):
            if not re.search(rf"^\s*(?:async\s+def|def|class)\s+{re.escape(name)}\b|^\s*{re.escape(name)}\s*[:=]",
                             source, re.M):
                problems.append(f"{path}: defines no {name}")
    return problems


def test_every_path_and_name_on_the_page_exists() -> None:
    text = DOC.read_text()
    candidates = _candidates(text)
    assert len(candidates) > 60, "the page's paths were not found"
    assert not _problems(text, ROOT)


@pytest.mark.parametrize("planted", [
    "`processd/writr.py`",
    "`tests/processd/test_no_such_test.py`",
    "`proto/common/pb/v1/event.proto`",
    "`gatewayd/nothing/`",
    "`proto/common/pb/v1/*.protoc`",
    "`processd/analysis/features.py::encode_featurez`",
    "`processd/analysis/analyzer.py::Analyzer.analyze_fieldz`",
    "`.env.sample`",
])
def test_a_wrong_path_or_name_is_found(planted: str) -> None:
    assert _problems(DOC.read_text() + f"\nA planted mistake: {planted}.\n", ROOT)


def test_words_that_are_not_paths_are_left_alone() -> None:
    text = ("`common.pb.v1` `MEMPULSE_SKIP_PERF_GATE=1` `/transactions` `Message.field` `_ms` `ROUTES` "
            "`mempulse_<daemon>_*` `/etc/mempulse/*.env`")
    assert _candidates(text) == []
