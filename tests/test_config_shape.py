"""Every daemon's config module has the same entry point: ``load_config(argv, env)`` -> its frozen dataclass."""

from __future__ import annotations

import dataclasses
import importlib
import inspect

import pytest

#: (config module, argv that makes a valid config, the dataclass it returns)
DAEMONS = [
    ("ingestd.config", ["--chain", "1=ws://127.0.0.1:8545"], "IngestConfig"),
    ("processd.config", ["--data-dir", "/tmp/mempulse-shape"], "ProcessdConfig"),
    ("gatewayd.config", [], "GatewayConfig"),
    ("processd.storage.backup", ["--data-dir", "/tmp/mempulse-shape", "--out", "/tmp/mempulse-shape-out"],
     "BackupConfig"),
    ("processd.export.config", [], "ExportConfig"),
]


@pytest.mark.parametrize(("module_name", "argv", "cls_name"), DAEMONS, ids=[d[0] for d in DAEMONS])
def test_one_config_loading_shape(module_name: str, argv: list[str], cls_name: str) -> None:
    module = importlib.import_module(module_name)
    assert list(inspect.signature(module.load_config).parameters) == ["argv", "env"]
    cfg = module.load_config(argv, {})
    assert type(cfg).__name__ == cls_name and dataclasses.is_dataclass(cfg)
    assert type(cfg).__dataclass_params__.frozen  # type: ignore[attr-defined]
