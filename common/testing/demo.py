"""``./scripts/demo``: the whole mempulse stack on two local anvil chains with real replayed traffic.

Starts anvil chains 1 and 137 (``--no-mining``), processd (LMDB in ``data/demo/lmdb``), one ingestd for both
chains, gatewayd on 127.0.0.1:8080 and one generator per chain replaying the bundled real mainnet calls;
prints the URLs to try and a live status, one line per chain (tx/s, stored, and the lifecycle of its transactions:
pending / included / replaced / dropped) and one of totals (stored, lost in ingest, generated), read from
``/dashboard/snapshot`` until Ctrl-C (or ``--duration-s``), then stops every child cleanly. The last line
printed is ``demo summary: {json}`` (per chain: stored, generated; drops), which CI smoke tests parse.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from common.chains import UnknownChainError, chain_name, parse_chain
from common.envconfig import ConfigError, env_float, env_int, env_str
from common.testing.anvil import AnvilNotFoundError, anvil_binary
from common.testing.demo_export import EXPORT_TARGETS, DemoExport, check_export_prerequisites
from common.testing.demo_status import (
    ChainStatus,
    RateMeter,
    ValuedTracker,
    format_status,
    parse_snapshot,
    redraw,
)
from common.testing.netutil import port_in_use
from common.testing.stack import REPO_ROOT, ChainSpec, Stack, StackConfig, StackError

log = logging.getLogger("mempulse.demo")

DEFAULT_DATA_DIR = REPO_ROOT / "data" / "demo"
# The status line needs only the per-chain totals: ask for the smallest lists (keeps the poll cheap).
_STATUS_QUERY = {"tx_limit": 1, "opp_limit": 1, "feature_limit": 1}


#: The demo's blocks: ethereum's 12 s scaled down to 3 (a demo should show blocks within seconds), polygon's 2 s.
DEFAULT_BLOCK_TIMES_S = "1=3,137=2"
#: Seconds between blocks of a chain the demo's block times do not list.
DEFAULT_BLOCK_TIME_S = 2.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="demo", description="Run the whole mempulse stack on local anvil chains with replayed mainnet traffic.")
    parser.add_argument("--chains", default=None,
                        help="comma-separated chain names or ids (env MEMPULSE_DEMO_CHAINS, default 1,137)")
    parser.add_argument("--rate-tx-s", type=float, default=None,
                        help="replayed transactions per second per chain (env MEMPULSE_DEMO_RATE_TX_S, default 50)")
    parser.add_argument("--block-times-s", default=None, metavar="CHAIN=S[,...]",
                        help="seconds between mined blocks per chain (anvil --block-time; 0 = no mining); chains not "
                             f"listed: {DEFAULT_BLOCK_TIME_S:g} (env MEMPULSE_DEMO_BLOCK_TIMES_S, default "
                             f"{DEFAULT_BLOCK_TIMES_S}: ethereum's 12 s scaled down, polygon's 2 s)")
    parser.add_argument("--replace-share", type=float, default=None,
                        help="share of the replayed senders whose transactions get a speed-up or a cancel (same "
                             "sender and nonce, higher fee) (env MEMPULSE_DEMO_REPLACE_SHARE, default 0.05)")
    parser.add_argument("--gateway-port", type=int, default=None,
                        help="gatewayd port on 127.0.0.1 (env MEMPULSE_DEMO_GATEWAY_PORT, default 8080; 0 = any "
                             "free port)")
    parser.add_argument("--processd-port", type=int, default=None,
                        help="processd gRPC port (env MEMPULSE_DEMO_PROCESSD_PORT, default 50051, or a free port "
                             "when 50051 is taken; 0 = any free port)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where processd's LMDB and the daemons' logs go (env MEMPULSE_DEMO_DATA_DIR, default "
                             "data/demo, emptied at start unless --keep-data)")
    parser.add_argument("--keep-data", action="store_true",
                        help="keep the events stored by earlier runs (the default data dir is emptied at start)")
    parser.add_argument("--duration-s", type=float, default=None,
                        help="stop by itself after this many seconds (default: run until Ctrl-C)")
    parser.add_argument("--interval-s", type=float, default=1.0, help="status refresh interval (default 1 s)")
    parser.add_argument("--rate-limit-rps", type=float, default=None,
                        help="gatewayd's rate limit in requests/s per client address (env "
                             "MEMPULSE_DEMO_RATE_LIMIT_RPS, default 0 = off: the demo has one local user, and a "
                             "load test's users would all share one address's bucket)")
    parser.add_argument("--swap-share", type=float, default=None,
                        help="share (0..1) of each chain's traffic that is real Uniswap V2 router swaps on a local "
                             "world deployed at start; they execute as the chain mines, see --block-times-s "
                             "(env MEMPULSE_DEMO_SWAP_SHARE, default 0.1; 0 = no world)")
    parser.add_argument("--export", choices=EXPORT_TARGETS, default=None,
                        help="opt-in: also run a local ClickHouse and mempulse-export into it; the status line "
                             "shows the export's lag (needs clickhouse-server; docs/export.md)")
    return parser


@dataclass(frozen=True)
class DemoConfig:
    """The demo's settings, from flags then ``MEMPULSE_DEMO_*`` env vars then defaults."""

    chain_ids: tuple[int, ...]
    rate_tx_s: float
    gateway_port: int
    processd_port: int
    data_dir: Path
    wipe_data: bool
    duration_s: float | None
    interval_s: float
    #: gatewayd's --rate-limit-rps (0 = off).
    rate_limit_rps: float = 0.0
    #: "clickhouse": run ClickHouse and mempulse-export too (--export); "" = the embedded-only default.
    export: str = ""
    #: chain id -> seconds between mined blocks (0 = no mining); chains not listed: DEFAULT_BLOCK_TIME_S.
    block_times_s: tuple[tuple[int, float], ...] = ()
    #: Share of the generator's senders whose transactions are replaced (speed-ups and cancels).
    replace_share: float = 0.05
    #: Share of the traffic that is router swaps on the local Uniswap V2 world (0 = no world deployed); they execute
    #: when the chain mines (block_times_s).
    swap_share: float = 0.1

    def block_time_s(self, chain_id: int) -> float:
        """Seconds between mined blocks of ``chain_id`` (0 = no mining)."""
        return dict(self.block_times_s).get(chain_id, DEFAULT_BLOCK_TIME_S)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DemoConfig:
        try:
            chains_text = args.chains if args.chains is not None else env_str("demo_chains", "1,137")
            chain_ids = tuple(parse_chain(c) for c in chains_text.split(",") if c.strip())
        except UnknownChainError as exc:
            raise ConfigError(str(exc)) from None
        if not chain_ids or len(set(chain_ids)) != len(chain_ids):
            raise ConfigError(f"--chains needs distinct chains, got {chains_text!r}")
        rate = args.rate_tx_s if args.rate_tx_s is not None else env_float("demo_rate_tx_s", 50.0)
        if rate < 0:
            raise ConfigError(f"--rate-tx-s must be >= 0, got {rate}")
        gw = args.gateway_port if args.gateway_port is not None else env_int("demo_gateway_port", 8080, minimum=0)
        pd = args.processd_port if args.processd_port is not None else env_int("demo_processd_port", 50051,
                                                                                 minimum=0)
        for what, port in (("--gateway-port", gw), ("--processd-port", pd)):
            if not 0 <= port < 65536:
                raise ConfigError(f"{what} must be a port number (0 = any free port), got {port}")
        explicit_dir = args.data_dir if args.data_dir is not None else env_str("demo_data_dir", "")
        data_dir = Path(explicit_dir).resolve() if explicit_dir else DEFAULT_DATA_DIR
        if args.duration_s is not None and args.duration_s <= 0:
            raise ConfigError(f"--duration-s must be > 0, got {args.duration_s}")
        if args.interval_s <= 0:
            raise ConfigError(f"--interval-s must be > 0, got {args.interval_s}")
        # Only the demo's own default directory is emptied: a directory the user named is never deleted.
        wipe = not args.keep_data and data_dir == DEFAULT_DATA_DIR
        limit = args.rate_limit_rps if args.rate_limit_rps is not None else env_float("demo_rate_limit_rps", 0.0)
        if limit < 0:
            raise ConfigError(f"--rate-limit-rps must be >= 0 (0 = off), got {limit}")
        share = args.replace_share if args.replace_share is not None else env_float("demo_replace_share", 0.05)
        if not 0 <= share <= 1:
            raise ConfigError(f"--replace-share must be within 0..1, got {share}")
        swap_share = _arg_or_env(args, "swap_share", 0.1)
        if not 0 <= swap_share <= 1:
            raise ConfigError(f"--swap-share must be within 0..1, got {swap_share}")
        times = args.block_times_s if args.block_times_s is not None else env_str("demo_block_times_s",
                                                                                  DEFAULT_BLOCK_TIMES_S)
        return cls(chain_ids, rate, gw, pd, data_dir, wipe, args.duration_s, args.interval_s, limit,
                   getattr(args, "export", None) or "", parse_block_times(times), share, swap_share)


def _arg_or_env(args: argparse.Namespace, name: str, default: float) -> float:
    value = getattr(args, name, None)
    return float(value) if value is not None else env_float(f"demo_{name}", default)


def parse_block_times(text: str) -> tuple[tuple[int, float], ...]:
    """``CHAIN=S[,...]`` (chain names or ids) as (chain id, seconds) pairs; ConfigError when malformed."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, value = part.partition("=")
        try:
            seconds = float(value)
            chain_id = parse_chain(name.strip())
        except (ValueError, UnknownChainError):
            seconds, chain_id, sep = -1.0, 0, ""
        if not sep or seconds < 0:
            raise ConfigError(f"--block-times-s: {part!r} is not CHAIN=SECONDS (seconds >= 0)")
        out.append((chain_id, seconds))
    return tuple(out)


def gatewayd_args(cfg: DemoConfig) -> tuple[str, ...]:
    """gatewayd's flags in the demo: no API keys (the curl examples need none) and ``cfg.rate_limit_rps``.

    gatewayd's own default, 100 requests/s per client address when auth is off, is for a gateway many clients
    share; in the demo every client is 127.0.0.1, so a Locust run's users all drew from one bucket and 86% of
    their requests were answered 429.
    """
    return ("--rate-limit-rps", f"{cfg.rate_limit_rps:g}")


def lock_demo_dir(data_dir: Path) -> int:
    """Takes the demo's exclusive lock on ``data_dir`` and returns its descriptor (held until the demo exits).

    The lock file sits beside the directory, not in it, because the default directory is wiped at start: a
    second demo (e.g. with ``--gateway-port 0 --processd-port 0``) deleted the running one's log from under it.
    """
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = data_dir.parent / f".{data_dir.name}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise ConfigError(f"{data_dir} is in use by another demo (pid {holder}): stop it, or give this one its "
                          f"own --data-dir") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def check_prerequisites(cfg: DemoConfig) -> DemoConfig:
    """Fails with a one-line ConfigError saying what to do when anvil or the gateway port is missing."""
    try:
        anvil_binary()
    except AnvilNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    if cfg.export:
        check_export_prerequisites()
    if cfg.gateway_port and port_in_use("127.0.0.1", cfg.gateway_port):
        raise ConfigError(f"port 127.0.0.1:{cfg.gateway_port} is in use (another demo or gatewayd?): stop it, "
                          f"or run ./scripts/demo --gateway-port {cfg.gateway_port + 1} (0 = any free port)")
    if cfg.processd_port == 50051 and port_in_use("127.0.0.1", 50051):
        log.warning("port 50051 is in use: processd listens on a free port instead")
        return DemoConfig(**{**cfg.__dict__, "processd_port": 0})
    if cfg.processd_port and port_in_use("127.0.0.1", cfg.processd_port):
        raise ConfigError(f"port 127.0.0.1:{cfg.processd_port} is in use: pass another --processd-port (0 = any)")
    return cfg


def print_banner(stack: Stack, cfg: DemoConfig) -> None:
    gw = stack.gateway_url.removeprefix("http://")
    first, last = cfg.chain_ids[0], cfg.chain_ids[-1]
    chains = ", ".join(f"{chain_name(c)} ({c}) on {stack.anvils[c].http_url}" for c in cfg.chain_ids)
    limit = f"{cfg.rate_limit_rps:g} req/s per address" if cfg.rate_limit_rps else "off (--rate-limit-rps N)"
    print(f"""
mempulse demo running: anvil {chains}
  replaying real mainnet calls at {cfg.rate_tx_s:g} tx/s per chain{_swap_text(stack, cfg)}; processd \
{stack.processd_addr} (data {stack.data_dir}); one ingestd; gatewayd {stack.gateway_url}

Try:
  curl '{gw}/transactions?chain_id={last}'
  curl '{gw}/transactions/all?chain_id={first}&limit=100'
  curl '{gw}/dashboard/snapshot'
  curl '{gw}/opps/recent?min_score=50'
  curl '{gw}/opps/recent?min_profit_wei=1&chain_id={last}'   (valued on pool state, net of gas)
  curl -N '{gw}/events/stream?chain_id={last}'
  curl '{gw}/healthz'   curl '{gw}/metrics'   curl '{gw}/openapi.json'
  API docs in a browser: http://{gw}/docs
Load test (Locust; installs the dev tools on its first run), rate limit {limit}:
  scripts/loadtest_rest --gateway {stack.gateway_url} --no-baseline
Logs: {stack.log_dir}/  (processd.log, ingestd.log, gatewayd.log)
Ctrl-C stops everything.
""", flush=True)


def _swap_text(stack: Stack, cfg: DemoConfig) -> str:
    if not stack.worlds:
        return ""
    world = next(iter(stack.worlds.values()))
    times = {cid: cfg.block_time_s(cid) for cid in cfg.chain_ids}
    mined = "blocks every " + ", ".join(f"{t:g} s on {cid}" if t else f"no mining on {cid}" for cid, t in times.items())
    routers = ", ".join(f"{d.name} router {d.router}" for d in world.dexes.values())
    return (f", {cfg.swap_share:.0%} of it Uniswap V2 swaps ({len(world.pools)} pools; {routers}; same addresses "
            f"on every chain; {mined})")


def run(cfg: DemoConfig, stop: threading.Event, running: threading.Event | None = None) -> dict[str, Any]:
    """Runs the stack until ``stop`` is set or the duration passes; returns the final summary. ``running`` is
    set once every part has started."""
    if cfg.wipe_data and cfg.data_dir.exists():
        shutil.rmtree(cfg.data_dir)
    stack_cfg = StackConfig(
        chains=tuple(ChainSpec(cid, rate_tx_s=cfg.rate_tx_s, block_time_s=cfg.block_time_s(cid),
                               replace_share=cfg.replace_share) for cid in cfg.chain_ids),
        data_dir=cfg.data_dir / "lmdb", log_dir=cfg.data_dir / "logs",
        gateway_port=cfg.gateway_port, processd_port=cfg.processd_port, gatewayd_args=gatewayd_args(cfg),
        uniswap=cfg.swap_share > 0, swap_share=cfg.swap_share,
        pool_state=cfg.swap_share > 0)
    print(f"starting: {len(cfg.chain_ids)} anvil chains, processd, gatewayd, ingestd (logs in "
          f"{stack_cfg.log_dir}) ...", flush=True)
    tty = sys.stdout.isatty()
    statuses: dict[int, ChainStatus] = {}
    with Stack(stack_cfg) as stack, contextlib.ExitStack() as extras:
        export = extras.enter_context(DemoExport(cfg.data_dir / "clickhouse", stack.processd_addr,
                                                 stack.log_dir)) if cfg.export else None
        if running is not None:
            running.set()
        print_banner(stack, cfg)
        if export is not None:
            print(export.banner(), flush=True)
        meter = RateMeter()
        valued = ValuedTracker() if stack.worlds else None
        started = time.monotonic()
        last_print = 0.0
        drawn = 0
        while not stop.is_set():
            elapsed = time.monotonic() - started
            if cfg.duration_s is not None and elapsed >= cfg.duration_s:
                break
            stack.check_alive()
            try:
                statuses = parse_snapshot(stack.get_json("/dashboard/snapshot", **_STATUS_QUERY))
                if valued is not None:
                    valued.poll(stack, list(cfg.chain_ids))
                lines = format_status(list(cfg.chain_ids), statuses, meter.add(time.monotonic(), statuses),
                                      stack.traffic_stats(), elapsed, valued.tallies if valued is not None else None)
                if export is not None:
                    lines[-1] += " | " + export.status()
            except (httpx.HTTPError, ValueError) as exc:  # e.g. 503 while processd is busy: keep going
                lines = [f"[{elapsed:5.0f}s] gateway not answering yet ({exc.__class__.__name__}); "
                         f"{sum(t.accepted for t in stack.traffic_stats().values())} generated"]
                lines += [""] * len(cfg.chain_ids)  # as many lines as a status, so the next one redraws them
            if tty:
                print(redraw(lines, drawn, shutil.get_terminal_size().columns - 1), end="", flush=True)
                drawn = len(lines)
            elif elapsed - last_print >= 5.0 or last_print == 0.0:  # logs and CI: the status every 5 s
                print("\n".join(line for line in lines if line), flush=True)
                last_print = elapsed or 1e-9
            stop.wait(cfg.interval_s)
        if tty:
            print(flush=True)
        print("stopping ...", flush=True)
        stack.stop_generators()
        traffic = stack.traffic_stats()
        try:  # a last look after the generators stopped, so the summary includes everything in flight
            time.sleep(min(2.0, cfg.interval_s * 2))
            statuses = parse_snapshot(stack.get_json("/dashboard/snapshot", **_STATUS_QUERY))
            if valued is not None:
                valued.poll(stack, list(cfg.chain_ids))
        except (httpx.HTTPError, ValueError):
            pass
    tallies = valued.tallies if valued is not None else {}
    unclean = {name: status for name, status in stack.exit_statuses.items() if status != 0}
    if unclean:
        print(f"warning: not every daemon exited cleanly: {unclean} (logs in {stack.log_dir})", file=sys.stderr)
    return {
        "exit_statuses": stack.exit_statuses,
        "chains": {str(cid): {"stored": statuses[cid].stored if cid in statuses else 0,
                              "dropped": statuses[cid].dropped if cid in statuses else 0,
                              "generated": traffic[cid].accepted if cid in traffic else 0,
                              "swaps": traffic[cid].swaps if cid in traffic else 0,
                              "blocks_mined": traffic[cid].blocks_mined if cid in traffic else 0,
                              "valued": tallies[cid].count if cid in tallies else 0,
                              # a decimal string: wei amounts pass 2**64 (orjson's integer range)
                              "best_net_profit_wei": str(tallies[cid].best_wei if cid in tallies else 0)}
                   for cid in cfg.chain_ids},
        "total_stored": sum(st.stored for st in statuses.values()),
    }


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        cfg = check_prerequisites(DemoConfig.from_args(args))
        lock_demo_dir(cfg.data_dir)  # before anything is wiped; released when the demo exits
    except ConfigError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    stop, running = threading.Event(), threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if not running.is_set():  # still starting: abort the start (Stack.start stops what it started)
            raise KeyboardInterrupt
        if stop.is_set():
            print("\nstill stopping (children get SIGKILL after 15 s) ...", file=sys.stderr, flush=True)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        summary = run(cfg, stop, running)
    except KeyboardInterrupt:
        print("\ndemo: interrupted while starting; every started process was stopped", file=sys.stderr)
        return 130
    except StackError as exc:
        first, _, rest = str(exc).partition("\n")
        print(f"\ndemo: error: {first}", file=sys.stderr)
        if rest:
            print(rest, file=sys.stderr)
        return 1
    print("stopped; demo summary: " + orjson.dumps(summary).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
