"""A live stack for the deploy-kit tests: anvil -> ingestd -> processd -> gatewayd, real processes, scraped once
after some traffic, every REST route, an SSE stream and a 404 have gone through it.

One stack for the whole session (about 10 s to start, feed and scrape), shared by the metric-scheme test and
the test that every dashboard and rule expression names an exported metric.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from common.testing.stack import ChainSpec, Stack, StackConfig

DAEMONS = ("ingestd", "processd", "gatewayd")
#: Transactions processd must have acknowledged to ingestd before the scrape (the latency histograms fill).
MIN_DELIVERED = 30


@dataclass(frozen=True)
class LiveScrape:
    """One scrape of each daemon of a live stack."""

    #: daemon -> its metric families as the Prometheus text parser reads them
    families: dict[str, list[Metric]]
    #: daemon -> pid of the process that was started (whose /metrics was scraped)
    pids: dict[str, int]
    #: daemon -> that process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), read while it
    #: ran: the stack is stopped once scraped (a session fixture would otherwise keep it running, with its traffic,
    #: until the worker's last test)
    start_ticks: dict[str, int]

    def sample_names(self) -> set[str]:
        """Every sample name exported by any daemon (``x_total``, ``x_bucket``, ``process_open_fds``, ...)."""
        return {s.name for fams in self.families.values() for f in fams for s in f.samples}


def _metrics_url(stack: Stack, daemon: str) -> str:
    if daemon == "gatewayd":
        return f"{stack.gateway_url}/metrics"  # gatewayd serves /metrics on its HTTP port
    return f"http://{stack.config.host}:{stack.metrics_ports[daemon]}/metrics"


def _sample(text: str, name: str) -> float:
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def _read_sse_event(url: str, got: threading.Event) -> None:
    """Reads /events/stream from the first seq until one event arrives (catch-up), then hangs up."""
    try:
        with httpx.stream("GET", url, params={"from_seq_id": 1}, timeout=httpx.Timeout(5.0, read=20.0)) as resp:
            for line in resp.iter_lines():
                if line.startswith("data:"):
                    got.set()
                    return
    except httpx.HTTPError:
        pass  # the caller's wait says what did not happen


def _exercise_gateway(stack: Stack) -> None:
    """Every REST route once, an SSE stream, and two errors (an unknown hash: a 404 with a NOT_FOUND gRPC
    error; a bad parameter: a 400), so that the series that appear on first use exist."""
    txs = stack.get_json("/transactions", chain_id=137, limit=5)["transactions"]
    assert txs, "no transaction visible through gatewayd"
    for path in ("/healthz", "/dashboard/snapshot", "/transactions/all", f"/transactions/{txs[0]['hash']}",
                 "/features/recent", "/opps/recent", "/events", "/openapi.json", "/docs"):
        assert stack.get(path).status_code == 200, path
    assert stack.get("/transactions/0x" + "ab" * 32).status_code == 404
    assert stack.get("/transactions", limit="many").status_code == 400
    got = threading.Event()
    reader = threading.Thread(target=_read_sse_event, args=(f"{stack.gateway_url}/events/stream", got), daemon=True)
    reader.start()
    reader.join(25)
    assert got.is_set(), "no event on /events/stream"


@pytest.fixture(scope="session")
def live_scrape(tmp_path_factory: pytest.TempPathFactory) -> LiveScrape:
    """Starts the stack with traffic on one chain, waits for deliveries, exercises gatewayd, scrapes all three,
    stops it."""
    root = tmp_path_factory.mktemp("deploy-stack")
    config = StackConfig(chains=(ChainSpec(137, rate_tx_s=40),), data_dir=root / "data", log_dir=root / "logs")
    with Stack(config) as stack:
        ingestd_url = _metrics_url(stack, "ingestd")
        stack.wait_for(lambda: _sample(httpx.get(ingestd_url, timeout=2).text,
                                       "mempulse_ingestd_delivered_total") >= MIN_DELIVERED,
                       30, f"{MIN_DELIVERED} transactions delivered")
        _exercise_gateway(stack)
        families = {d: list(text_string_to_metric_families(httpx.get(_metrics_url(stack, d), timeout=5).text))
                    for d in DAEMONS}
        pids = {d: pid for d in DAEMONS if (pid := stack.process(d).pid) is not None}
        start_ticks = {d: _start_ticks(pid) for d, pid in pids.items()}
    return LiveScrape(families, pids, start_ticks)


def _start_ticks(pid: int) -> int:
    """A running process's start time, clock ticks after boot (/proc/<pid>/stat field 22)."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])
