"""ingestd entry point: ``ingestd --chain NAME_OR_ID=URL[,URL...] [--chain ...] --processd HOST:PORT ...``.

Exit status: 0 after a clean stop (SIGTERM/SIGINT), 2 for bad configuration or a failed endpoint check
(one line on stderr naming the problem).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import uuid
from collections.abc import Sequence

from common.envconfig import ConfigError
from common.logsetup import configure_logging
from ingestd.config import IngestConfig, load_config

log = logging.getLogger("ingestd")


async def run(cfg: IngestConfig, stop: asyncio.Event | None = None) -> int:
    """Checks endpoints, runs one worker per chain until ``stop`` (or a signal), then stops cleanly."""
    # Imported here, not at module level: a bad flag or endpoint then fails fast, before grpc is loaded.
    from ingestd.startup import EndpointCheckError, check_all

    try:
        await check_all(cfg.chains, cfg.startup_check_timeout_ms / 1000, cfg.fetch_max_response_bytes)
    except EndpointCheckError as exc:
        print(f"ingestd: {exc}", file=sys.stderr, flush=True)
        return 2
    from prometheus_client import CollectorRegistry, start_http_server

    from common.promutil import add_process_collectors
    from ingestd.chains.worker import ChainWorker
    from ingestd.metrics import Histograms, IngestCollector

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    registry = CollectorRegistry()
    add_process_collectors(registry)
    histograms = Histograms(registry)
    session_id = uuid.uuid4().hex[:16]
    workers = [ChainWorker(chain, cfg, session_id, histograms) for chain in cfg.chains]
    registry.register(IngestCollector(lambda: [w.stats for w in workers]))
    if cfg.metrics_port:
        try:
            start_http_server(cfg.metrics_port, addr=cfg.metrics_host, registry=registry)
        except OSError as exc:
            print(f"ingestd: cannot serve metrics on {cfg.metrics_host}:{cfg.metrics_port}: {exc.strerror or exc}",
                  file=sys.stderr, flush=True)
            return 2
        log.info("metrics on http://%s:%d/metrics", cfg.metrics_host, cfg.metrics_port)
    for worker in workers:
        await worker.start()
    log.info("ingestd running session=%s chains=%s processd=%s full_tx=%s", session_id,
             ",".join(f"{c.name}({c.chain_id})" for c in cfg.chains), cfg.processd, cfg.full_tx)
    await stop.wait()
    log.info("stopping: flushing to processd (grace %d ms)", cfg.shutdown_grace_ms)
    await asyncio.gather(*(w.stop(cfg.shutdown_grace_ms / 1000) for w in workers))
    for w in workers:
        s = w.stats
        log.info("stopped chain=%s seen=%d delivered=%d dropped=%s dedup_hits=%d", s.name, s.seen, s.delivered,
                 {k: v for k, v in s.drops.by_reason().items() if k != "dedup"}, s.drops.total_dedup())
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """Console script ``ingestd``."""
    # Before the config: a deprecated env name in use is logged (once) while the config is read.
    configure_logging()
    try:
        cfg = load_config(argv)
    except ConfigError as exc:
        print(f"ingestd: {exc}", file=sys.stderr)
        sys.exit(2)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per fetch request otherwise
    sys.exit(asyncio.run(run(cfg)))


if __name__ == "__main__":
    main()
