"""processd.storage.backup: a hot copy of the live event log, taken while processd runs and while it ingests,
restores: a new processd started on the copy (after the original was killed with -9) serves every event up to the
copy's last seq with the same content, and goes on storing new batches after it."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import lmdb
import pytest

from common.pb.v1 import ingest_pb2, ingest_pb2_grpc, query_pb2
from common.testing.ingest_push import channel, push_envelopes
from common.testing.synth import batches, synthetic_envelopes
from processd.storage.backup import BackupConfig, BackupError, backup
from processd.storage.eventlog import U64, decode_event
from tests.processd._helpers import ROOT, ProcessdSubprocess, query_stub

pytestmark = pytest.mark.integration


def run_backup(data_dir: Path, out: Path) -> dict:
    """The command an operator runs; returns its JSON line."""
    argv = [sys.executable, "-m", "processd.storage.backup", "--data-dir", str(data_dir), "--out", str(out)]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def raw_events(data_dir: Path, last_seq: int) -> dict[int, bytes]:
    """Stored values of seqs 1..last_seq, read from the files (the original processd is dead by then)."""
    env = lmdb.open(str(data_dir), readonly=True, lock=False, max_dbs=8)
    try:
        with env.begin() as txn:
            cursor = txn.cursor(db=env.open_db(b"events", txn=txn, create=False))
            return {U64.unpack(k)[0]: bytes(v) for k, v in cursor if U64.unpack(k)[0] <= last_seq}
    finally:
        env.close()


async def served_events(address: str) -> list:
    """Every event the (restored) processd serves, through ScanEvents."""
    out: list = []
    async with channel(address) as ch:
        stub, next_seq = query_stub(ch), 1
        while True:
            page = await stub.ScanEvents(query_pb2.ScanEventsRequest(from_seq_id=next_seq, limit=5000), timeout=30)
            out.extend(page.events)
            if not page.events or page.next_seq_id > page.last_seq_id:
                return out
            next_seq = page.next_seq_id


class PacedPush(threading.Thread):
    """Streams batches to processd with a short pause between them, recording acks, and holds the last
    ``HELD`` back until :attr:`release` is set: the stream is still going whenever the backup ends, however
    slow the machine. Ends when everything is acked or the stream breaks (kill -9)."""

    HELD = 5

    def __init__(self, address: str, envelopes: list) -> None:
        super().__init__(daemon=True)
        self.address, self.batches = address, batches(envelopes, 100, session_id="paced")
        self.acks: list[ingest_pb2.IngestAck] = []
        self.release = threading.Event()

    def run(self) -> None:
        asyncio.run(self._push())

    async def _push(self) -> None:
        async def requests():  # type: ignore[no-untyped-def]
            for i, batch in enumerate(self.batches):
                if i == len(self.batches) - self.HELD:
                    await asyncio.to_thread(self.release.wait, 60)
                yield batch
                await asyncio.sleep(0.02)

        async with channel(self.address) as ch:
            try:
                async for ack in ingest_pb2_grpc.IngestStub(ch).Stream(requests(), timeout=120):
                    self.acks.append(ack)
                    if len(self.acks) == len(self.batches):
                        return
            except grpc.aio.AioRpcError:
                return


def test_hot_backup_while_ingesting_restores_after_kill9(tmp_path: Path) -> None:
    data = tmp_path / "lmdb"
    proc = ProcessdSubprocess(data, tmp_path / "p.log")
    restored: ProcessdSubprocess | None = None
    try:
        proc.start()
        acks = asyncio.run(push_envelopes(proc.address, synthetic_envelopes(1500, seed=71), batch_size=250))
        acked = max(a.last_seq_id for a in acks)
        # 1. while processd runs idle: the copy holds exactly what was acked
        idle = run_backup(data, tmp_path / "backup-idle")
        assert idle["last_seq"] == acked and idle["first_seq"] == 1 and idle["events"] == acked
        # 2. while it ingests: the copy is one commit's state somewhere in the stream
        push = PacedPush(proc.address, synthetic_envelopes(6000, seed=72))
        push.start()
        while len(push.acks) < 3 and push.is_alive():
            push.join(0.05)
        busy = run_backup(data, tmp_path / "backup-busy")
        assert push.is_alive() and len(push.acks) <= len(push.batches) - push.HELD
        assert acked < busy["last_seq"] and busy["events"] == busy["last_seq"]
        # 3. the machine dies mid-ingest
        push.release.set()
        proc.kill9()
        push.join(30)
        original = raw_events(data, busy["last_seq"])
        assert sorted(original) == list(range(1, busy["last_seq"] + 1))
        # 4. restore: a new processd on (a copy of) the backup serves the same events, and stores new ones after
        shutil.copytree(tmp_path / "backup-busy", tmp_path / "restored")
        restored = ProcessdSubprocess(tmp_path / "restored", tmp_path / "restored.log").start()
        served = asyncio.run(served_events(restored.address))
        assert [e.seq_id for e in served] == list(range(1, busy["last_seq"] + 1))
        for event in served:  # same content as the original log's value under that seq
            assert event == decode_event(original[event.seq_id], event.seq_id), event.seq_id
        again = asyncio.run(push_envelopes(restored.address, synthetic_envelopes(300, seed=73), batch_size=100))
        assert sum(a.accepted for a in again) == 300
        assert min(a.first_seq_id for a in again) == busy["last_seq"] + 1
        assert restored.terminate() == 0
    finally:
        proc.stop()
        if restored is not None:
            restored.stop()


def test_backup_refuses_a_used_destination_and_a_dir_without_a_log(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "something").write_text("x")
    (tmp_path / "empty-data").mkdir()
    with pytest.raises(BackupError, match="does not exist: --data-dir must be processd's data dir"):
        backup(BackupConfig(tmp_path / "empty-data", tmp_path / "new"))
    proc = subprocess.run([sys.executable, "-m", "processd.storage.backup", "--data-dir", str(tmp_path / "empty-data"),
                           "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stdout == ""
