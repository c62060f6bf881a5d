"""External tools of the deploy-kit checks (promtool, systemd-analyze): found, or skipped with the reason on a
developer machine, or failed under CI=true, where scripts/_env.sh installs them and a missing tool is a broken
setup, not a reason to pass without checking."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def unavailable(message: str) -> NoReturn:
    """Skips the test saying why; under ``CI=true`` fails it instead."""
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"{message}; CI=true, so the deploy kit must be checked: scripts/_env.sh installs it as root "
                    "with apt-get", pytrace=False)
    pytest.skip(message)


def require_tool(name: str, install_hint: str) -> str:
    """The path of ``name``; skips (fails under ``CI=true``) when it is not on PATH."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} not found ({install_hint})")
    return path
