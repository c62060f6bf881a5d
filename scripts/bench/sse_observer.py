"""Watches gatewayd's ``/events/stream`` (SSE) and records when each transaction became visible.

Runs as its own process (``python -m scripts.bench.sse_observer``) so that the benchmark's traffic
generator threads cannot delay its reads through the GIL: the timestamp taken here is the moment a client
of the gateway would see the event. One output line per ``tx_seen`` event::

    <seq_id> <0xhash> <first_seen_unix_ms> <received_unix_ms> <visible_unix_ns>

``first_seen_unix_ms`` is ingestd's stamp of the pending notification, so ``visible - first_seen`` is the
ingest-to-visible latency; ``received_unix_ms`` (processd's receive stamp) splits it into the ingestd part
and the processd + gatewayd part. With ``--until-seq N`` the observer exits once it has seen seq N and prints one
JSON line with the count and the elapsed time (stream catch-up time).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from types import FrameType

import httpx
import orjson


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway", required=True, help="gatewayd base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--out", help="file to append one line per tx_seen event to (default: none)")
    parser.add_argument("--from-seq-id", type=int, default=None, help="replay from this seq id first")
    parser.add_argument("--until-seq", type=int, default=None, help="exit once this seq id was seen")
    parser.add_argument("--kinds", default="tx_seen", help="event kinds to request (default tx_seen)")
    parser.add_argument("--api-key", default=None, help="x-api-key header, when gatewayd requires keys")
    parser.add_argument("--timeout-s", type=float, default=600.0, help="give up after this many seconds")
    return parser


class _Stop(Exception):
    pass


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def observe(args: argparse.Namespace) -> dict[str, object]:
    """Reads the stream until SIGTERM, ``--until-seq`` or the timeout; returns counters."""
    params: dict[str, str] = {"kinds": args.kinds}
    if args.from_seq_id is not None:
        params["from_seq_id"] = str(args.from_seq_id)
    headers = {"accept": "text/event-stream"}
    if args.api_key:
        headers["x-api-key"] = args.api_key
    out = open(args.out, "a", encoding="ascii", buffering=1 << 16) if args.out else None
    started = time.monotonic()
    deadline = started + args.timeout_s
    seen = 0
    last_seq = 0
    try:
        with httpx.Client(timeout=httpx.Timeout(10.0, read=60.0)) as client, \
                client.stream("GET", f"{args.gateway}/events/stream", params=params, headers=headers) as resp:
            resp.raise_for_status()
            print('{"connected": true}', flush=True)  # the benchmark waits for this before sending traffic
            for line in resp.iter_lines():
                now_ns = time.time_ns()
                if line.startswith("data:"):
                    try:
                        event = orjson.loads(line[5:])
                    except orjson.JSONDecodeError:
                        continue
                    if not isinstance(event, dict) or "seq_id" not in event:
                        continue
                    seen += 1
                    last_seq = int(event["seq_id"])
                    if out is not None and event.get("kind", "tx_seen") == "tx_seen":
                        out.write(f"{last_seq} {event.get('tx_hash')} {event.get('first_seen_unix_ms', 0)} "
                                  f"{event.get('received_unix_ms', 0)} {now_ns}\n")
                    if args.until_seq is not None and last_seq >= args.until_seq:
                        break
                elif not line and out is not None:
                    out.flush()  # end of one SSE event: make it visible to the benchmark reading the file
                if time.monotonic() > deadline:
                    break
    except _Stop:
        pass
    finally:
        if out is not None:
            out.close()
    return {"events": seen, "last_seq": last_seq, "elapsed_s": round(time.monotonic() - started, 3)}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _on_term)
    try:
        result = observe(args)
    except httpx.HTTPError as exc:
        print(orjson.dumps({"error": str(exc)}).decode(), flush=True)
        return 1
    print(orjson.dumps(result).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
