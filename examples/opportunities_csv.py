"""Collect opportunities scoring at least ``--min-score`` into a CSV file, one row per opportunity.

    python examples/opportunities_csv.py --target 127.0.0.1:50051 --min-score 50 --out opps.csv

Rows are written (and flushed) as processd ranks them; the file can be read while it grows. Starts with new
transactions, or replays the log from ``--from-seq``; stops after ``--max-events`` rows (default: never).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import logging
import sys
from typing import TextIO

from common.client import Client, Filter

COLUMNS = ("seq_id", "chain_id", "tx_hash", "kind", "score", "protocol", "token_in", "token_out", "notional_wei",
           "slippage_bps", "reasons")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="127.0.0.1:50051", help="processd's Query address (host:port)")
    p.add_argument("--min-score", type=int, default=50, help="smallest score to keep (0-100)")
    p.add_argument("--chain", type=int, action="append", default=[], help="only this chain (repeatable)")
    p.add_argument("--out", default="-", help="CSV file to append to ('-' = stdout)")
    p.add_argument("--from-seq", type=int, default=None, help="replay the log from this seq (default: new only)")
    p.add_argument("--max-events", type=int, default=None, help="stop after this many rows")
    return p.parse_args(argv)


async def collect(args: argparse.Namespace, out: TextIO, header: bool) -> int:
    """Writes the rows to ``out`` (after the header row when ``header``); returns how many."""
    writer = csv.writer(out)
    if header:
        writer.writerow(COLUMNS)
    rows = 0
    async with Client(args.target) as client:
        async for ev in client.subscribe(Filter(kinds={"opp_detected"}, chain_ids=set(args.chain)),
                                         from_seq=args.from_seq):
            o = ev.opportunity
            if o is None or o.score < args.min_score:
                continue
            writer.writerow((o.seq_id, o.chain_id, o.tx_hash, o.kind, o.score, o.protocol, o.token_in or "",
                             o.token_out or "", "" if o.notional_wei is None else o.notional_wei, o.slippage_bps,
                             "; ".join(o.reasons)))
            out.flush()
            rows += 1
            if args.max_events is not None and rows >= args.max_events:
                break
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.out == "-":
        asyncio.run(collect(args, sys.stdout, header=True))
    else:
        with open(args.out, "a", newline="", encoding="utf-8") as out:
            asyncio.run(collect(args, out, header=out.tell() == 0))  # appending to a file that has one: no header
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        pass
