"""Filtered subscribers benchmark: processd CPU per committed transaction with 0 / 10 / 100 / 1,000 subscribers.

    python -m scripts.bench.filter_bench [--tx 40000] [--passes 2] [--counts 0,10,100,1000] [--out-name filters]
        [--transports streams,many] [--compare-root /tmp/base]   # another checkout: old and new in one run

One real ``python -m processd`` (sync durability) serves every step, side by side in one run. Per step, a
subscriber process (``--subscriber-child``, so its CPU is not processd's) opens N ``SubscribeEvents`` streams,
each with an ``EventFilter`` matching about 1% of the transactions (a set of senders or of `to` addresses,
drawn from the synthetic traffic's own frequencies: subscriber k gets addresses until their share reaches 1%),
``from_head``; once all are admitted, ``--tx`` new transactions are pushed as the processd bench does (one
stream per chain, 64 batches of 500 in flight, batches pre-encoded before the clock): as fast as processd
acknowledges them, i.e. at its ingest capacity with that many subscribers. Figures per step: processd's CPU
(daemon + analysis workers, ``tree_cpu_seconds``) per committed transaction, the ingest throughput, and what
the subscribers received (events, and the share of transactions they matched). With ``--no-match`` (default
on) each count runs a second time with filters of as many addresses that match nothing: what subscribers cost
without deliveries. ``--passes`` runs the counts up and then down again (the log grows during the run;
alternating cancels its drift), and each count's figures are the mean of its passes. processd's CPU is read
after a drain (``DRAIN_S``: the deliveries go on after the last ack), split into its main process (where the
whole fan-out runs), the kernel part of that (loopback TCP), and the subscriber process's own CPU (it shares
the cores, so the throughput figures pay for it too). With ``--compare-root`` a second processd runs from that
checkout, each step runs on both (alternating which goes first), and the artifact holds both trees' figures
and their ratios (``new_vs_old``). Writes ``artifacts/perf/filters.json``.

``--transports`` (default both): ``streams`` opens one ``SubscribeEvents`` stream per filter, as above; ``many``
puts the same N filters on one ``SubscribeMany`` stream (issue 18: each taken event sent once with the ids of
the filters that take it), its adds acknowledged before the clock starts. Each count runs both, in the same run,
alternating which goes first; the figures are per transport (``by_subscribers`` is the streams', as before;
``many_by_filters`` the shared stream's) and ``many_vs_streams`` holds their ratios. The subscriber process
parses every message whole and counts deliveries the same way for both: a SubscribeMany event counts once per
filter id it carries.

Issue 18's target is per pass (1,000 filters cost at most 25% of the ingest of none: throughput >= 0.75x and
processd CPU <= 1.25x in every pass), and one pass's ratio swings with whatever else the 2 cores run, so
``many_ratios`` holds, per count, each pass's ratios to the same pass's step without filters (throughput, processd
CPU, its main process's, and processd's with the subscriber process's) with their median, mean, min and max, and
each step records ``others_cores``: the CPU the rest of the machine used during its window (/proc/stat's busy time
less processd's, the subscriber process's and the driver's), so a pass that shared the cores with other work
shows it.
Run it with ``--passes`` 5 or more and ``--tx`` 80000 (a step of ~2-4 s: the 10 s replay-digest timer, ~0.1 s of
processd's main process, lands in some steps and not others).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from operator import attrgetter
from pathlib import Path
from typing import Any

import grpc

from common.pb.v1 import events_pb2, query_pb2, query_pb2_grpc
from common.testing.netutil import free_port
from common.testing.procfs import cpu_seconds
from common.testing.synth import synthetic_envelopes
from scripts.bench.harness import ratio, tree_cpu_seconds, write_artifact
from scripts.bench.processd_bench import (
    CHAINS,
    ROOT,
    Server,
    encode_batches,
    make_json_lines,
    split_by_chain,
    streams_encoded,
)

SHARE = 0.01
#: After the push, how long the step waits for the deliveries to end before reading processd's CPU (its idle
#: CPU over this time is ~1 ms: heartbeats).
DRAIN_S = 1.5
SUBSCRIBERS_PER_CHANNEL = 100
SEEN = events_pb2.EVENT_KIND_TX_SEEN
_IDS_AND_KIND = attrgetter("filter_ids", "event.kind")


def make_filters(count: int, seed: int = 7, matching: bool = True) -> list[dict[str, list[str]]]:
    """``count`` filters (hex address lists) matching about 1% of the synthetic traffic each: even ones by
    sender, odd ones by `to`, from addresses rarer than 1% (a heavy one alone would match more). Not
    ``matching``: the same number of addresses, each changed in its last byte (they match nothing), to measure
    what subscribers cost without deliveries."""
    sample = synthetic_envelopes(20_000, seed=seed, chain_ids=CHAINS)
    shares = {"senders": Counter(e.sender for e in sample), "to": Counter(e.to for e in sample if e.to)}
    out = []
    for k in range(count):
        field = "senders" if k % 2 == 0 else "to"
        counts = shares[field]
        candidates = [a for a, n in counts.items() if n / len(sample) < SHARE]
        random.Random(k).shuffle(candidates)
        chosen, share = [], 0.0
        for address in candidates:
            if share >= SHARE:
                break
            chosen.append(address.hex())
            share += counts[address] / len(sample)
        if not matching:
            chosen = [a[:-2] + "ff" if not a.endswith("ff") else a[:-2] + "fe" for a in chosen]
        out.append({field: chosen})
    return out


# ---- the subscriber process -------------------------------------------------------------------------------


async def _subscribe(channel: grpc.aio.Channel, spec: dict[str, list[str]], ready: asyncio.Event,
                     admitted: list[int], totals: Counter[str], n: int) -> None:
    call = query_pb2_grpc.QueryStub(channel).SubscribeEvents(query_pb2.SubscribeEventsRequest(
        from_head=True, filter=_event_filter(spec)))
    await call.initial_metadata()
    admitted[0] += 1
    if admitted[0] == n:
        ready.set()
    try:
        async for msg in call:
            totals["messages"] += 1
            totals["events"] += len(msg.events)
            totals["tx_seen"] += sum(1 for e in msg.events if e.kind == SEEN)
    except grpc.aio.AioRpcError as err:
        if err.code() != grpc.StatusCode.CANCELLED:
            totals[f"ended_{err.code().name}"] += 1


def _event_filter(spec: dict[str, list[str]]) -> query_pb2.EventFilter:
    f = query_pb2.EventFilter()
    for field, addresses in spec.items():
        getattr(f, field).extend(bytes.fromhex(a) for a in addresses)
    return f


async def _many(target: str, specs: list[dict[str, list[str]]], ready: asyncio.Event, totals: Counter[str]) -> None:
    """One SubscribeMany stream with every filter (ids 0..N-1); ``ready`` once all adds are acknowledged."""
    channel = grpc.aio.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 << 20)])
    call = query_pb2_grpc.QueryStub(channel).SubscribeMany()
    await call.initial_metadata()
    await call.write(query_pb2.SubscribeManyRequest(add=[query_pb2.ManyFilter(id=i, filter=_event_filter(spec))
                                                         for i, spec in enumerate(specs)]))
    acknowledged = 0
    try:
        async for msg in call:
            acknowledged += len(msg.added)
            if acknowledged == len(specs):
                ready.set()
            totals["messages"] += 1
            events, seen = count_many(msg)
            totals["events"] += events
            totals["tx_seen"] += seen
    except grpc.aio.AioRpcError as err:
        totals[f"ended_{err.code().name}"] += 1  # a cut (RESOURCE_EXHAUSTED) makes the step's figures void
    finally:
        await channel.close(None)


def count_many(msg: query_pb2.SubscribeManyResponse) -> tuple[int, int]:
    """The deliveries in a parsed SubscribeMany message (an event counts once per filter id it carries), and those
    of TX_SEEN events. Every message is parsed whole (the call's deserializer) and every event's ids and kind are
    read: at 1,000 filters ~180k events per 80k transactions go through this process, which shares the 2 cores
    with processd. What costs is the wrapper upb makes on each access to an event: one ``attrgetter`` reads both
    (one ManyEvent wrapper per event, not two), ~0.6 us per transaction less than two C-level passes, one per
    field (``scripts/bench/many_fanout.py``'s client figures)."""
    events = seen = 0
    for ids, kind in map(_IDS_AND_KIND, msg.events):
        n = len(ids)
        events += n
        if kind == SEEN:
            seen += n
    return events, seen


async def subscriber_child(target: str, specs: list[dict[str, list[str]]], many: bool = False) -> None:
    """Opens a stream per filter; prints "ready" once all are admitted, then the counts when stdin closes."""
    totals: Counter[str] = Counter()
    ready, admitted = asyncio.Event(), [0]
    channels = [] if many else [grpc.aio.insecure_channel(target)
                                for _ in range(0, len(specs), SUBSCRIBERS_PER_CHANNEL)]
    tasks = [asyncio.create_task(_subscribe(channels[i // SUBSCRIBERS_PER_CHANNEL], spec, ready, admitted, totals,
                                            len(specs))) for i, spec in enumerate(specs)] if not many else (
        [asyncio.create_task(_many(target, specs, ready, totals))] if specs else [])
    if specs:
        await ready.wait()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    print(json.dumps(dict(totals)), flush=True)
    for t in tasks:
        t.cancel()
    for ch in channels:
        await ch.close(None)


# ---- the driver -------------------------------------------------------------------------------------------


def system_seconds(pid: int) -> float:
    """System (kernel) CPU seconds of ``pid`` alone (/proc/<pid>/stat field 15), 0.0 when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return 0.0
    return int(raw[raw.rfind(")") + 2:].split()[12]) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (every CPU, /proc/stat: all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text(encoding="ascii").split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def start_subscribers(target: str, filters: list[dict[str, list[str]]], work: Path,
                      many: bool = False) -> subprocess.Popen[str]:
    path = work / f"filters-{len(filters)}.json"
    path.write_text(json.dumps(filters))
    proc = subprocess.Popen([sys.executable, "-m", "scripts.bench.filter_bench", "--subscriber-child", target,
                             str(path), *(["--many-child"] if many else [])],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError("subscriber process did not start")
    return proc


def stop_subscribers(proc: subprocess.Popen[str]) -> dict[str, int]:
    out, _ = proc.communicate("", timeout=120)
    return json.loads(out.strip().splitlines()[-1])


async def step(server: Server, count: int, args: argparse.Namespace, work: Path, seed: int,
               matching: bool = True, transport: str = "streams") -> dict[str, Any]:
    """One measured push of ``args.tx`` new transactions with ``count`` filtered subscribers attached (one
    stream each, or, ``transport`` "many", all on one SubscribeMany stream)."""
    lines = make_json_lines(args.tx, seed=seed)
    encoded = [encode_batches(part, 500, f"s{seed}-{i}-{transport}", 1) for i, part in enumerate(split_by_chain(lines))]
    subs = start_subscribers(server.target, make_filters(count, matching=matching), work, many=transport == "many")
    try:
        await asyncio.sleep(1.0)  # let the subscriptions' catch-up end before the clock starts
        cpu0, (main0, _) = tree_cpu_seconds(server.proc.pid) or 0.0, server.cpu_split()
        sys0, child0 = system_seconds(server.proc.pid), cpu_seconds(subs.pid) or 0.0
        busy0, own0, wall0 = machine_busy_seconds(), time.process_time(), time.monotonic()
        result = await streams_encoded(server.target, encoded, 64)
        # The fan-out goes on after the last ack (the subscribers' messages): the CPU is read once they are out.
        await asyncio.sleep(DRAIN_S)
        cpu1, (main1, _) = tree_cpu_seconds(server.proc.pid) or 0.0, server.cpu_split()
        sys1, child1 = system_seconds(server.proc.pid), cpu_seconds(subs.pid) or 0.0
        busy1, own1, wall1 = machine_busy_seconds(), time.process_time(), time.monotonic()
    finally:
        received = stop_subscribers(subs)
    return {
        "subscribers": count, "transport": transport, "match": "1%" if matching else "none", "tx": args.tx,
        "accepted": result["accepted"],
        "seconds": result["seconds"],
        "tx_per_s": round(args.tx / result["seconds"], 1),
        "processd_cpu_us_per_tx": round((cpu1 - cpu0) / args.tx * 1e6, 2),
        # The daemon's own process (gRPC, writer, read models, fan-out); the rest is its analysis workers.
        "processd_main_cpu_us_per_tx": round((main1 - main0) / args.tx * 1e6, 2),
        # Of which in the kernel (mostly the subscribers' bytes through loopback TCP: sendmsg).
        "processd_main_sys_us_per_tx": round((sys1 - sys0) / args.tx * 1e6, 2),
        # The subscriber process shares the machine: its CPU is what the throughput figures pay besides processd's.
        "subscribers_cpu_us_per_tx": round((child1 - child0) / args.tx * 1e6, 2),
        "events_delivered": received.get("events", 0),
        "messages_delivered": received.get("messages", 0),
        "matched_share_per_subscriber": round(received.get("tx_seen", 0) / args.tx / count, 4) if count else None,
        # Streams processd ended during the step (a slow one is cut: RESOURCE_EXHAUSTED): should be none.
        "streams_ended": {k[6:]: v for k, v in received.items() if k.startswith("ended_")},
        "load_avg_1m": os.getloadavg()[0],
        # What the rest of the machine ran meanwhile (other work on the 2 cores), in cores: the machine's busy
        # time less processd's, the subscriber process's and this driver's (the pushing client).
        "others_cores": round(max(0.0, (busy1 - busy0) - (cpu1 - cpu0) - (child1 - child0) - (own1 - own0))
                              / (wall1 - wall0), 2),
    }


def summarize_counts(steps: list[dict[str, Any]], counts: list[int], match: str,
                     transport: str = "streams") -> dict[str, Any]:
    """Per count, the mean of its passes, and each against the figures with no subscriber (the steps with none
    of either transport: both are the same run without subscribers)."""
    out: dict[str, Any] = {}
    for count in counts:
        mine = [s for s in steps if s["subscribers"] == count and (not count or (
            s["match"] == match and s.get("transport", "streams") == transport))]
        out[str(count)] = {key: round(sum(s[key] for s in mine) / len(mine), 2)
                           for key in ("tx_per_s", "processd_cpu_us_per_tx", "processd_main_cpu_us_per_tx",
                                       "processd_main_sys_us_per_tx", "subscribers_cpu_us_per_tx")}
    base = out[str(counts[0])]
    for count in counts:
        fig = out[str(count)]
        fig["throughput_vs_none"] = ratio(fig["tx_per_s"], base["tx_per_s"])
        fig["cpu_per_tx_vs_none"] = ratio(fig["processd_cpu_us_per_tx"], base["processd_cpu_us_per_tx"])
    return out


#: Per pass, each count's figure against the same pass's step without filters (``pass_ratios``): processd's CPU
#: per transaction, its main process's alone, and processd's with the subscriber process's (what shares the cores).
_RATIOS = {"throughput_vs_none": ("tx_per_s",), "cpu_per_tx_vs_none": ("processd_cpu_us_per_tx",),
           "main_cpu_vs_none": ("processd_main_cpu_us_per_tx",),
           "cpu_with_subscribers_vs_none": ("processd_cpu_us_per_tx", "subscribers_cpu_us_per_tx")}


def pass_ratios(steps: list[dict[str, Any]], counts: list[int], passes: int) -> dict[str, Any]:
    """SubscribeMany's figures of each count against none, pass by pass (a pass runs both in adjacent steps, in
    alternating order, so a pass's ratio sees the machine in one state), with their median, mean, min and max:
    the passes of one run spread far more than their mean's error (other work on the 2 cores, the 10 s
    replay-digest timer landing in one step and not the other), so both the middle and the spread are reported."""
    out: dict[str, Any] = {}
    for count in counts[1:]:
        per_pass: dict[str, list[float]] = {name: [] for name in _RATIOS}
        others: list[list[float | None]] = []
        for p in range(passes):
            none = [s for s in steps if s["pass"] == p and not s["subscribers"]]
            mine = [s for s in steps if s["pass"] == p and s["subscribers"] == count and s["match"] == "1%"
                    and s.get("transport") == "many"]
            if not none or not mine:
                continue
            for name, keys in _RATIOS.items():
                value = ratio(sum(mine[0][k] for k in keys), sum(none[0][k] for k in keys))
                if value is not None:
                    per_pass[name].append(value)
            others.append([none[0].get("others_cores"), mine[0].get("others_cores")])
        out[str(count)] = {name: {"per_pass": values, "median": round(statistics.median(values), 3),
                                  "mean": round(statistics.fmean(values), 3), "min": min(values), "max": max(values)}
                           for name, values in per_pass.items() if values}
        # Per pass, the other work's cores during its step without filters and during this count's.
        out[str(count)]["others_cores_per_pass"] = others
    return out


def start_server(work: Path, name: str, root: str | None) -> Server:
    """processd of this tree, or (``root``) of another checkout of mempulse: its packages go first on sys.path
    (the analysis workers are spawned with the parent's sys.path)."""
    port = free_port()
    run = ["-m", "processd"] if root is None else [
        "-c", f"import runpy, sys; sys.path.insert(0, {root!r}); runpy.run_module('processd', run_name='__main__')"]
    return Server([sys.executable, *run, "--data-dir", str(work / f"log-{name}"), "--listen", f"127.0.0.1:{port}"],
                  port, work / f"processd-{name}.log")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    counts = [int(c) for c in args.counts.split(",")]
    work = Path(tempfile.mkdtemp(prefix="filter-bench-"))
    os.environ["MEMPULSE_PROCESSD_MAX_SUBSCRIBERS"] = str(max(counts) + 16)
    # A SubscribeMany stream of 1,000 filters of 1% carries nearly every event (~2.3 per transaction, each once):
    # at ingest speed the subscriber process reads ~90k events in a few seconds, more than the default 20,000
    # buffered events of a subscriber, and was cut as slow in one step of the first run. Both transports get the
    # larger bound (a SubscribeEvents subscriber of 1% never comes near either).
    os.environ["MEMPULSE_PROCESSD_SUBSCRIBER_QUEUE_EVENTS"] = str(args.queue_events)
    trees = ["new", "old"] if args.compare_root else ["new"]
    servers: dict[str, Server] = {}
    steps: list[dict[str, Any]] = []
    try:
        for tree in trees:
            servers[tree] = start_server(work, tree, args.compare_root if tree == "old" else None)
            warm = [encode_batches(make_json_lines(2000, seed=2), 500, "warm", 1)]
            await streams_encoded(servers[tree].target, warm, 64)
        order = [c for p in range(args.passes) for c in (counts if p % 2 == 0 else counts[::-1])]
        seed = 100
        transports = args.transports.split(",")
        for i, count in enumerate(order):
            for matching in (True, False) if count and args.no_match else (True,):
                # Both transports (with none: once), both trees, in alternating order (the machine's load drifts).
                for transport in (transports if i % 2 == 0 else transports[::-1]) if count else transports[:1]:
                    seed += 1
                    for tree in trees if i % 2 == 0 else trees[::-1]:
                        steps.append({"tree": tree, "pass": i // len(counts),
                                      **await step(servers[tree], count, args, work, seed, matching, transport)})
                        _print_step(tree, steps[-1])
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return _results(args, counts, trees, steps)


def _print_step(tree: str, s: dict[str, Any]) -> None:
    print(f"{tree} {s['subscribers']:>5} {s['transport']:>7} ({s['match']:>4}): {s['tx_per_s']:>9,.0f} tx/s,"
          f" processd {s['processd_cpu_us_per_tx']} us/tx (main {s['processd_main_cpu_us_per_tx']},"
          f" sys {s['processd_main_sys_us_per_tx']}), subscribers {s['subscribers_cpu_us_per_tx']} us/tx,"
          f" {s['events_delivered']:,} events in {s['messages_delivered']:,} messages,"
          f" share {s['matched_share_per_subscriber']}, others {s['others_cores']} cores", flush=True)


def _results(args: argparse.Namespace, counts: list[int], trees: list[str], steps: list[dict[str, Any]],
             ) -> dict[str, Any]:
    out: dict[str, Any] = {"tx_per_step": args.tx, "passes": args.passes, "match_share_target": SHARE,
                           "subscriber_queue_events": args.queue_events, "transports": args.transports,
                           "durability": "sync", "cpu_window": f"push + {DRAIN_S} s drain"}
    transports = args.transports.split(",")
    for tree in trees:
        mine = [s for s in steps if s["tree"] == tree]
        prefix = "" if tree == "new" else "old_"
        if "streams" in transports:
            out[f"{prefix}by_subscribers"] = summarize_counts(mine, counts, "1%")
            out[f"{prefix}by_subscribers_matching_none"] = (summarize_counts(mine, counts, "none") if args.no_match
                                                            else None)
        if "many" in transports:
            out[f"{prefix}many_by_filters"] = summarize_counts(mine, counts, "1%", "many")
            # The target holds in every pass, not only on the mean: each pass against its own step without filters.
            out[f"{prefix}many_by_filters_per_pass"] = [
                {c: {k: v[k] for k in ("throughput_vs_none", "cpu_per_tx_vs_none")} for c, v in summarize_counts(
                    [s for s in mine if s["pass"] == p], counts, "1%", "many").items()} for p in range(args.passes)]
            out[f"{prefix}many_ratios"] = pass_ratios(mine, counts, args.passes)
            out[f"{prefix}many_by_filters_matching_none"] = (summarize_counts(mine, counts, "none", "many")
                                                             if args.no_match else None)
    if "many_by_filters" in out and "streams" in args.transports.split(","):
        out["many_vs_streams"] = {c: {k: ratio(out["many_by_filters"][c][k], out["by_subscribers"][c][k])
                                      for k in ("tx_per_s", "processd_cpu_us_per_tx", "subscribers_cpu_us_per_tx")}
                                  for c in out["many_by_filters"]}
    if args.compare_root:
        out["old_tree"] = args.compare_root
        out["new_vs_old"] = {key: {c: {k: ratio(out[key][c][k], out[f"old_{key}"][c][k])
                                       for k in ("tx_per_s", "processd_cpu_us_per_tx", "processd_main_cpu_us_per_tx")}
                                   for c in out[key]}
                             for key in ("by_subscribers", "by_subscribers_matching_none", "many_by_filters",
                                         "many_by_filters_matching_none") if out.get(key)}
    out["steps"] = steps
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tx", type=int, default=40_000)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--counts", default="0,10,100,1000")
    parser.add_argument("--out-name", default="filters")
    parser.add_argument("--no-match", action=argparse.BooleanOptionalAction, default=True,
                        help="also run each count with filters that match nothing (the cost of subscribers alone)")
    parser.add_argument("--compare-root", default=None,
                        help="another checkout of mempulse (e.g. `git archive` of the base commit): its processd runs "
                             "every step too, in alternating order, and the artifact has both and their ratios")
    parser.add_argument("--transports", default="streams,many",
                        help="streams: one SubscribeEvents stream per filter; many: all filters on one SubscribeMany "
                             "stream (comma-separated; both run each count in the same run)")
    parser.add_argument("--queue-events", type=int, default=200_000,
                        help="processd's subscriber_queue_events for the run (buffered events per stream)")
    parser.add_argument("--subscriber-child", nargs=2, metavar=("TARGET", "FILTERS_JSON"))
    parser.add_argument("--many-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscriber_child:
        target, path = args.subscriber_child
        asyncio.run(subscriber_child(target, json.loads(Path(path).read_text()), args.many_child))
        return
    started = time.time()
    results = asyncio.run(run(args))
    results["wall_s"] = round(time.time() - started, 1)
    path = write_artifact(args.out_name, results)
    print(json.dumps({k: v for k, v in results.items() if k != "steps"}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
