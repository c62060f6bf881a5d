"""deploy/systemd: the three units pass ``systemd-analyze verify`` with no warning, score low on
``systemd-analyze security``, and carry the options each daemon needs (parsed, so this part runs anywhere).

verify needs the units' ExecStart binaries and the standard targets: it runs on a root directory holding copies
of the host's unit directory, stub binaries at the ExecStart paths, and our units.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy._tools import require_tool, unavailable

SYSTEMD = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
UNITS = ("mempulse-ingestd.service", "mempulse-processd.service", "mempulse-gatewayd.service")
INSTALL = "Debian: apt-get install systemd"
#: Highest acceptable `systemd-analyze security` exposure (its scale: 0 best, 10 worst; threshold in tenths).
MAX_EXPOSURE = 2.0
HOST_UNITS = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))


def _options(unit: str) -> dict[str, list[str]]:
    """``Key -> values`` of a unit file (systemd allows a key several times; comments and sections dropped)."""
    out: dict[str, list[str]] = {}
    for line in (SYSTEMD / unit).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("systemd-root")
    host_units = next((p for p in HOST_UNITS if (p / "multi-user.target").exists()), None)
    if host_units is None:
        unavailable(f"no systemd unit directory with multi-user.target ({INSTALL})")
    shutil.copytree(host_units, root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(SYSTEMD / unit, root / "etc" / "systemd" / "system" / unit)
        binary = root / _options(unit)["ExecStart"][0].split()[0].lstrip("/")
        binary.parent.mkdir(parents=True, exist_ok=True)
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
    return root


def test_units_pass_systemd_analyze_verify(root: Path) -> None:
    tool = require_tool("systemd-analyze", INSTALL)
    units = [str(root / "etc" / "systemd" / "system" / unit) for unit in UNITS]
    result = subprocess.run([tool, "verify", f"--root={root}", *units], capture_output=True, text=True, timeout=60)
    # Unknown or misspelt keys are only warnings (exit 0): any output at all fails.
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr


@pytest.mark.parametrize("unit", UNITS)
def test_units_are_hardened(root: Path, unit: str) -> None:
    tool = require_tool("systemd-analyze", INSTALL)
    result = subprocess.run([tool, "security", "--offline=true", f"--threshold={int(MAX_EXPOSURE * 10)}",
                             f"--root={root}", unit], capture_output=True, text=True, timeout=60)
    exposure = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert result.returncode == 0 and exposure, result.stdout[-3000:] + result.stderr
    assert float(exposure.group(1)) <= MAX_EXPOSURE


@pytest.mark.parametrize("unit", UNITS)
def test_unit_options(unit: str) -> None:
    o = _options(unit)
    daemon = unit.removeprefix("mempulse-").removesuffix(".service")
    assert o["ExecStart"] == [f"/opt/mempulse/venv/bin/{daemon}"]
    assert o["User"] == ["mempulse"] and o["Restart"] == ["on-failure"]
    assert f"/etc/mempulse/{daemon}.env" in {f.lstrip("-") for f in o["EnvironmentFile"]}
    assert all(f.lstrip("-").startswith("/etc/mempulse/") and f.endswith(".env") for f in o["EnvironmentFile"])
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                       ("PrivateTmp", "yes"), ("PrivateDevices", "yes"), ("CapabilityBoundingSet", "")):
        assert o[key] == [value], key
    assert set(o["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    # prometheus-client's process_* need /proc/stat: with ProcSubset=pid they would export nothing.
    assert "ProcSubset" not in o


def test_processd_unit_fits_its_data_dir_group_commit_and_workers() -> None:
    o = _options("mempulse-processd.service")
    data_dir = next(v.split("=", 1)[1] for v in o["Environment"] if v.startswith("MEMPULSE_PROCESSD_DATA_DIR="))
    assert o["ReadWritePaths"] == [data_dir] and o["StateDirectory"] == [Path(data_dir).name]
    # SIGTERM to processd alone (it commits what is queued, then stops its workers, which ignore SIGTERM and die
    # with it); SIGKILL for what remains only after that, with time for a full commit queue.
    assert o["KillMode"] == ["mixed"] and o["KillSignal"] == ["SIGTERM"]
    assert int(o["TimeoutStopSec"][0]) >= 20
    assert o["RestartPreventExitStatus"] == ["2"]  # damaged log, data dir held, bad configuration


def test_gatewayd_and_ingestd_units() -> None:
    gatewayd = _options("mempulse-gatewayd.service")
    assert int(gatewayd["LimitNOFILE"][0]) >= 65536  # one descriptor per client connection, SSE streams stay open
    ingestd = _options("mempulse-ingestd.service")
    # Started after processd and so stopped before it: its last batches are acked before processd goes.
    assert "mempulse-processd.service" in ingestd["After"][0].split()
    assert "RestartPreventExitStatus" not in ingestd  # its exit 2 may be an endpoint that comes back
