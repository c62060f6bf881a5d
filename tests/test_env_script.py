"""scripts/_env.sh: the setup steps' output reaches a redirected stderr intact, and a failed pip stops setup."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _fake_root(tmp_path: Path, pip_exit: int) -> Path:
    """A project root whose .venv/bin/python is a stand-in for pip: prints like pip, exits ``pip_exit``."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "_env.sh", tmp_path / "scripts" / "_env.sh")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\necho 'Collecting something'\necho 'WARNING: Location mirror unreachable'\n"
                      f"echo 'pip says: done' >&2\nexit {pip_exit}\n")
    python.chmod(0o755)
    return tmp_path


@pytest.mark.parametrize("pip_exit", [0, 1])
def test_setup_output_survives_a_redirected_stderr(tmp_path: Path, pip_exit: int) -> None:
    root = _fake_root(tmp_path, pip_exit)
    err = tmp_path / "setup.err"
    with err.open("wb") as stderr:
        proc = subprocess.run(["bash", "-c", "source scripts/_env.sh; setup_venv; echo setup-finished"],
                              cwd=root, stdout=subprocess.PIPE, stderr=stderr, timeout=60)
    text = err.read_bytes()
    assert b"\0" not in text, text[:200]  # `tee /dev/stderr` truncated the file under the lines already written
    lines = text.decode().splitlines()
    assert lines[0].startswith("setup: pip install"), lines
    assert "Collecting something" in lines and "pip says: done" in lines
    assert not any(line.startswith("WARNING: Location") for line in lines)
    if pip_exit == 0:
        assert proc.returncode == 0 and proc.stdout == b"setup-finished\n"
        assert (root / ".venv" / ".mempulse-installed").exists()
    else:
        assert proc.returncode == 1 and b"setup-finished" not in proc.stdout
        assert lines[-1].startswith("error: pip install failed")
        assert not (root / ".venv" / ".mempulse-installed").exists()
