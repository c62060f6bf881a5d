"""A damaged, emptied or foreign event log: processd refuses it with one line and exit 2 (issue 14).

Attack report: ``data.mdb`` truncated to 50/90/99% made processd die of SIGBUS; truncated to 0 bytes it started
an empty log as if new (every acked envelope silently gone); random bytes, a foreign LMDB environment and
flipped bytes exited 1 with a traceback. Each case here runs the real daemon on a copy of one real log.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import pytest

from common.testing.ingest_push import push_envelopes
from common.testing.netutil import free_port
from common.testing.synth import synthetic_envelopes
from tests.processd._helpers import ROOT, ProcessdSubprocess

pytestmark = pytest.mark.integration

ENVELOPES = 400
# processd.storage.logcheck.MARKER_FILE (a literal so this file runs on the unfixed code too)
MARKER_FILE = "log.marker"


@pytest.fixture(scope="module")
def good_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real log of ENVELOPES acked envelopes, written and closed by processd."""
    base = tmp_path_factory.mktemp("good")
    data = base / "data"
    proc = ProcessdSubprocess(data, base / "p.log").start()
    try:
        acks = asyncio.run(push_envelopes(proc.address, synthetic_envelopes(ENVELOPES, seed=141), batch_size=100))
        assert sum(a.accepted for a in acks) == ENVELOPES
        assert proc.terminate() == 0
    finally:
        proc.stop()
    return data


def _copy(good: Path, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(good, data)
    return data


def _run(data: Path, *args: str, timeout_s: float = 60.0) -> tuple[int | None, str, float]:
    """Runs processd until it exits or serves; returns (exit code or None when it served, stderr+stdout, s)."""
    log_path = data.parent / f"run-{time.monotonic_ns()}.log"
    started = time.monotonic()
    with log_path.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "processd", "--data-dir", str(data), "--listen",
                                 f"127.0.0.1:{free_port()}", *args], stdout=out, stderr=subprocess.STDOUT,
                                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            while time.monotonic() - started < timeout_s:
                if proc.poll() is not None:
                    return proc.returncode, log_path.read_text(), time.monotonic() - started
                if b"processd listening on" in log_path.read_bytes():
                    return None, log_path.read_text(), time.monotonic() - started
                time.sleep(0.05)
            raise AssertionError(f"processd neither exited nor served: {log_path.read_text()[-2000:]}")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def _assert_refused(rc: int | None, out: str, *words: str, info_lines_before: bool = False) -> None:
    """Exit 2 with one ``processd: ...`` line holding ``words`` (and nothing else, unless the damage is found after
    the log opened: then INFO lines of the start may precede it)."""
    assert rc == 2, (rc, out[-3000:])
    lines = out.strip().splitlines()
    if info_lines_before:
        assert all(" INFO " in line for line in lines[:-1]), out[-3000:]
        lines = lines[-1:]
    assert len(lines) == 1 and lines[0].startswith("processd: "), out[-3000:]
    assert "Traceback" not in out
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.99])
def test_a_truncated_data_file_is_refused_with_one_line(good_log: Path, tmp_path: Path, fraction: float) -> None:
    """Used to be SIGBUS (exit -7) with an empty log; the meta page's last used page says how long it must be."""
    data = _copy(good_log, tmp_path)
    mdb = data / "data.mdb"
    size = mdb.stat().st_size
    os.truncate(mdb, int(size * fraction))
    rc, out, _ = _run(data)
    _assert_refused(rc, out, str(mdb), "truncated")
    assert mdb.stat().st_size == int(size * fraction), "the damaged file must be left as it is"


def test_a_data_file_truncated_to_zero_is_refused_not_started_empty(good_log: Path, tmp_path: Path) -> None:
    """Used to start an empty log as if new (every acked envelope silently gone): the marker says one existed."""
    data = _copy(good_log, tmp_path)
    assert (data / MARKER_FILE).exists(), "processd must record that it created a log"
    os.truncate(data / "data.mdb", 0)
    rc, out, _ = _run(data)
    _assert_refused(rc, out, str(data / "data.mdb"), "empty")
    (data / "data.mdb").unlink()
    rc, out, _ = _run(data)
    _assert_refused(rc, out, str(data / "data.mdb"), "missing")


def test_start_empty_over_damaged_log_moves_the_files_aside(good_log: Path, tmp_path: Path) -> None:
    """Only an explicit flag starts empty over a damaged log, and the damaged files are kept."""
    data = _copy(good_log, tmp_path)
    mdb = data / "data.mdb"
    original = mdb.read_bytes()
    os.truncate(mdb, len(original) // 2)
    rc, out, _ = _run(data, "--start-empty-over-damaged-log")
    assert rc is None, out[-3000:]
    assert "moved" in out and "damaged" in out, out[-3000:]
    [aside] = [p for p in data.iterdir() if p.is_dir() and p.name.startswith("damaged-")]
    assert (aside / "data.mdb").read_bytes() == original[:len(original) // 2]
    # The new log is a real one: a later start without the flag opens it.
    rc, out, _ = _run(data)
    assert rc is None, out[-3000:]


def test_random_bytes_are_refused_with_one_line(good_log: Path, tmp_path: Path) -> None:
    data = _copy(good_log, tmp_path)
    mdb = data / "data.mdb"
    mdb.write_bytes(os.urandom(mdb.stat().st_size))
    rc, out, _ = _run(data)
    _assert_refused(rc, out, str(mdb), "not an LMDB")


def test_a_foreign_lmdb_environment_is_refused_with_one_line(tmp_path: Path) -> None:
    """An LMDB environment of another program (no marker of ours) must not be adopted and written into."""
    data = tmp_path / "data"
    env = lmdb.open(str(data), max_dbs=4, map_size=16 << 20)
    other = env.open_db(b"accounts")
    with env.begin(write=True) as txn:
        for i in range(500):
            txn.put(i.to_bytes(4, "big"), b"x" * 100, db=other)
    env.close()
    before = (data / "data.mdb").read_bytes()
    rc, out, _ = _run(data)
    _assert_refused(rc, out, str(data), "not a mempulse event log", "accounts")
    assert (data / "data.mdb").read_bytes() == before, "the foreign environment must be left as it is"


def _flip(path: Path, offsets: list[int]) -> None:
    raw = bytearray(path.read_bytes())
    for off in offsets:
        raw[off] ^= 0xFF
    path.write_bytes(bytes(raw))


def _psize_and_pages(path: Path) -> tuple[int, int]:
    raw = path.read_bytes()
    psize = int.from_bytes(raw[40:44], "little")
    return psize, len(raw) // psize


@pytest.mark.parametrize("where", ["meta_magic", "meta_last_page", "data_page_headers"])
def test_flipped_bytes_are_refused_with_one_line(good_log: Path, tmp_path: Path, where: str) -> None:
    """Bit rot in a meta page or in the B-tree pages' headers: exit 2 with one line, not 1 with a traceback.

    (LMDB keeps no checksums: a flip inside a stored value is not detectable by LMDB; see docs/reliability.md.)
    """
    data = _copy(good_log, tmp_path)
    mdb = data / "data.mdb"
    psize, pages = _psize_and_pages(mdb)
    if where == "meta_magic":
        offsets = [16, psize + 16]
    elif where == "meta_last_page":
        offsets = [136 + 5, psize + 136 + 5]  # a high byte of mm_last_pg in both meta pages
    else:
        offsets = [p * psize + 10 for p in range(2, pages)]  # the page flags: neither branch nor leaf
    _flip(mdb, offsets)
    rc, out, _ = _run(data)
    _assert_refused(rc, out, str(data))


def test_an_event_that_no_longer_parses_is_refused_with_one_line(good_log: Path, tmp_path: Path) -> None:
    """A flipped length byte inside a stored event: LMDB cannot notice (no checksums), the read-model rebuild
    can (the protobuf no longer parses). Used to exit 1 with a traceback."""
    data = _copy(good_log, tmp_path)
    mdb = data / "data.mdb"
    raw = bytearray(mdb.read_bytes())
    last = synthetic_envelopes(ENVELOPES, seed=141)[-1]
    # In the stored events the hash is a length-delimited field: its length byte (32) precedes it.
    at = raw.find(b"\x20" + bytes(last.hash))
    assert at > 0, "the newest transaction's hash is not in data.mdb"
    raw[at] = 0x7F  # the field now claims to run 127 bytes, past the end of the value
    mdb.write_bytes(bytes(raw))
    rc, out, _ = _run(data)
    _assert_refused(rc, out, str(mdb), "damaged", "rebuilding", info_lines_before=True)
    assert "replay digest" not in out, "no digest of a damaged log"
