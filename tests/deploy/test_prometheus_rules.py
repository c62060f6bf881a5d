"""deploy/prometheus: ``promtool check rules`` / ``check config``, and ``promtool test rules`` on the unit tests
of deploy/prometheus/tests/, which must expect every alert to fire at least once."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.deploy._tools import require_tool

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULE_FILES = sorted(PROMETHEUS.glob("*.rules.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.yml"))
INSTALL = "Debian: apt-get install --no-install-recommends prometheus"


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    promtool = require_tool("promtool", INSTALL)
    return subprocess.run([promtool, *map(str, args)], capture_output=True, text=True, timeout=60, cwd=PROMETHEUS)


def test_rules_and_example_config_pass_promtool_check() -> None:
    assert len(RULE_FILES) == 2
    rules = _promtool("check", "rules", *RULE_FILES)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = _promtool("check", "config", PROMETHEUS / "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_rule_unit_tests_pass() -> None:
    assert TEST_FILES
    result = _promtool("test", "rules", *TEST_FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(TEST_FILES), result.stdout


def test_every_alert_is_unit_tested_firing() -> None:
    alerts = {rule["alert"] for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
              for rule in group["rules"] if "alert" in rule}
    fired = {case["alertname"] for path in TEST_FILES for test in yaml.safe_load(path.read_text())["tests"]
             for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}
    assert alerts and alerts - fired == set()
