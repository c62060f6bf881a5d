"""ingestd configuration: one frozen dataclass built from CLI flags and ``MEMPULSE_INGESTD_*`` environment variables.

CLI contract::

    ingestd --chain NAME_OR_ID=URL[,URL...] [--chain ...] --processd HOST:PORT [--metrics-port N]
            [--full-tx auto|on|off] [--fetch-max-response-bytes N]

``ws://``/``wss://`` URLs are pending-transaction sources; ``http://``/``https://`` URLs are fetch endpoints
(the first is primary, the rest are fallbacks; with none, the http(s) twin of the first ws URL is used).
``--chain NAME`` without ``=`` reads the URLs from ``MEMPULSE_INGESTD_CHAIN_<NAME>_URLS``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from common.chains import UnknownChainError, chain_name, parse_chain
from common.envconfig import ConfigError, Knobs, add_version_flag, parse_hostport

FULL_TX_MODES = ("auto", "on", "off")
#: How envelopes get their signed raw bytes (docs/ingestd.md, "Raw signed transactions").
RAW_TX_MODES = ("encode", "fetch", "off")


def redact_url(url: str) -> str:
    """``scheme://host:port`` of a URL plus ``/...`` when it has a path: paths and credentials often hold
    API keys, which must never reach logs or metrics labels."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    suffix = "/..." if parts.path not in ("", "/") or parts.query else ""
    return f"{parts.scheme}://{host}{port}{suffix}"


def http_twin(ws_url: str) -> str:
    """The http(s) URL served by the same node as a ws(s) URL."""
    if ws_url.startswith("wss://"):
        return "https://" + ws_url[len("wss://"):]
    if ws_url.startswith("ws://"):
        return "http://" + ws_url[len("ws://"):]
    raise ConfigError(f"not a ws:// URL: {redact_url(ws_url)}")


@dataclass(frozen=True)
class Source:
    """One pending-transaction WebSocket source; ``source_id`` is a log-safe name (no path, no credentials)."""

    source_id: str
    url: str


@dataclass(frozen=True)
class ChainConfig:
    """One chain to ingest: its id, its WebSocket sources and its fetch endpoints (primary first)."""

    chain_id: int
    name: str
    sources: tuple[Source, ...]
    fetch_urls: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class V2Router:
    """A Uniswap V2-style router of one chain for the pool state path (``ingestd.pools``): its calls swap on pairs of
    ``factory`` (20-byte addresses), whose pair creation code hashes to ``init_code_hash`` (32 bytes)."""

    chain_id: int
    router: bytes
    factory: bytes
    init_code_hash: bytes


def parse_v2_router(text: str) -> V2Router:
    """``CHAIN:ROUTER:FACTORY:INIT_CODE_HASH`` (chain name or id, 0x hex) -> V2Router; ConfigError otherwise."""
    parts = [p.strip() for p in text.split(":")]
    if len(parts) != 4:
        raise ConfigError(f"V2 router {text[:120]!r}: use CHAIN:ROUTER:FACTORY:INIT_CODE_HASH")
    try:
        chain_id = parse_chain(parts[0])
    except UnknownChainError as exc:
        raise ConfigError(f"V2 router {text[:120]!r}: {exc}") from None
    values = []
    for part, size, what in ((parts[1], 20, "router"), (parts[2], 20, "factory"), (parts[3], 32, "init code hash")):
        try:
            value = bytes.fromhex(part.removeprefix("0x"))
        except ValueError:
            value = b""
        if len(value) != size:
            raise ConfigError(f"V2 router {text[:120]!r}: the {what} is not {size} bytes of 0x hex")
        values.append(value)
    return V2Router(chain_id, values[0], values[1], values[2])


@dataclass(frozen=True)
class IngestConfig:
    """Every ingestd knob. Env names: ``MEMPULSE_INGESTD_<KNOB>`` (e.g. ``MEMPULSE_INGESTD_FETCH_BATCH_SIZE``)."""

    chains: tuple[ChainConfig, ...]
    processd: str = "127.0.0.1:50051"
    metrics_port: int = 0  # 0 = no metrics endpoint
    metrics_host: str = "127.0.0.1"
    full_tx: str = "auto"
    #: encode = re-encode from fields + signature, node's bytes (eth_getRawTransactionByHash) when that does not
    #: hash to the tx hash; fetch = always the node's bytes; off = no raw_tx.
    raw_tx: str = "encode"
    fetch_batch_size: int = 100
    fetch_batch_wait_ms: int = 5
    #: A partial fetch batch waits until its oldest hash was announced this long ago (0 = fetch at once when
    #: idle): fewer, fuller requests at light load for a bounded latency.
    fetch_linger_ms: int = 40
    fetch_max_in_flight: int = 8
    fetch_timeout_ms: int = 5000
    fetch_retries: int = 3
    fetch_backoff_ms: int = 50
    fetch_endpoint_cooldown_ms: int = 5000
    #: Largest node answer read (batch fetch and the start-up eth_chainId check); the rest is not read.
    fetch_max_response_bytes: int = 32 * 1024 * 1024
    fetch_queue_size: int = 20_000
    dedup_size: int = 500_000
    dedup_ttl_s: float = 900.0
    #: Sources recorded per transaction (the first included); later ones are counted as over_limit.
    max_sources_per_tx: int = 8
    #: Transactions whose sources the per-chain source log holds (chains with several sources only).
    source_log_size: int = 50_000
    outbound_queue_size: int = 20_000
    outbound_batch_size: int = 500
    outbound_flush_ms: int = 10
    #: A partial outbound batch waits until its oldest envelope was announced this long ago (0 = send at once
    #: when the stream is idle): per batch costs (gRPC write, processd's group commit) dominate at light load.
    outbound_linger_ms: int = 50
    outbound_max_unacked_batches: int = 64
    outbound_max_batch_bytes: int = 4 * 1024 * 1024
    grpc_max_message_bytes: int = 16 * 1024 * 1024
    stats_interval_ms: int = 1000
    source_silent_s: float = 30.0
    not_visible_after_s: float = 60.0
    ws_max_message_bytes: int = 4 * 1024 * 1024
    reconnect_min_ms: int = 100
    reconnect_max_ms: int = 10_000
    startup_check_timeout_ms: int = 5000
    shutdown_grace_ms: int = 3000
    #: Follow each chain's blocks (newHeads + eth_blockNumber polling; ingestd.blocks): on or off.
    follow_blocks: str = "on"
    #: Poll eth_blockNumber when no head arrived for this long (and always on a chain without a WS source).
    block_poll_interval_ms: int = 2000
    #: Missing heights fetched when the head jumps; beyond, the older ones are skipped (gap_too_large).
    max_block_gap: int = 64
    #: At start, the first head also queues this many heights below it (0 = start at the head; at most
    #: ``max_block_gap``): the blocks mined while ingestd was down reach processd, which ignores the ones it already
    #: stored. On by default: without it a transaction mined while ingestd was down stays pending in processd.
    block_backfill_depth: int = 64
    #: Heights waiting to be fetched (beyond: queue_full drops).
    block_queue_size: int = 256
    #: Transactions sent per block message (a larger block is sent with its first ones, truncated).
    max_block_txs: int = 10_000
    #: A new head whose parent is not the block delivered below it: the new branch is walked back by parent hash
    #: at most this many blocks (deeper reorgs are counted as reorg_too_deep and logged).
    max_reorg_depth: int = 64
    #: Hashes delivered as pending and not yet seen in a followed block that are re-checked (ingestd.pending);
    #: beyond, the oldest is no longer tracked (counted overflow).
    pending_track_size: int = 100_000
    #: How often the tracked pending hashes are re-checked with the node (0 = never: no TxGone sent).
    pending_recheck_interval_ms: int = 10_000
    #: Transactions delivered from the node's pool (txpool_content) at start and after a source reconnects
    #: (0 = no backfill); beyond, counted over_limit.
    backfill_max_txs: int = 20_000
    #: The pool state path (ingestd.pools; needs follow_blocks on): on or off.
    pool_state: str = "off"
    #: The V2 routers whose pending swaps name the pairs to read (--v2-router CHAIN:ROUTER:FACTORY:INIT_CODE_HASH).
    v2_routers: tuple[V2Router, ...] = ()
    #: Pairs tracked per chain (beyond: the least recently touched is evicted).
    pool_max_pairs: int = 10_000
    #: Pairs waiting for their first getReserves read per chain (beyond: queue_full drops).
    pool_queue_size: int = 1_000
    #: getReserves calls per block per chain (one JSON-RPC batch); the other waiting pairs wait for the next block.
    pool_reads_per_block: int = 100

    def chain(self, chain_id: int) -> ChainConfig:
        """The configuration of one chain (KeyError if not configured)."""
        for chain in self.chains:
            if chain.chain_id == chain_id:
                return chain
        raise KeyError(chain_id)


def _split_urls(text: str, what: str) -> list[str]:
    urls = [u.strip() for u in text.split(",") if u.strip()]
    if not urls:
        raise ConfigError(f"{what}: no URL given")
    for url in urls:
        if not url.startswith(("ws://", "wss://", "http://", "https://")):
            raise ConfigError(f"{what}: {redact_url(url)} is not a ws://, wss://, http:// or https:// URL")
    return urls


def parse_chain_spec(spec: str, env: Mapping[str, str]) -> ChainConfig:
    """Parses one ``--chain`` value (``NAME_OR_ID=URL[,URL...]`` or ``NAME`` reading the environment)."""
    name_part, sep, urls_text = spec.partition("=")
    name_part = name_part.strip()
    try:
        chain_id = parse_chain(name_part)
    except UnknownChainError as exc:
        raise ConfigError(f"--chain {name_part}: {exc}") from None
    if not sep:
        knob = f"chain_{name_part}_urls"
        source = Knobs("ingestd", env, deprecated={knob: (f"MEMPULSE_CHAIN_{name_part.upper()}_URLS",)})
        var, urls_text = source.raw(knob)
        if not urls_text.strip():
            raise ConfigError(f"--chain {name_part}: no URLs given and {source.name(knob)} is not set")
        urls = _split_urls(urls_text, var)
    else:
        urls = _split_urls(urls_text, f"--chain {name_part}")
    ws_urls = [u for u in urls if u.startswith(("ws://", "wss://"))]
    http_urls = [u for u in urls if u.startswith(("http://", "https://"))]
    if not ws_urls:
        raise ConfigError(f"--chain {name_part}: at least one ws:// or wss:// source URL is needed")
    if not http_urls:
        http_urls = [http_twin(ws_urls[0])]
    sources: list[Source] = []
    used: set[str] = set()
    for url in ws_urls:
        parts = urlsplit(url)
        base = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'wss' else 80)}"
        source_id, n = base, 1
        while source_id in used:
            n += 1
            source_id = f"{base}#{n}"
        used.add(source_id)
        sources.append(Source(source_id, url))
    return ChainConfig(chain_id, chain_name(chain_id), tuple(sources), tuple(http_urls))


def knobs(env: Mapping[str, str] | None = None) -> Knobs:
    """ingestd's environment knobs: ``MEMPULSE_INGESTD_<KNOB>``, the old ``MEMPULSE_INGEST_<KNOB>`` still accepted."""
    return Knobs("ingestd", os.environ if env is None else env, old_prefix="MEMPULSE_INGEST_")


def build_parser() -> argparse.ArgumentParser:
    """The ``ingestd`` argument parser (``--help`` documents every flag)."""
    parser = argparse.ArgumentParser(
        prog="ingestd",
        description="Streams the pending transactions of EVM chains to processd. Tuning knobs come from "
                    "MEMPULSE_INGESTD_* environment variables (see .env.example and docs/ingestd.md).")
    add_version_flag(parser)
    parser.add_argument("--chain", action="append", default=[], metavar="NAME_OR_ID[=URL[,URL...]]",
                        help="chain to ingest (repeatable): a chain name or numeric id, then its URLs. ws(s):// "
                             "URLs are pending-tx sources, http(s):// URLs fetch endpoints (first = primary). "
                             "Without '=URL', URLs come from MEMPULSE_INGESTD_CHAIN_<NAME>_URLS. Without any --chain, "
                             "MEMPULSE_INGESTD_CHAINS (comma-separated names) is used.")
    parser.add_argument("--processd", default=None, metavar="HOST:PORT",
                        help="processd gRPC address (default MEMPULSE_INGESTD_PROCESSD or 127.0.0.1:50051)")
    parser.add_argument("--metrics-port", type=int, default=None, metavar="N",
                        help="serve Prometheus metrics on 127.0.0.1:N (default MEMPULSE_INGESTD_METRICS_PORT; "
                             "0 = off)")
    parser.add_argument("--full-tx", choices=FULL_TX_MODES, default=None,
                        help="ask nodes for full transaction objects: auto = ask and fall back to hashes, "
                             "on = always ask, off = hashes + batch fetch (default MEMPULSE_INGESTD_FULL_TX "
                             "or auto)")
    parser.add_argument("--raw-tx", choices=RAW_TX_MODES, default=None,
                        help="signed raw bytes of each transaction: encode = re-encode them from the fields and "
                             "signature (checked against the hash; the node's eth_getRawTransactionByHash when "
                             "that fails), fetch = always ask the node, off = none (default MEMPULSE_INGESTD_RAW_TX "
                             "or encode)")
    parser.add_argument("--fetch-max-response-bytes", type=int, default=None, metavar="N",
                        help="stop reading a node's HTTP answer (batch fetch, start-up check) past N bytes; the "
                             "batch is retried, then its hashes are dropped as response_too_large (default "
                             "MEMPULSE_INGESTD_FETCH_MAX_RESPONSE_BYTES or 33554432)")
    parser.add_argument("--pool-state", choices=("on", "off"), default=None,
                        help="read the reserves of the V2 pairs pending swaps touch, once per block, and send them to "
                             "processd (needs block following; default MEMPULSE_INGESTD_POOL_STATE or off)")
    parser.add_argument("--v2-router", action="append", default=[], metavar="CHAIN:ROUTER:FACTORY:INIT_CODE_HASH",
                        help="a V2 router for --pool-state (repeatable; default MEMPULSE_INGESTD_V2_ROUTERS, "
                             "comma-separated)")
    return parser


def load_config(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> IngestConfig:
    """Builds the config from ``argv`` and ``env``; raises ConfigError (one line) on invalid input."""
    env = os.environ if env is None else env
    source = knobs(env)
    args = build_parser().parse_args(argv)
    specs: list[str] = list(args.chain)
    if not specs:
        specs = [s.strip() for s in source.get_str("chains", "").split(",") if s.strip()]
    if not specs:
        raise ConfigError("no chain configured: pass --chain NAME_OR_ID=URL[,URL...] (or set "
                          f"{source.name('chains')})")
    chains = [parse_chain_spec(spec, env) for spec in specs]
    ids = [c.chain_id for c in chains]
    dupes = sorted({cid for cid in ids if ids.count(cid) > 1})
    if dupes:
        raise ConfigError(f"chain {dupes[0]} is configured twice: put all its URLs in one --chain")
    processd = args.processd or source.get_str("processd", "127.0.0.1:50051")
    parse_hostport(processd, "--processd")
    metrics_port = args.metrics_port if args.metrics_port is not None else source.get_int("metrics_port", 0)
    if not 0 <= metrics_port < 65536:
        raise ConfigError(f"--metrics-port: {metrics_port} is not a port number")
    full_tx = args.full_tx or source.get_str("full_tx", "auto")
    if full_tx not in FULL_TX_MODES:
        raise ConfigError(f"{source.raw('full_tx')[0]}={full_tx!r}: use auto, on or off")
    raw_tx = args.raw_tx or source.get_str("raw_tx", "encode")
    if raw_tx not in RAW_TX_MODES:
        raise ConfigError(f"{source.raw('raw_tx')[0]}={raw_tx!r}: use encode, fetch or off")
    d = IngestConfig(chains=())

    def i(knob: str, default: int, minimum: int = 1) -> int:
        return source.get_int(knob, default, minimum=minimum)

    def f(knob: str, default: float) -> float:
        value = source.get_float(knob, default)
        if value <= 0:
            raise ConfigError(f"{source.raw(knob)[0]} must be > 0")
        return value

    max_response = (args.fetch_max_response_bytes if args.fetch_max_response_bytes is not None
                    else i("fetch_max_response_bytes", d.fetch_max_response_bytes, 1024))
    if max_response < 1024:
        raise ConfigError(f"--fetch-max-response-bytes: {max_response} is below 1024")
    cfg = IngestConfig(
        chains=tuple(chains), processd=processd, metrics_port=metrics_port,
        metrics_host=source.get_str("metrics_host", d.metrics_host), full_tx=full_tx, raw_tx=raw_tx,
        fetch_batch_size=i("fetch_batch_size", d.fetch_batch_size),
        fetch_batch_wait_ms=i("fetch_batch_wait_ms", d.fetch_batch_wait_ms, 0),
        fetch_linger_ms=i("fetch_linger_ms", d.fetch_linger_ms, 0),
        fetch_max_in_flight=i("fetch_max_in_flight", d.fetch_max_in_flight),
        fetch_timeout_ms=i("fetch_timeout_ms", d.fetch_timeout_ms),
        fetch_retries=i("fetch_retries", d.fetch_retries, 0),
        fetch_backoff_ms=i("fetch_backoff_ms", d.fetch_backoff_ms, 0),
        fetch_endpoint_cooldown_ms=i("fetch_endpoint_cooldown_ms", d.fetch_endpoint_cooldown_ms, 0),
        fetch_max_response_bytes=max_response,
        fetch_queue_size=i("fetch_queue_size", d.fetch_queue_size),
        dedup_size=i("dedup_size", d.dedup_size),
        dedup_ttl_s=f("dedup_ttl_s", d.dedup_ttl_s),
        max_sources_per_tx=i("max_sources_per_tx", d.max_sources_per_tx),
        source_log_size=i("source_log_size", d.source_log_size),
        outbound_queue_size=i("outbound_queue_size", d.outbound_queue_size),
        outbound_batch_size=i("outbound_batch_size", d.outbound_batch_size),
        outbound_flush_ms=i("outbound_flush_ms", d.outbound_flush_ms),
        outbound_linger_ms=i("outbound_linger_ms", d.outbound_linger_ms, 0),
        outbound_max_unacked_batches=i("outbound_max_unacked_batches", d.outbound_max_unacked_batches),
        outbound_max_batch_bytes=i("outbound_max_batch_bytes", d.outbound_max_batch_bytes, 1024),
        grpc_max_message_bytes=i("grpc_max_message_bytes", d.grpc_max_message_bytes, 1024),
        stats_interval_ms=i("stats_interval_ms", d.stats_interval_ms, 10),
        source_silent_s=f("source_silent_s", d.source_silent_s),
        not_visible_after_s=f("not_visible_after_s", d.not_visible_after_s),
        ws_max_message_bytes=i("ws_max_message_bytes", d.ws_max_message_bytes, 1024),
        reconnect_min_ms=i("reconnect_min_ms", d.reconnect_min_ms),
        reconnect_max_ms=i("reconnect_max_ms", d.reconnect_max_ms),
        startup_check_timeout_ms=i("startup_check_timeout_ms", d.startup_check_timeout_ms),
        shutdown_grace_ms=i("shutdown_grace_ms", d.shutdown_grace_ms, 0),
        **_block_knobs(source, d), **_pool_knobs(args, source, d))
    if cfg.pool_state == "on" and cfg.follow_blocks != "on":
        raise ConfigError("--pool-state on needs block following (MEMPULSE_INGESTD_FOLLOW_BLOCKS=on): pool states are "
                          "read once per block")
    return cfg


def _block_knobs(source: Knobs, d: IngestConfig) -> dict[str, Any]:
    """The block follower's knobs (``ingestd.blocks``) and the lifecycle's (``ingestd.pending``,
    ``ingestd.backfill``)."""
    follow_blocks = source.get_str("follow_blocks", d.follow_blocks)
    if follow_blocks not in ("on", "off"):
        raise ConfigError(f"{source.raw('follow_blocks')[0]}={follow_blocks!r}: use on or off")
    return {"follow_blocks": follow_blocks,
            "block_poll_interval_ms": source.get_int("block_poll_interval_ms", d.block_poll_interval_ms, minimum=10),
            "max_block_gap": source.get_int("max_block_gap", d.max_block_gap, minimum=0),
            "block_backfill_depth": source.get_int("block_backfill_depth", d.block_backfill_depth, minimum=0),
            "block_queue_size": source.get_int("block_queue_size", d.block_queue_size, minimum=1),
            "max_block_txs": source.get_int("max_block_txs", d.max_block_txs, minimum=1),
            "max_reorg_depth": source.get_int("max_reorg_depth", d.max_reorg_depth, minimum=0),
            "pending_track_size": source.get_int("pending_track_size", d.pending_track_size, minimum=1),
            "pending_recheck_interval_ms": source.get_int("pending_recheck_interval_ms",
                                                          d.pending_recheck_interval_ms, minimum=0),
            "backfill_max_txs": source.get_int("backfill_max_txs", d.backfill_max_txs, minimum=0)}


def _pool_knobs(args: argparse.Namespace, source: Knobs, d: IngestConfig) -> dict[str, Any]:
    """The pool state path's knobs (``ingestd.pools``)."""
    pool_state = args.pool_state or source.get_str("pool_state", d.pool_state)
    if pool_state not in ("on", "off"):
        raise ConfigError(f"{source.raw('pool_state')[0]}={pool_state!r}: use on or off")
    specs = list(args.v2_router) or [s for s in source.get_str("v2_routers", "").split(",") if s.strip()]
    return {"pool_state": pool_state, "v2_routers": tuple(parse_v2_router(s) for s in specs),
            "pool_max_pairs": source.get_int("pool_max_pairs", d.pool_max_pairs, minimum=1),
            "pool_queue_size": source.get_int("pool_queue_size", d.pool_queue_size, minimum=1),
            "pool_reads_per_block": source.get_int("pool_reads_per_block", d.pool_reads_per_block, minimum=1)}
