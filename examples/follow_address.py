"""Follow one address: every event of every pending transaction it sends or receives, on every chain.

    python examples/follow_address.py --target 127.0.0.1:50051 0x7a250d5630b4cf539739df2c5dacb4c659f2488d

One line per event: the transaction when it is seen, its decoded call, the opportunities ranked on it, and each
later source that announced it. Starts with new transactions, or replays the log from ``--from-seq``; stops after
``--max-events`` events (default: never).
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from common.client import Client, Event, EventKind, Filter


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("address", help="0x-prefixed 20-byte address (sender or recipient)")
    p.add_argument("--target", default="127.0.0.1:50051", help="processd's Query address (host:port)")
    p.add_argument("--chain", type=int, action="append", default=[], help="only this chain (repeatable)")
    p.add_argument("--from-seq", type=int, default=None, help="replay the log from this seq (default: new only)")
    p.add_argument("--max-events", type=int, default=None, help="stop after this many events")
    return p.parse_args(argv)


def describe(ev: Event) -> str:
    """One line about an event."""
    head = f"{ev.seq_id} chain={ev.chain_id} {ev.kind.value:<14} {ev.tx_hash}"
    if ev.kind is EventKind.TX_SEEN and ev.tx is not None:
        return f"{head} from={ev.tx.sender} to={ev.tx.to} value={ev.tx.value} nonce={ev.tx.nonce}"
    if ev.kind is EventKind.TX_DECODED and ev.features is not None:
        f = ev.features
        return f"{head} {f.category} {f.protocol} {f.method or f.selector or '(no calldata)'}"
    if ev.kind is EventKind.OPP_DETECTED and ev.opportunity is not None:
        return f"{head} {ev.opportunity.kind} score={ev.opportunity.score}"
    if ev.kind is EventKind.TX_SOURCE_SEEN and ev.sighting is not None:
        return f"{head} also seen by {ev.sighting.source_id}"
    return head


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    flt = Filter(addresses={args.address}, chain_ids=set(args.chain))
    seen = 0
    async with Client(args.target) as client:
        async for ev in client.subscribe(flt, from_seq=args.from_seq):
            print(describe(ev), flush=True)
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
