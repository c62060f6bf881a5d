"""A keep-alive HTTP/1.1 GET load generator on raw asyncio streams, run as its own process.

``python -m scripts.bench.http_load --port 8080 --path '/transactions?limit=50' --requests 4000 --connections 8``
sends ``--requests`` GETs over ``--connections`` kept-alive connections (each connection sends its next request
once the previous answer is read whole) and prints one JSON line: requests, statuses, body bytes, elapsed.

Why not httpx or Locust: the load generator shares the machine's 2 cores with the servers it measures, and
a raw stream client costs a few microseconds per request where httpx costs ~100 (so it takes less CPU away
from the server under test). It parses only what a server under test sends: a status line, headers with a
``content-length``, and the body.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import orjson


async def _connection(host: str, port: int, request: bytes, count: int, statuses: dict[int, int]) -> int:
    """Sends ``count`` requests one after the other on one connection; returns the body bytes read."""
    reader, writer = await asyncio.open_connection(host, port)
    body_bytes = 0
    try:
        for _ in range(count):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            statuses[status] = statuses.get(status, 0) + 1
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
                    break
            body_bytes += len(await reader.readexactly(length))
    finally:
        writer.close()
    return body_bytes


async def run_load(host: str, port: int, path: str, requests: int, connections: int,
                   headers: tuple[str, ...] = ()) -> dict[str, object]:
    """Runs the load and returns its summary (``headers``: extra ``name: value`` lines of every request)."""
    extra = "".join(f"{h}\r\n" for h in headers)
    request = f"GET {path} HTTP/1.1\r\nhost: {host}:{port}\r\n{extra}\r\n".encode()
    statuses: dict[int, int] = {}
    per = [requests // connections + (1 if i < requests % connections else 0) for i in range(connections)]
    started = time.perf_counter()
    sizes = await asyncio.gather(*(_connection(host, port, request, n, statuses) for n in per if n))
    elapsed = time.perf_counter() - started
    return {"requests": requests, "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "body_bytes": sum(sizes), "elapsed_s": round(elapsed, 4), "rps": round(requests / elapsed, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True, help="path and query string")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--header", action="append", default=[], help="'name: value' sent with every request")
    args = parser.parse_args(argv)
    result = asyncio.run(run_load(args.host, args.port, args.path, args.requests, args.connections,
                                  tuple(args.header)))
    print(orjson.dumps(result).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
