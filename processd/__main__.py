"""``processd`` / ``python -m processd``: run the daemon until SIGTERM/SIGINT, then flush, commit and exit 0."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from common.envconfig import ConfigError
from common.logsetup import configure_logging
from processd.config import ProcessdConfig, config_from_args
from processd.eventlog import StorageError

log = logging.getLogger("processd")


async def run(config: ProcessdConfig) -> None:
    """Runs a ProcessdServer until a termination signal arrives."""
    from processd.server import ProcessdServer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = ProcessdServer(config)
    try:
        await server.start()
        await stop.wait()
        log.info("shutting down: flushing and committing queued batches")
    finally:
        await server.stop()
    log.info("processd stopped cleanly at seq %d", server.models.last_seq)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point."""
    try:
        config = config_from_args(argv)
    except ConfigError as exc:
        print(f"processd: {exc}", file=sys.stderr)
        sys.exit(2)
    configure_logging()
    try:
        asyncio.run(run(config))
    except (OSError, StorageError, ValueError) as exc:
        print(f"processd: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
