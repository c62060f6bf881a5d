"""``gatewayd`` / ``python -m gatewayd``: serve the REST + SSE API in front of processd."""

from __future__ import annotations

import logging
import re
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


_QUERY_PAIR = re.compile(r"([?&])([^=&]*)=([^&]*)")


class RedactQueryFilter(logging.Filter):
    """Masks the values of query parameters gatewayd does not take (a client may put a key in the URL,
    ``?api_key=...``: such a request gets a 400, and its secret must not reach the access log)."""

    def __init__(self) -> None:
        super().__init__()
        from gatewayd.params import route_params

        self.known = frozenset(name for specs in route_params(True).values() for name in specs)

    def _mask(self, match: re.Match[str]) -> str:
        sep, name, value = match.groups()
        return f"{sep}{name}={value if name in self.known else '***'}"

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        if isinstance(request, str) and "?" in request:
            record.request = _QUERY_PAIR.sub(self._mask, request)
        return True


def configure_access_log() -> None:
    """Sanic's ``sanic.access`` records carry host, request, status and size as extra fields with an empty
    message, so the shared one-line format would print nothing useful: give them a format of their own."""
    handler = logging.StreamHandler()
    handler.addFilter(RedactQueryFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(host)s %(request)s %(status)s %(byte)s")
    )
    access = logging.getLogger("sanic.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False


def serve(config: GatewayConfig) -> None:
    """Runs the server until SIGINT/SIGTERM (Sanic handles both and shuts down cleanly)."""
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    from gatewayd.app import create_app
    from gatewayd.connguard import GuardedHttpProtocol

    per = "key" if config.auth_enabled else "client address"
    limit = f"{config.rate_limit_rps:g} rps per {per} (burst {config.rate_limit_burst})"
    log.info(
        "gatewayd listening on http://%s:%d, processd %s, auth %s, rate limit %s, workers %d",
        config.listen_host,
        config.listen_port,
        "; ".join(f"{','.join(map(str, s.chains))}={s.target}" for s in config.processd_shards)
        or config.processd_target,
        f"on ({len(config.api_keys)} keys)" if config.auth_enabled else "off",
        limit if config.rate_limit_rps else "off",
        config.workers,
    )
    if config.workers == 1:
        # One process, no worker manager: the least overhead per request on a small machine.
        app = create_app(config, name="gatewayd")
        app.run(
            host=config.listen_host,
            port=config.listen_port,
            single_process=True,
            # Per-address connection cap, request-head deadline, safe handling of unparsable heads.
            protocol=GuardedHttpProtocol,
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
        protocol=GuardedHttpProtocol,
        access_log=config.access_log,
        motd=False,
    )
    Sanic.serve(primary=app, app_loader=loader)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gatewayd`` console script."""
    # Before the config: a deprecated env name in use is logged (once) while the config is read.
    configure_logging()
    try:
        config = load_config(argv)
        _check_listen(config)
    except ConfigError as exc:
        print(f"gatewayd: error: {exc}", file=sys.stderr)
        return 2
    if config.access_log:
        configure_access_log()
    serve(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
