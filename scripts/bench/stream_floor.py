"""The floor of a filtered fan-out over gRPC: a server's CPU per streamed message, with nothing else to do.

    python -m scripts.bench.stream_floor [--shapes 1000x10x8000,100x100x8000,...] [--out-name stream_floor]

A bare ``grpc.aio`` server (no processd) serves ``SubscribeEvents`` with SubscribeEvents' own bytes pass-through
serializer (``processd.api.server._serialize_framed``): each of S streams yields M ready messages of B bytes
as fast as the client takes them. The client runs in its own process (S streams over S/100 channels, as
``filter_bench``'s subscribers). Per shape: the server process's CPU (user + system, read from /proc) per
message. This is what processd's filtered fan-out pays per message whatever it matches (1,000 subscribers
taking one message per commit each: ``filter_bench``); everything processd adds is above it.
Writes ``artifacts/perf/stream_floor.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc

from common.pb.v1 import query_pb2, query_pb2_grpc
from common.testing.netutil import free_port
from common.testing.procfs import cpu_seconds
from processd.api.server import _serialize_framed
from processd.wire.encoding import varint
from scripts.bench.harness import write_artifact

ROOT = Path(__file__).resolve().parents[2]
STREAMS_PER_CHANNEL = 100


def message(size: int) -> bytes:
    """A SubscribeEventsResponse of one event entry of ``size`` bytes (its content does not matter to gRPC)."""
    return b"\x0a" + varint(size) + b"\x08" * size


async def serve(port: int, count: int, size: int) -> None:
    """Serves SubscribeEvents: each call waits for the go line on stdin, then yields ``count`` messages."""
    body = message(size)
    go = asyncio.Event()

    async def handler(request: Any, context: Any) -> Any:
        await go.wait()
        for _ in range(count):
            yield body

    handlers = {"SubscribeEvents": grpc.unary_stream_rpc_method_handler(
        handler, request_deserializer=query_pb2.SubscribeEventsRequest.FromString,
        response_serializer=_serialize_framed)}
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("mempulse.v1.Query", handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)
    go.set()
    await loop.run_in_executor(None, sys.stdin.readline)
    await server.stop(None)


async def client(port: int, streams: int) -> None:
    """Opens ``streams`` calls, says "go" once all are started, reads them to the end, prints the count."""
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}")
                for _ in range(max(1, streams // STREAMS_PER_CHANNEL))]
    received = [0]

    async def one(i: int) -> None:
        call = query_pb2_grpc.QueryStub(channels[i % len(channels)]).SubscribeEvents(
            query_pb2.SubscribeEventsRequest())
        async for _ in call:
            received[0] += 1

    tasks = [asyncio.create_task(one(i)) for i in range(streams)]
    await asyncio.sleep(1.0)
    print("go", flush=True)
    await asyncio.gather(*tasks)
    print(json.dumps({"received": received[0]}), flush=True)


def run_shape(streams: int, count: int, size: int) -> dict[str, Any]:
    """One shape: the server's CPU per message while the client takes them all."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    me = [sys.executable, "-m", "scripts.bench.stream_floor"]
    srv = subprocess.Popen([*me, "--server", str(port), str(count), str(size)], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    assert srv.stdin is not None and srv.stdout is not None
    try:
        if srv.stdout.readline().strip() != "ready":
            raise RuntimeError("server did not start")
        cl = subprocess.Popen([*me, "--client", str(port), str(streams)], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT, env=env)
        assert cl.stdout is not None
        if cl.stdout.readline().strip() != "go":
            raise RuntimeError("client did not start")
        cpu0, t0 = cpu_seconds(srv.pid) or 0.0, time.monotonic()
        srv.stdin.write("\n")
        srv.stdin.flush()
        received = json.loads(cl.stdout.readline())["received"]
        cpu1, t1 = cpu_seconds(srv.pid) or 0.0, time.monotonic()
        cl.wait(60)
        srv.stdin.write("\n")
        srv.stdin.flush()
        srv.wait(60)
    finally:
        if srv.poll() is None:
            srv.kill()
    messages = streams * count
    return {"streams": streams, "messages_per_stream": count, "message_bytes": len(message(size)),
            "received": received, "seconds": round(t1 - t0, 3),
            "server_cpu_us_per_message": round((cpu1 - cpu0) / messages * 1e6, 2),
            "load_avg_1m": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="1000x10x8000,1000x10x200,100x100x8000,100x100x40000,10x1000x8000",
                        help="streams x messages per stream x bytes per message, comma-separated")
    parser.add_argument("--out-name", default="stream_floor")
    parser.add_argument("--server", nargs=3, type=int, metavar=("PORT", "COUNT", "SIZE"))
    parser.add_argument("--client", nargs=2, type=int, metavar=("PORT", "STREAMS"))
    args = parser.parse_args()
    if args.server:
        asyncio.run(serve(*args.server))
        return
    if args.client:
        asyncio.run(client(*args.client))
        return
    steps = []
    for shape in args.shapes.split(","):
        streams, count, size = (int(x) for x in shape.split("x"))
        steps.append(run_shape(streams, count, size))
        print(json.dumps(steps[-1]), flush=True)
    path = write_artifact(args.out_name, {"steps": steps})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
