"""tests/_schedule.py: the order of the parallel phase's work units (pytester collections) and pytest-xdist handing
out whole units (a real ``-n 2`` run of a small suite)."""

from __future__ import annotations

import pytest

from tests._schedule import known_table, order_units, unit_of

pytest_plugins = ["pytester"]

_INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """Three modules, one with tests sharing a module fixture; pytest-asyncio's loop scope set (as pyproject.toml)."""
    pytester.makeini(_INI)
    pytester.makepyfile(
        test_a="def test_a1():\n    pass\n\ndef test_a2():\n    pass\n",
        test_b=("import pytest\n\n@pytest.fixture(scope='module')\ndef world():\n    return 1\n\n"
                + "".join(f"def test_b{i}(world):\n    pass\n\n" for i in range(6))),
        test_c="import pytest\n\n@pytest.mark.parametrize('n', range(4))\ndef test_c(n):\n    pass\n")
    return pytester


def _modules(items: list[pytest.Item]) -> list[str]:
    return [item.nodeid.split("::")[0] for item in items]


def test_units_longest_first_each_whole_and_the_unmeasured_in_collection_order(suite: pytest.Pytester) -> None:
    items = suite.getitems(suite.path)
    assert _modules(items) == ["test_a.py"] * 2 + ["test_b.py"] * 6 + ["test_c.py"] * 4
    before = [item.nodeid for item in items]
    order_units(items, {"test_c.py": 30.0, "test_b.py": 10.0})
    assert _modules(items) == ["test_c.py"] * 4 + ["test_b.py"] * 6 + ["test_a.py"] * 2
    assert [i.nodeid for i in items if i.nodeid.startswith("test_b")] == [n for n in before if n.startswith("test_b")]
    order_units(items, {})
    assert _modules(items) == ["test_c.py"] * 4 + ["test_b.py"] * 6 + ["test_a.py"] * 2  # ties keep the order


def test_a_shared_directory_is_one_unit() -> None:
    assert unit_of("tests/deploy/test_metrics_scheme.py::test_x") == "tests/deploy"
    assert unit_of("tests/e2e/test_verify.py::test_y[1]") == "tests/e2e/test_verify.py"


def test_two_workers_each_run_whole_modules_and_every_item_runs(suite: pytest.Pytester,
                                                                 request: pytest.FixtureRequest,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduler through tests/conftest.py's hook: ``-n 2`` gives each module to one worker, and all 12 run."""
    monkeypatch.setenv("PYTHONPATH", str(request.config.rootpath))
    suite.makeconftest("from tests.conftest import pytest_xdist_make_scheduler  # noqa: F401\n")
    result = suite.runpytest_subprocess("-n", "2", "-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=12)
    workers: dict[str, set[str]] = {}
    for line in result.outlines:
        if line.startswith("[gw") and "PASSED" in line:
            workers.setdefault(line.split("::")[0].split()[-1], set()).add(line.split("]")[0])
    assert set(workers) == {"test_a.py", "test_b.py", "test_c.py"}
    assert all(len(w) == 1 for w in workers.values()), workers


def test_the_table_names_units_that_exist(request: pytest.FixtureRequest) -> None:
    """Every key is a module or a shared directory: a renamed module shows here rather than losing its place."""
    root = request.config.rootpath
    table = known_table()
    assert len(table) > 20
    for key in table:
        assert (root / key).exists() and unit_of(key + "/x.py" if (root / key).is_dir() else key) == key, key
