"""Watch several addresses at once on one stream: a filter per address (``Client.subscribe_many``), each event
printed once with the addresses whose filters took it.

    python examples/watch_addresses.py --target 127.0.0.1:50051 0x7a25...488d 0xe592...1564

One line per event: seq, the watched addresses it concerns (sender or recipient), kind and transaction hash.
Starts with new transactions, or replays the log from ``--from-seq``; stops after ``--max-events`` events
(default: never). Survives processd restarts: nothing is lost or repeated.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from common.client import Client, Filter


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("addresses", nargs="+", help="0x-prefixed 20-byte addresses (sender or recipient)")
    p.add_argument("--target", default="127.0.0.1:50051", help="processd's Query address (host:port)")
    p.add_argument("--from-seq", type=int, default=None, help="replay the log from this seq (default: new only)")
    p.add_argument("--max-events", type=int, default=None, help="stop after this many events")
    return p.parse_args(argv)


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    watched = [a.lower() for a in args.addresses]
    seen = 0
    async with Client(args.target) as client:
        filters = {i: Filter(addresses={address}) for i, address in enumerate(watched)}
        async with client.subscribe_many(filters, from_seq=args.from_seq) as sub:
            async for te in sub:
                who = ",".join(watched[i] for i in sorted(te.filter_ids))
                print(f"{te.event.seq_id} {who} {te.event.kind.value} {te.event.tx_hash}", flush=True)
                seen += 1
                if args.max_events is not None and seen >= args.max_events:
                    break
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    try:
        raise SystemExit(asyncio.run(main()))
    except KeyboardInterrupt:
        pass
