"""Helpers for building each daemon's frozen config dataclass from CLI flags and ``MEMPULSE_*`` env vars.

Precedence: an explicit CLI flag, then the environment variable, then the default. Parsing errors raise
:class:`ConfigError` with a one-line message naming the variable, so ``__main__`` can exit cleanly.

Env scheme: a daemon's knob is ``MEMPULSE_<DAEMON>_<KNOB>`` (``MEMPULSE_PROCESSD_DATA_DIR``,
``MEMPULSE_INGESTD_FETCH_BATCH_SIZE``, ``MEMPULSE_GATEWAYD_LISTEN``), read through :class:`Knobs`; knobs every
daemon shares (``MEMPULSE_LOG_LEVEL``) and the tools' own (``MEMPULSE_DEMO_*``) stay ``MEMPULSE_<KNOB>`` and are
read with :func:`env_str` and friends. The names of the previous release are still accepted for one release:
the new name wins when both are set, and each old name in use is logged once as deprecated, naming the new one.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from common.errors import MempulseError

log = logging.getLogger(__name__)

ENV_PREFIX = "MEMPULSE_"
#: Old names already warned about in this process (a config loaded twice warns once).
_warned: set[str] = set()
_warned_lock = threading.Lock()


class ConfigError(MempulseError, ValueError):
    """Invalid configuration; the message is one line meant for the user."""


def env_name(knob: str) -> str:
    """Environment variable for a knob: ``flush_interval_ms`` -> ``MEMPULSE_FLUSH_INTERVAL_MS``."""
    return ENV_PREFIX + knob.upper()


def _parse_int(name: str, raw: str, default: int, minimum: int | None) -> int:
    if raw == "":
        value = default
    else:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _parse_float(name: str, raw: str, default: float) -> float:
    if raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None


def _parse_bool(name: str, raw: str, default: bool) -> bool:
    raw = raw.strip().lower()
    if raw == "":
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true/false)")


def env_str(knob: str, default: str, env: Mapping[str, str] | None = None) -> str:
    """String knob ``MEMPULSE_<KNOB>`` (one every daemon shares, or a tool's) from the environment, or ``default``."""
    source = os.environ if env is None else env
    value = source.get(env_name(knob))
    return default if value is None or value == "" else value


def env_int(knob: str, default: int, env: Mapping[str, str] | None = None, minimum: int | None = None) -> int:
    """Integer knob ``MEMPULSE_<KNOB>`` from the environment, or ``default``; checks ``minimum``."""
    return _parse_int(env_name(knob), env_str(knob, "", env), default, minimum)


def env_float(knob: str, default: float, env: Mapping[str, str] | None = None) -> float:
    """Float knob ``MEMPULSE_<KNOB>`` from the environment, or ``default``."""
    return _parse_float(env_name(knob), env_str(knob, "", env), default)


def env_bool(knob: str, default: bool, env: Mapping[str, str] | None = None) -> bool:
    """Boolean knob ``MEMPULSE_<KNOB>`` (1/0, true/false, yes/no, on/off) from the environment, or ``default``."""
    return _parse_bool(env_name(knob), env_str(knob, "", env), default)


@dataclass(frozen=True)
class Knobs:
    """One daemon's environment knobs: ``MEMPULSE_<DAEMON>_<KNOB>``, with the previous release's names accepted.

    ``deprecated`` maps a knob to its old names, tried in order when the new name is not set (or empty);
    ``old_prefix`` gives every other knob one old name, ``old_prefix + KNOB`` (``MEMPULSE_INGEST_`` for
    ingestd). A value found under an old name is used, and that name is logged once per process as deprecated.
    """

    daemon: str
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    old_prefix: str | None = None
    deprecated: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def name(self, knob: str) -> str:
        """The variable of ``knob``: ``MEMPULSE_<DAEMON>_<KNOB>``."""
        return f"{ENV_PREFIX}{self.daemon.upper()}_{knob.upper()}"

    def old_names(self, knob: str) -> tuple[str, ...]:
        """The deprecated names of ``knob`` (none equal to the new one)."""
        names = self.deprecated.get(knob)
        if names is None:
            names = (self.old_prefix + knob.upper(),) if self.old_prefix is not None else ()
        return tuple(n for n in names if n != self.name(knob))

    def raw(self, knob: str) -> tuple[str, str]:
        """``(variable, value)`` of ``knob``: the new name when set, else the first old name set (warned about
        once), else ``(new name, "")``."""
        new = self.name(knob)
        value = self.env.get(new, "")
        if value != "":
            return new, value
        for old in self.old_names(knob):
            value = self.env.get(old, "")
            if value != "":
                _warn_deprecated(old, new)
                return old, value
        return new, ""

    def get_str(self, knob: str, default: str) -> str:
        """String knob, or ``default`` when not set."""
        return self.raw(knob)[1] or default

    def get_int(self, knob: str, default: int, minimum: int | None = None) -> int:
        """Integer knob, or ``default``; checks ``minimum`` (the message names the variable that was read)."""
        return _parse_int(*self.raw(knob), default, minimum)

    def get_float(self, knob: str, default: float) -> float:
        """Float knob, or ``default``."""
        return _parse_float(*self.raw(knob), default)

    def get_bool(self, knob: str, default: bool) -> bool:
        """Boolean knob (1/0, true/false, yes/no, on/off), or ``default``."""
        return _parse_bool(*self.raw(knob), default)


def _warn_deprecated(old: str, new: str) -> None:
    with _warned_lock:
        if old in _warned:
            return
        _warned.add(old)
    log.warning("%s is deprecated and will be ignored in the next release: use %s", old, new)


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
