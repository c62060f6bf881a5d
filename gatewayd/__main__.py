"""``gatewayd`` / ``python -m gatewayd``: serve the REST + SSE API in front of processd."""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Sequence
from functools import partial

from common.envconfig import ConfigError
from common.logsetup import configure_logging
from gatewayd.config import GatewayConfig, load_config

log = logging.getLogger("gatewayd")


def _check_listen(config: GatewayConfig) -> None:
    """Fails early, with one line, when the listen address cannot be bound (port in use, bad host)."""
    try:
        family = socket.AF_INET6 if ":" in config.listen_host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((config.listen_host, config.listen_port))
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {config.listen_host}:{config.listen_port}: {exc.strerror or exc}; "
            "pick another --listen address or stop what uses it"
        ) from None


def serve(config: GatewayConfig) -> None:
    """Runs the server until SIGINT/SIGTERM (Sanic handles both and shuts down cleanly)."""
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    from gatewayd.app import create_app

    log.info(
        "gatewayd listening on http://%s:%d, processd %s, auth %s, rate limit %s rps (burst %d), workers %d",
        config.listen_host,
        config.listen_port,
        config.processd_target,
        f"on ({len(config.api_keys)} keys)" if config.auth_enabled else "off",
        config.rate_limit_rps or "off",
        config.rate_limit_burst,
        config.workers,
    )
    if config.workers == 1:
        # One process, no worker manager: the least overhead per request on a small machine.
        app = create_app(config, name="gatewayd")
        app.run(
            host=config.listen_host,
            port=config.listen_port,
            single_process=True,
            access_log=config.access_log,
            motd=False,
        )
        return
    loader = AppLoader(factory=partial(create_app, config, "gatewayd"))
    app = loader.load()
    app.prepare(
        host=config.listen_host,
        port=config.listen_port,
        workers=config.workers,
        access_log=config.access_log,
        motd=False,
    )
    Sanic.serve(primary=app, app_loader=loader)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gatewayd`` console script."""
    try:
        config = load_config(argv)
        _check_listen(config)
    except ConfigError as exc:
        print(f"gatewayd: error: {exc}", file=sys.stderr)
        return 2
    configure_logging()
    serve(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
