"""The event log's LMDB environment: the data dir's writer lock, open (schema check, damage detection), close,
the read-transaction discipline (:meth:`LogEnvironment.read`) and the whole-log facts (last and first seq,
counters, map size).

Kept apart from :mod:`processd.storage.eventlog` (every read path; its ``EventLog`` is a
:class:`LogEnvironment`) so that the environment's lifetime, which the writer, backup and the start-up checks
depend on, is read and changed without the cursor walks of the queries.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self, TypeVar

import lmdb

from processd.errors import ProcessdError
from processd.storage.layout import DB_NAMES, LATER_DB_NAMES, META_LAST_SEQ, META_SCHEMA, SCHEMA_VERSION, U32, U64
from processd.storage.readgate import ReadGate

log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: What LMDB raises on a file it cannot read as a (consistent) environment; there are no checksums, so this is
#: all LMDB itself notices of bit rot.
DAMAGE_ERRORS = (lmdb.InvalidError, lmdb.VersionMismatchError, lmdb.CorruptedError, lmdb.PageNotFoundError,
                 lmdb.IncompatibleError, lmdb.BadValsizeError)


class StorageError(ProcessdError):
    """The event log cannot be opened or is inconsistent; not retriable without operator action."""

    retriable = False


#: The writer lock of a data dir: held (flock, exclusive) by the one processd that writes its log.
LOCK_FILE = "processd.lock"


def lock_data_dir(path: Path) -> int:
    """Takes the exclusive writer lock of data dir ``path`` and returns its descriptor (closing it releases the
    lock; so does the process's death, kill -9 included, so a stale lock never blocks a restart).

    LMDB allows many writers' processes on one environment and serializes their transactions, but each
    processd keeps its own seq counter: two on one dir overwrite each other's events. Hence one per dir.
    """
    lock_path = path / LOCK_FILE
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StorageError(f"{path} is in use by another processd (it holds {lock_path}): run one processd per "
                           f"--data-dir") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())  # for people: who holds it
    return fd


class LogEnvironment:
    """Owns the LMDB environment: reads are synchronous and short (the long ones in worker threads go through
    :attr:`reads`); the writer thread uses :attr:`env` directly.
    :class:`~processd.storage.eventlog.EventLog` adds the read paths."""

    def __init__(self, path: Path, map_size_bytes: int, sync: bool = True,
                 start_empty_over_damaged: bool = False) -> None:
        self.path = path
        #: The operator's explicit consent to move a damaged log aside and start an empty one.
        self.start_empty_over_damaged = start_empty_over_damaged
        self.map_size_bytes = map_size_bytes
        self.sync = sync
        self.env: lmdb.Environment | None = None
        self.events_db: Any = None
        self.chain_db: Any = None
        self.tx_db: Any = None
        self.agg_db: Any = None
        self.meta_db: Any = None
        self.sources_db: Any = None
        self.blocks_db: Any = None
        self.pools_db: Any = None
        self.life_db: Any = None
        self.life_seq_db: Any = None
        self.stale_readers_cleared = 0
        #: The reads that run in worker threads, against growing the map (``processd.storage.readgate``).
        self.reads = ReadGate()
        self._lock_fd: int | None = None

    def open(self) -> Self:
        """Takes the data dir's writer lock, opens (creating if needed) the environment, clears stale reader
        slots and checks the schema. Raises :class:`StorageError` when another process holds the lock, and
        :class:`~processd.storage.logcheck.DamagedLogError` when the log is truncated, emptied, foreign or corrupt
        (unless ``start_empty_over_damaged``: then its files are moved aside and an empty log starts)."""
        # Imported here: logcheck's errors derive from StorageError, defined in this module.
        from processd.storage.logcheck import DamagedLogError, check_log_files, move_aside

        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_fd = lock_data_dir(self.path)
        try:
            try:
                check_log_files(self.path)  # before LMDB maps the file: a short file would be a SIGBUS
                return self._open_env()
            except DamagedLogError as exc:
                if not self.start_empty_over_damaged:
                    raise
                self._close_env()
                move_aside(self.path, str(exc))
                return self._open_env()
        except BaseException:
            self.close()
            raise

    def _open_env(self) -> Self:
        from processd.storage.logcheck import DATA_FILE, DamagedLogError, check_db_names, write_marker

        try:
            env = lmdb.open(
                str(self.path), map_size=self.map_size_bytes, max_dbs=16, max_readers=256,
                sync=self.sync, metasync=self.sync, readahead=False, writemap=False, lock=True,
            )
        except DAMAGE_ERRORS as exc:
            raise DamagedLogError(f"{self.path / DATA_FILE} is not a readable LMDB file: {exc}") from None
        except lmdb.Error as exc:
            raise StorageError(f"cannot open LMDB at {self.path}: {exc}") from exc
        self.env = env
        try:
            with env.begin() as txn:
                names = {bytes(key) for key, _ in txn.cursor()}
            check_db_names(self.path, names, DB_NAMES, LATER_DB_NAMES)
            self._open_dbs(env)
        except DAMAGE_ERRORS as exc:
            # No checksums in LMDB: a damaged page shows up as a B-tree LMDB cannot walk (or a key of ours that
            # is not a database).
            raise DamagedLogError(f"{self.path / DATA_FILE} is damaged: {exc}") from None
        except lmdb.Error as exc:  # e.g. no space left for the schema record of a new log
            raise StorageError(f"cannot open the event log at {self.path}: {exc}") from None
        write_marker(self.path)
        log.info("event log open at %s (last seq %d, %d stale reader slots cleared)",
                 self.path, self.last_seq(), self.stale_readers_cleared)
        return self

    def _open_dbs(self, env: lmdb.Environment) -> None:
        # A reader killed mid-transaction leaves its slot behind; clearing it lets LMDB reuse freed pages.
        self.stale_readers_cleared = env.reader_check()
        self.events_db = env.open_db(b"events")
        self.chain_db = env.open_db(b"chain_seq")
        self.tx_db = env.open_db(b"tx_hash")
        self.agg_db = env.open_db(b"agg")
        self.meta_db = env.open_db(b"meta")
        self.sources_db = env.open_db(b"tx_sources")
        self.blocks_db = env.open_db(b"blocks")
        self.pools_db = env.open_db(b"pools")
        self.life_db = env.open_db(b"tx_life")
        self.life_seq_db = env.open_db(b"tx_life_seq")
        with env.begin(write=True) as txn:
            raw = txn.get(META_SCHEMA, db=self.meta_db)
            if raw is None:
                txn.put(META_SCHEMA, U32.pack(SCHEMA_VERSION), db=self.meta_db)
            elif U32.unpack(raw)[0] != SCHEMA_VERSION:
                raise StorageError(
                    f"{self.path}: event log schema version {U32.unpack(raw)[0]}, this processd reads "
                    f"{SCHEMA_VERSION} (there is no in-place migration: start with an empty --data-dir, or run "
                    f"the processd that wrote it to read it)")
        self.map_size_bytes = env.info()["map_size"]

    def close(self) -> None:
        """Closes the environment and releases the data dir's lock (idempotent)."""
        self._close_env()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def _close_env(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None

    def _require(self) -> lmdb.Environment:
        if self.env is None:
            raise StorageError("event log is not open")
        return self.env

    def begin(self) -> lmdb.Transaction:
        """A read transaction (callers keep it short, and never as a local of a coroutine: see :meth:`read`)."""
        return self._require().begin(buffers=True)

    def read(self, fn: Callable[[lmdb.Transaction], _T]) -> _T:
        """``fn(txn)`` in a read transaction that is freed when this returns.

        A py-lmdb read transaction keeps its LMDB reader slot until the Transaction object is freed: leaving
        its ``with`` block only resets it. Held in a local of a coroutine it keeps the slot as long as the
        frame lives: for the life of an async generator (a SubscribeEvents stream), and, when the coroutine
        then raises (``context.abort(NOT_FOUND)`` after a lookup), until the cyclic GC frees the frame and
        traceback. A run of unknown-hash lookups filled the reader table (MDB_READERS_FULL) and every read of
        processd failed until the next GC (found by the long schemathesis run, issue 14). Here the
        transaction is only ever a local of this frame, dropped on return.
        """
        txn = self.begin()
        try:
            with txn:
                return fn(txn)
        finally:
            del txn

    def last_seq(self) -> int:
        """Highest committed seq (0 when empty)."""
        with self._require().begin() as txn:
            raw = txn.get(META_LAST_SEQ, db=self.meta_db)
            return U64.unpack(raw)[0] if raw else 0

    def txn_last_seq(self, txn: lmdb.Transaction) -> int:
        """Highest committed seq as seen by ``txn``."""
        raw = txn.get(META_LAST_SEQ, db=self.meta_db)
        return U64.unpack(raw)[0] if raw is not None else 0

    def first_seq(self) -> int:
        """Lowest retained seq (0 when empty)."""
        with self._require().begin() as txn:
            cur = txn.cursor(db=self.events_db)
            return U64.unpack(cur.key())[0] if cur.first() else 0

    def load_aggregates(self) -> dict[bytes, int]:
        """All persisted counters (a few per chain and per (chain, category, protocol))."""
        with self._require().begin() as txn:
            return {bytes(k): U64.unpack(v)[0] for k, v in txn.cursor(db=self.agg_db)}

    def storage_bytes(self) -> int:
        """Bytes of the map in use (last page number times page size)."""
        env = self._require()
        return int(env.info()["last_pgno"] + 1) * int(env.stat()["psize"])

    def set_map_size(self, size_bytes: int) -> None:
        """Grows the map; only while no transaction of this process is open: the caller runs on the event loop's
        thread, where the other reads run, and the reads of worker threads (:attr:`reads`) are waited for."""
        def grow() -> None:
            self._require().set_mapsize(size_bytes)
            self.map_size_bytes = self._require().info()["map_size"]
        self.reads.exclusive(grow)
