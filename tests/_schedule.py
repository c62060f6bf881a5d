"""The order the parallel phase hands tests out in (tests/conftest.py calls :func:`schedule` after collection).

Two things cost CI minutes with pytest-xdist's default ``load`` distribution on 2 workers: a module whose tests
share a module-scoped fixture (an anvil world, a stack, a ClickHouse server) gets split between the workers, so
both pay the fixture; and a long test that comes late in collection order runs alone at the end while the other
worker idles. So every test that uses a module/class-scoped fixture, or a session/package-scoped fixture of a
sub-directory's conftest, gets an ``xdist_group`` mark (its module, or that directory): scripts/test runs
``--dist loadgroup``, which keeps a group on one worker. And the work units (a group, or a lone test) are sorted
longest first by :data:`KNOWN_SECONDS` (measured, ``--durations``), the rest after them in collection order:
longest-processing-time-first, which leaves the workers at most about one short test apart at the end.

The table only steers the order: a stale or missing figure costs time, never a check. Refresh it from the
``slowest durations`` block that scripts/test prints (``--durations``): a group's key is its module or directory
(the sum of its tests), a lone test's its node id.
"""

from __future__ import annotations

import pytest

#: Seconds per work unit, measured with ``--durations`` (targeted runs on the shared 2-core machine): a group's
#: module or directory (all its tests together, fixture included), or a lone test's node id. Only the order matters.
KNOWN_SECONDS: dict[str, float] = {
    # tests/e2e and tests/reliability (one worker, 2026-12-05)
    "tests/e2e/test_lifecycle_e2e.py": 57,
    "tests/e2e/test_walking_skeleton.py": 40,
    "tests/e2e/test_verify_processd.py::test_processd_valuations_realize_exactly": 33,
    "tests/e2e/test_verify_short.py::test_short_reference_verifier_passes": 27,
    "tests/e2e/test_valuation_world.py::test_processd_values_the_worlds_swaps_to_the_wei": 25,
    "tests/reliability/test_kill_loop.py::test_kill9_loop_loses_nothing_acked[default]": 25,
    "tests/e2e/test_shards.py::test_one_shard_killed_the_other_keeps_serving": 24,
    "tests/e2e/test_uniswap_world.py": 18,
    "tests/e2e/test_crash_recovery.py::test_processd_kill_9_mid_stream_loses_and_duplicates_nothing": 14,
    "tests/reliability/test_ingest_faults.py::test_processd_kill9_while_ingestd_streams": 13,
    "tests/reliability/test_export_kill_loop.py::test_export_kill9_loop_is_exactly_once[2]": 12,
    "tests/reliability/test_kill_loop.py::test_kill9_loop_loses_nothing_acked[growing_map]": 11,
    "tests/reliability/test_export_kill_loop.py::test_export_kill9_loop_is_exactly_once[0]": 8,
    "tests/reliability/test_ingest_faults.py::test_upstream_fault_storm_is_fully_accounted": 7,
    "tests/e2e/test_verify.py": 7,
    "tests/reliability/test_crash_points.py::test_record_survives_exactly_when_acked": 5,
    "tests/reliability/test_security.py::test_real_sockets_are_on_loopback": 4,
    "tests/e2e/test_stack_parts.py::test_stack_of_anvils_with_paced_traffic_only": 4,
}

_BROAD_SCOPES = ("session", "package")
_MODULE_SCOPES = ("module", "class")


def group_of(item: pytest.Item) -> str | None:
    """The work unit ``item`` has to share a worker with: the directory of a session/package-scoped fixture of a
    sub-directory's conftest (the broadest), else its module when it uses a module/class-scoped fixture, else
    None (the test can run anywhere). Fixtures of plugins (no base id) and of the root conftest are per worker
    anyway and group nothing."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    module = item.nodeid.split("::", 1)[0]
    group: str | None = None
    for name in info.names_closure:
        for fixturedef in info.name2fixturedefs.get(name, ()):
            base = getattr(fixturedef, "baseid", "") or ""
            if fixturedef.scope in _BROAD_SCOPES and base not in ("", "tests") and "::" not in base:
                return base
            if fixturedef.scope in _MODULE_SCOPES:
                group = module
    return group


def known_seconds(unit: str, table: dict[str, float] | None = None) -> float:
    """The measured seconds of a work unit (a group's name, or a lone test's node id; a parametrized test's entry
    without the ``[...]`` covers each of its cases); 0 when unmeasured."""
    table = KNOWN_SECONDS if table is None else table
    return table.get(unit, table.get(unit.split("[", 1)[0], 0.0))


def schedule(items: list[pytest.Item], table: dict[str, float] | None = None) -> None:
    """Marks the groups (:func:`group_of`) and sorts ``items`` in place: work units by known seconds, longest
    first, ties (and everything unmeasured) in collection order; a unit's tests stay together and in order."""
    units: dict[str, list[pytest.Item]] = {}
    for item in items:
        group = group_of(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(name=group))
        units.setdefault(group or item.nodeid, []).append(item)
    order = sorted(enumerate(units.items()), key=lambda e: (-known_seconds(e[1][0], table), e[0]))
    items[:] = [item for _, (_, unit) in order for item in unit]
