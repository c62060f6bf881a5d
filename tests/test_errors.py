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
from processd.export.errors import ExportError

#: The root of each package; a module takes the root of its longest matching prefix (the exporter, a Query client
#: that runs on any machine, has its own root although it is shipped inside processd/).
ROOTS = {"common": MempulseError, "ingestd": IngestdError, "processd": ProcessdError, "processd.export": ExportError,
         "gatewayd": GatewaydError}
#: Modules that start things or need optional tools when imported; none of them defines an exception class.
SKIP = ("common.pb.", "processd.__main__", "ingestd.__main__", "gatewayd.__main__", "processd.export.__main__")


def _root_of(module: str) -> type[BaseException]:
    prefixes = [p for p in ROOTS if module == p or module.startswith(p + ".")]
    return ROOTS[max(prefixes, key=len)]


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
    classes = _exception_classes(package)
    assert classes, "no exception classes found: the walk is broken"
    strays = [f"{c.__module__}.{c.__qualname__} (not under {_root_of(c.__module__).__name__})" for c in classes
              if not issubclass(c, _root_of(c.__module__))]
    assert not strays, strays
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
