"""``mempulse-export`` / ``python -m processd.export``: tail processd's log into ClickHouse until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from common.envconfig import ConfigError
from common.gctune import tune_gc
from common.logsetup import configure_logging
from processd.export.config import ExportConfig, load_config
from processd.export.errors import ExportError
from processd.export.exporter import Exporter
from processd.export.metrics import ExportMetrics

log = logging.getLogger("mempulse.export")

async def run(config: ExportConfig) -> int:
    """Runs an :class:`Exporter` until a signal (0), the head with ``exit_at_head`` (0) or a fatal error (1)."""
    metrics = ExportMetrics()
    tune_gc()
    if config.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(config.metrics_port, addr="127.0.0.1", registry=metrics.registry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("exporting %s into ClickHouse %s:%d database %s%s", config.processd, config.clickhouse_host,
             config.clickhouse_port, config.database, f" (cluster {config.cluster})" if config.cluster else "")
    async with Exporter(config, metrics) as exporter:
        done = asyncio.create_task(exporter.wait_closed())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({done, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if done.done():
            if done.exception() is not None:
                log.error("export failed: %s", done.exception())
                return 1
        else:
            done.cancel()
    log.info("export stopped at seq %d", exporter.exported_seq)
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point."""
    configure_logging()
    try:
        config = load_config(argv)
    except ConfigError as exc:
        print(f"mempulse-export: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        code = asyncio.run(run(config))
    except ExportError as exc:
        print(f"mempulse-export: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    main()
