"""``scripts/generate``: replay the bundled real mainnet calls into a node as pending transactions.

    scripts/generate --rpc http://127.0.0.1:8545 --rate-tx-s 200 --duration-s 60

Works against any node that accepts ``anvil_setBalance`` and impersonated ``eth_sendTransaction`` (anvil
with ``--auto-impersonate``, as ``common.testing.anvil`` starts it). Prints one progress line per second and, at
the end, one JSON line with the totals (``sent``, ``accepted``, ``rejected``, ``behind``, rates).
Exit status: 0 on success, 1 when nothing was accepted, 2 on bad arguments or an unreachable node.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from dataclasses import asdict

import httpx
import orjson

from common.envconfig import ConfigError, env_float, env_int
from common.logsetup import configure_logging
from common.testing.swaps import SwapMaker
from common.testing.traffic import TrafficGenerator
from common.testing.uniswap import UniswapWorldError, deploy_world


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="generate", description="Replay real mainnet calls into a node's pending pool at a steady rate.")
    parser.add_argument("--rpc", required=True, help="HTTP JSON-RPC URL of the node (e.g. http://127.0.0.1:8545)")
    parser.add_argument("--rate-tx-s", type=float, default=None,
                        help="target transactions per second (env MEMPULSE_GENERATE_RATE_TX_S, default 50)")
    parser.add_argument("--duration-s", type=float, default=None,
                        help="stop after this many seconds (default: run until Ctrl-C)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="eth_sendTransaction calls per JSON-RPC batch (env MEMPULSE_GENERATE_BATCH_SIZE, "
                             "default 50)")
    parser.add_argument("--offset", type=int, default=0,
                        help="start at this index of the fixture (different offsets give different traffic)")
    parser.add_argument("--max-pending", type=int, default=None,
                        help="empty the node's pending pool (anvil_dropAllTransactions) after this many accepted "
                             "transactions, since anvil slows down as its pool grows (env "
                             "MEMPULSE_GENERATE_MAX_PENDING, default 2000; 0 = never)")
    parser.add_argument("--salt", type=int, default=0,
                        help="extra gas limit per call, so a rerun against a fresh anvil gives new hashes (default 0)")
    parser.add_argument("--signed", action="store_true",
                        help="send properly signed transactions of types 0-4 from anvil's dev accounts (the calls' "
                             "calldata, value and recipient; the sender is a dev account) instead of impersonating "
                             "the real senders, whose transactions have no signature (r = s = 0) and so no raw "
                             "signed bytes")
    parser.add_argument("--replace-share", type=float, default=None,
                        help="share of the senders whose transactions get a speed-up or a cancel (same sender and "
                             "nonce, higher fee; impersonated sends only) (env MEMPULSE_GENERATE_REPLACE_SHARE, "
                             "default 0.05)")
    parser.add_argument("--records-out", default=None, metavar="FILE",
                        help="write every transaction sent (hash, chain_id, sender, nonce, fee, kind) to FILE as "
                             "JSON lines at the end, for common.testing.lifecycle_truth")
    parser.add_argument("--swap-share", type=float, default=None,
                        help="share (0..1) of the sends that are real Uniswap V2 router swaps; > 0 first deploys a "
                             "local world on the node (common/testing/uniswap.py; env MEMPULSE_GENERATE_SWAP_SHARE, "
                             "default 0)")
    parser.add_argument("--mine-interval-s", type=float, default=None,
                        help="mine a block (evm_mine) this often, so swaps execute and move the pools (env "
                             "MEMPULSE_GENERATE_MINE_INTERVAL_S, default 0 = never)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines, only the final JSON line")
    return parser


def _check_node(url: str) -> int:
    """The node's chain id; raises ConfigError with a one-line message when it does not answer."""
    try:
        resp = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=5)
        resp.raise_for_status()
        return int(resp.json()["result"], 16)
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"node at {url} does not answer eth_chainId ({exc.__class__.__name__}: {exc}); "
                          "start one (e.g. .tools/node_modules/.bin/anvil --no-mining --auto-impersonate)") from None


def _world_swaps(url: str, chain_id: int, quiet: bool) -> SwapMaker:
    """Deploys the Uniswap V2 world on the node and returns a swap maker on it."""
    try:
        world = deploy_world(url, chain_id)
    except (UniswapWorldError, httpx.HTTPError) as exc:
        raise ConfigError(f"could not deploy the Uniswap V2 world: {exc}") from None
    if not quiet:
        dexes = ", ".join(f"{d.name}: factory {d.factory} router {d.router}" for d in world.dexes.values())
        print(f"uniswap world deployed in {world.deploy_s:.1f}s: WETH {world.weth}; {dexes}; {len(world.pools)} "
              f"pools, {len(world.traders)} traders", file=sys.stderr, flush=True)
    return SwapMaker(world, seed=chain_id)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging("WARNING")
    try:
        rate = args.rate_tx_s if args.rate_tx_s is not None else env_float("generate_rate_tx_s", 50.0)
        batch = args.batch_size if args.batch_size is not None else env_int("generate_batch_size", 50, minimum=1)
        max_pending = args.max_pending if args.max_pending is not None else env_int("generate_max_pending", 2000,
                                                                                    minimum=0)
        share = args.replace_share if args.replace_share is not None else env_float("generate_replace_share", 0.05)
        if not 0 <= share <= 1:
            raise ConfigError(f"--replace-share must be within 0..1, got {share}")
        if max_pending < 0 or args.salt < 0:
            raise ConfigError("--max-pending and --salt must be >= 0")
        if rate <= 0:
            raise ConfigError(f"--rate-tx-s must be > 0, got {rate}")
        if args.duration_s is not None and args.duration_s <= 0:
            raise ConfigError(f"--duration-s must be > 0, got {args.duration_s}")
        swap_share = args.swap_share if args.swap_share is not None else env_float("generate_swap_share", 0.0)
        mine = args.mine_interval_s if args.mine_interval_s is not None else env_float("generate_mine_interval_s",
                                                                                       0.0)
        if not 0 <= swap_share <= 1 or mine < 0 or (swap_share > 0 and args.signed):
            raise ConfigError("--swap-share must be in [0, 1] (and not with --signed: swaps come from the world's "
                              "traders) and --mine-interval-s >= 0")
        chain_id = _check_node(args.rpc)
        swaps = _world_swaps(args.rpc, chain_id, args.quiet) if swap_share > 0 else None
    except ConfigError as exc:
        print(f"generate: error: {exc}", file=sys.stderr)
        return 2

    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    gen = TrafficGenerator(args.rpc, rate, chain_id=chain_id, batch_size=batch, start_offset=args.offset,
                           duration_s=args.duration_s, gas_salt=args.salt, max_pending=max_pending,
                           signed=args.signed, replace_share=share, swaps=swaps, swap_share=swap_share,
                           mine_interval_s=mine).start()
    last_accepted = 0
    while gen.running and not done.wait(1.0):
        stats = gen.stats()
        if not args.quiet:
            print(f"chain {chain_id}: {stats.accepted - last_accepted} tx/s accepted, total sent {stats.sent} "
                  f"accepted {stats.accepted} rejected {stats.rejected} behind {stats.behind} "
                  f"pool resets {stats.pool_resets} swaps {stats.swaps} blocks mined {stats.blocks_mined}",
                  file=sys.stderr, flush=True)
        last_accepted = stats.accepted
    gen.stop()
    stats = gen.stats()
    if gen.error is not None:
        print(f"generate: error: {gen.error}", file=sys.stderr)
    if args.records_out:
        with open(args.records_out, "wb") as out:
            for rec in gen.records():
                out.write(orjson.dumps(asdict(rec)) + b"\n")
    summary = {**asdict(stats), "accepted_rate_tx_s": round(stats.accepted_rate_tx_s, 1),
               "finished_unix_ms": int(time.time() * 1000)}
    print(orjson.dumps(summary).decode(), flush=True)
    return 0 if stats.accepted > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
