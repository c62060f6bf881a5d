"""Shared pytest fixtures: real anvil nodes (never a mocked node)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from common.anvil import AnvilNode


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
