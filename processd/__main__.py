"""``processd`` / ``python -m processd``: run the daemon until SIGTERM/SIGINT, then flush, commit and exit 0."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from common.envconfig import ConfigError
from common.gctune import tune_gc
from common.logsetup import configure_logging
from processd.config import ProcessdConfig, load_config
from processd.storage.eventlog import StorageError

log = logging.getLogger("processd")

async def run(config: ProcessdConfig) -> int:
    """Runs a ProcessdServer until a termination signal arrives (exit code 0) or its writer fails (1)."""
    from processd.api.server import ProcessdServer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = ProcessdServer(config)
    code = 0
    try:
        await server.start()
        tune_gc()
        stop_task = asyncio.create_task(stop.wait())
        fail_task = asyncio.create_task(server.writer.failed.wait())
        await asyncio.wait({stop_task, fail_task}, return_when=asyncio.FIRST_COMPLETED)
        stop_task.cancel()
        fail_task.cancel()
        if server.writer.failed.is_set():
            log.error("the event-log writer failed; exiting so a supervisor restarts processd")
            code = 1
        else:
            log.info("shutting down: flushing and committing queued batches")
    finally:
        await server.stop()
    if code == 0:
        log.info("processd stopped cleanly at seq %d", server.models.last_seq)
    return code


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point."""
    # Before the config: a deprecated env name in use is logged (once) while the config is read.
    configure_logging()
    try:
        config = load_config(argv)
    except ConfigError as exc:
        print(f"processd: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        code = asyncio.run(run(config))
    except (OSError, StorageError, ValueError) as exc:
        print(f"processd: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    main()
