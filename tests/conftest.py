"""Shared pytest fixtures: real anvil nodes (never a mocked node)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, Phase, settings

from common.testing.anvil import AnvilNode
from tests._schedule import UnitScheduling, order_units

# Property-based tests in the gating run are deterministic: derandomized (examples derived from each test's
# name), no example database (nothing carried over between runs or machines), so a gating test can never fail
# on a seed. Tests still give max_examples themselves. The randomized long fuzzing is the "fuzz" profile:
# scripts/reliability selects it (MEMPULSE_RELIABILITY_LONG=1), or set MEMPULSE_HYPOTHESIS_PROFILE=fuzz.
# No timing in either: Hypothesis's default 200 ms deadline per example (which failed test_compact_layout_holds on
# a loaded machine) and its too_slow health check are timing assertions; performance belongs in the benchmarks.
_UNTIMED = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("gating", derandomize=True, database=None, print_blob=True, **_UNTIMED,
                          phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink))
settings.register_profile("fuzz", derandomize=False, database=None, print_blob=True, **_UNTIMED)
settings.load_profile(os.environ.get("MEMPULSE_HYPOTHESIS_PROFILE")
                      or ("fuzz" if os.environ.get("MEMPULSE_RELIABILITY_LONG", "") not in ("", "0") else "gating"))


@pytest.hookimpl(trylast=True)  # after pytest's own reordering by fixture scope and the -m deselection
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Work units (modules) longest first (tests/_schedule.py)."""
    order_units(items)


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> UnitScheduling | None:
    """``--dist load`` (what ``-n N`` means) hands out whole modules in that order (tests/_schedule.py)."""
    return UnitScheduling(config, log) if config.getvalue("dist") == "load" else None


@pytest.fixture
def anvil() -> Iterator[AnvilNode]:
    """A fresh anvil node (chain id 31337, --no-mining) on a free port."""
    with AnvilNode(chain_id=31337) as node:
        yield node


@pytest.fixture
def anvil_factory() -> Iterator[object]:
    """Starts anvil nodes on demand (``anvil_factory(chain_id=137)``); all are stopped after the test."""
    nodes: list[AnvilNode] = []

    def start(chain_id: int = 31337, extra_args: tuple[str, ...] = ()) -> AnvilNode:
        node = AnvilNode(chain_id=chain_id, extra_args=extra_args).start()
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        node.stop()
