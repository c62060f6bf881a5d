"""The analysis worker pool (``processd.analysis.pool``): same results as in-process preparation, survives a
killed worker, dies with processd, and the Ingest.Stream edge it sits behind (raw batch bytes).

Everything runs for real: ProcessdServer in this process or ``python -m processd`` subprocesses, spawn'd worker
processes, LMDB, gRPC.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import lmdb
import pytest

from common.pb.v1 import events_pb2, ingest_pb2, query_pb2, tx_pb2
from common.testing.ingest_push import channel, push_batches, push_envelopes
from common.testing.netutil import free_port
from common.testing.synth import batches as synth_batches
from common.testing.synth import synthetic_envelopes
from processd import pipeline
from processd.analysis.analyzer import analyze, default_analyzer
from processd.analysis.pool import MAX_FUTILE_RESTARTS, AnalysisPool, PoolStoppedError
from processd.analysis.prepare import prepare_batch
from processd.api.server import ProcessdServer
from processd.storage.lifeproc import PROCESS_NAME
from tests.processd._helpers import ProcessdSubprocess, make_config, query_stub

pytestmark = pytest.mark.integration

SEEN = events_pb2.EVENT_KIND_TX_SEEN
CHAINS = frozenset({1, 56, 137})


# ---- helpers -------------------------------------------------------------------------------------------------


class _BatchClock:
    """Stands in for the ``time`` module of ``processd.pipeline``: ``time_ns()`` (the batch's received time,
    part of every event) counts up deterministically, so two runs can be compared byte for byte."""

    def __init__(self) -> None:
        self._ticks = itertools.count()

    def time_ns(self) -> int:
        return 1_800_000_000_000_000_000 + next(self._ticks) * 1_000_000

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def _dump_log(data_dir: Path) -> dict[bytes, list[tuple[bytes, bytes]]]:
    """Every (key, value) of the events, tx_hash and chain_seq databases of a closed event log."""
    env = lmdb.open(str(data_dir), max_dbs=8, readonly=True, lock=False)
    try:
        out = {}
        with env.begin() as txn:
            for name in (b"events", b"tx_hash", b"chain_seq"):
                db = env.open_db(name, txn=txn, create=False)
                out[name] = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=db)]
        return out
    finally:
        env.close()


def _mixed_input() -> list[ingest_pb2.TxBatch]:
    """Batches with real calldata on three chains, invalid envelopes and duplicates (within and across batches)."""
    envs = synthetic_envelopes(1500, seed=41)
    batches = synth_batches(envs, 100, session_id="pool")
    bad = tx_pb2.TxEnvelope()
    bad.CopyFrom(envs[3])
    bad.hash = b"\x01" * 31
    unknown = tx_pb2.TxEnvelope()
    unknown.CopyFrom(envs[4])
    unknown.chain_id = 0
    extra = [*envs[10:30], bad, *synthetic_envelopes(30, seed=42), envs[10], unknown]
    batches.append(ingest_pb2.TxBatch(session_id="pool", batch_seq=len(batches) + 1, envelopes=extra))
    return batches


def _children(pid: int) -> dict[int, str]:
    """Live (non-zombie) child processes of ``pid``: {pid: command line}, read from /proc."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]  # the command name may contain spaces
        if int(ppid) == pid and state != "Z":
            out[int(entry)] = cmdline
    return out


def _workers(pid: int) -> set[int]:
    """The analysis worker processes of processd ``pid`` (spawn'd multiprocessing children; not the lifecycle
    process, spawned the same way and named apart: ``processd.storage.lifeproc.PROCESS_NAME``)."""
    return {child for child, cmd in _children(pid).items() if "spawn_main" in cmd and _comm(child) != PROCESS_NAME}


def _comm(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/comm").read_bytes().strip()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent (maybe init) has not reaped it yet


def _wait_for(predicate: Any, timeout_s: float, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


async def _eventually(predicate: Any, timeout_s: float, interval_s: float = 0.05) -> bool:
    """``_wait_for`` for pools living on this event loop (they need the loop to notice deaths and respawn)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval_s)
    return predicate()


@pytest.fixture
def subprocesses() -> Iterator[list[ProcessdSubprocess]]:
    """Processd subprocesses started by a test; killed (with any worker left behind) at teardown."""
    started: list[ProcessdSubprocess] = []
    yield started
    for proc in started:
        workers = _workers(proc.proc.pid) if proc.proc is not None else set()
        proc.stop()
        for pid in workers:  # only if PR_SET_PDEATHSIG failed: do not leave them running
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


async def _scan_all(address: str) -> list[events_pb2.Event]:
    out: list[events_pb2.Event] = []
    async with channel(address) as ch:
        q = query_stub(ch)
        cursor = 1
        while True:
            r = await q.ScanEvents(query_pb2.ScanEventsRequest(from_seq_id=cursor, limit=1000))
            if not r.events:
                return out
            out.extend(r.events)
            cursor = r.next_seq_id


async def _metric(metrics_port: int, name: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def _identity(raw: bytes) -> bytes:
    return raw


# ---- tests ---------------------------------------------------------------------------------------------------


async def test_worker_processes_and_in_process_preparation_write_identical_logs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    batches = _mixed_input()
    results = {}
    for workers in (0, 2):
        # Same received times in both runs (the only input that is not in the batches).
        monkeypatch.setattr(pipeline, "time", _BatchClock())
        data_dir = tmp_path / f"workers{workers}"
        srv = ProcessdServer(make_config(data_dir, analysis_workers=workers))
        before = _workers(os.getpid())
        try:
            await srv.start()
            assert srv.pool.workers == workers
            assert len(_workers(os.getpid()) - before) == workers  # started (and warmed up) at start()
            acks = await push_batches(srv.address, batches, max_inflight=8)
            assert srv.pool.restarts == 0
        finally:
            await srv.stop(grace_s=0.5)
        results[workers] = (acks, srv.digest, _dump_log(data_dir))

    (acks0, digest0, log0), (acks2, digest2, log2) = results[0], results[2]
    assert acks2 == acks0
    assert digest2 == digest0
    for name in (b"events", b"tx_hash", b"chain_seq"):
        assert len(log2[name]) == len(log0[name]) > 0
        assert log2[name] == log0[name], f"{name!r} differs"
    # The input was stored as intended: 1530 distinct valid transactions, 2 invalid envelopes, 21 duplicates.
    assert sum(a.accepted for a in acks0) == len(log0[b"tx_hash"]) == 1530
    assert sum(a.duplicates for a in acks0) == 21
    assert sum(r.count for a in acks0 for r in a.rejected) == 2
    assert len(log0[b"events"]) > 2 * 1530  # SEEN + DECODED per transaction, and some opportunities


async def test_killed_worker_loses_nothing_and_the_pool_restarts(
        tmp_path: Path, subprocesses: list[ProcessdSubprocess]) -> None:
    metrics_port = free_port()
    proc = ProcessdSubprocess(tmp_path / "lmdb", tmp_path / "processd.log", "--analysis-workers", "2",
                              "--metrics-port", str(metrics_port), "--flush-interval-ms", "1")
    subprocesses.append(proc)
    proc.start()
    assert proc.proc is not None
    processd_pid = proc.proc.pid
    first_workers = _workers(processd_pid)
    assert len(first_workers) == 2
    assert await _metric(metrics_port, "mempulse_processd_analysis_workers") == 2

    envs = synthetic_envelopes(12_000, seed=43)
    encoded = [(b.batch_seq, b.SerializeToString()) for b in synth_batches(envs, 400, session_id="kill")]
    held_back = 10  # sent only after the kill, so that batches also go to the pool after the death
    killed = asyncio.Event()
    victim = min(first_workers)
    # The victim is frozen first: the batches it is given stay inside it, and since commits follow arrival
    # order the acks stall. Killing it then certainly kills a worker holding batches (however fast processd is).
    os.kill(victim, signal.SIGSTOP)
    window = asyncio.Semaphore(8)
    acks: list[ingest_pb2.IngestAck] = []

    async def requests() -> AsyncIterator[bytes]:
        for i, (_, raw) in enumerate(encoded):
            if i == len(encoded) - held_back:
                await killed.wait()
            await window.acquire()
            yield raw

    async with channel(proc.address) as ch:
        method = ch.stream_stream("/mempulse.v1.Ingest/Stream", request_serializer=_identity,
                                  response_deserializer=ingest_pb2.IngestAck.FromString)
        call = method(requests(), timeout=120)
        while len(acks) < len(encoded):
            reading = asyncio.ensure_future(call.read())  # waited on, never cancelled (that would end the call)
            while not killed.is_set() and not (await asyncio.wait({reading}, timeout=1.5))[0]:
                # Stalled with batches unacked: one of them is inside the frozen worker.
                stalled_at = len(acks)
                os.kill(victim, signal.SIGKILL)
                killed.set()
            ack = await reading
            assert isinstance(ack, ingest_pb2.IngestAck)
            acks.append(ack)
            window.release()
    assert killed.is_set(), "the acks never stalled: no batch reached the frozen worker"
    assert stalled_at < len(encoded) - held_back

    assert sorted(a.batch_seq for a in acks) == [seq for seq, _ in encoded]
    assert sum(a.accepted for a in acks) == 12_000
    assert all(a.duplicates == 0 and not a.rejected for a in acks)
    events = await _scan_all(proc.address)
    assert [e.seq_id for e in events] == list(range(1, len(events) + 1))
    seen = [(e.chain_id, e.tx_hash) for e in events if e.kind == SEEN]
    assert len(seen) == len(set(seen)) == 12_000
    assert set(seen) == {(e.chain_id, e.hash) for e in envs}
    ranges = sorted((a.first_seq_id, a.last_seq_id) for a in acks)
    assert ranges[0][0] == 1 and ranges[-1][1] == len(events)
    for (_, last), (first, _) in itertools.pairwise(ranges):
        assert first == last + 1
    assert await _metric(metrics_port, "mempulse_processd_analysis_pool_restarts_total") >= 1
    assert await _metric(metrics_port, "mempulse_processd_analysis_inflight_batches") == 0
    assert not _alive(victim)
    # The replacement pool has its own workers; they too die with processd (PR_SET_PDEATHSIG).
    replacement = _workers(processd_pid)
    assert replacement and victim not in replacement
    proc.kill9()
    assert _wait_for(lambda: not any(_alive(pid) for pid in replacement), 10), "replacement workers outlived processd"


async def test_workers_exit_when_processd_is_killed(tmp_path: Path, subprocesses: list[ProcessdSubprocess]) -> None:
    proc = ProcessdSubprocess(tmp_path / "lmdb", tmp_path / "processd.log", "--analysis-workers", "2")
    subprocesses.append(proc)
    proc.start()
    assert proc.proc is not None
    await push_envelopes(proc.address, synthetic_envelopes(200, seed=44), batch_size=50)
    workers = _workers(proc.proc.pid)
    assert len(workers) == 2 and all(_alive(pid) for pid in workers)
    proc.kill9()
    assert _wait_for(lambda: not any(_alive(pid) for pid in workers), 10), "analysis workers outlived processd"


async def test_sigterm_to_the_process_group_is_a_clean_stop_not_a_worker_error(
        tmp_path: Path, subprocesses: list[ProcessdSubprocess]) -> None:
    """A supervisor's SIGTERM reaches every process of the group, in no set order. Sent to the workers first
    (the order that made processd log `ERROR analysis worker exited with -15` and re-prepare their batches), it
    must leave them to processd, whose own SIGTERM then stops everything cleanly."""
    proc = ProcessdSubprocess(tmp_path / "lmdb", tmp_path / "processd.log", "--analysis-workers", "2")
    subprocesses.append(proc)
    proc.start()
    assert proc.proc is not None
    acks = await push_envelopes(proc.address, synthetic_envelopes(300, seed=52), batch_size=100)
    assert sum(a.accepted for a in acks) == 300
    workers = _workers(proc.proc.pid)
    assert len(workers) == 2
    for pid in workers:
        os.kill(pid, signal.SIGTERM)
    await asyncio.sleep(0.5)  # long enough for a worker that obeyed it to be noticed as lost
    assert all(_alive(pid) for pid in workers), "a worker obeyed the group's SIGTERM before processd did"
    assert proc.terminate() == 0
    assert not any(_alive(pid) for pid in workers)
    log = proc.log_path.read_text()
    assert "ERROR" not in log and "exited with" not in log, log[-2000:]


async def test_sigterm_stops_the_workers_with_processd(tmp_path: Path,
                                                       subprocesses: list[ProcessdSubprocess]) -> None:
    proc = ProcessdSubprocess(tmp_path / "lmdb", tmp_path / "processd.log", "--analysis-workers", "2")
    subprocesses.append(proc)
    proc.start()
    assert proc.proc is not None
    envs = synthetic_envelopes(600, seed=51)
    acks = await push_envelopes(proc.address, envs, batch_size=100)
    assert sum(a.accepted for a in acks) == 600
    workers = _workers(proc.proc.pid)
    assert len(workers) == 2
    assert proc.terminate() == 0
    # processd joins its workers before it exits (they are not left for PR_SET_PDEATHSIG to clean up).
    assert not any(_alive(pid) for pid in workers)
    # The log written through the workers opens in-process (no workers) with every transaction once.
    again = ProcessdSubprocess(tmp_path / "lmdb", tmp_path / "processd.log", "--analysis-workers", "0")
    subprocesses.append(again)
    again.start()
    assert again.proc is not None and not _workers(again.proc.pid)
    acks = await push_envelopes(again.address, envs, batch_size=300, first_batch_seq=10)
    assert [(a.accepted, a.duplicates) for a in acks] == [(0, 300), (0, 300)]
    seen = [(e.chain_id, e.tx_hash) for e in await _scan_all(again.address) if e.kind == SEEN]
    assert sorted(seen) == sorted((e.chain_id, e.hash) for e in envs)


async def test_malformed_batch_ends_the_stream_with_invalid_argument(server_factory: Any) -> None:
    srv: ProcessdServer = await server_factory(analysis_workers=0)
    good = synthetic_envelopes(60, seed=45)
    valid = ingest_pb2.TxBatch(session_id="m", batch_seq=1, envelopes=good[:30]).SerializeToString()
    # Field 1 (envelopes) announcing 255 bytes, then the message ends: not a TxBatch.
    garbage = b"\x0a\xff\x01" + b"\x00" * 8

    async def send(raws: list[bytes]) -> list[ingest_pb2.IngestAck]:
        async def requests() -> AsyncIterator[bytes]:
            for raw in raws:
                yield raw
                await asyncio.sleep(0.05)  # one at a time, in order

        acks = []
        async with channel(srv.address) as ch:
            method = ch.stream_stream("/mempulse.v1.Ingest/Stream", request_serializer=_identity,
                                      response_deserializer=ingest_pb2.IngestAck.FromString)
            async for ack in method(requests(), timeout=30):
                acks.append(ack)
        return acks

    for raws in ([garbage], [valid, garbage]):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await send(raws)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "malformed TxBatch" in (info.value.details() or "")
    assert srv.metrics.registry.get_sample_value("mempulse_processd_rejects_total", {"reason": "malformed_batch"}) == 2
    # processd keeps serving; the valid batch sent before the garbage is stored once (the resend dedups).
    acks = await push_envelopes(srv.address, good, batch_size=30, session_id="m2")
    assert sum(a.accepted + a.duplicates for a in acks) == 60
    seen = [e.tx_hash for e in await _scan_all(srv.address) if e.kind == SEEN]
    assert sorted(seen) == sorted(e.hash for e in good)


async def test_custom_analysis_runs_in_process_and_stop_is_idempotent() -> None:
    calls: list[tuple[int, str]] = []

    def recording(envelope: tx_pb2.TxEnvelope) -> Any:
        calls.append((os.getpid(), threading.current_thread().name))
        return analyze(envelope)

    envs = synthetic_envelopes(20, seed=46)
    raw = ingest_pb2.TxBatch(batch_seq=1, envelopes=envs).SerializeToString()
    pool = AnalysisPool(workers=2, chain_ids=CHAINS, max_input_bytes=128 * 1024, analyze=recording)
    assert pool.workers == 0  # a function of the test cannot be sent to worker processes
    async with pool:
        columns = await pool.prepare(raw, 123)
        assert pool.inflight == 0
    assert columns.reasons == bytes(20) and len(columns.tx_key) == 20 and columns.analysis_errors == 0
    assert len(calls) == 20
    assert {pid for pid, _ in calls} == {os.getpid()}
    assert all(name.startswith("processd-prepare") for _, name in calls)
    await pool.stop()  # already stopped by the context manager
    await pool.stop()
    assert pool.restarts == 0


async def test_worker_pool_prepares_like_prepare_batch_and_stops_once() -> None:
    envs = synthetic_envelopes(200, seed=47)
    envs[5].hash = b"short"
    raw = ingest_pb2.TxBatch(batch_seq=1, envelopes=envs).SerializeToString()
    expected = prepare_batch(raw, 456, default_analyzer(), CHAINS, 128 * 1024)
    before = _workers(os.getpid())
    pool = await AnalysisPool(workers=1, chain_ids=CHAINS, max_input_bytes=128 * 1024).start()
    try:
        workers = _workers(os.getpid()) - before
        assert len(workers) == 1
        assert await pool.prepare(raw, 456) == expected
        assert expected.reasons[5] == ingest_pb2.REJECT_REASON_BAD_HASH and len(expected.tx_key) == 199
    finally:
        await pool.stop()
    await pool.stop()  # idempotent
    assert _wait_for(lambda: not any(_alive(pid) for pid in workers), 10)
    assert pool.restarts == 0
    with pytest.raises(PoolStoppedError) as info:
        await pool.prepare(raw, 456)
    assert info.value.retriable


async def test_workers_that_keep_dying_are_given_up_on() -> None:
    """A worker that dies again and again without preparing anything (say, a decoder crashing at import) must
    not be respawned forever: after MAX_FUTILE_RESTARTS the pool prepares every batch in-process."""
    envs = synthetic_envelopes(50, seed=80)
    raw = ingest_pb2.TxBatch(batch_seq=1, envelopes=envs).SerializeToString()
    me = os.getpid()
    before = _workers(me)
    pool = await AnalysisPool(workers=1, chain_ids=CHAINS, max_input_bytes=128 * 1024).start()
    killed: set[int] = set()
    try:
        for _ in range(MAX_FUTILE_RESTARTS + 1):
            assert await _eventually(lambda: bool(_workers(me) - before - killed), 10), "no replacement worker"
            victim = min(_workers(me) - before - killed)
            os.kill(victim, signal.SIGKILL)
            killed.add(victim)
            assert await _eventually(lambda: pool.restarts == len(killed), 10)
        await asyncio.sleep(1.0)  # a replacement would be spawned right away
        assert not _workers(me) - before - killed
        assert pool.restarts == MAX_FUTILE_RESTARTS + 1
        # Still serving, in this process.
        assert await pool.prepare(raw, 7) == prepare_batch(raw, 7, default_analyzer(), CHAINS,
                                                           128 * 1024)
    finally:
        await pool.stop()


def _cpu_ticks(pid: int) -> int:
    """User + system CPU time of a process, in clock ticks (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


async def test_every_dead_worker_is_replaced_and_the_replacements_do_the_work(server_factory: Any) -> None:
    me = os.getpid()
    killed = set(_workers(me))  # workers an earlier test may have leaked: never touch those
    srv: ProcessdServer = await server_factory(analysis_workers=2)
    stored = 0
    for round_ in range(3):
        assert await _eventually(lambda: len(_workers(me) - killed) >= 1, 10)
        victim = min(_workers(me) - killed)
        os.kill(victim, signal.SIGKILL)
        killed.add(victim)
        envs = synthetic_envelopes(800, seed=60 + round_)
        acks = await push_envelopes(srv.address, envs, batch_size=100, session_id=f"r{round_}")
        assert sum(a.accepted for a in acks) == 800
        stored += 800
        assert srv.pool.restarts == round_ + 1  # each death counted once
    # After three deaths the batches go to worker processes again (not to processd's own thread for good): both
    # replacements running and ready (a spawned one imports for a while first; until then batches are prepared
    # here, which under load left the workers' CPU below the bound below).
    assert await _eventually(lambda: len(_workers(me) - killed) == 2 and srv.pool.ready_workers == 2, 30)
    workers = _workers(me) - killed
    before = {pid: _cpu_ticks(pid) for pid in workers}
    await push_envelopes(srv.address, synthetic_envelopes(4000, seed=70), batch_size=200, session_id="after")
    stored += 4000
    assert sum(_cpu_ticks(pid) - before[pid] for pid in workers) >= 5
    assert srv.pool.restarts == 3
    events = await _scan_all(srv.address)
    assert [e.seq_id for e in events] == list(range(1, len(events) + 1))
    seen = [(e.chain_id, e.tx_hash) for e in events if e.kind == SEEN]
    assert len(seen) == len(set(seen)) == stored


async def test_chain_admission_follows_arrival_order_with_workers(server_factory: Any) -> None:
    # Batch 1 is large and brings chain 10 last; batch 2 (one envelope of chain 20) arrives after it but is
    # prepared much sooner by the other worker. max_chains=2: chains 1 and 10 arrived first, so 20 is refused.
    big = synthetic_envelopes(5000, seed=48, chain_ids=(1,)) + synthetic_envelopes(1, seed=49, chain_ids=(10,))
    small = synthetic_envelopes(1, seed=50, chain_ids=(20,))
    batches = [ingest_pb2.TxBatch(session_id="c", batch_seq=1, envelopes=big),
               ingest_pb2.TxBatch(session_id="c", batch_seq=2, envelopes=small)]
    srv: ProcessdServer = await server_factory(analysis_workers=2, max_chains=2)
    acks = await push_batches(srv.address, batches)
    assert (acks[0].accepted, list(acks[0].rejected)) == (5001, [])
    assert acks[1].accepted == 0
    assert [(r.reason, r.count) for r in acks[1].rejected] == [(ingest_pb2.REJECT_REASON_UNKNOWN_CHAIN, 1)]


async def test_a_stalled_worker_is_killed_and_its_batch_prepared_here() -> None:
    """A worker that holds a batch without answering (here: SIGSTOPped) is killed after the stall timeout; the
    batch is prepared in-process and the worker replaced, so commits never wait on it for long."""
    envs = synthetic_envelopes(100, seed=81)
    raw = ingest_pb2.TxBatch(batch_seq=1, envelopes=envs).SerializeToString()
    me = os.getpid()
    before = _workers(me)
    pool = await AnalysisPool(workers=1, chain_ids=CHAINS, max_input_bytes=128 * 1024, stall_timeout_ms=400).start()
    try:
        (victim,) = _workers(me) - before
        os.kill(victim, signal.SIGSTOP)
        started = time.monotonic()
        columns = await asyncio.wait_for(pool.prepare(raw, 9), 20)
        assert columns == prepare_batch(raw, 9, default_analyzer(), CHAINS, 128 * 1024)
        assert time.monotonic() - started >= 0.4  # not before the timeout
        assert (pool.stall_kills, pool.restarts) == (1, 1)
        assert _wait_for(lambda: not _alive(victim), 10)
        assert await _eventually(lambda: bool(_workers(me) - before - {victim}), 10), "no replacement worker"
    finally:
        await pool.stop()
