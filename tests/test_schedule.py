"""tests/_schedule.py: which tests share a worker and the order the parallel phase hands them out in, on a small
collected suite (pytester)."""

from __future__ import annotations

import pytest

from tests._schedule import KNOWN_SECONDS, group_of, known_seconds, schedule

pytest_plugins = ["pytester"]

_SUITE = """
import pytest

@pytest.fixture(scope="module")
def world():
    return 1

def test_quick():
    pass

def test_uses_world_a(world):
    pass

def test_slow():
    pass

def test_uses_world_b(world):
    pass

@pytest.mark.parametrize("n", [1, 2])
def test_cases(n):
    pass
"""


@pytest.fixture
def pytester(pytester: pytest.Pytester) -> pytest.Pytester:
    """pytester with the asyncio plugin's loop scope set (as in pyproject.toml), so its inner run warns nothing."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    return pytester


def _names(items: list[pytest.Item]) -> list[str]:
    return [item.name for item in items]


def test_tests_sharing_a_module_fixture_form_one_group_and_the_rest_none(pytester: pytest.Pytester) -> None:
    items = pytester.getitems(_SUITE)
    groups = {item.name: group_of(item) for item in items}
    module = items[0].nodeid.split("::")[0]
    assert groups == {"test_quick": None, "test_uses_world_a": module, "test_slow": None,
                      "test_uses_world_b": module, "test_cases[1]": None, "test_cases[2]": None}


def test_longest_unit_first_a_group_together_the_unmeasured_in_collection_order(pytester: pytest.Pytester) -> None:
    items = pytester.getitems(_SUITE)
    module = items[0].nodeid.split("::")[0]
    table = {f"{module}::test_slow": 30.0, module: 10.0, f"{module}::test_cases": 20.0}
    schedule(items, table)
    assert _names(items) == ["test_slow", "test_cases[1]", "test_cases[2]", "test_uses_world_a",
                             "test_uses_world_b", "test_quick"]
    marked = {item.name: [m.kwargs["name"] for m in item.iter_markers("xdist_group")] for item in items}
    assert marked["test_uses_world_a"] == marked["test_uses_world_b"] == [module]
    assert marked["test_slow"] == marked["test_quick"] == []


def test_unmeasured_units_keep_the_order_of_their_first_test(pytester: pytest.Pytester) -> None:
    items = pytester.getitems(_SUITE)
    schedule(items, {})
    assert _names(items) == ["test_quick", "test_uses_world_a", "test_uses_world_b", "test_slow", "test_cases[1]",
                             "test_cases[2]"]


def test_the_table_names_tests_that_exist(request: pytest.FixtureRequest) -> None:
    """Every key is a module, or a test of one (a parametrized test without its cases): a renamed test shows here
    rather than silently losing its place."""
    root = request.config.rootpath
    for key in KNOWN_SECONDS:
        path, _, name = key.partition("::")
        assert (root / path).is_file(), key
        if name:
            assert f"def {name.split('[', 1)[0]}(" in (root / path).read_text(), key
    assert known_seconds("tests/no_such.py::test_x") == 0.0
