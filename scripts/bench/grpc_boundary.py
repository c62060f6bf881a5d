"""gRPC boundary evaluation: the same ingest -> process path in one process vs across gRPC, by batch size.

    python -m scripts.bench.grpc_boundary [--mode short|full] [--batch-sizes 10,100,500] [--count 50000]

Both variants run the identical pipeline on the identical input:

- producer (ingestd's work): parse each node-format transaction JSON with orjson, map it to a ``TxEnvelope``
  with ``ingestd.mapping.tx_to_envelope``, group envelopes into ``TxBatch`` messages of ``batch_size``;
- consumer (processd's work): ``IngestPipeline.accept_batch`` (validation), the group-commit ``CommitWriter``
  (dedup, decoding, features, ranking, LMDB put, fsync'd commit), read models and subscriptions, then the ack.

``inprocess``: a ``processd.api.server.ProcessdServer`` runs inside the benchmark process and the producer calls
``prepare()`` + ``writer.submit()`` directly and awaits the ack future: no serialization, no sockets.
``grpc``: processd runs as its own process (``python -m processd``) and the producer streams the batches over
one ``Ingest.Stream`` (protobuf serialize, HTTP/2, parse on the other side). Both keep the same number of
batches in flight (``--window``) and the same durability (``sync``). Reported per batch size: throughput,
CPU microseconds per transaction (all processes involved), peak RSS, and batch-to-ack latency p50/p99.
Every measurement runs in a fresh interpreter (memory figures are not polluted by earlier runs); variants
alternate within a round, and each cell keeps the best of ``--rounds`` (the machine is shared). CPU per
transaction is the steadier figure: it does not depend on how much of the shared cores a run got.
Writes ``artifacts/perf/grpc_boundary.json`` (``grpc_boundary_short`` in short mode).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from common.hexutil import uint256_to_int
from common.pb.v1 import ingest_pb2, ingest_pb2_grpc, tx_pb2
from common.testing.ingest_push import channel
from common.testing.netutil import free_port
from common.testing.procfs import cpu_seconds, descendants
from common.testing.stack import Stack, StackConfig
from common.testing.synth import synthetic_envelopes
from ingestd.mapping import tx_to_envelope
from processd.api.server import ProcessdServer
from processd.config import ProcessdConfig
from scripts.bench.harness import REPO_ROOT, RssSampler, ratio, summarize, write_artifact

log = logging.getLogger("grpc_boundary")

CHAIN_IDS = [1, 137, 56]

MODES: dict[str, dict[str, Any]] = {
    "short": {"batch_sizes": [50, 500], "count": 10_000, "rounds": 1},
    "full": {"batch_sizes": [10, 50, 200, 500, 2000], "count": 40_000, "rounds": 2},
}


def node_json(envelopes: list[tx_pb2.TxEnvelope]) -> list[bytes]:
    """Each envelope as the JSON object a node returns for ``eth_getTransactionByHash`` (the producer's input)."""
    out = []
    for e in envelopes:
        out.append(orjson.dumps({
            "hash": "0x" + e.hash.hex(), "from": "0x" + e.sender.hex(), "to": "0x" + e.to.hex() if e.to else None,
            "nonce": hex(e.nonce), "value": hex(uint256_to_int(e.value)), "gas": hex(e.gas),
            "maxFeePerGas": hex(uint256_to_int(e.max_fee_per_gas)),
            "maxPriorityFeePerGas": hex(uint256_to_int(e.max_priority_fee_per_gas)),
            "gasPrice": hex(uint256_to_int(e.max_fee_per_gas)), "type": hex(e.tx_type),
            "input": "0x" + e.input.hex(), "chainId": hex(e.chain_id),
        }))
    return out


def produce(raw: list[bytes], chain_ids: list[int], batch_size: int, session: str) -> Any:
    """Yields (TxBatch, created perf_counter) from raw node JSON: the producer's per-transaction work."""
    seq = 0
    for i in range(0, len(raw), batch_size):
        seq += 1
        now = time.time_ns()
        envs = [tx_to_envelope(orjson.loads(r), chain_ids[(i + j) % len(chain_ids)], "bench", now)
                for j, r in enumerate(raw[i:i + batch_size])]
        yield ingest_pb2.TxBatch(session_id=session, batch_seq=seq, envelopes=envs), time.perf_counter()


@dataclass
class CellResult:
    """One (variant, batch size) measurement."""

    variant: str
    batch_size: int
    count: int
    accepted: int = 0
    elapsed_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mib: dict[str, float] = field(default_factory=dict)
    start_rss_mib: dict[str, float] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant, "batch_size": self.batch_size, "count": self.count, "accepted": self.accepted,
            "elapsed_s": round(self.elapsed_s, 3),
            "tx_s": round(self.accepted / self.elapsed_s, 1) if self.elapsed_s else None,
            "cpu_us_per_tx": round(self.cpu_s / self.accepted * 1e6, 1) if self.accepted else None,
            "cpu_cores_used": round(self.cpu_s / self.elapsed_s, 2) if self.elapsed_s else None,
            "peak_rss_mib": self.peak_rss_mib,
            "peak_rss_total_mib": round(sum(self.peak_rss_mib.values()), 1),
            # Growth during the run over each fresh process's RSS at the start (input data already loaded).
            "rss_growth_mib": round(sum(self.peak_rss_mib.values()) - sum(self.start_rss_mib.values()), 1),
            "batch_to_ack_ms": summarize(self.latencies_ms, 2),
        }


async def _windowed(produce_iter: Any, window: int,
                    send: Callable[[ingest_pb2.TxBatch], Awaitable[ingest_pb2.IngestAck]],
                    result: CellResult) -> None:
    """Keeps ``window`` batches in flight through ``send`` (which resolves to the batch's ack)."""
    sem = asyncio.Semaphore(window)
    tasks: set[asyncio.Task[None]] = set()

    async def one(batch: ingest_pb2.TxBatch, created: float) -> None:
        try:
            ack = await send(batch)
            result.accepted += ack.accepted
            result.latencies_ms.append((time.perf_counter() - created) * 1000)
        finally:
            sem.release()

    for batch, created in produce_iter:
        await sem.acquire()
        task = asyncio.create_task(one(batch, created))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.gather(*list(tasks))


def _processd_config(data_dir: Path, args: argparse.Namespace) -> ProcessdConfig:
    return ProcessdConfig(data_dir=data_dir, listen_port=free_port(), durability=args.durability,
                          flush_max_events=args.flush_max_events)


def run_inprocess(raw: list[bytes], batch_size: int, args: argparse.Namespace, workdir: Path) -> CellResult:
    """Producer and processd in this process, joined by a direct call at the boundary."""
    result = CellResult("inprocess", batch_size, len(raw))
    data_dir = workdir / f"inproc-{batch_size}-{time.monotonic_ns()}"

    async def main() -> None:
        server = ProcessdServer(_processd_config(data_dir, args))
        await server.start()
        try:
            stream = server.pipeline.open_stream()

            async def send(batch: ingest_pb2.TxBatch) -> ingest_pb2.IngestAck:
                if not batch.envelopes:
                    raise RuntimeError(f"batch {batch.batch_seq}: no envelopes")
                pending = await server.pipeline.accept_batch(batch, batch.SerializeToString(), stream)
                return await pending.acked()

            with RssSampler({"bench": os.getpid()}, interval_s=0.2) as sampler:
                cpu0, t0 = _tree_cpu(os.getpid()), time.perf_counter()
                await _windowed(produce(raw, args.chain_id_list, batch_size, "inproc"), args.window, send, result)
                result.elapsed_s = time.perf_counter() - t0
                result.cpu_s = _tree_cpu(os.getpid()) - cpu0
            series = sampler.series["bench"]
            result.peak_rss_mib = {"bench+processd": round(max(series.rss_mib), 1)}
            result.start_rss_mib = {"bench+processd": round(series.rss_mib[0], 1)}
        finally:
            await server.stop()

    asyncio.run(main())
    shutil.rmtree(data_dir, ignore_errors=True)
    return result


def _tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants (processd's analysis workers are child processes)."""
    return sum(cpu_seconds(p) or 0.0 for p in [pid, *descendants(pid)])


def run_grpc(raw: list[bytes], batch_size: int, args: argparse.Namespace, workdir: Path) -> CellResult:
    """Producer in this process, processd as a subprocess, joined by one Ingest.Stream."""
    result = CellResult("grpc", batch_size, len(raw))
    config = StackConfig(chains=(), ingestd=False, gatewayd=False, metrics=False,
                         data_dir=workdir / f"grpc-{batch_size}-{time.monotonic_ns()}", log_dir=workdir / "logs",
                         processd_args=("--durability", args.durability,
                                        "--flush-max-events", str(args.flush_max_events)))
    with Stack(config) as stack:
        pid = stack.process("processd").pid
        assert pid is not None

        async def main() -> None:
            async with channel(stack.processd_addr) as ch:
                stub = ingest_pb2_grpc.IngestStub(ch)
                outbox: asyncio.Queue[ingest_pb2.TxBatch | None] = asyncio.Queue()
                waiting: dict[int, asyncio.Future[ingest_pb2.IngestAck]] = {}

                async def requests() -> AsyncIterator[ingest_pb2.TxBatch]:
                    while (batch := await outbox.get()) is not None:
                        yield batch

                call = stub.Stream(requests())

                async def read_acks() -> None:
                    async for ack in call:
                        fut = waiting.pop(ack.batch_seq, None)
                        if fut is not None and not fut.done():
                            fut.set_result(ack)

                reader = asyncio.create_task(read_acks())
                loop = asyncio.get_running_loop()

                async def send(batch: ingest_pb2.TxBatch) -> ingest_pb2.IngestAck:
                    fut: asyncio.Future[ingest_pb2.IngestAck] = loop.create_future()
                    waiting[batch.batch_seq] = fut
                    outbox.put_nowait(batch)
                    return await fut

                with RssSampler({"bench": os.getpid(), "processd": pid}, interval_s=0.2) as sampler:
                    cpu0 = (cpu_seconds(os.getpid()) or 0.0) + _tree_cpu(pid)
                    t0 = time.perf_counter()
                    await _windowed(produce(raw, args.chain_id_list, batch_size, "grpc"), args.window, send, result)
                    result.elapsed_s = time.perf_counter() - t0
                    result.cpu_s = (cpu_seconds(os.getpid()) or 0.0) + _tree_cpu(pid) - cpu0
                result.peak_rss_mib = {name: round(max(s.rss_mib), 1) for name, s in sampler.series.items()}
                result.start_rss_mib = {name: round(s.rss_mib[0], 1) for name, s in sampler.series.items()}
                outbox.put_nowait(None)
                await reader

        asyncio.run(main())
    return result


def run_cell(args: argparse.Namespace) -> dict[str, Any]:
    """One measurement in this (fresh) process: ``--cell VARIANT:BATCH_SIZE:SEED``."""
    variant, size, seed = args.cell.split(":")
    args.chain_id_list = CHAIN_IDS
    raw = node_json(synthetic_envelopes(args.count, seed=int(seed), chain_ids=CHAIN_IDS))
    workdir = Path(tempfile.mkdtemp(prefix="mempulse-grpc-boundary-"))
    try:
        fn = run_inprocess if variant == "inprocess" else run_grpc
        return fn(raw, int(size), args, workdir).as_dict()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _cell_subprocess(variant: str, size: int, seed: int, count: int, args: argparse.Namespace) -> dict[str, Any]:
    # Each cell runs in a fresh interpreter so that memory figures are not polluted by earlier cells
    # (CPython keeps freed arenas) and both variants start equal.
    argv = [sys.executable, "-m", "scripts.bench.grpc_boundary", "--cell", f"{variant}:{size}:{seed}",
            "--count", str(count), "--window", str(args.window), "--durability", args.durability,
            "--flush-max-events", str(args.flush_max_events)]
    proc = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"cell {variant}:{size} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return dict(orjson.loads(lines[-1]))


def _tx_s(cell: dict[str, Any]) -> float:
    return float(cell.get("tx_s") or 0.0)


def run(args: argparse.Namespace) -> dict[str, Any]:
    mode = MODES[args.mode]
    sizes = [int(s) for s in args.batch_sizes.split(",")] if args.batch_sizes else mode["batch_sizes"]
    count = args.count or mode["count"]
    rounds = args.rounds or mode["rounds"]
    cells: dict[tuple[str, int], dict[str, Any]] = {}
    all_runs: list[dict[str, Any]] = []
    for rnd in range(rounds):
        for size in sizes:
            # The same seed for both variants (each has its own fresh processd), a new one per round.
            seed = 1000 * rnd + size
            variants = ("inprocess", "grpc") if (rnd + size) % 2 == 0 else ("grpc", "inprocess")
            for variant in variants:
                res = _cell_subprocess(variant, size, seed, count, args)
                all_runs.append({"round": rnd, **res})
                log.info("round %d %s batch %d: %s tx/s, %s us CPU/tx, peak RSS %s MiB", rnd, variant, size,
                         res["tx_s"], res["cpu_us_per_tx"], res["peak_rss_total_mib"])
                key = (variant, size)
                if key not in cells or _tx_s(res) > _tx_s(cells[key]):
                    cells[key] = res
    table = []
    for size in sizes:
        ip, gr = cells[("inprocess", size)], cells[("grpc", size)]
        table.append({
            "batch_size": size, "inprocess": ip, "grpc": gr,
            "grpc_over_inprocess_tx_s": ratio(gr["tx_s"], ip["tx_s"]),
            # CPU per transaction is the steadier figure on a shared machine: it does not depend on how much
            # of the cores the run got.
            "inprocess_over_grpc_cpu": ratio(ip["cpu_us_per_tx"], gr["cpu_us_per_tx"]),
            "grpc_cpu_overhead_us_per_tx": round(gr["cpu_us_per_tx"] - ip["cpu_us_per_tx"], 1)
            if gr["cpu_us_per_tx"] is not None and ip["cpu_us_per_tx"] is not None else None,
            "grpc_extra_peak_rss_mib": round(gr["peak_rss_total_mib"] - ip["peak_rss_total_mib"], 1),
        })
    best_row = min(table, key=lambda r: r["grpc"]["cpu_us_per_tx"] or float("inf"))
    return {
        "config": {"mode": args.mode, "batch_sizes": sizes, "count": count, "rounds": rounds,
                   "window": args.window, "durability": args.durability, "flush_max_events": args.flush_max_events},
        "by_batch_size": table,
        "best": {
            "batch_size": best_row["batch_size"],
            "grpc_tx_s": best_row["grpc"]["tx_s"],
            "inprocess_tx_s": best_row["inprocess"]["tx_s"],
            "grpc_over_inprocess": best_row["grpc_over_inprocess_tx_s"],
            "grpc_cpu_us_per_tx": best_row["grpc"]["cpu_us_per_tx"],
            "inprocess_cpu_us_per_tx": best_row["inprocess"]["cpu_us_per_tx"],
            "inprocess_over_grpc_cpu": best_row["inprocess_over_grpc_cpu"],
            "grpc_cpu_overhead_us_per_tx": best_row["grpc_cpu_overhead_us_per_tx"],
        },
        "runs": all_runs,
    }


def markdown_table(results: dict[str, Any]) -> str:
    """The per-batch-size comparison as a markdown table (for docs/perf/grpc-boundary.md)."""
    lines = ["| batch | in-process tx/s | gRPC tx/s | gRPC/in-proc tx/s | in-proc CPU us/tx | gRPC CPU us/tx "
             "| gRPC extra CPU us/tx | in-proc peak RSS MiB | gRPC peak RSS MiB (producer + processd) "
             "| in-proc ack p50/p99 ms | gRPC ack p50/p99 ms |", "|" + "---:|" * 11]
    for r in results["by_batch_size"]:
        ip, gr = r["inprocess"], r["grpc"]
        rss = gr["peak_rss_mib"]
        lines.append(
            f"| {r['batch_size']} | {ip['tx_s']:,.0f} | {gr['tx_s']:,.0f} | {r['grpc_over_inprocess_tx_s']} "
            f"| {ip['cpu_us_per_tx']} | {gr['cpu_us_per_tx']} | {r['grpc_cpu_overhead_us_per_tx']} "
            f"| {ip['peak_rss_total_mib']} | {gr['peak_rss_total_mib']} ({rss.get('bench')} + {rss.get('processd')}) "
            f"| {ip['batch_to_ack_ms']['p50']} / {ip['batch_to_ack_ms']['p99']} "
            f"| {gr['batch_to_ack_ms']['p50']} / {gr['batch_to_ack_ms']['p99']} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="In-process vs gRPC boundary between ingest and processing.")
    parser.add_argument("--mode", choices=sorted(MODES), default="full")
    parser.add_argument("--batch-sizes", help="comma-separated envelopes per TxBatch (overrides the mode)")
    parser.add_argument("--count", type=int, default=None, help="transactions per measurement")
    parser.add_argument("--rounds", type=int, default=None, help="repeat every cell, keep the best")
    parser.add_argument("--window", type=int, default=8, help="batches in flight (both variants)")
    parser.add_argument("--durability", choices=("sync", "nosync"), default="sync")
    parser.add_argument("--flush-max-events", type=int, default=8192)
    parser.add_argument("--name", default=None)
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None,
                        help="print the markdown table of an existing artifact and exit")
    parser.add_argument("--cell", help=argparse.SUPPRESS)  # internal: VARIANT:BATCH_SIZE:SEED, one measurement
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("processd").setLevel(logging.WARNING)
    if args.markdown:
        print(markdown_table(orjson.loads(args.markdown.read_bytes())["results"]))
        return 0
    if args.cell:
        args.count = args.count or MODES["short"]["count"]
        print(orjson.dumps(run_cell(args)).decode(), flush=True)
        return 0
    results = run(args)
    name = args.name or ("grpc_boundary" if args.mode == "full" else "grpc_boundary_short")
    path = write_artifact(name, results, directory=args.out_dir, mode=args.mode)
    for row in results["by_batch_size"]:
        print(f"batch {row['batch_size']:>5}: in-process {row['inprocess']['tx_s']} tx/s "
              f"({row['inprocess']['cpu_us_per_tx']} us CPU/tx), gRPC {row['grpc']['tx_s']} tx/s "
              f"({row['grpc']['cpu_us_per_tx']} us CPU/tx), ratio {row['grpc_over_inprocess_tx_s']}")
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
