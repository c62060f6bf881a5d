"""gatewayd configuration: one frozen dataclass built from CLI flags, then ``MEMPULSE_GATEWAYD_*`` env vars, then
defaults (the previous release's names are still read, with a deprecation warning)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common.chains import UnknownChainError, parse_chain
from common.envconfig import ConfigError, Knobs, add_version_flag, parse_hostport

DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_PROCESSD = "127.0.0.1:50051"
#: Sanic refuses header limits above this (its parser reads at most 16 KiB of header).
MAX_HEADER_LIMIT_BYTES = 16384


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """One processd shard: the chains whose reads it answers and its gRPC address (``1,10=host:port``)."""

    chains: tuple[int, ...]
    target: str

    @property
    def name(self) -> str:
        """How the shard is named in answers, logs and metrics: its address."""
        return self.target


def parse_shard(text: str) -> ShardSpec:
    """``CHAINS=HOST:PORT`` (chains: comma-separated ids or known names) -> :class:`ShardSpec`."""
    chains_text, sep, target = text.strip().partition("=")
    if not sep or not chains_text.strip():
        raise ConfigError(f"--processd {text!r}: a shard is CHAINS=HOST:PORT (e.g. 1,10=10.0.0.5:50051)")
    parse_hostport(target.strip(), "--processd")
    chains: list[int] = []
    for part in chains_text.split(","):
        try:
            chain = parse_chain(part.strip())
        except UnknownChainError:
            raise ConfigError(f"--processd {text!r}: unknown chain {part.strip()!r}") from None
        if chain in chains:
            raise ConfigError(f"--processd {text!r}: chain {chain} is listed twice")
        chains.append(chain)
    return ShardSpec(tuple(sorted(chains)), target.strip())


def parse_processd(values: Sequence[str]) -> tuple[str, tuple[ShardSpec, ...]]:
    """The ``--processd`` values (or the env value split on ``;``): one plain ``HOST:PORT`` (one processd for
    every chain: the default), or one ``CHAINS=HOST:PORT`` per shard. Returns (the first target, the shards;
    empty for one plain target)."""
    values = [v.strip() for v in values if v.strip()]
    if not values:
        return DEFAULT_PROCESSD, ()
    if len(values) == 1 and "=" not in values[0]:
        parse_hostport(values[0], "--processd")
        return values[0], ()
    if any("=" not in v for v in values):
        raise ConfigError("--processd: with several processd, each is CHAINS=HOST:PORT (e.g. 1,10=host:50051)")
    shards = tuple(parse_shard(v) for v in values)
    _check_shards(shards)
    return shards[0].target, shards


def _check_shards(shards: Sequence[ShardSpec]) -> None:
    owner: dict[int, str] = {}
    targets: set[str] = set()
    for shard in shards:
        if shard.target in targets:
            raise ConfigError(f"--processd: {shard.target} is given twice; list all its chains in one CHAINS=")
        targets.add(shard.target)
        for chain in shard.chains:
            if chain in owner:
                raise ConfigError(f"--processd: chain {chain} is given to {owner[chain]} and {shard.target}; "
                                  "each chain belongs to one processd")
            owner[chain] = shard.target


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Every knob of gatewayd. Build it with :func:`load_config` (CLI + env) or directly in tests."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    #: processd's gRPC address (HOST:PORT); with shards, the first shard's.
    processd_target: str = DEFAULT_PROCESSD
    #: processd split by chain (docs/gatewayd.md#several-processd-shards-by-chain); empty = one processd
    #: (``processd_target``) for every chain, the default.
    processd_shards: tuple[ShardSpec, ...] = ()
    #: Deadline of every unary gRPC call to processd.
    grpc_timeout_ms: int = 2000
    #: Accepted API keys; empty = authentication off (every route is public).
    api_keys: frozenset[str] = field(default_factory=frozenset, repr=False)
    #: Token bucket per API key (per client IP when authentication is off); 0 disables rate limiting.
    rate_limit_rps: float = 100.0
    rate_limit_burst: int = 200
    #: Bound of the bucket table; the least recently used bucket is dropped beyond it.
    rate_limit_max_keys: int = 10000
    #: Failed API keys allowed per client address (token bucket: per minute, burst), whatever the request rate
    #: limit; an address past it is refused (429) before its key is even compared. 0 = off.
    auth_failure_limit_per_min: float = 60.0
    auth_failure_burst: int = 20
    #: Allowed CORS origins ("*" for any); empty = no CORS headers (off).
    cors_origins: tuple[str, ...] = ()
    #: Largest accepted request (header + body); bigger gets 413.
    max_request_bytes: int = 16384
    #: Largest accepted request header block; bigger gets 431.
    max_header_bytes: int = 8192
    #: Seconds a client has to send a complete request head (from the accept, or from the first byte of a later
    #: request on a kept-alive connection); then 408 and close. Sanic's REQUEST_TIMEOUT restarts on every byte.
    header_timeout_s: float = 10.0
    #: Open connections per client address (per worker); more are answered 503 at accept and closed. 0 = no cap.
    max_connections_per_address: int = 256
    #: Concurrent /events/stream clients; more get 503.
    sse_max_clients: int = 64
    #: Seconds between SSE heartbeat comments when no event flows.
    sse_heartbeat_s: float = 15.0
    #: How long a rendered "newest" view (/transactions, /dashboard/snapshot, /features/recent, /opps/recent)
    #: is reused for identical queries; 0 = off (identical concurrent queries still share one processd call).
    cache_ttl_ms: int = 50
    #: The same for /dashboard/snapshot, the most expensive view (dashboards poll it about once a second).
    snapshot_cache_ttl_ms: int = 250
    #: Sanic worker processes (each has its own gRPC channel and rate-limit table).
    workers: int = 1
    #: Log every request (costs throughput).
    access_log: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.listen_port < 65536:
            raise ConfigError(f"listen port must be 1..65535, got {self.listen_port}")
        parse_hostport(self.processd_target, "processd")
        _check_shards(self.processd_shards)
        if self.grpc_timeout_ms < 1:
            raise ConfigError(f"grpc_timeout_ms must be >= 1, got {self.grpc_timeout_ms}")
        if self.rate_limit_rps < 0:
            raise ConfigError(f"rate_limit_rps must be >= 0, got {self.rate_limit_rps}")
        if self.rate_limit_rps > 0 and self.rate_limit_burst < 1:
            raise ConfigError(f"rate_limit_burst must be >= 1, got {self.rate_limit_burst}")
        if self.auth_failure_limit_per_min < 0:
            raise ConfigError(f"auth_failure_limit_per_min must be >= 0, got {self.auth_failure_limit_per_min}")
        if self.auth_failure_limit_per_min > 0 and self.auth_failure_burst < 1:
            raise ConfigError(f"auth_failure_burst must be >= 1, got {self.auth_failure_burst}")
        if self.rate_limit_max_keys < 1:
            raise ConfigError(f"rate_limit_max_keys must be >= 1, got {self.rate_limit_max_keys}")
        if not 1024 <= self.max_header_bytes <= MAX_HEADER_LIMIT_BYTES:
            raise ConfigError(f"max_header_bytes must be 1024..{MAX_HEADER_LIMIT_BYTES}, got {self.max_header_bytes}")
        if self.max_request_bytes < self.max_header_bytes:
            raise ConfigError(
                f"max_request_bytes ({self.max_request_bytes}) must be >= max_header_bytes ({self.max_header_bytes})"
            )
        if not 0 < self.header_timeout_s <= 300:
            raise ConfigError(f"header_timeout_s must be > 0 and <= 300, got {self.header_timeout_s}")
        if self.max_connections_per_address < 0:
            raise ConfigError(f"max_connections_per_address must be >= 0, got {self.max_connections_per_address}")
        if self.sse_max_clients < 1:
            raise ConfigError(f"sse_max_clients must be >= 1, got {self.sse_max_clients}")
        if self.sse_heartbeat_s <= 0:
            raise ConfigError(f"sse_heartbeat_s must be > 0, got {self.sse_heartbeat_s}")
        if not 0 <= self.cache_ttl_ms <= 60000:
            raise ConfigError(f"cache_ttl_ms must be 0..60000, got {self.cache_ttl_ms}")
        if not 0 <= self.snapshot_cache_ttl_ms <= 60000:
            raise ConfigError(f"snapshot_cache_ttl_ms must be 0..60000, got {self.snapshot_cache_ttl_ms}")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        for key in self.api_keys:
            if not key or any(ch.isspace() for ch in key) or not key.isprintable():
                raise ConfigError("API keys must be non-empty printable strings without whitespace")

    @property
    def auth_enabled(self) -> bool:
        """True when API keys are configured."""
        return bool(self.api_keys)


def parse_api_keys(text: str) -> frozenset[str]:
    """Keys separated by commas or newlines; ``#`` starts a comment line; blanks are ignored."""
    keys: set[str] = set()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keys.update(part.strip() for part in line.split(",") if part.strip())
    return frozenset(keys)


def read_api_keys_file(path: str) -> frozenset[str]:
    """Reads an API key file (one key per line); a missing or unreadable file is a ConfigError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read API keys file {path!r}: {exc.__class__.__name__}") from None
    keys = parse_api_keys(text)
    if not keys:
        raise ConfigError(f"API keys file {path!r} contains no key")
    return keys


def build_parser() -> argparse.ArgumentParser:
    """The ``gatewayd`` command line. Every flag also has a ``MEMPULSE_GATEWAYD_*`` environment variable."""
    p = argparse.ArgumentParser(
        prog="gatewayd",
        description="mempulse REST + Server-Sent Events gateway in front of processd's gRPC Query service.",
    )
    add_version_flag(p)
    add = p.add_argument
    add("--listen", help=f"HOST:PORT to serve HTTP on (env MEMPULSE_GATEWAYD_LISTEN, default {DEFAULT_LISTEN})")
    add("--processd", action="append",
        help=f"processd gRPC HOST:PORT (default {DEFAULT_PROCESSD}); or, repeated, one CHAINS=HOST:PORT per processd "
        "shard (--processd 1,10=host:50051 --processd 137=host2:50051; env MEMPULSE_GATEWAYD_PROCESSD, shards "
        "separated by ';')")
    add("--grpc-timeout-ms", type=int,
        help="deadline of each gRPC call (env MEMPULSE_GATEWAYD_GRPC_TIMEOUT_MS, default 2000)")
    add(
        "--api-keys-file",
        help="file with one API key per line; keys in env MEMPULSE_GATEWAYD_API_KEYS (comma-separated) are added. "
        "No keys = no authentication (env MEMPULSE_GATEWAYD_API_KEYS_FILE)",
    )
    add("--rate-limit-rps", type=float,
        help="requests/s per key, 0 = off (env MEMPULSE_GATEWAYD_RATE_LIMIT_RPS, default 100)")
    add("--rate-limit-burst", type=int,
        help="token bucket size per key (env MEMPULSE_GATEWAYD_RATE_LIMIT_BURST, default 200)")
    add(
        "--rate-limit-max-keys",
        type=int,
        help="bound of the per-key bucket table (env MEMPULSE_GATEWAYD_RATE_LIMIT_MAX_KEYS, default 10000)",
    )
    add(
        "--auth-failure-limit-per-min",
        type=float,
        help="failed API keys per client address per minute, then 429 even for a right key until the bucket "
        "refills, 0 = off (env MEMPULSE_GATEWAYD_AUTH_FAILURE_LIMIT_PER_MIN, default 60)",
    )
    add(
        "--auth-failure-burst",
        type=int,
        help="failed API keys an address may send at once (env MEMPULSE_GATEWAYD_AUTH_FAILURE_BURST, default 20)",
    )
    add("--cors-origins",
        help="comma-separated allowed origins or '*'; empty = CORS off (env MEMPULSE_GATEWAYD_CORS_ORIGINS)")
    add("--max-request-bytes", type=int,
        help="request size limit, 413 above (env MEMPULSE_GATEWAYD_MAX_REQUEST_BYTES, 16384)")
    add("--max-header-bytes", type=int,
        help="header size limit, 431 above (env MEMPULSE_GATEWAYD_MAX_HEADER_BYTES, 8192)")
    add(
        "--header-timeout-s",
        type=float,
        help="seconds to send a complete request head, then 408 (env MEMPULSE_GATEWAYD_HEADER_TIMEOUT_S, default 10)",
    )
    add(
        "--max-connections-per-address",
        type=int,
        help="open connections per client address, 503 at accept beyond, 0 = no cap "
        "(env MEMPULSE_GATEWAYD_MAX_CONNECTIONS_PER_ADDRESS, default 256)",
    )
    add("--sse-max-clients", type=int,
        help="concurrent SSE streams (env MEMPULSE_GATEWAYD_SSE_MAX_CLIENTS, default 64)")
    add("--sse-heartbeat-s", type=float,
        help="SSE heartbeat interval (env MEMPULSE_GATEWAYD_SSE_HEARTBEAT_S, default 15)")
    add(
        "--cache-ttl-ms",
        type=int,
        help="reuse a rendered newest-items view this long for identical queries, 0 = off "
        "(env MEMPULSE_GATEWAYD_CACHE_TTL_MS, default 50)",
    )
    add(
        "--snapshot-cache-ttl-ms",
        type=int,
        help="the same for /dashboard/snapshot (env MEMPULSE_GATEWAYD_SNAPSHOT_CACHE_TTL_MS, default 250)",
    )
    add("--workers", type=int, help="Sanic worker processes (env MEMPULSE_GATEWAYD_WORKERS, default 1)")
    add("--access-log", action="store_true", default=None, help="log every request (env MEMPULSE_GATEWAYD_ACCESS_LOG)")
    return p


#: The previous release's names that were not ``MEMPULSE_<KNOB>``.
_RENAMED: dict[str, tuple[str, ...]] = {
    "listen": ("MEMPULSE_GATEWAY_LISTEN",),
    "processd": ("MEMPULSE_PROCESSD_TARGET",),
    "workers": ("MEMPULSE_GATEWAY_WORKERS",),
}


def knobs(env: Mapping[str, str] | None = None) -> Knobs:
    """gatewayd's environment knobs: ``MEMPULSE_GATEWAYD_<KNOB>``, the previous release's names still accepted."""
    return Knobs("gatewayd", os.environ if env is None else env, old_prefix="MEMPULSE_", deprecated=_RENAMED)


def _int(flag: int | None, knob: str, default: int, env: Knobs) -> int:
    return flag if flag is not None else env.get_int(knob, default)


def _float(flag: float | None, knob: str, default: float, env: Knobs) -> float:
    return flag if flag is not None else env.get_float(knob, default)


def load_config(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> GatewayConfig:
    """Builds the config from ``argv`` and ``env`` (defaults: ``sys.argv[1:]``, ``os.environ``).

    Raises :class:`ConfigError` with a one-line message on any bad value.
    """
    source = knobs(env)
    args = build_parser().parse_args(argv)
    listen = args.listen or source.get_str("listen", DEFAULT_LISTEN)
    host, port = parse_hostport(listen, "--listen")
    target, shards = parse_processd(args.processd or source.get_str("processd", DEFAULT_PROCESSD).split(";"))

    keys = parse_api_keys(source.raw("api_keys")[1])
    keys_file = args.api_keys_file or source.get_str("api_keys_file", "")
    if keys_file:
        keys = keys | read_api_keys_file(keys_file)

    cors_text = args.cors_origins if args.cors_origins is not None else source.get_str("cors_origins", "")
    cors = tuple(o.strip() for o in cors_text.split(",") if o.strip())

    return GatewayConfig(
        listen_host=host,
        listen_port=port,
        processd_target=target,
        processd_shards=shards,
        grpc_timeout_ms=_int(args.grpc_timeout_ms, "grpc_timeout_ms", 2000, source),
        api_keys=keys,
        rate_limit_rps=_float(args.rate_limit_rps, "rate_limit_rps", 100.0, source),
        rate_limit_burst=_int(args.rate_limit_burst, "rate_limit_burst", 200, source),
        rate_limit_max_keys=_int(args.rate_limit_max_keys, "rate_limit_max_keys", 10000, source),
        auth_failure_limit_per_min=_float(args.auth_failure_limit_per_min, "auth_failure_limit_per_min", 60.0,
                                          source),
        auth_failure_burst=_int(args.auth_failure_burst, "auth_failure_burst", 20, source),
        cors_origins=cors,
        max_request_bytes=_int(args.max_request_bytes, "max_request_bytes", 16384, source),
        max_header_bytes=_int(args.max_header_bytes, "max_header_bytes", 8192, source),
        header_timeout_s=_float(args.header_timeout_s, "header_timeout_s", 10.0, source),
        max_connections_per_address=_int(
            args.max_connections_per_address, "max_connections_per_address", 256, source
        ),
        sse_max_clients=_int(args.sse_max_clients, "sse_max_clients", 64, source),
        sse_heartbeat_s=_float(args.sse_heartbeat_s, "sse_heartbeat_s", 15.0, source),
        cache_ttl_ms=_int(args.cache_ttl_ms, "cache_ttl_ms", 50, source),
        snapshot_cache_ttl_ms=_int(args.snapshot_cache_ttl_ms, "snapshot_cache_ttl_ms", 250, source),
        workers=_int(args.workers, "workers", 1, source),
        access_log=args.access_log if args.access_log is not None else source.get_bool("access_log", False),
    )
