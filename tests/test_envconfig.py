"""The env scheme: MEMPULSE_<DAEMON>_<KNOB> for every daemon knob, the previous release's names still read (one
deprecation warning per old name, naming the new one; the new name wins when both are set), and .env.example
listing exactly the knobs each daemon reads."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from common import envconfig
from common.envconfig import ConfigError, Knobs
from gatewayd import config as gatewayd_config
from ingestd import config as ingestd_config
from processd import config as processd_config
from processd.export import config as export_config

ROOT = Path(__file__).resolve().parents[1]


class RecordingEnv(Mapping[str, str]):
    """An environment that records every name looked up in it."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.seen: list[str] = []

    def __getitem__(self, key: str) -> str:
        self.seen.append(key)
        return self.values[key]

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.seen.append(key)
        return self.values.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


@pytest.fixture(autouse=True)
def fresh_warnings() -> Iterator[None]:
    """Each test sees the once-per-process warnings afresh."""
    envconfig._warned.clear()
    yield
    envconfig._warned.clear()


def _deprecations(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]


def test_old_names_still_work_and_warn_once_naming_the_new_one(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="common.envconfig")
    old = {"MEMPULSE_DATA_DIR": "/tmp/old", "MEMPULSE_FLUSH_MAX_EVENTS": "7"}
    for _ in range(2):  # loaded twice: still one warning per old name
        cfg = processd_config.load_config([], old)
        assert str(cfg.data_dir) == "/tmp/old" and cfg.flush_max_events == 7
    assert sorted(_deprecations(caplog)) == [
        "MEMPULSE_DATA_DIR is deprecated and will be ignored in the next release: use MEMPULSE_PROCESSD_DATA_DIR",
        "MEMPULSE_FLUSH_MAX_EVENTS is deprecated and will be ignored in the next release: use "
        "MEMPULSE_PROCESSD_FLUSH_MAX_EVENTS",
    ]
    gw = gatewayd_config.load_config([], {"MEMPULSE_PROCESSD_TARGET": "10.0.0.1:1", "MEMPULSE_GATEWAY_LISTEN": "h:81",
                                          "MEMPULSE_RATE_LIMIT_RPS": "5"})
    assert (gw.processd_target, gw.listen_port, gw.rate_limit_rps) == ("10.0.0.1:1", 81, 5.0)
    ing = ingestd_config.load_config([], {"MEMPULSE_INGEST_CHAINS": "polygon", "MEMPULSE_INGEST_DEDUP_SIZE": "9",
                                          "MEMPULSE_CHAIN_POLYGON_URLS": "ws://h:1"})
    assert ing.dedup_size == 9 and ing.chain(137).sources[0].url == "ws://h:1"
    assert any("use MEMPULSE_INGESTD_CHAIN_POLYGON_URLS" in m for m in _deprecations(caplog))
    assert any("use MEMPULSE_GATEWAYD_PROCESSD" in m for m in _deprecations(caplog))


def test_the_new_name_wins_and_is_not_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="common.envconfig")
    cfg = processd_config.load_config([], {"MEMPULSE_PROCESSD_DATA_DIR": "/tmp/new", "MEMPULSE_DATA_DIR": "/tmp/old"})
    assert str(cfg.data_dir) == "/tmp/new" and not _deprecations(caplog)
    gw = gatewayd_config.load_config([], {"MEMPULSE_GATEWAYD_WORKERS": "3", "MEMPULSE_GATEWAY_WORKERS": "2"})
    assert gw.workers == 3 and not _deprecations(caplog)


def test_errors_name_the_variable_that_was_read() -> None:
    with pytest.raises(ConfigError, match=r"^MEMPULSE_INGEST_DEDUP_SIZE='x' is not an integer"):
        ingestd_config.load_config([], {"MEMPULSE_INGESTD_CHAINS": "1", "MEMPULSE_INGESTD_CHAIN_1_URLS": "ws://h:1",
                                        "MEMPULSE_INGEST_DEDUP_SIZE": "x"})
    with pytest.raises(ConfigError, match=r"^MEMPULSE_INGESTD_DEDUP_SIZE='y' is not an integer"):
        ingestd_config.load_config([], {"MEMPULSE_INGESTD_CHAINS": "1", "MEMPULSE_INGESTD_CHAIN_1_URLS": "ws://h:1",
                                        "MEMPULSE_INGESTD_DEDUP_SIZE": "y", "MEMPULSE_INGEST_DEDUP_SIZE": "x"})
    assert Knobs("x", {}, old_prefix="MEMPULSE_").old_names("listen") == ("MEMPULSE_LISTEN",)


#: (section of .env.example, config module, env that makes a valid config)
DAEMONS = [
    ("processd", processd_config, {"MEMPULSE_PROCESSD_DATA_DIR": "/tmp/x"}),
    ("ingestd", ingestd_config, {"MEMPULSE_INGESTD_CHAINS": "1", "MEMPULSE_INGESTD_CHAIN_1_URLS": "ws://h:1"}),
    ("gatewayd", gatewayd_config, {}),
    ("export", export_config, {}),
]
_CHAIN_URLS = re.compile(r"MEMPULSE_INGESTD_CHAIN_\w+_URLS")


def _env_example_section(daemon: str) -> set[str]:
    text = (ROOT / ".env.example").read_text()
    section = re.search(rf"^# ---- {daemon} .*?^# ---- end {daemon} ", text, re.M | re.S)
    assert section, f"no {daemon} section in .env.example"
    return {m.group(1) for m in re.finditer(r"^(MEMPULSE_\w+)=", section.group(0), re.M)}


@pytest.mark.parametrize(("daemon", "module", "env"), DAEMONS, ids=[d[0] for d in DAEMONS])
def test_env_example_lists_exactly_the_knobs_each_daemon_reads(daemon: str, module: object,
                                                               env: dict[str, str]) -> None:
    recording = RecordingEnv(env)
    module.load_config([], recording)  # type: ignore[attr-defined]
    prefix = f"MEMPULSE_{daemon.upper()}_"
    read = {name for name in recording.seen if name.startswith(prefix) and not _CHAIN_URLS.fullmatch(name)}
    listed = _env_example_section(daemon)
    assert listed == read, f"in .env.example only: {sorted(listed - read)}; read only: {sorted(read - listed)}"
    # Every name the daemon reads that is not of the new scheme is a deprecated one (warned about when used).
    knobs = module.knobs({})  # type: ignore[attr-defined]
    old = {o for name in read for o in knobs.old_names(name[len(prefix):].lower())}
    assert {n for n in recording.seen if not n.startswith(prefix) and not n.startswith("MEMPULSE_CHAIN_")} <= old
