"""The order the parallel phase runs tests in, and how pytest-xdist hands them to its workers (tests/conftest.py).

Two things cost CI minutes with pytest-xdist's ``load`` distribution on 2 workers: it sends tests in big chunks of
collection order, so a module whose tests share a module-scoped fixture (an anvil world, a stack) may be split
between the workers, both paying the fixture, and a long test late in collection order runs alone at the end
while the other worker idles. So here a *work unit* is a module (or a directory of :data:`SHARED_DIRS`, whose
conftest shares a session fixture): :func:`order_units` sorts the collection by unit, longest first by the measured
seconds of tests/_durations.json, and :class:`UnitScheduling` hands each worker one whole unit at a time in that
order (longest-processing-time-first: the workers end at most about one short module apart).

xdist's own ``--dist loadscope``/``loadgroup`` would group too, but they key tests by node id, and pytest 9 with
schemathesis gives many items one node id (tests/gatewayd/test_schemathesis.py: 26 items, 2 ids), which they would
run once each; :class:`UnitScheduling` keeps ``load``'s bookkeeping by collection index.

The table only steers the order: a stale or missing figure costs time, never a check. Refresh it from a
``--durations=0`` run (summed per module; scripts/test prints the slowest 25 tests of each phase).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from xdist.scheduler import LoadScheduling
from xdist.workermanage import WorkerController

#: Seconds per work unit (a module path, or a directory of SHARED_DIRS), measured with ``--durations=0``.
DURATIONS_FILE = Path(__file__).with_name("_durations.json")
#: Directories whose conftest shares a session fixture between modules (tests/deploy: one live stack, scraped).
SHARED_DIRS = ("tests/deploy",)


@functools.cache
def known_table() -> dict[str, float]:
    """The measured seconds of tests/_durations.json (read once, at the first collection)."""
    return {str(k): float(v) for k, v in json.loads(DURATIONS_FILE.read_text())["seconds"].items()}


def unit_of(nodeid: str) -> str:
    """The work unit of a test: its module, or the shared directory that holds it."""
    module = nodeid.split("::", 1)[0]
    return next((d for d in SHARED_DIRS if module.startswith(d + "/")), module)


def order_units(items: list[pytest.Item], table: dict[str, float] | None = None) -> None:
    """Sorts ``items`` in place: units by known seconds, longest first, ties (and everything unmeasured) in
    collection order; a unit's tests stay together and in their order."""
    table = known_table() if table is None else table
    units: dict[str, list[pytest.Item]] = {}
    for item in items:
        units.setdefault(unit_of(item.nodeid), []).append(item)
    order = sorted(enumerate(units.items()), key=lambda e: (-table.get(e[1][0], 0.0), e[0]))
    items[:] = [item for _, (_, unit) in order for item in unit]


class UnitScheduling(LoadScheduling):
    """pytest-xdist's ``load`` scheduling, one work unit at a time: at the start and whenever a worker holds fewer
    than two tests (a worker runs a test once it knows the next), it gets the next unit of the collection order,
    whole. By collection index, like ``load``, so items sharing a node id each run."""

    def schedule(self) -> None:
        """Initial distribution: one unit per worker (see ``LoadScheduling.schedule``)."""
        assert self.collection_is_completed
        if self.collection is not None:
            for node in self.nodes:
                self.check_schedule(node)
            return
        if not self._check_nodes_have_same_collection():
            self.log("**Different tests collected, aborting run**")
            return
        self.collection = next(iter(self.node2collection.values()))
        self.pending[:] = range(len(self.collection))
        if not self.collection:
            return
        for node in self.nodes:
            self.check_schedule(node)

    def check_schedule(self, node: WorkerController, duration: float = 0) -> None:
        """Tops ``node`` up with whole units until it holds two tests; once nothing is left to hand out, it is
        shut down (it runs what it holds, then exits), as in ``load``."""
        if node.shutting_down:
            return
        while self.pending and len(self.node2pending[node]) < 2:
            self._send_tests(node, self._next_unit_size())
        if not self.pending:
            node.shutdown()

    def _next_unit_size(self) -> int:
        """How many of the pending tests, from the first, belong to its unit."""
        assert self.collection is not None
        unit = unit_of(self.collection[self.pending[0]])
        size = 1
        while size < len(self.pending) and unit_of(self.collection[self.pending[size]]) == unit:
            size += 1
        return size
