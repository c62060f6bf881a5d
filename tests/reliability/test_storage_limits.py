"""Storage limits: a tiny LMDB map and killed readers.

* Map full: writes are rejected with ``storage_full`` (in the ack and in ``mempulse_processd_rejects_total``), the
  process stays up and keeps serving reads, the log stays consistent; once room is made (the operator raises
  the map limit and restarts) the rejected envelopes are resent and stored, each exactly once.
* Retention on a tiny map: pruning keeps the log within the map forever (no storage_full at steady state).
* Disk full (a real 24 MiB tmpfs; skipped when not root): ingest refused as ``storage_full``, reads served,
  ingest accepted again once space returns, nothing acked lost.
* Stale reader slots: a reader process killed inside a read transaction leaves its slot behind; processd
  clears it at start (``reader_check``) and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from common.pb.v1 import ingest_pb2, query_pb2, query_pb2_grpc
from common.testing.ingest_push import push_envelopes
from common.testing.synth import synthetic_envelopes
from tests.reliability._support import (
    ProcessdProc,
    audit_log,
    grpc_serving,
    keys_of,
    metric_sum,
    scrape,
    write_artifact,
)

pytestmark = pytest.mark.integration

STORAGE_FULL = ingest_pb2.REJECT_REASON_STORAGE_FULL


def _rejected(ack: ingest_pb2.IngestAck, reason: int) -> int:
    return sum(r.count for r in ack.rejected if r.reason == reason)


def _push_until_refused(addr: str, envelopes: list, batch: int, what: str) -> tuple[set[tuple[int, bytes]], list[int]]:
    """Pushes ``envelopes`` in batches until three are refused as storage_full; returns the keys of the accepted
    ones and the start index of each refused batch. A batch is committed whole or refused whole."""
    accepted_keys: set[tuple[int, bytes]] = set()
    rejected: list[int] = []
    for i in range(0, len(envelopes), batch):
        chunk = envelopes[i:i + batch]
        [ack] = asyncio.run(push_envelopes(addr, chunk, batch_size=batch, first_batch_seq=i // batch + 1))
        full = _rejected(ack, STORAGE_FULL)
        assert ack.accepted + ack.duplicates + full == len(chunk), ack
        if full:
            assert ack.accepted == 0 and full == len(chunk), "a group is committed whole or refused whole"
            rejected.append(i)
            if len(rejected) >= 3:
                break
        else:
            accepted_keys |= keys_of(chunk)
    assert rejected, f"{what} never filled: the test did not reach the limit"
    assert accepted_keys, f"nothing fitted before the {what} filled"
    return accepted_keys, rejected


def test_map_full_rejects_storage_full_stays_up_and_recovers(tmp_path: Path) -> None:
    data = tmp_path / "lmdb"
    proc = ProcessdProc(data, tmp_path / "processd.log", "--map-size-mb", "1", "--map-max-size-mb", "1",
                        metrics=True)
    envelopes = synthetic_envelopes(6000, seed=42, chain_ids=(1, 137))
    batch = 200
    try:
        proc.start()
        accepted_keys, rejected_batches = _push_until_refused(proc.addr, envelopes, batch, "a 1 MiB map")
        # Still up, still healthy, still answering reads.
        assert proc.alive and grpc_serving(proc.addr)
        m = scrape(proc.metrics_port)
        assert metric_sum(m, "mempulse_processd_rejects_total", reason="storage_full") == len(rejected_batches) * batch
        with grpc.insecure_channel(proc.addr) as ch:
            snap = query_pb2_grpc.QueryStub(ch).GetSnapshot(query_pb2.GetSnapshotRequest(), timeout=10)
        assert sum(c.tx_count for c in snap.chains) == len(accepted_keys)
        proc.stop()
        audit = audit_log(data)
        audit.assert_clean()
        assert set(audit.txs) == accepted_keys
        # Room is made: restart with a higher limit; the rejected envelopes are resent and stored once.
        bigger = ProcessdProc(data, tmp_path / "processd2.log", "--map-size-mb", "1", "--map-max-size-mb", "64")
        try:
            bigger.start()
            resend = [e for i in rejected_batches for e in envelopes[i:i + batch]]
            acks = asyncio.run(push_envelopes(bigger.addr, resend + envelopes[:batch], batch_size=batch))
            assert sum(a.accepted for a in acks) == len(resend)
            assert sum(a.duplicates for a in acks) == batch
            assert not any(a.rejected for a in acks)
        finally:
            bigger.stop()
        final = audit_log(data)
        final.assert_clean()
        assert set(final.txs) == accepted_keys | keys_of(resend)
    finally:
        proc.stop()


def test_retention_keeps_a_tiny_map_from_filling(tmp_path: Path) -> None:
    data = tmp_path / "lmdb"
    proc = ProcessdProc(data, tmp_path / "processd.log", "--map-size-mb", "2", "--map-max-size-mb", "2",
                        "--retention-max-events", "600")
    envelopes = synthetic_envelopes(8000, seed=43, chain_ids=(1,))
    try:
        proc.start()
        acks = asyncio.run(push_envelopes(proc.addr, envelopes, batch_size=100, max_inflight=4))
        full = sum(_rejected(a, STORAGE_FULL) for a in acks)
        assert full == 0, f"{full} envelopes rejected as storage_full although retention bounds the log"
        assert sum(a.accepted for a in acks) == len(envelopes)
        proc.stop()
        audit = audit_log(data)
        audit.assert_clean()
        assert audit.events <= 600 + 3 * 100 + 100, audit.events  # the bound, plus one group of slack
        assert audit.last_seq >= 2 * len(envelopes)
    finally:
        proc.stop()


_READER = textwrap.dedent("""
    import lmdb, sys, time
    env = lmdb.open(sys.argv[1], readonly=True, max_dbs=8, max_readers=256)
    txn = env.begin() if sys.argv[2] == "txn" else None
    print("reading", flush=True)
    time.sleep(600)
""")


def _reader(data: Path, mode: str) -> subprocess.Popen[bytes]:
    r = subprocess.Popen([sys.executable, "-c", _READER, str(data), mode], stdout=subprocess.PIPE)
    assert r.stdout is not None and r.stdout.readline().strip() == b"reading"
    return r


def test_stale_reader_slots_of_killed_readers_are_cleared_at_start(tmp_path: Path) -> None:
    data = tmp_path / "lmdb"
    proc = ProcessdProc(data, tmp_path / "processd.log")
    try:
        proc.start()
        asyncio.run(push_envelopes(proc.addr, synthetic_envelopes(300, seed=44), batch_size=100))
        proc.stop()
        # LMDB resets its reader table when the first process opens the environment alone, so a stale slot
        # only survives while another process holds the environment open (a backup tool, a monitor...).
        holder = _reader(data, "open")
        try:
            readers = [_reader(data, "txn") for _ in range(3)]
            for r in readers:
                r.kill()
                r.wait()
            proc.start()
            assert "3 stale reader slots cleared" in proc.output(), proc.log_tail()
        finally:
            holder.kill()
            holder.wait()
        # and the log is intact and writable after the cleanup
        acks = asyncio.run(push_envelopes(proc.addr, synthetic_envelopes(100, seed=45), batch_size=100))
        assert acks[0].accepted == 100
        proc.stop()
        audit_log(data).assert_clean()
    finally:
        proc.stop()


@contextlib.contextmanager
def _small_tmpfs(mountpoint: Path, size_mb: int) -> Iterator[Path]:
    """A real filesystem of ``size_mb`` MiB (tmpfs; needs root, as mount does): a full disk, not a simulation."""
    if os.geteuid() != 0:
        pytest.skip("a disk-full test needs a small filesystem: mounting a tmpfs needs root")
    mountpoint.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mountpoint)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}): no small filesystem to fill")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def _fill(fs: Path, leave_bytes: int) -> Path:
    """Takes all but ``leave_bytes`` of ``fs``'s free space with one file (written, so tmpfs really holds it)."""
    st = os.statvfs(fs)
    filler = fs / "filler"
    with filler.open("wb") as f:
        remaining = st.f_bavail * st.f_frsize - leave_bytes
        while remaining > 0:
            n = min(remaining, 1 << 20)
            f.write(b"\0" * n)
            remaining -= n
    return filler


def test_disk_full_refuses_ingest_keeps_serving_and_resumes_when_space_returns(tmp_path: Path) -> None:
    """The disk holding the log fills up. processd used to log ``mdb_txn_commit: Input/output error`` and exit 1
    (a supervisor restarts it into the same full disk, ~300 more envelopes accepted per round). Now: one
    "disk full" line naming the path, ingest refused as storage_full, reads served, ingest accepted again once
    space returns; every acked envelope is in the log after kill -9 and restarts (one onto the full disk)."""
    with _small_tmpfs(tmp_path / "fs", 24) as fs:
        data = fs / "lmdb"
        proc = ProcessdProc(data, tmp_path / "processd.log", env={"MEMPULSE_PROCESSD_DISK_FULL_RETRY_MS": "200"},
                            metrics=True)
        envelopes = synthetic_envelopes(8000, seed=46, chain_ids=(1, 137))
        batch = 200
        try:
            proc.start()
            filler = _fill(fs, leave_bytes=1 << 20)
            accepted_keys, rejected = _push_until_refused(proc.addr, envelopes, batch, "1 MiB of free disk")
            i = rejected[-1]  # the last batch tried
            # Still up, SERVING, answering reads; the refusal is counted and says why.
            assert proc.alive and grpc_serving(proc.addr), proc.log_tail()
            m = scrape(proc.metrics_port)
            assert metric_sum(m, "mempulse_processd_rejects_total", reason="storage_full") == len(rejected) * batch
            assert metric_sum(m, "mempulse_processd_storage_full_groups_total", cause="disk_full") == len(rejected)
            assert metric_sum(m, "mempulse_processd_disk_full") == 1
            with grpc.insecure_channel(proc.addr) as ch:
                snap = query_pb2_grpc.QueryStub(ch).GetSnapshot(query_pb2.GetSnapshotRequest(), timeout=10)
            assert sum(c.tx_count for c in snap.chains) == len(accepted_keys)
            assert f"disk full writing {data / 'data.mdb'}" in proc.output(), proc.log_tail()
            assert "Traceback" not in proc.output()
            # kill -9 and a restart onto the still-full disk: it starts (no crash loop) and refuses again.
            proc.kill()
            proc.start()
            [ack] = asyncio.run(push_envelopes(proc.addr, envelopes[rejected[0]:rejected[0] + batch], batch_size=batch))
            assert _rejected(ack, STORAGE_FULL) == batch and ack.accepted == 0, ack
            with grpc.insecure_channel(proc.addr) as ch:
                snap = query_pb2_grpc.QueryStub(ch).GetSnapshot(query_pb2.GetSnapshotRequest(), timeout=10)
            assert sum(c.tx_count for c in snap.chains) == len(accepted_keys), "an acked envelope was lost"
            # Space returns: the refused envelopes are resent (as ingestd does) and stored, once.
            filler.unlink()
            time.sleep(0.3)  # past --disk-full-retry-ms
            resend = [e for r in rejected for e in envelopes[r:r + batch]]
            more = envelopes[i + batch:i + 3 * batch]
            acks = asyncio.run(push_envelopes(proc.addr, resend + more, batch_size=batch))
            assert sum(a.accepted for a in acks) == len(resend) + len(more), acks
            assert not any(a.rejected for a in acks)
            accepted_keys |= keys_of(resend) | keys_of(more)
            assert metric_sum(scrape(proc.metrics_port), "mempulse_processd_disk_full") == 0
            assert "event log writable again" in proc.output()
            # Nothing acked is lost: kill -9, restart, audit.
            proc.kill()
            proc.start()
            proc.stop()
            audit = audit_log(data)
            audit.assert_clean()
            assert set(audit.txs) == accepted_keys
            write_artifact("disk_full", {"acked_before_full": len(accepted_keys) - len(resend) - len(more),
                                         "refused_groups": len(rejected), "acked_total": len(accepted_keys),
                                         "in_log_after_kill9": len(audit.txs)})
        finally:
            proc.stop()
