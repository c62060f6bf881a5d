"""scripts/_env.sh: the setup steps' output reaches a redirected stderr intact, the project is installed with uv
(bootstrapped with pip) and with pip when uv fails, a failed install stops setup, and the
runtime/dev/bench levels share one venv (the demo installs the runtime only; the test command adds the dev extras;
the benchmarks that compare with web3.py add the bench extras),
and the deploy kit's tools are installed with apt-get as root, or left out with a message."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _fake_root(tmp_path: Path, pip_exit: int, uv_exit: int | None = None) -> Path:
    """A project root whose .venv/bin/python is a stand-in for pip and uv: prints like them, exits ``pip_exit``
    (``uv_exit`` for ``-m uv``, default ``pip_exit``)."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "_env.sh", tmp_path / "scripts" / "_env.sh")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    # records each call's arguments (one line per pip run) in pip-calls beside the venv
    python.write_text("#!/bin/sh\necho \"$*\" >> \"$(dirname \"$0\")/../../pip-calls\"\n"
                      "echo 'Collecting something'\necho 'WARNING: Location mirror unreachable'\n"
                      "echo 'Requirement already satisfied: x in ./.venv'\n"
                      f"echo 'pip says: done' >&2\n"
                      f"[ \"$2\" = uv ] && exit {pip_exit if uv_exit is None else uv_exit}\nexit {pip_exit}\n")
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
    assert lines[0].startswith("setup: install"), lines
    assert "Collecting something" in lines and "pip says: done" in lines
    assert not any(line.startswith(("WARNING: Location", "Requirement already")) for line in lines)
    if pip_exit == 0:
        assert proc.returncode == 0 and proc.stdout == b"setup-finished\n"
        assert (root / ".venv" / ".mempulse-installed").exists()
    else:
        assert proc.returncode == 1 and b"setup-finished" not in proc.stdout
        assert lines[-1].startswith("error: install failed")
        assert not (root / ".venv" / ".mempulse-installed").exists()


def _setup(root: Path, level: str) -> list[str]:
    """Runs ``setup_venv LEVEL`` in ``root``; returns the project install command lines it ran (uv's, or pip's
    when uv failed; not the bootstrap of uv)."""
    calls = root / "pip-calls"
    calls.unlink(missing_ok=True)
    subprocess.run(["bash", "-c", f"source scripts/_env.sh; setup_venv {level}"], cwd=root, check=True,
                   capture_output=True, timeout=60)
    lines = calls.read_text().splitlines() if calls.exists() else []
    return [line for line in lines if not line.endswith(" uv")]


def test_runtime_and_dev_levels_share_one_venv(tmp_path: Path) -> None:
    root = _fake_root(tmp_path, 0)
    # the demo: the runtime only, with pip's progress lines (no -q)
    (call,) = _setup(root, "runtime")
    assert call == f"-m uv pip install --python {root}/.venv/bin/python -e {root}", call
    assert " -q" not in call
    assert _setup(root, "runtime") == []  # a second demo installs nothing
    # the test command after the demo adds the dev extras to the same venv
    (call,) = _setup(root, "dev")
    assert call.endswith(f"-e {root}[dev]"), call
    assert _setup(root, "dev") == []
    assert _setup(root, "runtime") == []  # a demo after the tests reinstalls nothing
    # a changed pyproject.toml installs again, at the level asked for
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\nversion = '2'\n")
    (call,) = _setup(root, "runtime")
    assert not call.endswith("[dev]")
    (call,) = _setup(root, "dev")
    assert call.endswith("[dev]")
    # a stamp from before the levels (the hash alone) was written by a dev install
    stamp = root / ".venv" / ".mempulse-installed"
    stamp.write_text(stamp.read_text().split()[0] + "\n")
    assert _setup(root, "dev") == []
    # the bench level adds the bench extras on top of the dev ones; lower levels after it install nothing
    (call,) = _setup(root, "bench")
    assert call.endswith(f"-e {root}[dev,bench]"), call
    assert _setup(root, "bench") == [] and _setup(root, "dev") == [] and _setup(root, "runtime") == []



def test_pip_installs_when_uv_fails(tmp_path: Path) -> None:
    root = _fake_root(tmp_path, 0, uv_exit=1)
    calls = root / "pip-calls"
    proc = subprocess.run(["bash", "-c", "source scripts/_env.sh; setup_venv dev"], cwd=root, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    bootstrap, uv, pip = calls.read_text().splitlines()
    assert bootstrap == "-m pip install -q --disable-pip-version-check uv"
    assert uv.startswith("-m uv pip install") and uv.endswith(f"-e {root}[dev]")
    assert pip == f"-m pip install --disable-pip-version-check -e {root}[dev]"
    assert "uv could not install; trying pip" in proc.stderr
    assert (root / ".venv" / ".mempulse-installed").read_text().split()[1] == "dev"


def _deploy_tools_run(tmp_path: Path, uid: int,
                      apt_exit: int | None) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """setup_deploy_tools on a PATH without promtool/systemd-analyze, with a fake ``id`` (uid) and, unless
    ``apt_exit`` is None, a fake apt-get that logs its arguments and exits ``apt_exit``."""
    root = _fake_root(tmp_path, 0)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dirname").symlink_to(shutil.which("dirname") or "/usr/bin/dirname")
    fakes = {"id": f"#!/bin/sh\necho {uid}\n"}
    if apt_exit is not None:
        fakes["apt-get"] = f'#!/bin/sh\necho "$*" >> {tmp_path}/apt.log\nexit {apt_exit}\n'
    for name, text in fakes.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    bash = shutil.which("bash") or "/bin/bash"
    proc = subprocess.run([bash, "-c", "source scripts/_env.sh; setup_deploy_tools; echo setup-finished"], cwd=root,
                          env={"PATH": str(bin_dir)}, capture_output=True, text=True, timeout=60)
    log = tmp_path / "apt.log"
    return proc, log.read_text().splitlines() if log.exists() else []


def test_deploy_tools_without_root_are_not_installed_and_setup_goes_on(tmp_path: Path) -> None:
    proc, calls = _deploy_tools_run(tmp_path, uid=1000, apt_exit=0)
    assert proc.returncode == 0 and proc.stdout == "setup-finished\n" and calls == []
    assert "no root/apt-get to install prometheus systemd" in proc.stderr and "CI=true" in proc.stderr


@pytest.mark.parametrize("apt_exit", [0, 100])
def test_deploy_tools_are_installed_with_apt_get_as_root(tmp_path: Path, apt_exit: int) -> None:
    proc, calls = _deploy_tools_run(tmp_path, uid=0, apt_exit=apt_exit)
    assert proc.returncode == 0 and proc.stdout == "setup-finished\n", proc.stderr
    install = "-q -y -o DPkg::Lock::Timeout=120 install --no-install-recommends prometheus systemd"
    if apt_exit == 0:
        assert calls == [install]
    else:  # no package lists yet, or a mirror problem: update once, retry, say so, and let the tests fail
        assert calls == [install, "-q -o DPkg::Lock::Timeout=120 update", install]
        assert "apt-get install prometheus systemd failed" in proc.stderr
