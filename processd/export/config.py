"""mempulse-export configuration: one frozen dataclass from CLI flags and ``MEMPULSE_EXPORT_*`` variables.

Precedence: CLI flag, then environment variable, then the default. Units are in the knob names.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from common.envconfig import ConfigError, Knobs, add_version_flag, parse_hostport


@dataclass(frozen=True, slots=True)
class ExportConfig:
    """Every exporter knob."""

    #: processd's Query service (gRPC HOST:PORT).
    processd: str = "127.0.0.1:50051"
    #: ClickHouse native-protocol endpoint (HOST:PORT; 9000 is the server's default tcp_port).
    clickhouse_host: str = "127.0.0.1"
    clickhouse_port: int = 9000
    clickhouse_user: str = "default"
    clickhouse_password: str = ""
    database: str = "mempulse"
    #: Empty: plain tables on that one server. A cluster name from the server's ``remote_servers``: each table
    #: is ``<name>_local`` on every shard plus a ``Distributed`` table ``<name>`` sharded by chain_id, which the
    #: exporter writes through (docs/export.md#distributed-layout).
    cluster: str = ""
    #: The export's name: its resume cursor is stored under it (two exporters into one database need two names).
    name: str = "default"
    #: Events per insert batch (each table gets one INSERT per batch) ...
    batch_rows: int = 100_000
    #: ... or, once at the head (or when processd sends nothing for that long), what arrived within this long after
    #: the first buffered event, whichever comes first: a catch-up batch fills to batch_rows.
    flush_interval_ms: int = 200
    #: Events per ScanEvents page during catch-up (at most batch_rows; processd clamps it to its max page limit).
    scan_page_events: int = 5000
    #: First wait after a failure (ClickHouse or processd away); doubles up to 10 times this.
    retry_backoff_ms: int = 500
    #: Prometheus /metrics port on 127.0.0.1; 0 = off.
    metrics_port: int = 0
    #: Create the database and tables when missing (CREATE ... IF NOT EXISTS) before the first insert.
    create_schema: bool = True
    #: Exit 0 once everything committed at start has been exported (a backfill run) instead of tailing.
    exit_at_head: bool = False
    #: Largest gRPC message accepted from processd.
    max_message_bytes: int = 64 * 1024 * 1024
    #: Worker processes that parse, map and insert catch-up batches (processd.export.workers); 0 = in-process.
    map_workers: int = 0


def build_parser() -> argparse.ArgumentParser:
    """The ``mempulse-export`` command line; each flag also reads ``MEMPULSE_EXPORT_<FLAG>``."""
    p = argparse.ArgumentParser(
        prog="mempulse-export",
        description="mempulse exporter: tails processd's event log (ScanEvents, then SubscribeEvents) into "
        "ClickHouse tables, exactly once across restarts (docs/export.md).")
    add_version_flag(p)
    p.add_argument("--processd", help="processd Query HOST:PORT (env MEMPULSE_EXPORT_PROCESSD, 127.0.0.1:50051)")
    p.add_argument("--clickhouse", help="ClickHouse native HOST:PORT (env MEMPULSE_EXPORT_CLICKHOUSE, "
                   "127.0.0.1:9000)")
    p.add_argument("--database", help="ClickHouse database (env MEMPULSE_EXPORT_DATABASE, mempulse)")
    p.add_argument("--cluster", help="write through Distributed tables over this ClickHouse cluster, sharded by "
                   "chain_id (env MEMPULSE_EXPORT_CLUSTER; empty = one server)")
    p.add_argument("--name", help="export name the resume cursor is kept under (env MEMPULSE_EXPORT_NAME, default)")
    p.add_argument("--batch-rows", type=int, help="events per insert batch (env MEMPULSE_EXPORT_BATCH_ROWS, 100000)")
    p.add_argument("--flush-interval-ms", type=int,
                   help="longest wait for a batch to fill at the head (env MEMPULSE_EXPORT_FLUSH_INTERVAL_MS, 200)")
    p.add_argument("--map-workers", type=int, help="worker processes that parse, map and insert catch-up batches, "
                   "0 = in-process "
                   "(env MEMPULSE_EXPORT_MAP_WORKERS, 0)")
    p.add_argument("--metrics-port", type=int, help="Prometheus port, 0 = off (env MEMPULSE_EXPORT_METRICS_PORT)")
    p.add_argument("--exit-at-head", action="store_true", default=None,
                   help="exit once the log as of start is exported (env MEMPULSE_EXPORT_EXIT_AT_HEAD=1)")
    return p


def knobs(env: Mapping[str, str] | None = None) -> Knobs:
    """The exporter's environment knobs: ``MEMPULSE_EXPORT_<KNOB>`` (new: no deprecated names)."""
    return Knobs("export", os.environ if env is None else env)


def _int(cli: int | None, knob: str, default: int, source: Knobs, minimum: int) -> int:
    value = cli if cli is not None else source.get_int(knob, default)
    if value < minimum:
        raise ConfigError(f"--{knob.replace('_', '-')} / {source.name(knob)} must be >= {minimum}, got {value}")
    return value


def load_config(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> ExportConfig:
    """Parses flags and environment into an :class:`ExportConfig`; raises :class:`ConfigError` on bad input."""
    source = knobs(env)
    args = build_parser().parse_args(argv)
    d = ExportConfig()
    processd = args.processd or source.get_str("processd", d.processd)
    parse_hostport(processd, "--processd")
    ch_host, ch_port = parse_hostport(args.clickhouse or source.get_str("clickhouse", "127.0.0.1:9000"),
                                      "--clickhouse")
    name = args.name or source.get_str("name", d.name)
    database = args.database or source.get_str("database", d.database)
    for what, value in (("--database", database), ("--name", name)):
        if not value.replace("_", "").isalnum():
            raise ConfigError(f"{what}: letters, digits and _ only, got {value!r}")
    cluster = args.cluster if args.cluster is not None else source.get_str("cluster", "")
    if cluster and not cluster.replace("_", "").isalnum():
        raise ConfigError(f"--cluster: letters, digits and _ only, got {cluster!r}")
    exit_at_head = args.exit_at_head if args.exit_at_head is not None else source.get_bool("exit_at_head", False)
    return ExportConfig(
        processd=processd,
        clickhouse_host=ch_host,
        clickhouse_port=ch_port,
        clickhouse_user=source.get_str("clickhouse_user", d.clickhouse_user),
        clickhouse_password=source.get_str("clickhouse_password", ""),
        database=database,
        cluster=cluster,
        name=name,
        batch_rows=_int(args.batch_rows, "batch_rows", d.batch_rows, source, 1),
        flush_interval_ms=_int(args.flush_interval_ms, "flush_interval_ms", d.flush_interval_ms, source, 0),
        scan_page_events=_int(None, "scan_page_events", d.scan_page_events, source, 1),
        retry_backoff_ms=_int(None, "retry_backoff_ms", d.retry_backoff_ms, source, 1),
        metrics_port=_int(args.metrics_port, "metrics_port", 0, source, 0),
        create_schema=source.get_bool("create_schema", True),
        exit_at_head=exit_at_head,
        max_message_bytes=_int(None, "max_message_bytes", d.max_message_bytes, source, 1024 * 1024),
        map_workers=_int(args.map_workers, "map_workers", d.map_workers, source, 0),
    )
