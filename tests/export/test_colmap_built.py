"""The exporter's C page mapper is optional at install (no C compiler: the protobuf path), but where a compiler is
present the project's install must have built it: otherwise tests/export/test_colmap.py skips and CI would run the
exporter on the slower path without a word."""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path

import pytest

from processd.export import colmap


def test_the_c_mapper_is_built_where_a_compiler_and_headers_are() -> None:
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if shutil.which("cc") is None or not headers.exists():
        pytest.skip("no C compiler or no Python headers here: the protobuf mapper is the exporter's only path")
    assert colmap.available(), "processd/export/_colmap is not compiled: run `pip install -e .` (scripts/_env.sh)"
