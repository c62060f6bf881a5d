"""Shared machinery of the reliability suite: a processd subprocess, a resending ingest client, a log auditor.

Everything here runs for real: processd is the real daemon in a subprocess with its LMDB in a temp dir, the
client speaks real gRPC, and the auditor reads the LMDB files directly (independently of processd's own
read paths) to check the log's invariants after every crash.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import struct
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import lmdb

from common.pb.v1 import events_pb2, ingest_pb2, ingest_pb2_grpc, tx_pb2
from common.testing.netutil import free_port
from common.testing.process import ManagedProcess, child_env, python_module_argv
from common.testing.stack import grpc_serving

ROOT = Path(__file__).resolve().parents[2]
U64 = struct.Struct(">Q")
CHAIN_SEQ = struct.Struct(">QQ")
KIND_SEEN = events_pb2.EVENT_KIND_TX_SEEN
KIND_SOURCE = events_pb2.EVENT_KIND_TX_SOURCE_SEEN
KIND_BLOCK = events_pb2.EVENT_KIND_BLOCK
#: Lifecycle kinds: each a unit of its own (chain_seq entry; tx_life_seq entry, or tx_life in an older log, when
#: about a transaction).
LIFE_KINDS = frozenset((events_pb2.EVENT_KIND_TX_INCLUDED, events_pb2.EVENT_KIND_TX_REPLACED,
                        events_pb2.EVENT_KIND_TX_DROPPED, events_pb2.EVENT_KIND_REORG))
BLOCK_KEY = struct.Struct(">QQ32s")
KIND_POOL_STATE = events_pb2.EVENT_KIND_POOL_STATE
POOL_KEY = struct.Struct(">Q20sQ32s")
ARTIFACTS = ROOT / "artifacts" / "reliability"


def long_mode() -> bool:
    """True when the long runs are asked for (``MEMPULSE_RELIABILITY_LONG=1``, set by scripts/reliability)."""
    return os.environ.get("MEMPULSE_RELIABILITY_LONG", "") not in ("", "0")


def knob(name: str, short: int, long: int) -> int:
    """A size of a test: ``MEMPULSE_RELIABILITY_<NAME>`` if set, else the long or short default."""
    raw = os.environ.get(f"MEMPULSE_RELIABILITY_{name.upper()}")
    if raw:
        return int(raw)
    return long if long_mode() else short


def write_artifact(name: str, figures: dict[str, object]) -> Path | None:
    """Writes ``artifacts/reliability/<name>.json`` in long mode (short runs leave the committed figures alone)."""
    if not long_mode() and not os.environ.get("MEMPULSE_RELIABILITY_ARTIFACTS"):
        return None
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.json"
    doc = {"test": name, "long_mode": long_mode(), "finished_unix": int(time.time()), **figures}
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return path


class ProcessdProc(ManagedProcess):
    """The real processd daemon as a restartable subprocess on a fixed free port (same port across restarts)."""

    def __init__(self, data_dir: Path, log_path: Path, *args: str, env: dict[str, str] | None = None,
                 metrics: bool = False) -> None:
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.metrics_port = free_port() if metrics else 0
        argv = ["--data-dir", str(data_dir), "--listen", self.addr, *args]
        if metrics:
            argv += ["--metrics-port", str(self.metrics_port)]
        super().__init__("processd", python_module_argv("processd", *argv), log_path, env=child_env(env or {}),
                         cwd=ROOT, ready=lambda: grpc_serving(self.addr), ready_timeout_s=60, stop_timeout_s=20)


# ---- the log auditor ---------------------------------------------------------------------------------------


@dataclass
class Audit:
    """What the LMDB files hold, and every invariant violation found in them."""

    last_seq: int = 0
    first_seq: int = 0
    events: int = 0
    txs: dict[tuple[int, bytes], int] = field(default_factory=dict)
    duplicates: list[tuple[int, bytes]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    stale_readers_cleared: int = 0

    def assert_clean(self) -> None:
        assert not self.duplicates, f"{len(self.duplicates)} duplicate (chain, hash) events, e.g. {self.duplicates[:3]}"
        assert not self.problems, "event log invariants violated:\n" + "\n".join(self.problems[:20])


def audit_log(data_dir: Path) -> Audit:
    """Opens the LMDB environment (as a second process would) and checks the event log's invariants.

    * the environment opens, ``meta.last_seq`` equals the highest event key;
    * event seqs are contiguous from the first retained one to ``last_seq``, each value's kind byte matches
      its event and no value carries a seq of its own (the key is the seq);
    * the first retained event is a TX_SEEN (transactions are stored and pruned whole);
    * no (chain_id, hash) has two TX_SEEN events;
    * the ``chain_seq`` index has exactly one entry per transaction (its chain and TX_SEEN seq -> the kinds of
      its events), and ``tx_hash`` maps every stored transaction (chain, first 16 bytes of its hash) to its TX_SEEN
      event (and nothing else);
    * a TX_SOURCE_SEEN event (a later source) has a ``chain_seq`` entry of its own, names a TX_SEEN of its
      transaction (or one already pruned), and ``tx_sources`` holds exactly the retained transactions' sources;
    * a BLOCK event has a ``chain_seq`` entry of its own, no (chain, block hash) is stored twice but after another
      block at its height (the chain went back to it: ``processd.storage.blockbranch``), and ``blocks`` maps
      exactly the retained BLOCK events (chain, number, hash) to their seqs (the last copy's);
    * a POOL_STATE event likewise: its own ``chain_seq`` entry, no (chain, pair, block number, block hash) stored
      twice, and ``pools`` maps exactly the retained POOL_STATE events to their seqs.
    * a lifecycle event (TX_INCLUDED, TX_REPLACED, TX_DROPPED, REORG) has a ``chain_seq`` entry of its own, one about
      a transaction names its TX_SEEN (or one already pruned), and ``tx_life_seq`` (``tx_life`` in an older log)
      indexes exactly the retained ones about a transaction, each once; a transaction is settled (replaced or
      dropped) at most once, and never after that.
    """
    out = Audit()
    env = lmdb.open(str(data_dir), readonly=True, max_dbs=16, lock=True, max_readers=256)
    try:
        out.stale_readers_cleared = env.reader_check()
        events_db = env.open_db(b"events", create=False)
        chain_db = env.open_db(b"chain_seq", create=False)
        tx_db = env.open_db(b"tx_hash", create=False)
        meta_db = env.open_db(b"meta", create=False)
        try:
            sources_db = env.open_db(b"tx_sources", create=False)
        except lmdb.NotFoundError:  # a log written before tx_sources existed
            sources_db = None
        try:
            blocks_db = env.open_db(b"blocks", create=False)
        except lmdb.NotFoundError:  # a log written before blocks existed
            blocks_db = None
        try:
            pools_db = env.open_db(b"pools", create=False)
        except lmdb.NotFoundError:  # a log written before pool states existed
            pools_db = None
        try:
            life_db = env.open_db(b"tx_life", create=False)
        except lmdb.NotFoundError:  # a log written before tx_life existed
            life_db = None
        try:
            life_seq_db = env.open_db(b"tx_life_seq", create=False)
        except lmdb.NotFoundError:  # a log written before tx_life_seq existed
            life_seq_db = None
        sightings: dict[bytes, int] = {}
        blocks: dict[bytes, int] = {}
        current_at: dict[tuple[int, int], bytes] = {}  # (chain, number) -> the hash of its last BLOCK event
        pools: dict[bytes, int] = {}
        life: dict[int, tuple[bytes, bytes, int]] = {}
        settled: set[tuple[int, bytes]] = set()
        with env.begin() as txn:
            raw = txn.get(b"last_seq", db=meta_db)
            out.last_seq = U64.unpack(raw)[0] if raw else 0
            expected = None
            chain_index: dict[bytes, bytes] = {}
            tx_start = b""
            for key, value in txn.cursor(db=events_db):
                seq = U64.unpack(key)[0]
                if expected is None:
                    out.first_seq = seq
                elif seq != expected:
                    out.problems.append(f"gap: seq {expected} missing before {seq}")
                expected = seq + 1
                out.events += 1
                event = events_pb2.Event()
                event.ParseFromString(value[1:])
                if event.seq_id or value[0] != event.kind:
                    out.problems.append(f"event at key {seq} says seq {event.seq_id} kind {event.kind}/{value[0]}")
                if event.kind == KIND_BLOCK:  # a unit of its own, like a sighting
                    chain_index[CHAIN_SEQ.pack(event.chain_id, seq)] = bytes((KIND_BLOCK,))
                    block = event.block.block
                    bkey = BLOCK_KEY.pack(event.chain_id, block.number, bytes(block.hash))
                    height = (event.chain_id, block.number)
                    if bkey in blocks and current_at.get(height) == bytes(block.hash):
                        out.problems.append(f"block {seq}: (chain, block hash) stored twice")
                    blocks[bkey] = seq
                    current_at[height] = bytes(block.hash)
                    continue
                if event.kind == KIND_POOL_STATE:  # a unit of its own, like a block
                    chain_index[CHAIN_SEQ.pack(event.chain_id, seq)] = bytes((KIND_POOL_STATE,))
                    state = event.pool_state.state
                    pkey = POOL_KEY.pack(event.chain_id, bytes(state.pair), state.block_number, bytes(state.block_hash))
                    if pkey in pools:
                        out.problems.append(f"pool state {seq}: (chain, pair, block) stored twice")
                    pools[pkey] = seq
                    continue
                if event.kind in LIFE_KINDS:  # a unit of its own, like a sighting
                    chain_index[CHAIN_SEQ.pack(event.chain_id, seq)] = bytes((event.kind,))
                    if event.tx_hash:
                        _audit_life(out, event, seq, life, settled)
                    continue
                if event.kind == KIND_SOURCE:  # not part of its transaction's contiguous events
                    chain_index[CHAIN_SEQ.pack(event.chain_id, seq)] = bytes((KIND_SOURCE,))
                    tx_seq = event.tx_source_seen.tx_seq_id
                    if out.txs.get((event.chain_id, bytes(event.tx_hash))) != tx_seq and tx_seq >= (out.first_seq or 0):
                        out.problems.append(f"sighting {seq} names tx seq {tx_seq}, not its transaction's TX_SEEN")
                    key = U64.pack(event.chain_id) + bytes(event.tx_hash[:16]) + event.source_id.encode()
                    if key in sightings:
                        out.problems.append(f"sighting {seq}: (transaction, source) stored twice")
                    sightings[key] = event.tx_source_seen.sighting.seen_unix_ns
                    continue
                if event.kind == KIND_SEEN:
                    tx_start = CHAIN_SEQ.pack(event.chain_id, seq)
                    chain_index[tx_start] = b""
                elif not tx_start:
                    out.problems.append(f"event {seq} (kind {event.kind}) belongs to no stored transaction")
                    continue
                chain_index[tx_start] += bytes((event.kind,))
                if event.kind == KIND_SEEN:
                    k = (event.chain_id, bytes(event.tx_hash))
                    if k in out.txs:
                        out.duplicates.append(k)
                    out.txs[k] = seq
            if expected is not None and expected - 1 != out.last_seq:
                out.problems.append(f"meta last_seq {out.last_seq} != highest event {expected - 1}")
            if expected is None and out.last_seq:
                out.problems.append(f"meta last_seq {out.last_seq} but no events")
            index = {bytes(k): bytes(v) for k, v in txn.cursor(db=chain_db)}
            if index != chain_index:
                wrong = sum(1 for k, v in index.items() if k in chain_index and chain_index[k] != v)
                out.problems.append(f"chain_seq index differs: {len(index.keys() - chain_index.keys())} extra, "
                                    f"{len(chain_index.keys() - index.keys())} missing, {wrong} wrong kinds")
            # tx_hash keys: chain id (u64) + the first 16 bytes of the hash.
            tx_index = {(U64.unpack(k[:8])[0], bytes(k[8:])): U64.unpack(v)[0] for k, v in txn.cursor(db=tx_db)}
            if tx_index != {(c, h[:16]): seq for (c, h), seq in out.txs.items()}:
                out.problems.append(f"tx_hash index differs from TX_SEEN events ({len(tx_index)} vs {len(out.txs)})")
            retained = {U64.pack(c) + h[:16] for c, h in out.txs}
            want = {k: v for k, v in sightings.items() if k[:24] in retained}
            held = {bytes(k): U64.unpack(v)[0] for k, v in txn.cursor(db=sources_db)} if sources_db else {}
            if held != want:
                out.problems.append(f"tx_sources differs from the retained TX_SOURCE_SEEN events ({len(held)} vs "
                                    f"{len(want)})")
            # each retained lifecycle event about a transaction is indexed once: in tx_life_seq (by its TX_SEEN
            # seq), or in tx_life (by its tx_hash key) when a build before tx_life_seq wrote it
            held_life = {bytes(k): v[0] for k, v in txn.cursor(db=life_db)} if life_db else {}
            held_life_seq = {bytes(k): v[0] for k, v in txn.cursor(db=life_seq_db)} if life_seq_db else {}
            indexed = [(held_life.get(old), held_life_seq.get(new), kind) for old, new, kind in life.values()]
            once = all((a is None) != (b is None) and kind in (a, b) for a, b, kind in indexed)
            if not once or len(held_life) + len(held_life_seq) != len(life):
                out.problems.append(f"tx_life / tx_life_seq differ from the retained lifecycle events "
                                    f"({len(held_life)} + {len(held_life_seq)} vs {len(life)})")
            held_blocks = {bytes(k): U64.unpack(v)[0] for k, v in txn.cursor(db=blocks_db)} if blocks_db else {}
            if held_blocks != blocks:
                out.problems.append(f"blocks index differs from the retained BLOCK events ({len(held_blocks)} vs "
                                    f"{len(blocks)})")
            held_pools = {bytes(k): U64.unpack(v)[0] for k, v in txn.cursor(db=pools_db)} if pools_db else {}
            if held_pools != pools:
                out.problems.append(f"pools index differs from the retained POOL_STATE events ({len(held_pools)} vs "
                                    f"{len(pools)})")
    finally:
        env.close()
    return out


def _audit_life(out: Audit, event: events_pb2.Event, seq: int, life: dict[int, tuple[bytes, bytes, int]],
                settled: set[tuple[int, bytes]]) -> None:
    """One lifecycle event about a transaction: it names the transaction's TX_SEEN, and nothing follows a
    replacement or a drop of the same transaction."""
    body = event.WhichOneof("body")
    tx_seq = getattr(event, body or "tx_included").tx_seq_id
    k = (event.chain_id, bytes(event.tx_hash))
    if out.txs.get(k) != tx_seq and tx_seq >= (out.first_seq or 0):
        out.problems.append(f"lifecycle event {seq} names tx seq {tx_seq}, not its transaction's TX_SEEN")
    if k in settled:
        out.problems.append(f"lifecycle event {seq} about a transaction already replaced or dropped")
    if event.kind != events_pb2.EVENT_KIND_TX_INCLUDED:
        settled.add(k)
    # its index keys: in tx_life (by the tx_hash key, before tx_life_seq existed) and in tx_life_seq (by TX_SEEN seq)
    life[seq] = (U64.pack(event.chain_id) + bytes(event.tx_hash[:16]) + U64.pack(seq), U64.pack(tx_seq) + U64.pack(seq),
                 event.kind)


# ---- a resending ingest client -------------------------------------------------------------------------------


class ResendingPusher:
    """Streams envelopes to processd like ingestd does: keeps every batch until acked, resends after a failure.

    Runs in its own thread with its own event loop so a test can kill and restart processd meanwhile.
    ``acked`` holds the (chain_id, hash) of every envelope of every acked batch (under ``lock``).
    """

    def __init__(self, addr: str, envelopes: Sequence[tx_pb2.TxEnvelope], batch_size: int = 100,
                 max_inflight: int = 8, session_id: str = "reliability", pace_s: float = 0.0) -> None:
        self.addr = addr
        self.batches = [ingest_pb2.TxBatch(session_id=session_id, batch_seq=i // batch_size + 1,
                                           envelopes=envelopes[i:i + batch_size])
                        for i in range(0, len(envelopes), batch_size)]
        self.max_inflight = max_inflight
        self.pace_s = pace_s
        self.lock = threading.Lock()
        self.acked: set[tuple[int, bytes]] = set()
        self.acks: dict[int, ingest_pb2.IngestAck] = {}
        self.stream_failures = 0
        self.resent_batches = 0
        self.accepted = 0
        self.duplicates = 0
        self._sent_once: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="resending-pusher", daemon=True)
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        with self.lock:
            return len(self.acks) == len(self.batches)

    def acked_snapshot(self) -> set[tuple[int, bytes]]:
        with self.lock:
            return set(self.acked)

    def start(self) -> ResendingPusher:
        self._thread.start()
        return self

    def wait_stream_failure(self, failures_before: int, timeout_s: float) -> None:
        """Waits until a stream ended in an error after ``failures_before`` such ends: by then every ack that
        arrived before the failure has been processed (a snapshot taken earlier can miss the last ones)."""
        deadline = time.monotonic() + timeout_s
        while self.stream_failures <= failures_before and not self.done and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def wait_done(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.done and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.05)
        if self.error is not None:
            raise self.error
        assert self.done, f"only {len(self.acks)}/{len(self.batches)} batches acked after {timeout_s}s"

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # surfaced by wait_done
            self.error = exc

    async def _run(self) -> None:
        while not self._stop.is_set() and not self.done:
            try:
                await self._one_stream()
            except (TimeoutError, grpc.aio.AioRpcError, ConnectionError):
                self.stream_failures += 1
                await asyncio.sleep(0.05)

    async def _one_stream(self) -> None:
        with self.lock:
            pending = [b for b in self.batches if b.batch_seq not in self.acks]
        if not pending:
            return
        window = asyncio.Semaphore(self.max_inflight)
        async with grpc.aio.insecure_channel(self.addr) as channel:
            stub = ingest_pb2_grpc.IngestStub(channel)

            async def requests():  # type: ignore[no-untyped-def]
                for batch in pending:
                    await window.acquire()
                    if self._stop.is_set():
                        return
                    if batch.batch_seq in self._sent_once:
                        self.resent_batches += 1
                    self._sent_once.add(batch.batch_seq)
                    if self.pace_s:
                        await asyncio.sleep(self.pace_s)
                    yield batch

            call = stub.Stream(requests(), timeout=120)
            by_seq = {b.batch_seq: b for b in pending}
            async for ack in call:
                batch = by_seq[ack.batch_seq]
                rejected = sum(r.count for r in ack.rejected)
                assert ack.accepted + ack.duplicates + rejected == len(batch.envelopes), ack
                with self.lock:
                    self.acks[ack.batch_seq] = ack
                    self.accepted += ack.accepted
                    self.duplicates += ack.duplicates
                    if not rejected:
                        self.acked.update((e.chain_id, e.hash) for e in batch.envelopes)
                window.release()
                if len(self.acks) == len(self.batches):
                    call.cancel()
                    return


def keys_of(envelopes: Iterable[tx_pb2.TxEnvelope]) -> set[tuple[int, bytes]]:
    """(chain_id, hash) of each envelope."""
    return {(e.chain_id, bytes(e.hash)) for e in envelopes}


def random_pause(rng: random.Random, low_s: float, high_s: float) -> None:
    """Sleeps a random time in [low_s, high_s] (a random moment for a fault)."""
    time.sleep(rng.uniform(low_s, high_s))


# ---- ingestd, anvil traffic and Query helpers -------------------------------------------------------------


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus endpoint on loopback, keyed by (name, sorted labels)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def metric_sum(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(v for (n, lab), v in samples.items() if n == name and all((k, x) in lab for k, x in labels.items()))


class IngestdProc(ManagedProcess):
    """The real ingestd daemon as a subprocess with a metrics port; ready once ``sources`` WS sources subscribed."""

    def __init__(self, chain_args: Sequence[str], processd_addr: str, log_path: Path, *extra: str,
                 sources: int = 1, env: dict[str, str] | None = None) -> None:
        self.metrics_port = free_port()
        argv = [*chain_args, "--processd", processd_addr, "--metrics-port", str(self.metrics_port), *extra]

        def ready() -> bool:
            return metric_sum(scrape(self.metrics_port), "mempulse_ingestd_source_connected") >= sources

        super().__init__("ingestd", python_module_argv("ingestd", *argv), log_path, env=child_env(env or {}),
                         cwd=ROOT, ready=ready, ready_timeout_s=60, stop_timeout_s=20)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return scrape(self.metrics_port)

    def metric(self, name: str, **labels: str) -> float:
        return metric_sum(self.metrics(), name, **labels)

    def drops(self, chain: str) -> dict[str, float]:
        """Cumulative drops of ``chain`` by reason (dedup included)."""
        out: dict[str, float] = {}
        for (n, lab), v in self.metrics().items():
            d = dict(lab)
            if n == "mempulse_ingestd_drops_total" and d.get("chain") == chain and v:
                out[d["reason"]] = out.get(d["reason"], 0) + v
        return out

    def settled(self, chain: str) -> bool:
        """Every seen transaction delivered or dropped; nothing queued, in flight or unacked."""
        m = self.metrics()
        seen = metric_sum(m, "mempulse_ingestd_seen_total", chain=chain)
        losses = sum(v for (n, lab), v in m.items() if n == "mempulse_ingestd_drops_total" and ("chain", chain) in lab
                     and dict(lab).get("reason") != "dedup")
        return (seen > 0 and metric_sum(m, "mempulse_ingestd_delivered_total", chain=chain) + losses == seen
                and metric_sum(m, "mempulse_ingestd_unacked_batches", chain=chain) == 0
                and metric_sum(m, "mempulse_ingestd_queue_depth", chain=chain) == 0
                and metric_sum(m, "mempulse_ingestd_fetch_in_flight", chain=chain) == 0)


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.1, alive: Sequence[ManagedProcess] = ()):  # type: ignore[no-untyped-def]
    """Polls ``predicate`` until truthy (returned); fails naming ``what`` on timeout or when a process died."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while True:
        for p in alive:
            assert p.alive, f"{p.name} died ({p.returncode}) while waiting for {what}:\n{p.log_tail(40)}"
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # "not yet" (e.g. metrics endpoint restarting)
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last error: {last})")
        time.sleep(interval_s)


def send_calls(http_url: str, start: int, count: int, batch_size: int = 50) -> list[str]:
    """Sends ``count`` fixture calls (from index ``start``, wrapping) into anvil; returns the accepted hashes."""
    from common.testing.fixtures import load_mainnet_calls
    from common.testing.replay import Replayer

    calls = load_mainnet_calls()
    chosen = [calls[(start + i) % len(calls)] for i in range(count)]

    async def go() -> list[str]:
        async with Replayer(http_url, batch_size=batch_size) as replayer:
            return [s.tx_hash for s in await replayer.send(chosen)]

    return asyncio.run(go())


def stored_hashes(addr: str, chain_id: int) -> list[str]:
    """Every stored transaction hash of a chain (0x hex, oldest first), paging through Query.ListTransactions."""
    from common.pb.v1 import query_pb2, query_pb2_grpc

    out: list[str] = []
    with grpc.insecure_channel(addr) as channel:
        stub = query_pb2_grpc.QueryStub(channel)
        cursor = 0
        while True:
            page = stub.ListTransactions(query_pb2.ListTransactionsRequest(
                chain_id=chain_id, limit=1000, cursor=cursor, ascending=True), timeout=10)
            out.extend("0x" + s.tx.hash.hex() for s in page.transactions)
            if not page.next_cursor or not page.transactions:
                return out
            cursor = page.next_cursor
