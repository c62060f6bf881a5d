"""Helpers for building each daemon's frozen config dataclass from CLI flags and ``MEMPULSE_*`` env vars.

Precedence: an explicit CLI flag, then the environment variable, then the default. Parsing errors raise
:class:`ConfigError` with a one-line message naming the variable, so ``__main__`` can exit cleanly.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
from collections.abc import Mapping

from common.errors import MempulseError

ENV_PREFIX = "MEMPULSE_"


class ConfigError(MempulseError, ValueError):
    """Invalid configuration; the message is one line meant for the user."""


def env_name(knob: str) -> str:
    """Environment variable for a knob: ``flush_interval_ms`` -> ``MEMPULSE_FLUSH_INTERVAL_MS``."""
    return ENV_PREFIX + knob.upper()


def env_str(knob: str, default: str, env: Mapping[str, str] | None = None) -> str:
    """String knob from the environment, or ``default``."""
    source = os.environ if env is None else env
    value = source.get(env_name(knob))
    return default if value is None or value == "" else value


def env_int(knob: str, default: int, env: Mapping[str, str] | None = None, minimum: int | None = None) -> int:
    """Integer knob from the environment, or ``default``; checks ``minimum``."""
    raw = env_str(knob, "", env)
    if raw == "":
        value = default
    else:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{env_name(knob)}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{env_name(knob)} must be >= {minimum}, got {value}")
    return value


def env_float(knob: str, default: float, env: Mapping[str, str] | None = None) -> float:
    """Float knob from the environment, or ``default``."""
    raw = env_str(knob, "", env)
    if raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{env_name(knob)}={raw!r} is not a number") from None


def env_bool(knob: str, default: bool, env: Mapping[str, str] | None = None) -> bool:
    """Boolean knob (1/0, true/false, yes/no, on/off) from the environment, or ``default``."""
    raw = env_str(knob, "", env).strip().lower()
    if raw == "":
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{env_name(knob)}={raw!r} is not a boolean (use true/false)")


def parse_hostport(value: str, what: str) -> tuple[str, int]:
    """Splits ``HOST:PORT`` (IPv6 as ``[::1]:PORT``) and checks the port range."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{what}: expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port_text)


def package_version() -> str:
    """mempulse's installed version (``pip install -e .`` records it), or a plain word when it is not installed."""
    try:
        return importlib.metadata.version("mempulse")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def add_version_flag(parser: argparse.ArgumentParser) -> None:
    """``--version``: prints ``<daemon> <version>`` and exits 0 (read when asked, not at import)."""

    class _Version(argparse.Action):
        def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
            print(f"{parser.prog} {package_version()}")  # stdout, like argparse's own version action
            parser.exit(0)

    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
