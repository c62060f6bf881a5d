"""The metric scheme, checked on live daemons (docs/operations.md#metrics): every mempulse series starts with its
daemon's prefix, counters end in ``_total`` and nothing else does, names carry base units only, and each daemon
serves the standard process_* / python_* collectors describing its own process."""

from __future__ import annotations

import os
import re

import pytest

from gatewayd.metrics import PREFIX as GATEWAYD_PREFIX
from ingestd.metrics import PREFIX as INGESTD_PREFIX
from processd.metrics import PREFIX as PROCESSD_PREFIX
from tests.deploy.conftest import DAEMONS, LiveScrape

pytestmark = pytest.mark.integration

PREFIXES = {"ingestd": INGESTD_PREFIX, "processd": PROCESSD_PREFIX, "gatewayd": GATEWAYD_PREFIX}
#: Names of the standard collectors (process, platform, gc) that sit beside the mempulse series.
STANDARD = re.compile(r"^(process_|python_info$|python_gc_)")
#: Units that are not base units (seconds, bytes) spelled in a name.
NON_BASE_UNIT = re.compile(r"_(ms|us|ns|millis|milliseconds|microseconds|minutes|hours|days|kib|mib|gib|kb|mb|gb"
                           r"|kilobytes|megabytes|percent)(_|$)")
#: What every daemon's process collectors must export.
PROCESS_SERIES = ("process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds",
                  "process_max_fds", "process_start_time_seconds", "python_info")


def test_every_series_follows_the_scheme(live_scrape: LiveScrape) -> None:
    assert PREFIXES == {d: f"mempulse_{d}_" for d in DAEMONS}
    for daemon, families in live_scrape.families.items():
        ours = [f for f in families if not STANDARD.match(f.name)]
        assert len(ours) >= 15, (daemon, [f.name for f in ours])
        for family in ours:
            assert family.name.startswith(PREFIXES[daemon]), (daemon, family.name)
            assert not NON_BASE_UNIT.search(family.name), (daemon, family.name)
            names = {s.name for s in family.samples}
            if family.type == "counter":
                assert all(n.endswith("_total") for n in names), (daemon, family.name, names)
            else:
                # No counter passed off as a gauge, and no <name>_created gauges (common.promutil turns them off).
                assert not family.name.endswith(("_total", "_created")), (daemon, family.name, family.type)
                assert not any(n.endswith("_total") for n in names), (daemon, family.name, names)


def test_every_daemon_serves_process_metrics_of_its_own_pid(live_scrape: LiveScrape) -> None:
    boot_s = next(float(line.split()[1]) for line in open("/proc/stat") if line.startswith("btime "))
    tick = os.sysconf("SC_CLK_TCK")
    for daemon, families in live_scrape.families.items():
        values = {s.name: s.value for f in families for s in f.samples}
        missing = [name for name in PROCESS_SERIES if name not in values]
        assert not missing, (daemon, missing)
        assert values["process_resident_memory_bytes"] > 10 << 20 and values["process_open_fds"] > 3, daemon
        # process_* describes the process that was started as the daemon (not a worker, not a wrapper): its start
        # time is that pid's, to the clock tick.
        started_ticks = live_scrape.start_ticks[daemon]  # /proc/<pid>/stat, read while the daemon ran
        assert values["process_start_time_seconds"] == pytest.approx(boot_s + started_ticks / tick, abs=0.02), daemon


def test_processd_counts_its_analysis_workers_cpu(live_scrape: LiveScrape) -> None:
    values = {s.name: s.value for f in live_scrape.families["processd"] for s in f.samples}
    assert values["mempulse_processd_analysis_workers"] == 2
    # The workers decoded every transaction of the traffic: their CPU is counted apart from processd's own.
    assert values["mempulse_processd_analysis_workers_cpu_seconds_total"] > 0


def test_labelled_series_known_at_start_exist_at_zero(live_scrape: LiveScrape) -> None:
    def labels(daemon: str, sample: str, label: str) -> set[str]:
        return {s.labels[label] for f in live_scrape.families[daemon] for s in f.samples if s.name == sample}

    assert {"storage_full", "malformed_batch", "unknown_chain"} <= labels("processd", "mempulse_processd_rejects_total",
                                                                          "reason")
    assert labels("processd", "mempulse_processd_subscriber_cuts_total", "reason") == {"slow_subscriber", "slow_stream"}
    assert {"fetch_queue_full", "outbound_queue_full", "shutdown"} <= labels("ingestd", "mempulse_ingestd_drops_total",
                                                                              "reason")
    assert len(labels("ingestd", "mempulse_ingestd_rpc_latency_seconds_count", "endpoint")) == 1  # the fetch URL
    assert "events_stream" in labels("gatewayd", "mempulse_gatewayd_request_duration_seconds_count", "route")
