"""Durability of the real daemon: kill -9 mid-stream, clean SIGTERM, restart equality, crash switch."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import grpc
import lmdb
import pytest

from common.pb.v1 import events_pb2, ingest_pb2, ingest_pb2_grpc, query_pb2
from common.testing.ingest_push import channel, push_envelopes
from common.testing.synth import batches, synthetic_envelopes
from processd.storage.eventlog import CHAIN_SEQ, U64, decode_event
from tests.processd._helpers import ProcessdSubprocess, query_stub

pytestmark = pytest.mark.integration


def audit(data_dir: Path) -> dict:
    """Reads the LMDB files directly: seqs, (chain, hash) keys and index consistency."""
    env = lmdb.open(str(data_dir), readonly=True, max_dbs=8, lock=False)
    try:
        with env.begin() as txn:
            events = txn.cursor(db=env.open_db(b"events", txn=txn))
            seqs, keys, chain_keys, tx_seen_seqs = [], [], {}, []
            tx_start = b""
            for k, v in events:
                seq = U64.unpack(k)[0]
                e = decode_event(v, seq)
                assert v[0] == e.kind and not events_pb2.Event.FromString(v[1:]).seq_id  # the seq is only the key
                seqs.append(seq)
                if e.kind == events_pb2.EVENT_KIND_TX_SEEN:
                    keys.append((e.chain_id, e.tx_hash))
                    tx_seen_seqs.append(seq)
                    tx_start = CHAIN_SEQ.pack(e.chain_id, seq)  # a transaction's events follow its TX_SEEN
                    chain_keys[tx_start] = b""
                chain_keys[tx_start] += bytes((e.kind,))
            index = {bytes(k): bytes(v) for k, v in txn.cursor(db=env.open_db(b"chain_seq", txn=txn))}
            tx_index = {bytes(k): U64.unpack(v)[0] for k, v in txn.cursor(db=env.open_db(b"tx_hash", txn=txn))}
            last = U64.unpack(txn.get(b"last_seq", db=env.open_db(b"meta", txn=txn)) or U64.pack(0))[0]
    finally:
        env.close()
    assert index == chain_keys, "chain_seq index disagrees with the events"
    assert tx_index == {U64.pack(c) + h[:16]: s for (c, h), s in zip(keys, tx_seen_seqs, strict=True)}
    return {"seqs": seqs, "keys": keys, "last": last}


async def _stream_until_killed(proc: ProcessdSubprocess, envs, kill_after_acks: int) -> list[ingest_pb2.IngestAck]:
    acks: list[ingest_pb2.IngestAck] = []
    async with channel(proc.address) as ch:
        call = ingest_pb2_grpc.IngestStub(ch).Stream(iter(batches(envs, 50)))
        try:
            async for ack in call:
                acks.append(ack)
                if len(acks) == kill_after_acks:
                    proc.kill9()
        except grpc.aio.AioRpcError as exc:
            assert exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL)
    return acks


def test_kill9_mid_stream_loses_no_acked_event_and_resend_completes(tmp_path: Path) -> None:
    data = tmp_path / "lmdb"
    proc = ProcessdSubprocess(data, tmp_path / "p.log")
    envs = synthetic_envelopes(3000, seed=51)
    try:
        proc.start()
        acks = asyncio.run(_stream_until_killed(proc, envs, kill_after_acks=15))
        assert len(acks) >= 15
        log = audit(data)
        seqs = log["seqs"]
        assert seqs == list(range(1, len(seqs) + 1)), "seqs are not contiguous"
        assert len(set(log["keys"])) == len(log["keys"]), "duplicate (chain, hash)"
        acked_last = max(a.last_seq_id for a in acks)
        assert acked_last <= log["last"] == len(seqs)
        for a in acks:
            assert a.first_seq_id in set(seqs) and a.last_seq_id in set(seqs)
        # Restart and resend everything (like ingestd after a reconnect): the log completes, once.
        proc.start()
        again = asyncio.run(push_envelopes(proc.address, envs, batch_size=200))
        assert sum(a.accepted + a.duplicates for a in again) == len(envs)
        stored_before = len(log["keys"])
        assert sum(a.duplicates for a in again) == stored_before
        assert proc.terminate() == 0
        final = audit(data)
        assert final["seqs"] == list(range(1, len(final["seqs"]) + 1))
        assert sorted(final["keys"]) == sorted({(e.chain_id, e.hash) for e in envs})
    finally:
        proc.stop()


def _digests(log_text: str) -> list[tuple[str, str]]:
    return re.findall(r"replay digest at (start|stop): ([0-9a-f]{64})", log_text)


def test_restart_brings_back_equal_read_models(tmp_path: Path) -> None:
    data = tmp_path / "lmdb"
    log_path = tmp_path / "p.log"
    proc = ProcessdSubprocess(data, log_path)
    try:
        proc.start()
        asyncio.run(push_envelopes(proc.address, synthetic_envelopes(2500, seed=52), batch_size=250))
        snap_before = asyncio.run(_snapshot(proc.address))
        assert proc.terminate() == 0
        proc.start()
        snap_after = asyncio.run(_snapshot(proc.address))
        # kill -9 after everything was acked must give the same state as well.
        proc.kill9()
        proc.start()
        snap_killed = asyncio.run(_snapshot(proc.address))
        assert proc.terminate() == 0
    finally:
        proc.stop()
    digests = _digests(log_path.read_text())
    kinds = [k for k, _ in digests]
    assert kinds == ["start", "stop", "start", "start", "stop"], digests
    _, stop1 = digests[1]
    assert digests[2][1] == stop1 == digests[3][1] == digests[4][1]
    for snap in (snap_after, snap_killed):
        assert _comparable(snap) == _comparable(snap_before)


async def _snapshot(addr: str) -> query_pb2.GetSnapshotResponse:
    async with channel(addr) as ch:
        return await query_stub(ch).GetSnapshot(
            query_pb2.GetSnapshotRequest(tx_limit=100, opp_limit=100, feature_limit=100))


def _comparable(snap: query_pb2.GetSnapshotResponse) -> query_pb2.GetSnapshotResponse:
    out = query_pb2.GetSnapshotResponse()
    out.CopyFrom(snap)
    for c in out.chains:
        c.ClearField("ingest")  # live ingest sessions end with the process
    return out


def test_sigterm_flushes_and_exits_zero(tmp_path: Path) -> None:
    proc = ProcessdSubprocess(tmp_path / "lmdb", tmp_path / "p.log", "--flush-interval-ms", "50")
    try:
        proc.start()
        asyncio.run(push_envelopes(proc.address, synthetic_envelopes(100, seed=53), batch_size=10))
        assert proc.terminate() == 0
    finally:
        proc.stop()
    assert "processd stopped cleanly" in (tmp_path / "p.log").read_text()


@pytest.mark.parametrize("point", ["before_put", "after_commit"])
def test_crash_switch_exits_137_at_the_point(tmp_path: Path, point: str) -> None:
    data = tmp_path / "lmdb"
    proc = ProcessdSubprocess(data, tmp_path / "p.log", env={"MEMPULSE_TEST_CRASH_POINT": point,
                                                              "MEMPULSE_TEST_CRASH_AFTER_BATCHES": "3"})
    envs = synthetic_envelopes(500, seed=54)
    try:
        proc.start()
        with pytest.raises(grpc.aio.AioRpcError):
            asyncio.run(push_envelopes(proc.address, envs, batch_size=50, max_inflight=1))
        assert proc.wait_exit() == 137
        stored = audit(data)["seqs"]
        # One batch per commit (max_inflight=1): before_put stops after 2 commits, after_commit after 3.
        assert stored == list(range(1, len(stored) + 1))
        txs = len(audit(data)["keys"])
        assert txs == (100 if point == "before_put" else 150)
    finally:
        proc.stop()


def test_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    for args, env in (([], {}), (["--data-dir", str(tmp_path), "--listen", "nope"], {}),
                      (["--data-dir", str(tmp_path)], {"MEMPULSE_PROCESSD_FLUSH_MAX_EVENTS": "zero"}),
                      (["--data-dir", str(tmp_path), "--map-size-mb", "100", "--map-max-size-mb", "10"], {}),
                      (["--data-dir", str(tmp_path), "--chains", "1,²"], {}),
                      (["--data-dir", str(tmp_path), "--chains", "1" * 5000], {})):
        r = subprocess.run([sys.executable, "-m", "processd", *args], capture_output=True, text=True, timeout=60,
                           env={**__import__("os").environ, **env})
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("processd: "), r.stderr


def test_a_second_processd_on_a_held_data_dir_exits_2_with_one_line(tmp_path: Path) -> None:
    """Two processd on one data dir used to both start and overwrite each other's events (3,000 of 6,000 acked
    envelopes lost). The second now exits 2 at once; the first keeps serving, and after a kill -9 of the first
    (the kernel drops its lock) a restart takes the dir over."""
    import subprocess
    import sys

    from common.testing.netutil import free_port

    data = tmp_path / "data"
    first = ProcessdSubprocess(data, tmp_path / "first.log").start()
    try:
        acks = asyncio.run(push_envelopes(first.address, synthetic_envelopes(50, seed=71), batch_size=25))
        assert sum(a.accepted for a in acks) == 50
        r = subprocess.run([sys.executable, "-m", "processd", "--data-dir", str(data), "--listen",
                            f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "in use by another processd" in r.stderr, r.stderr
        acks = asyncio.run(push_envelopes(first.address, synthetic_envelopes(10, seed=72), batch_size=10))
        assert sum(a.accepted for a in acks) == 10  # the first one never noticed
        first.kill9()
        restarted = ProcessdSubprocess(data, tmp_path / "restarted.log").start()
        assert restarted.terminate() == 0
    finally:
        first.stop()
    stored = audit(data)
    assert stored["seqs"] == list(range(1, len(stored["seqs"]) + 1)) and len(stored["keys"]) == 60
