"""processd configuration: one frozen dataclass built from CLI flags and ``MEMPULSE_PROCESSD_*`` environment
variables (the previous release's ``MEMPULSE_<KNOB>`` names are still read, with a deprecation warning).

Precedence: CLI flag, then environment variable, then the default. Every knob carries its unit in its name.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from common import limits
from common.chains import UnknownChainError, parse_chain
from common.envconfig import ConfigError, Knobs, add_version_flag, parse_hostport
from processd.analysis.validation import max_envelope_bytes

#: What a response holds beside its largest record (a stored transaction's other fields, a page's cursor).
_MESSAGE_HEADROOM_BYTES = 64 * 1024

DURABILITY_MODES = ("sync", "nosync")


@dataclass(frozen=True, slots=True)
class ProcessdConfig:
    """Every processd knob. Sizes in bytes or MiB, times in ms or s, as the names say."""

    data_dir: Path
    listen_host: str = "127.0.0.1"
    listen_port: int = 50051
    #: Prometheus /metrics port on the listen host; 0 disables the metrics endpoint.
    metrics_port: int = 0
    #: Longest time an envelope waits for its group commit once the writer is idle.
    flush_interval_ms: int = 2
    #: Most envelopes in one LMDB write transaction. Under load the group grows to what is queued and prepared;
    #: larger groups dirty each page of the (chain, hash) index for more transactions per fsync (throughput
    #: stays flat as the log grows), at the cost of ack latency when saturated. Idle: small groups anyway.
    flush_max_events: int = 32768
    #: ``sync``: every commit is fsync'd before its ack (survives power loss). ``nosync``: commits reach the
    #: OS page cache only (survives a processd crash, not an OS crash; several times faster).
    durability: str = "sync"
    map_size_mb: int = 1024
    #: The map grows in steps up to this size on MapFullError; beyond it writes are rejected (storage_full).
    map_max_size_mb: int = 65536
    #: Retention: keep at most this many events (0 = unlimited) ...
    retention_max_events: int = 0
    #: ... and/or events no older than this (0 = unlimited).
    retention_max_age_s: int = 0
    #: Envelopes accepted into processd but not yet committed (all streams together).
    commit_queue_max_envelopes: int = 65536
    #: Unacked batches one ingest stream may have in flight before processd stops reading it.
    stream_max_inflight_batches: int = 64
    #: How long a stream waits for commit-queue room before it is answered RESOURCE_EXHAUSTED.
    queue_full_timeout_ms: int = 5000
    #: Largest gRPC message processd accepts or sends.
    max_message_bytes: int = 16 * 1024 * 1024
    #: Largest calldata accepted per envelope.
    max_input_bytes: int = 128 * 1024
    #: Byte budget of one Query page and of one SubscribeEvents message: a page ends (``truncated``, with a
    #: cursor to go on) before a record would take it past this, whatever its count limit. 0 = half of
    #: ``max_message_bytes`` (8 MiB of 16), which leaves room for the rest of a snapshot and for the one record
    #: a page always holds (at most ``max_input_bytes`` of calldata plus its envelope).
    max_page_bytes: int = 0
    #: Chains served (empty = every positive chain id).
    chain_ids: frozenset[int] = frozenset()
    #: Most distinct chains stored (counters and windows are per chain); envelopes of further chains are
    #: rejected as unknown_chain.
    max_chains: int = 1024
    #: Sources kept per transaction, the first included (further TxSightings are counted as over_limit), and
    #: distinct sources whose first-seen wins are counted per chain (further ones are counted as "~other").
    max_sources_per_tx: int = 16
    #: Transaction lifecycle (issue 16): tracked from a chain's first stored block. Off: blocks are stored, no
    #: lifecycle event is derived.
    lifecycle_enabled: bool = True
    #: A tracked pending transaction not included within this time of its first seen, by block time, is dropped
    #: as expired (evaluated when a block of its chain is committed).
    lifecycle_ttl_ms: int = 3_600_000
    #: Pending transactions tracked over all chains; past it new ones stay untracked (counted: overflow).
    lifecycle_max_pending: int = 200_000
    #: Blocks per chain the lifecycle keeps to undo a reorg; deeper reorgs are recorded as too_deep.
    lifecycle_max_reorg_depth: int = 64
    #: Run the lifecycle's tracker and event encoding in a child process (off the GIL of the event loop and the
    #: single writer); off: in the single writer's thread. The same events either way.
    lifecycle_process: bool = True
    max_sources_per_chain: int = 64
    recent_tx_per_chain: int = 2000
    recent_features: int = 2000
    opportunity_window: int = 5000
    #: Pairs the pool read model holds (latest reserves per (chain, pair); the least recently updated is evicted).
    pool_max_pairs: int = 100_000
    max_subscribers: int = 64
    #: Filters one SubscribeMany stream may hold at once (an add past it ends the stream: RESOURCE_EXHAUSTED).
    max_filters_per_stream: int = 4096
    #: Live events buffered per subscriber before it is cut off as too slow.
    subscriber_queue_events: int = 20000
    #: Default / maximum page sizes of Query RPCs.
    default_page_limit: int = limits.DEFAULT_PAGE_LIMIT
    max_page_limit: int = limits.MAX_PAGE_LIMIT
    #: A scan with filters examines at most this many events per call (it returns a cursor to continue).
    scan_max_examined: int = 20000
    #: Processes that prepare batches (validation, decoding, features, ranking, event encoding) beside the
    #: writer; 0 = one thread inside processd (uses one core at most). See processd/analysis/pool.py.
    analysis_workers: int = 2
    #: A worker holding batches this long without answering is killed and replaced (its batches are prepared
    #: in-process meanwhile); a 500-transaction batch takes about 10 ms.
    analysis_stall_timeout_ms: int = 10_000
    #: The operator's consent to move a damaged event log (truncated, emptied, foreign) aside into
    #: ``<data-dir>/damaged-<time>/`` and start an empty one; without it processd refuses to start (exit 2).
    start_empty_over_damaged_log: bool = False
    #: After a commit failed for lack of disk space, ingest is refused (storage_full) for this long before the
    #: next batch tries a commit again.
    disk_full_retry_ms: int = 1000
    #: Directory of user ABI JSON files decoded beside the built-in tables (None = none); see
    #: processd/analysis/decoding/userabi.py for the file shapes, the precedence and the bounds.
    abi_dir: Path | None = None
    #: JSON file of extra Uniswap V2-style factories the valuation knows (a local chain's own: factory, init code
    #: hash, routers, fee, wrapped native token; docs/valuation.md#venues); None = the built-in mainnet ones.
    valuation_venues_file: Path | None = None
    #: Value swaps on the pool states ingestd sends (the pipeline's log-ordered pool view, docs/valuation.md);
    #: off = every opportunity keeps its heuristic score (``valued: false``).
    valuation: bool = True
    #: The largest front-run a valued sandwich may use, in native wei (the attacker's capital; a front-run in
    #: another token is priced at its WETH pair's reserves, docs/valuation.md); 0 = bounded by the victim only.
    valuation_max_capital_wei: int = 0

    @property
    def page_bytes(self) -> int:
        """The page byte budget in effect (``max_page_bytes``, or half of ``max_message_bytes`` when 0)."""
        return self.max_page_bytes or self.max_message_bytes // 2


def _positive(name: str, value: int, minimum: int = 1) -> int:
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``processd`` command line; each flag also reads ``MEMPULSE_PROCESSD_<FLAG>`` from the environment."""
    p = argparse.ArgumentParser(
        prog="processd",
        description="mempulse processd: validates, decodes, ranks and durably logs pending transactions "
        "(LMDB event log, group commit) and serves the Query gRPC API.",
    )
    add_version_flag(p)
    p.add_argument("--data-dir", help="LMDB directory (env MEMPULSE_PROCESSD_DATA_DIR); created if missing")
    p.add_argument("--listen", help="gRPC HOST:PORT (env MEMPULSE_PROCESSD_LISTEN, default 127.0.0.1:50051)")
    p.add_argument("--metrics-port", type=int,
                   help="Prometheus metrics port, 0 = off (env MEMPULSE_PROCESSD_METRICS_PORT)")
    p.add_argument("--durability", choices=DURABILITY_MODES,
                   help="sync (default) or nosync (env MEMPULSE_PROCESSD_DURABILITY)")
    p.add_argument("--flush-interval-ms", type=int,
                   help="group commit wait (env MEMPULSE_PROCESSD_FLUSH_INTERVAL_MS, 2)")
    p.add_argument("--flush-max-events", type=int,
                   help="envelopes per commit (env MEMPULSE_PROCESSD_FLUSH_MAX_EVENTS, 32768)")
    p.add_argument("--map-size-mb", type=int, help="initial LMDB map size (env MEMPULSE_PROCESSD_MAP_SIZE_MB, 1024)")
    p.add_argument("--map-max-size-mb", type=int,
                   help="LMDB map growth limit (env MEMPULSE_PROCESSD_MAP_MAX_SIZE_MB, 65536)")
    p.add_argument("--retention-max-events", type=int, help="keep at most N events, 0 = all "
                   "(env MEMPULSE_PROCESSD_RETENTION_MAX_EVENTS)")
    p.add_argument("--retention-max-age-s", type=int, help="drop events older than N s, 0 = never "
                   "(env MEMPULSE_PROCESSD_RETENTION_MAX_AGE_S)")
    p.add_argument("--analysis-workers", type=int, help="batch preparation processes, 0 = in-process "
                   "(env MEMPULSE_PROCESSD_ANALYSIS_WORKERS, 2)")
    p.add_argument("--start-empty-over-damaged-log", action="store_true", default=None,
                   help="move a damaged event log aside into <data-dir>/damaged-<time>/ and start an empty one "
                   "(env MEMPULSE_PROCESSD_START_EMPTY_OVER_DAMAGED_LOG=1); without it processd refuses a damaged log")
    p.add_argument("--disk-full-retry-ms", type=int, help="after a disk-full commit, refuse ingest this long before "
                   "trying again (env MEMPULSE_PROCESSD_DISK_FULL_RETRY_MS, 1000)")
    p.add_argument("--abi-dir", help="directory of JSON ABI files (Etherscan, Foundry, or the mempulse wrapper "
                   "with addresses) whose functions are decoded (env MEMPULSE_PROCESSD_ABI_DIR, none)")
    p.add_argument("--valuation-venues-file", help="JSON list of extra Uniswap V2-style factories for the valuation "
                   "(env MEMPULSE_PROCESSD_VALUATION_VENUES_FILE, none: mainnet Uniswap V2 and Sushiswap only)")
    p.add_argument("--lifecycle-process", choices=("on", "off"), help="run the lifecycle's tracker and event "
                   "encoding in a child process (env MEMPULSE_PROCESSD_LIFECYCLE_PROCESS, on)")
    p.add_argument("--valuation", choices=("on", "off"), help="value swaps on the pool states ingestd sends "
                   "(env MEMPULSE_PROCESSD_VALUATION, on)")
    p.add_argument("--valuation-max-capital-wei", type=int, help="largest sandwich front-run, native wei "
                   "(env MEMPULSE_PROCESSD_VALUATION_MAX_CAPITAL_WEI, 0 = no bound but the victim's)")
    p.add_argument("--chains", help="comma-separated chain names/ids served, empty = all "
                   "(env MEMPULSE_PROCESSD_CHAINS)")
    return p


#: Env names of the previous release that were not ``MEMPULSE_<KNOB>`` (none: processd's own were already
#: ``MEMPULSE_PROCESSD_LISTEN`` / ``_CHAINS``, the names of the new scheme).
_NOT_RENAMED: dict[str, tuple[str, ...]] = {"listen": (), "chains": ()}


def knobs(env: Mapping[str, str] | None = None) -> Knobs:
    """processd's environment knobs: ``MEMPULSE_PROCESSD_<KNOB>``, the old ``MEMPULSE_<KNOB>`` still accepted."""
    return Knobs("processd", os.environ if env is None else env, old_prefix="MEMPULSE_", deprecated=_NOT_RENAMED)


def _pick_int(cli: int | None, knob: str, default: int, env: Knobs, minimum: int) -> int:
    value = cli if cli is not None else env.get_int(knob, default)
    return _positive(f"--{knob.replace('_', '-')} / {env.name(knob)}", value, minimum)


def _capital(cli: int | None, env: Knobs) -> int:
    """``valuation_max_capital_wei``: 0..2**256-1 (a wei amount has no smaller bound than 0)."""
    value = _pick_int(cli, "valuation_max_capital_wei", 0, env, 0)
    if value >= 1 << 256:
        raise ConfigError(f"--valuation-max-capital-wei / {env.name('valuation_max_capital_wei')} must be below "
                          f"2**256, got {value}")
    return value


def _abi_dir(cli: str | None, env: Knobs) -> Path | None:
    """The user ABI directory, its files loaded once here so a bad one stops processd at start with the file named
    (ProcessdServer loads them again for the analyzers: a few milliseconds)."""
    text = cli if cli is not None else env.get_str("abi_dir", "")
    if not text:
        return None
    # Imported here: the loader imports eth-abi, which a processd without --abi-dir need not load.
    from processd.analysis.decoding.userabi import load_abi_dir
    load_abi_dir(Path(text))
    return Path(text)


def _venues_file(cli: str | None, env: Knobs) -> Path | None:
    """The valuation venues file, loaded once here so a bad one stops processd at start with the entry named."""
    text = cli if cli is not None else env.get_str("valuation_venues_file", "")
    if not text:
        return None
    from processd.analysis.valuation.pairs import VenueConfigError, load_venues
    try:
        load_venues(Path(text))
    except VenueConfigError as exc:
        raise ConfigError(f"--valuation-venues-file / {env.name('valuation_venues_file')}: {exc}") from None
    return Path(text)


def _on_off(flag: str | None, name: str, default: bool, source: Knobs) -> bool:
    """An on/off knob: its flag (``on`` / ``off``) when given, else its env value, else ``default``."""
    return flag == "on" if flag is not None else source.get_bool(name, default)


def load_config(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> ProcessdConfig:
    """Parses flags and environment into a :class:`ProcessdConfig`; raises :class:`ConfigError` on bad input."""
    source = knobs(env)
    args = build_parser().parse_args(argv)
    data_dir = args.data_dir or source.get_str("data_dir", "")
    if not data_dir:
        raise ConfigError(f"--data-dir (or {source.name('data_dir')}) is required")
    host, port = parse_hostport(args.listen or source.get_str("listen", "127.0.0.1:50051"), "--listen")
    durability = args.durability or source.get_str("durability", "sync")
    if durability not in DURABILITY_MODES:
        raise ConfigError(f"{source.raw('durability')[0]} must be sync or nosync, got {durability!r}")
    chains_text = args.chains if args.chains is not None else source.get_str("chains", "")
    try:
        chain_ids = frozenset(parse_chain(c) for c in chains_text.split(",") if c.strip())
    except UnknownChainError as exc:
        raise ConfigError(str(exc)) from None
    d = ProcessdConfig(data_dir=Path(data_dir))
    cfg = ProcessdConfig(
        data_dir=Path(data_dir),
        listen_host=host,
        listen_port=port,
        metrics_port=_pick_int(args.metrics_port, "metrics_port", 0, source, 0),
        flush_interval_ms=_pick_int(args.flush_interval_ms, "flush_interval_ms", d.flush_interval_ms, source, 0),
        flush_max_events=_pick_int(args.flush_max_events, "flush_max_events", d.flush_max_events, source, 1),
        durability=durability,
        map_size_mb=_pick_int(args.map_size_mb, "map_size_mb", d.map_size_mb, source, 1),
        map_max_size_mb=_pick_int(args.map_max_size_mb, "map_max_size_mb", d.map_max_size_mb, source, 1),
        retention_max_events=_pick_int(args.retention_max_events, "retention_max_events", 0, source, 0),
        retention_max_age_s=_pick_int(args.retention_max_age_s, "retention_max_age_s", 0, source, 0),
        commit_queue_max_envelopes=_pick_int(None, "commit_queue_max_envelopes", d.commit_queue_max_envelopes,
                                             source, 1),
        stream_max_inflight_batches=_pick_int(None, "stream_max_inflight_batches", d.stream_max_inflight_batches,
                                              source, 1),
        queue_full_timeout_ms=_pick_int(None, "queue_full_timeout_ms", d.queue_full_timeout_ms, source, 0),
        max_message_bytes=_pick_int(None, "max_message_bytes", d.max_message_bytes, source, 1024),
        max_input_bytes=_pick_int(None, "max_input_bytes", d.max_input_bytes, source, 0),
        max_page_bytes=_pick_int(None, "max_page_bytes", d.max_page_bytes, source, 0),
        chain_ids=chain_ids,
        max_chains=_pick_int(None, "max_chains", d.max_chains, source, 1),
        max_sources_per_tx=_pick_int(None, "max_sources_per_tx", d.max_sources_per_tx, source, 1),
        max_sources_per_chain=_pick_int(None, "max_sources_per_chain", d.max_sources_per_chain, source, 1),
        recent_tx_per_chain=_pick_int(None, "recent_tx_per_chain", d.recent_tx_per_chain, source, 1),
        recent_features=_pick_int(None, "recent_features", d.recent_features, source, 1),
        opportunity_window=_pick_int(None, "opportunity_window", d.opportunity_window, source, 1),
        pool_max_pairs=_pick_int(None, "pool_max_pairs", d.pool_max_pairs, source, 1),
        max_subscribers=_pick_int(None, "max_subscribers", d.max_subscribers, source, 0),
        max_filters_per_stream=_pick_int(None, "max_filters_per_stream", d.max_filters_per_stream, source, 1),
        subscriber_queue_events=_pick_int(None, "subscriber_queue_events", d.subscriber_queue_events, source, 1),
        analysis_workers=_pick_int(args.analysis_workers, "analysis_workers", d.analysis_workers, source, 0),
        analysis_stall_timeout_ms=_pick_int(None, "analysis_stall_timeout_ms", d.analysis_stall_timeout_ms, source,
                                            100),
        start_empty_over_damaged_log=(args.start_empty_over_damaged_log
                                      or source.get_bool("start_empty_over_damaged_log", False)),
        disk_full_retry_ms=_pick_int(args.disk_full_retry_ms, "disk_full_retry_ms", d.disk_full_retry_ms, source, 1),
        abi_dir=_abi_dir(args.abi_dir, source),
        valuation_venues_file=_venues_file(args.valuation_venues_file, source),
        valuation=_on_off(args.valuation, "valuation", True, source),
        valuation_max_capital_wei=_capital(args.valuation_max_capital_wei, source),
        lifecycle_enabled=source.get_bool("lifecycle_enabled", d.lifecycle_enabled),
        lifecycle_ttl_ms=_pick_int(None, "lifecycle_ttl_ms", d.lifecycle_ttl_ms, source, 1000),
        lifecycle_max_pending=_pick_int(None, "lifecycle_max_pending", d.lifecycle_max_pending, source, 1),
        lifecycle_max_reorg_depth=_pick_int(None, "lifecycle_max_reorg_depth", d.lifecycle_max_reorg_depth, source,
                                            1),
        lifecycle_process=_on_off(args.lifecycle_process, "lifecycle_process", d.lifecycle_process, source),
    )
    if cfg.map_max_size_mb < cfg.map_size_mb:
        raise ConfigError(f"map_max_size_mb ({cfg.map_max_size_mb}) must be >= map_size_mb ({cfg.map_size_mb})")
    # One valid envelope must fit a gRPC message with room for what wraps it (a page always holds its first
    # record): its calldata counts twice, once more inside raw_tx, with the typed fields' lists at their bounds.
    largest = max_envelope_bytes(cfg.max_input_bytes)
    if largest + _MESSAGE_HEADROOM_BYTES > cfg.max_message_bytes:
        raise ConfigError(f"max_input_bytes ({cfg.max_input_bytes}) allows envelopes of up to {largest} bytes "
                          f"(calldata twice, raw_tx included), too close to max_message_bytes "
                          f"({cfg.max_message_bytes}; {_MESSAGE_HEADROOM_BYTES} bytes are kept for the rest)")
    # Headroom under the gRPC limit: a snapshot adds totals, features and opportunities beside its transactions,
    # and a page's one first record is taken even when it alone passes a small budget.
    if cfg.max_page_bytes and cfg.max_page_bytes > cfg.max_message_bytes * 3 // 4:
        raise ConfigError(f"max_page_bytes ({cfg.max_page_bytes}) must be at most 3/4 of max_message_bytes "
                          f"({cfg.max_message_bytes * 3 // 4}), or 0 for half of it")
    return cfg
