"""processd benchmark: full ingest path vs the bare floor, commit latency, query latency by log size.

    python -m scripts.bench.processd_bench [--short] [--tx N] [--batch 500] [--out-name processd]

Both ingest variants get the identical client work: ``orjson`` parse of node-format transaction JSON ->
``TxEnvelope`` (``ingestd.mapping.tx_to_envelope``) -> serialized ``TxBatch`` of ``--batch``, done before the
clock starts (ingestd's share, reported as ``client_encode_us_per_tx``), then one gRPC bidi stream per chain
(as ingestd sends: one outbound stream per chain), each with ``--window`` batches in flight (``--streams 1``:
one stream for all chains). The client runs in this process, the server in its own process.

* ``full``: the real ``python -m processd`` (sync durability by default): validation, dedup, decoding,
  features, ranking, event encoding, LMDB group commit (fsync), read models, subscriptions, ack.
* ``floor``: a bare gRPC server in this file (``--floor-server``): per batch, LMDB puts of the envelope
  bytes keyed by a counter, one fsync'd commit, ack. No processing.

Both servers run side by side and the throughput runs alternate between them for ``--rounds`` rounds (default
3, ``--short`` 1; new transactions every round); the round with the median full-path throughput is reported as
``floor``/``full``, every round is kept under ``rounds``, and ``full_over_floor`` is the median per-round ratio.

Then the full server keeps ingesting until the log holds 10k / 100k / 1M events (``--short``: 10k / 100k) and
at each size measures GetSnapshot, ScanEvents (global and chain-filtered, from a random cursor),
ListTransactions (newest page of a chain) and GetTransaction latency. Figures: throughput (tx/s), server CPU
microseconds per transaction (steadier than tx/s on a shared machine), batch-to-ack latency, commit latency
and size from processd's Prometheus histograms. Writes ``artifacts/perf/processd.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson

from common.pb.v1 import ingest_pb2, ingest_pb2_grpc, query_pb2, query_pb2_grpc
from common.testing.netutil import free_port, wait_for_port
from common.testing.procfs import cpu_seconds, descendants
from common.testing.synth import synthetic_envelopes
from scripts.bench.harness import summarize, write_artifact

ROOT = Path(__file__).resolve().parents[2]
CHAINS = (1, 137, 56)


# ------------------------------------------------------------------------------------------ input data

def make_json_lines(count: int, seed: int) -> list[bytes]:
    """Node-format transaction objects (as eth_getTransactionByHash returns them), one JSON document each."""
    out = []
    for env in synthetic_envelopes(count, seed=seed, chain_ids=CHAINS):
        out.append(orjson.dumps({
            "hash": "0x" + env.hash.hex(), "from": "0x" + env.sender.hex(),
            "to": ("0x" + env.to.hex()) if env.to else None, "nonce": hex(env.nonce),
            "value": hex(int.from_bytes(env.value, "big")), "gas": hex(env.gas), "type": "0x2",
            "maxFeePerGas": hex(int.from_bytes(env.max_fee_per_gas, "big")),
            "maxPriorityFeePerGas": hex(int.from_bytes(env.max_priority_fee_per_gas, "big")),
            "gasPrice": hex(int.from_bytes(env.max_fee_per_gas, "big")),
            "input": "0x" + env.input.hex(), "chainId": hex(env.chain_id),
        }))
    return out


# ------------------------------------------------------------------------------------------ the client

def encode_batches(lines: list[bytes], batch_size: int, session: str, first_batch: int = 1) -> list[tuple[int, bytes]]:
    """The client's work, done before the clock starts: ``orjson`` parse -> ``TxEnvelope`` -> serialized ``TxBatch``.

    ingestd does this on its own machine (or core) in production; pre-encoding keeps the measurement on processd.
    Its cost is reported separately (``client_encode_us_per_tx``).
    """
    from ingestd.mapping import tx_to_envelope

    out = []
    now = time.time_ns()
    for seq, i in enumerate(range(0, len(lines), batch_size), start=first_batch):
        envs = []
        for raw in lines[i:i + batch_size]:
            tx = orjson.loads(raw)
            envs.append(tx_to_envelope(tx, int(tx["chainId"], 16), "bench", now))
        out.append((seq, ingest_pb2.TxBatch(session_id=session, batch_seq=seq, envelopes=envs).SerializeToString()))
    return out


def _identity(raw: bytes) -> bytes:
    return raw


async def stream(target: str, lines: list[bytes], batch_size: int, window: int, session: str,
                 first_batch: int = 1) -> dict[str, Any]:
    """Encodes ``lines`` (untimed), streams them with ``window`` batches in flight; throughput and ack latencies."""
    t0 = time.process_time()
    encoded = encode_batches(lines, batch_size, session, first_batch)
    encode_us = (time.process_time() - t0) / max(len(lines), 1) * 1e6
    result = await stream_encoded(target, encoded, window)
    result["tx"] = len(lines)
    result["tx_per_s"] = round(len(lines) / result["seconds"], 1)
    result["client_encode_us_per_tx"] = round(encode_us, 1)
    return result


async def stream_encoded(target: str, encoded: list[tuple[int, bytes]], window: int) -> dict[str, Any]:
    """Sends pre-serialized batches on one bidi stream; returns elapsed seconds and batch-to-ack latencies."""
    return await streams_encoded(target, [encoded], window)


async def streams_encoded(target: str, streams: list[list[tuple[int, bytes]]], window: int) -> dict[str, Any]:
    """Sends each list of pre-serialized batches on its own bidi stream (``window`` batches in flight on each),
    all at once on one channel; returns the elapsed seconds until the last ack and batch-to-ack latencies."""
    latencies: list[float] = []
    accepted = 0

    async def one(method: Any, encoded: list[tuple[int, bytes]]) -> None:
        nonlocal accepted
        sent_at: dict[int, float] = {}
        slots = asyncio.Semaphore(window)

        async def batches() -> AsyncIterator[bytes]:
            for seq, raw in encoded:
                await slots.acquire()
                sent_at[seq] = time.perf_counter()
                yield raw

        call = method(batches())
        got = 0
        async for ack in call:
            latencies.append((time.perf_counter() - sent_at.pop(ack.batch_seq)) * 1000)
            accepted += ack.accepted
            slots.release()
            got += 1
            if got == len(encoded):
                break

    started = time.perf_counter()
    async with grpc.aio.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
        # The batches are already bytes: an identity serializer sends them as they are.
        method = ch.stream_stream("/mempulse.v1.Ingest/Stream", request_serializer=_identity,
                                  response_deserializer=ingest_pb2.IngestAck.FromString)
        await asyncio.gather(*(one(method, encoded) for encoded in streams if encoded))
    elapsed = time.perf_counter() - started
    return {"accepted": accepted, "seconds": round(elapsed, 3), "batch_to_ack_ms": summarize(latencies)}


def split_by_chain(lines: list[bytes]) -> list[list[bytes]]:
    """The lines of each chain, in order (ingestd has one outbound stream per chain)."""
    by_chain: dict[int, list[bytes]] = {}
    for raw in lines:
        by_chain.setdefault(int(orjson.loads(raw)["chainId"], 16), []).append(raw)
    return [by_chain[c] for c in sorted(by_chain)]


# ------------------------------------------------------------------------------------------ floor server

def floor_server(port: int, data_dir: str) -> None:
    """The bare path: protobuf off the wire, LMDB puts of the envelopes, one fsync'd commit per batch."""
    import lmdb

    env = lmdb.open(data_dir, map_size=8 << 30, sync=True, metasync=True)
    counter = [0]

    class Floor(ingest_pb2_grpc.IngestServicer):
        async def Stream(self, request_iterator: Any, context: Any) -> AsyncIterator[ingest_pb2.IngestAck]:
            loop = asyncio.get_running_loop()
            async for batch in request_iterator:
                first = counter[0] + 1

                def commit(b: ingest_pb2.TxBatch = batch, start: int = first) -> int:
                    with env.begin(write=True) as txn:
                        cur = txn.cursor()
                        items = [((start + i).to_bytes(8, "big"),
                                  e.SerializeToString()) for i, e in enumerate(b.envelopes)]
                        cur.putmulti(items, append=True)
                    return start + len(items) - 1

                last = await loop.run_in_executor(None, commit)
                counter[0] = last
                yield ingest_pb2.IngestAck(batch_seq=batch.batch_seq, first_seq_id=first, last_seq_id=last,
                                           accepted=len(batch.envelopes))

    async def main() -> None:
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
        ingest_pb2_grpc.add_IngestServicer_to_server(Floor(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        print("floor listening", flush=True)
        await server.wait_for_termination()

    asyncio.run(main())


# ------------------------------------------------------------------------------------------ processes

class Server:
    """A benchmark server subprocess (processd or the floor) with its CPU accounting."""

    def __init__(self, argv: list[str], port: int, log_path: Path, ready_line: bytes = b"listening") -> None:
        self.port = port
        self.log = log_path.open("ab")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)})
        # processd binds its port before it is ready (health NOT_SERVING): wait for its "listening" log line.
        deadline = time.monotonic() + 120
        while ready_line not in log_path.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {argv}: {log_path.read_bytes()[-2000:]!r}")
            time.sleep(0.05)
        if not wait_for_port("127.0.0.1", port, 60):
            raise RuntimeError(f"server did not start: {argv}")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cpu(self) -> float:
        """CPU seconds of the server and its child processes (processd's analysis workers)."""
        return sum(self.cpu_split())

    def cpu_split(self) -> tuple[float, float]:
        """CPU seconds of the server process itself and of its child processes."""
        return (cpu_seconds(self.proc.pid) or 0.0,
                sum(cpu_seconds(pid) or 0.0 for pid in descendants(self.proc.pid)))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


async def measured_stream(server: Server, lines: list[bytes], args: argparse.Namespace, session: str,
                          first_batch: int = 1) -> dict[str, Any]:
    # Dealing the lines to streams is the bench's own bookkeeping (ingestd gets each chain from its own node), so
    # it stays out of the client's encoding share.
    parts = split_by_chain(lines) if args.streams == 0 else [lines[i::args.streams] for i in range(args.streams)]
    t0 = time.process_time()
    encoded = [encode_batches(part, args.batch, f"{session}-{i}", first_batch) for i, part in enumerate(parts)]
    encode_us = (time.process_time() - t0) / len(lines) * 1e6
    (main0, children0), own0 = server.cpu_split(), time.process_time()
    result = await streams_encoded(server.target, encoded, args.window)
    result["streams"] = len(encoded)
    main1, children1 = server.cpu_split()
    result["server_cpu_us_per_tx"] = round((main1 + children1 - main0 - children0) / len(lines) * 1e6, 1)
    # processd's own process (gRPC, admission, the writer, read models) vs its analysis workers.
    result["server_main_cpu_us_per_tx"] = round((main1 - main0) / len(lines) * 1e6, 1)
    result["server_workers_cpu_us_per_tx"] = round((children1 - children0) / len(lines) * 1e6, 1)
    result["client_cpu_us_per_tx"] = round((time.process_time() - own0) / len(lines) * 1e6, 1)
    result["client_encode_us_per_tx"] = round(encode_us, 1)
    result["tx"] = len(lines)
    result["tx_per_s"] = round(len(lines) / result["seconds"], 1)
    return result


def _histogram_parts(metrics_text: str, name: str) -> tuple[list[tuple[float, float]], float, float]:
    buckets: list[tuple[float, float]] = []
    total = count = 0.0
    for line in metrics_text.splitlines():
        if line.startswith(f"{name}_bucket"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
        elif line.startswith(f"{name}_sum"):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith(f"{name}_count"):
            count = float(line.rsplit(" ", 1)[1])
    return buckets, total, count


def histogram(metrics_text: str, name: str, since: str | None = None) -> dict[str, Any]:
    """Mean and bucket-estimated p50/p99 of a Prometheus histogram (of what was added after ``since``)."""
    buckets, total, count = _histogram_parts(metrics_text, name)
    if since is not None:
        before, total0, count0 = _histogram_parts(since, name)
        old = dict(before)
        buckets = [(le, c - old.get(le, 0.0)) for le, c in buckets]
        total -= total0
        count -= count0

    def quantile(q: float) -> float | None:
        for le, c in buckets:
            if count and c >= q * count:
                return le
        return None

    return {"count": int(count), "mean": round(total / count, 6) if count else None,
            "p50_le": quantile(0.5), "p99_le": quantile(0.99)}


async def scrape(port: int) -> str:
    async with httpx.AsyncClient(timeout=10) as client:
        return (await client.get(f"http://127.0.0.1:{port}/metrics")).text


async def query_latencies(target: str, last_seq: int, rounds: int) -> dict[str, Any]:
    rng = random.Random(7)
    out: dict[str, list[float]] = {k: [] for k in ("snapshot", "scan", "scan_chain", "list_tx", "get_tx")}
    async with grpc.aio.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 << 20)]) as ch:
        q = query_pb2_grpc.QueryStub(ch)
        sample = await q.ListTransactions(query_pb2.ListTransactionsRequest(limit=200))
        txs = list(sample.transactions)
        for _ in range(rounds):
            # Calls are created one at a time (a grpc.aio call starts when it is created).
            calls = {
                "snapshot": lambda: q.GetSnapshot(query_pb2.GetSnapshotRequest()),
                "scan": lambda: q.ScanEvents(query_pb2.ScanEventsRequest(
                    from_seq_id=rng.randint(1, last_seq), limit=100)),
                "scan_chain": lambda: q.ScanEvents(query_pb2.ScanEventsRequest(
                    from_seq_id=rng.randint(1, last_seq), limit=100, chain_id=rng.choice(CHAINS))),
                "list_tx": lambda: q.ListTransactions(query_pb2.ListTransactionsRequest(chain_id=137, limit=50)),
            }
            for name, make in calls.items():
                t = time.perf_counter()
                await make()
                out[name].append((time.perf_counter() - t) * 1000)
            tx = rng.choice(txs).tx
            t = time.perf_counter()
            await q.GetTransaction(query_pb2.GetTransactionRequest(chain_id=tx.chain_id, hash=tx.hash))
            out["get_tx"].append((time.perf_counter() - t) * 1000)
    return {k: summarize(v) for k, v in out.items()}


async def last_seq(target: str) -> int:
    async with grpc.aio.insecure_channel(target) as ch:
        r = await query_pb2_grpc.QueryStub(ch).GetSnapshot(query_pb2.GetSnapshotRequest(tx_limit=1))
        return r.last_seq_id


# ------------------------------------------------------------------------------------------ main

async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="processd-bench-"))
    sizes = [10_000, 100_000] if args.short else [10_000, 100_000, 1_000_000]
    results: dict[str, Any] = {"batch_size": args.batch, "window": args.window, "streams": args.streams or "per chain",
                               "durability": args.durability,
                               "flush_max_events": args.flush_max_events, "tx": args.tx,
                               "load_avg_1m": os.getloadavg()[0]}
    lines = make_json_lines(args.tx, seed=1)
    warm = make_json_lines(2000, seed=2)
    try:
        # The floor (a bare gRPC stream into fsync'd LMDB commits) and the full daemon run side by side; the
        # rounds alternate between them so that both see the same load, and the median round is reported.
        port = free_port()
        floor = Server([sys.executable, "-m", "scripts.bench.processd_bench", "--floor-server", str(port),
                        str(work / "floor")], port, work / "floor.log")
        workers_flag = ["--analysis-workers", str(args.analysis_workers)] if args.analysis_workers is not None else []
        port, mport = free_port(), free_port()
        full = Server([sys.executable, "-m", "processd", "--data-dir", str(work / "full"), "--listen",
                       f"127.0.0.1:{port}", "--metrics-port", str(mport), "--durability", args.durability,
                       "--flush-max-events", str(args.flush_max_events), "--map-max-size-mb", "65536",
                       *workers_flag],
                      port, work / "processd.log")
        try:
            await stream(floor.target, warm, args.batch, args.window, "warm")
            await stream(full.target, warm, args.batch, args.window, "warm")
            rounds: list[dict[str, Any]] = []
            for r in range(args.rounds):
                floor_run = await measured_stream(floor, lines, args, f"floor{r}", first_batch=10_000 * (r + 1))
                # New transactions every round: a resend would be all duplicates.
                round_lines = lines if r == 0 else make_json_lines(args.tx, seed=1 + 1000 * r)
                before = await scrape(mport)
                full_run = await measured_stream(full, round_lines, args, f"full{r}")
                after = await scrape(mport)
                full_run["commit_seconds"] = histogram(after, "mempulse_processd_commit_seconds", since=before)
                full_run["commit_envelopes"] = histogram(after, "mempulse_processd_commit_envelopes", since=before)
                rounds.append({"floor": floor_run, "full": full_run,
                               "full_over_floor": round(full_run["tx_per_s"] / floor_run["tx_per_s"], 3),
                               "load_avg_1m": os.getloadavg()[0]})
                print(f"round {r}: floor {floor_run['tx_per_s']:,.0f} tx/s, full {full_run['tx_per_s']:,.0f} tx/s",
                      flush=True)
            median = sorted(rounds, key=lambda x: x["full"]["tx_per_s"])[len(rounds) // 2]
            results["rounds"] = rounds
            results["floor"], results["full"] = median["floor"], median["full"]
            # Load around the throughput runs: the ratio is only meaningful when both saw similar load.
            results["load_avg_1m_after_throughput_runs"] = os.getloadavg()[0]
            ratios = sorted(x["full_over_floor"] for x in rounds)
            results["full_over_floor"] = ratios[len(ratios) // 2]  # median of the per-round ratios
            results["floor_over_full_server_cpu"] = round(
                results["full"]["server_cpu_us_per_tx"] / max(results["floor"]["server_cpu_us_per_tx"], 0.1), 2)
            metrics = await scrape(mport)
            results["storage_bytes_after_throughput_run"] = next(
                (float(x.split()[1]) for x in metrics.splitlines()
                 if x.startswith("mempulse_processd_storage_bytes ")), None)
        finally:
            floor.stop()
            full.stop()
        if args.no_queries:
            return results
        # Query latency by log size, on a fresh log filled in steps (nosync fill: only the reads are timed).
        port, mport = free_port(), free_port()
        sized = Server([sys.executable, "-m", "processd", "--data-dir", str(work / "sized"), "--listen",
                        f"127.0.0.1:{port}", "--metrics-port", str(mport), "--durability", "nosync",
                        "--map-max-size-mb", "65536"], port, work / "processd-sized.log")
        try:
            by_size: list[dict[str, Any]] = []
            seed = 100
            for size in sizes:
                fill: list[tuple[int, float]] = []  # (tx, seconds) of each fill stream on the way to this size
                while (seq := await last_seq(sized.target)) < size:
                    need_tx = min(50_000, max(500, (size - seq) // 2 + 1))
                    step = await stream(sized.target, make_json_lines(need_tx, seed=seed), 1000, args.window,
                                        f"fill{seed}")
                    fill.append((need_tx, step["seconds"]))
                    seed += 1
                seq = await last_seq(sized.target)
                # The nosync fill leaves up to a GB of dirty pages: flush them first, so that the kernel's
                # writeback does not share the CPUs with the reads being timed.
                os.sync()
                print(f"querying at {seq} events", flush=True)
                by_size.append({"target_events": size, "stored_events": seq,
                                # Ingest rate (nosync) while the log grew to this size: the tx_hash index's random
                                # inserts cost more as it grows.
                                "fill_tx_per_s": round(sum(n for n, _ in fill) / sum(t for _, t in fill), 1)
                                if fill else None,
                                "latency_ms": await query_latencies(sized.target, seq, args.query_rounds)})
            results["queries_by_size"] = by_size
            first, last = by_size[0]["latency_ms"], by_size[-1]["latency_ms"]
            results["query_p50_growth_smallest_to_largest"] = {
                k: round(last[k]["p50"] / first[k]["p50"], 2) for k in first if first[k]["p50"]}
            metrics = await scrape(mport)
            results["storage_bytes_largest"] = next((float(x.split()[1]) for x in metrics.splitlines()
                                                     if x.startswith("mempulse_processd_storage_bytes ")), None)
        finally:
            sized.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--floor-server":
        floor_server(int(sys.argv[2]), sys.argv[3])
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--short", action="store_true", help="CI mode: 10k/100k events, fewer transactions")
    p.add_argument("--tx", type=int, help="transactions in the throughput runs (default 100k, short 30k)")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--rounds", type=int, help="alternating floor/full rounds, the median reported (default 3, short 1)")
    p.add_argument("--window", type=int, default=64,
                   help="batches in flight per stream (ingestd's default unacked window)")
    p.add_argument("--streams", type=int, default=0,
                   help="client streams (default 0: one per chain, as ingestd; N: the lines dealt round-robin)")
    p.add_argument("--durability", default="sync", choices=("sync", "nosync"))
    p.add_argument("--analysis-workers", type=int, default=None, help="processd --analysis-workers (default: its own)")
    p.add_argument("--flush-max-events", type=int, default=32768, help="processd's default")
    p.add_argument("--query-rounds", type=int, default=200)
    p.add_argument("--no-queries", action="store_true", help="throughput runs only (no query latency by size)")
    p.add_argument("--out-name", default="processd")
    p.add_argument("--out-dir", type=Path, default=None, help="artifact directory (default artifacts/perf)")
    args = p.parse_args()
    args.tx = args.tx or (30_000 if args.short else 100_000)
    args.rounds = args.rounds or (1 if args.short else 3)
    results = asyncio.run(run(args))
    path = write_artifact(args.out_name, results, directory=args.out_dir, mode="short" if args.short else "full")
    print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
