"""Checks of the event log's files before LMDB maps them, and the marker that says a log exists.

LMDB maps ``data.mdb`` and trusts it: a file shorter than its meta page says makes the first read past the end
a SIGBUS (the process dies with nothing logged), and a 0-byte or missing file is initialized as a new, empty
log, silently dropping every acked envelope. So before ``lmdb.open`` :func:`check_log_files` reads the two meta
pages itself (the one with the higher txnid is current, as in LMDB) and compares the file's size with the last
page in use; ``log.marker``, written once the log is created, says whether an empty or missing file is new or
lost. Damage raises :class:`DamagedLogError` (one line, exit 2); only an explicit operator flag starts empty over
it, and then :func:`move_aside` keeps the damaged files.

Meta page layout (LMDB 0.9, 64-bit, little-endian): a 16-byte page header, then ``mm_magic`` (u32) at 16,
``mm_version`` (u32) at 20, ``mm_mapsize`` (u64) at 32, the free-list DB record whose first u32 (at 40) holds
the page size, ``mm_last_pg`` (u64) at 136 and ``mm_txnid`` (u64) at 144.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from processd.storage.logenv import StorageError

log = logging.getLogger(__name__)

DATA_FILE = "data.mdb"
LOCK_MDB_FILE = "lock.mdb"
MARKER_FILE = "log.marker"
LMDB_MAGIC = 0xBEEFC0DE
LMDB_DATA_VERSION = 1
_MAGIC_VERSION = struct.Struct("<II")
_PSIZE = struct.Struct("<I")
_LAST_PG_TXNID = struct.Struct("<QQ")
_MAP_SIZE = struct.Struct("<Q")
_META_END = 152
#: Where the damaged files go when the operator starts empty over them: ``<data-dir>/damaged-<UTC time>/``.
DAMAGED_PREFIX = "damaged-"


class DamagedLogError(StorageError):
    """The data dir's event log is truncated, emptied, missing, foreign or corrupt (operator action needed)."""


@dataclass(frozen=True, slots=True)
class MetaPage:
    """The current meta page of a ``data.mdb``: its transaction id, last page in use and page size."""

    txnid: int
    last_pgno: int
    page_size: int
    map_size: int

    @property
    def bytes_in_use(self) -> int:
        """Bytes the file must hold: pages 0..last_pgno."""
        return (self.last_pgno + 1) * self.page_size


def read_meta(data_file: Path) -> MetaPage:
    """The current (higher txnid) meta page of ``data_file``; raises :class:`DamagedLogError` when either meta
    page is short, lacks the LMDB magic or has another data version (LMDB itself refuses both in that case)."""
    with data_file.open("rb") as f:
        head = f.read(_META_END)
        if len(head) < _META_END:
            raise DamagedLogError(f"{data_file} is truncated: {len(head)} bytes, shorter than one LMDB meta page")
        page_size = _PSIZE.unpack_from(head, 40)[0]
        metas = [head]
        if _MAGIC_VERSION.unpack_from(head, 16)[0] == LMDB_MAGIC:
            if page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
                raise DamagedLogError(f"{data_file} is damaged: meta page 0 gives page size {page_size}")
            f.seek(page_size)
            metas.append(f.read(_META_END))
    for i, meta in enumerate(metas):
        if len(meta) < _META_END:
            raise DamagedLogError(f"{data_file} is truncated: {os.path.getsize(data_file)} bytes, its second meta "
                                  f"page would end at {page_size + _META_END}")
        magic, version = _MAGIC_VERSION.unpack_from(meta, 16)
        if magic != LMDB_MAGIC:
            raise DamagedLogError(f"{data_file} is not an LMDB file (meta page {i} has magic {magic:#010x}, not "
                                  f"{LMDB_MAGIC:#010x}): damaged or foreign")
        if version != LMDB_DATA_VERSION:
            raise DamagedLogError(f"{data_file}: LMDB data version {version} in meta page {i}, this LMDB reads "
                                  f"{LMDB_DATA_VERSION}: damaged or written by another LMDB")
    current = max(metas, key=lambda m: _LAST_PG_TXNID.unpack_from(m, 136)[1])
    last_pgno, txnid = _LAST_PG_TXNID.unpack_from(current, 136)
    return MetaPage(txnid=txnid, last_pgno=last_pgno, page_size=page_size,
                    map_size=_MAP_SIZE.unpack_from(current, 32)[0])


def check_log_files(data_dir: Path) -> None:
    """Refuses (raises :class:`DamagedLogError`) a ``data.mdb`` that LMDB would crash on or silently start empty
    over: shorter than its meta page says, emptied or missing while ``log.marker`` says a log was created."""
    data_file = data_dir / DATA_FILE
    marker = data_dir / MARKER_FILE
    if not data_file.exists():
        if marker.exists():
            raise DamagedLogError(f"{data_file} is missing but {marker} says an event log was created here "
                                  f"({_marker_text(marker)}): restore it, or start with "
                                  f"--start-empty-over-damaged-log")
        return
    size = data_file.stat().st_size
    if size == 0:
        if marker.exists():
            raise DamagedLogError(f"{data_file} is empty (0 bytes) but {marker} says an event log was created here "
                                  f"({_marker_text(marker)}): restore it, or start with "
                                  f"--start-empty-over-damaged-log")
        # LMDB creates the file and writes its meta pages in one call: a crash between leaves 0 bytes, no marker.
        log.warning("%s is empty and no %s exists: starting a new event log", data_file, MARKER_FILE)
        return
    meta = read_meta(data_file)
    if meta.bytes_in_use > meta.map_size:
        raise DamagedLogError(
            f"{data_file} is damaged: its meta page (txn {meta.txnid}) has pages up to {meta.last_pgno} in use, "
            f"beyond its own map size ({meta.map_size} bytes)")
    if size < meta.bytes_in_use:
        raise DamagedLogError(
            f"{data_file} is truncated: {size} bytes, but its meta page (txn {meta.txnid}) has pages up to "
            f"{meta.last_pgno} in use ({meta.bytes_in_use} bytes): restore it, or start with "
            f"--start-empty-over-damaged-log")


def _marker_text(marker: Path) -> str:
    try:
        return marker.read_text(errors="replace").strip()[:200]
    except OSError as exc:
        return f"unreadable: {exc.strerror}"


def write_marker(data_dir: Path) -> None:
    """Records, once, that an event log exists in ``data_dir`` (atomically: temp file, fsync, rename, fsync dir)."""
    marker = data_dir / MARKER_FILE
    if marker.exists():
        return
    tmp = data_dir / (MARKER_FILE + ".tmp")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, f"mempulse event log created {stamp} by processd pid {os.getpid()}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, marker)
    # The rename is durable only once the directory is synced.
    dir_fd = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def move_aside(data_dir: Path, reason: str) -> Path:
    """Moves the damaged log's files (data, LMDB lock, marker) into ``<data-dir>/damaged-<UTC time>/`` so a new
    log can start; nothing is deleted. Returns the directory they went to."""
    aside = data_dir / (DAMAGED_PREFIX + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    suffix = 0
    while aside.exists():
        suffix += 1
        aside = aside.with_name(f"{aside.name.split('.')[0]}.{suffix}")
    aside.mkdir()
    moved = []
    for name in (DATA_FILE, LOCK_MDB_FILE, MARKER_FILE):
        if (data_dir / name).exists():
            os.replace(data_dir / name, aside / name)
            moved.append(name)
    log.warning("--start-empty-over-damaged-log: the event log was damaged (%s); moved %s to %s and starting an "
                "EMPTY event log", reason, ", ".join(moved) or "nothing", aside)
    return aside


def check_db_names(data_dir: Path, names: set[bytes], ours: frozenset[bytes],
                   later: frozenset[bytes] = frozenset()) -> None:
    """Refuses an LMDB environment whose main database holds ``names`` when it is not (or no longer) our log:
    keys of another program, or ours missing while ``log.marker`` says the log was created (``later``: ours that
    a log written before they existed lacks; they are created at open)."""
    foreign = names - ours
    if foreign:
        shown = ", ".join(sorted(n.decode("utf-8", "replace")[:40] for n in foreign)[:5])
        raise DamagedLogError(f"{data_dir} holds an LMDB environment that is not a mempulse event log (it has "
                              f"{len(foreign)} other databases/keys: {shown}): point --data-dir elsewhere")
    marker = data_dir / MARKER_FILE
    if not ours - later <= names and marker.exists():
        missing = ", ".join(sorted(n.decode() for n in ours - later - names))
        raise DamagedLogError(f"{data_dir / DATA_FILE} lacks the event log's databases ({missing}) but {marker} says "
                              f"one was created here ({_marker_text(marker)}): restore it, or start with "
                              f"--start-empty-over-damaged-log")
