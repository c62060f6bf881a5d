"""Every exception class mempulse defines descends from one root per daemon (and common's from MempulseError),
keeps the built-in base it had (ValueError, RuntimeError), and has a boolean ``retriable``."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import common
import gatewayd
import ingestd
import processd
from common.errors import MempulseError
from gatewayd.errors import GatewaydError
from ingestd.errors import IngestdError
from processd.errors import ProcessdError

ROOTS = {"common": MempulseError, "ingestd": IngestdError, "processd": ProcessdError, "gatewayd": GatewaydError}
#: Modules that start things or need optional tools when imported; none of them defines an exception class.
SKIP = ("common.pb.", "processd.__main__", "ingestd.__main__", "gatewayd.__main__")


def _exception_classes(package: object) -> list[type[BaseException]]:
    found = []
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):  # type: ignore[attr-defined]
        if info.name.startswith(SKIP):
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == module.__name__:
                found.append(cls)
    return found


@pytest.mark.parametrize("package", [common, ingestd, processd, gatewayd], ids=lambda p: p.__name__)
def test_every_exception_has_its_daemons_root(package: object) -> None:
    root = ROOTS[package.__name__]  # type: ignore[attr-defined]
    classes = _exception_classes(package)
    assert classes, "no exception classes found: the walk is broken"
    strays = [f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, root)]
    assert not strays, f"not under {root.__name__}: {strays}"
    assert all(isinstance(c.retriable, bool) for c in classes)  # type: ignore[attr-defined]


def test_roots_and_kept_builtin_bases() -> None:
    from common.envconfig import ConfigError
    from gatewayd.params import ParamError
    from ingestd.mapping import MappingError
    from processd.storage.eventlog import StorageError
    from processd.storage.writer import QueueFullError

    assert all(issubclass(root, MempulseError) for root in ROOTS.values())
    assert issubclass(ConfigError, ValueError) and issubclass(ParamError, ValueError)
    assert issubclass(MappingError, ValueError) and issubclass(StorageError, ProcessdError)
    assert QueueFullError.retriable and not StorageError.retriable
