"""Print large swaps on one chain as they enter the mempool.

    python examples/large_swaps.py --target 127.0.0.1:50051 --chain 1 --min-eth 5

A swap here is a decoded transaction of category "swap" (Uniswap V2/V3 routers, Universal Router and their
forks), and its size is the native value it sends (ETH-in swaps). Token-in swaps send no native value; they show
with ``--min-eth 0``, their token amount in ``amount_in``. Starts with new transactions, or replays the log from
``--from-seq``; stops after ``--max-events`` swaps (default: never). processd restarts are ridden out: the
subscription resumes where it was.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from decimal import Decimal

from common.client import Client, Filter

WEI_PER_ETH = 10**18


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="127.0.0.1:50051", help="processd's Query address (host:port)")
    p.add_argument("--chain", type=int, default=1, help="chain id (default 1, Ethereum mainnet)")
    p.add_argument("--min-eth", type=Decimal, default=Decimal(1), help="smallest native value to print, in ETH")
    p.add_argument("--from-seq", type=int, default=None, help="replay the log from this seq (default: new only)")
    p.add_argument("--max-events", type=int, default=None, help="stop after this many swaps")
    return p.parse_args(argv)


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # min_value_wei and kinds narrow the stream; the category is checked here (not a Filter field).
    flt = Filter(chain_ids={args.chain}, kinds={"tx_decoded"}, min_value_wei=int(args.min_eth * WEI_PER_ETH))
    printed = 0
    async with Client(args.target) as client:
        async for ev in client.subscribe(flt, from_seq=args.from_seq):
            f = ev.features
            if f is None or f.category != "swap":
                continue
            print(f"{ev.seq_id} chain={ev.chain_id} {ev.tx_hash} {f.protocol}.{f.method or f.selector} "
                  f"value={Decimal(f.value) / WEI_PER_ETH:f} ETH amount_in={f.amount_in} "
                  f"{f.token_in} -> {f.token_out}", flush=True)
            printed += 1
            if args.max_events is not None and printed >= args.max_events:
                break
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    try:
        raise SystemExit(asyncio.run(main()))
    except KeyboardInterrupt:
        pass
