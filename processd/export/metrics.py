"""The exporter's Prometheus series (``mempulse_export_*``), on a registry of its own (tests run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from common.promutil import add_process_collectors
from processd.export.schema import DATA_TABLES

PREFIX = "mempulse_export_"
#: Failure reasons: ClickHouse away, processd away, a mapping worker died (each ends a session; the exporter
#: retries).
FAILURE_REASONS = ("sink", "source", "mapper")
#: Where the export loop's wall time goes (``stage_seconds_total``): waiting for processd's next page, mapping
#: pages in the exporter's own process, waiting for ClickHouse (every batch slot in flight).
STAGES = ("source_wait", "map", "sink_wait")


class ExportMetrics:
    """Counters and gauges of one exporter. Label sets are closed: tables and failure reasons."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.rows = Counter(f"{PREFIX}rows_total", "Rows inserted, by table", ["table"], registry=r)
        self.skipped = Counter(f"{PREFIX}replayed_rows_skipped_total",
                               "Rows of a reread batch found already in ClickHouse at resume, not inserted again",
                               registry=r)
        self.unknown_kinds = Counter(f"{PREFIX}unknown_kinds_total",
                                     "Events of a kind this exporter does not know (a newer processd's), exported "
                                     "as an events row of kind UNSPECIFIED with no detail row", registry=r)
        self.batches = Counter(f"{PREFIX}batches_total", "Batches written (one INSERT per table, then the cursor)",
                               registry=r)
        self.insert_seconds = Histogram(f"{PREFIX}batch_write_seconds", "Time to write one batch to ClickHouse",
                                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=r)
        self.failures = Counter(f"{PREFIX}failures_total", "Sessions ended by a failure, by side", ["reason"],
                                registry=r)
        self.exported_seq = Gauge(f"{PREFIX}exported_seq", "Highest seq written to ClickHouse (cursor - 1)",
                                  registry=r)
        self.head_seq = Gauge(f"{PREFIX}head_seq", "Highest committed seq processd last reported", registry=r)
        self.lag_seconds = Gauge(f"{PREFIX}lag_seconds", "Age of the newest exported event when its batch was "
                                 "written (written time - processd's received time)", registry=r)
        self.stage_seconds = Counter(f"{PREFIX}stage_seconds_total", "Wall time of the export loop by stage: "
                                     "source_wait (no page from processd ready), map (mapping pages in this "
                                     "process), sink_wait (every batch slot in flight: ClickHouse or the workers "
                                     "are behind)", ["stage"], registry=r)
        self.batches_in_flight = Gauge(f"{PREFIX}batches_in_flight", "Batches being written (at most "
                                       "max(1, map_workers))", registry=r)
        self.read_ahead_pages = Gauge(f"{PREFIX}read_ahead_pages", "Pages read from processd waiting for the "
                                      "batching (at most 8)", registry=r)
        for stage in STAGES:
            self.stage_seconds.labels(stage)
        for table in DATA_TABLES:
            self.rows.labels(table.name)
        for reason in FAILURE_REASONS:
            self.failures.labels(reason)
        add_process_collectors(r)
