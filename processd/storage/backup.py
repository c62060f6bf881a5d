"""``mempulse-backup`` / ``python -m processd.storage.backup``: a hot, consistent copy of processd's event log.

    mempulse-backup --data-dir data/mainnet --out backups/mainnet-20261204T1800Z

The copy is LMDB's own ``mdb_env_copy`` with compaction (py-lmdb ``Environment.copy(path, compact=True)``): one
read transaction, so the copy is exactly the log as of one commit, taken while processd keeps writing. This
process is one more LMDB reader of the environment (a slot in ``lock.mdb``); it never takes processd's writer
lock (``processd.lock``), so processd goes on ingesting and acking meanwhile.

What it does, in order: refuses a data dir whose files are damaged (the same check processd makes at start,
:func:`processd.storage.logcheck.check_log_files`), clears reader slots left by dead processes (a killed earlier backup
would otherwise keep LMDB from reusing freed pages until processd restarts), copies into a hidden sibling
directory of ``--out``, checks the copy (the same file check, the log's databases, its schema version) and reads
its seq range, writes its ``log.marker``, fsyncs, and renames it to ``--out``: a half-written backup never
carries the name. The last line on stdout is one JSON object (``last_seq``, ``first_seq``, ``events``, sizes,
seconds). Exit status 2 with one line on stderr when it cannot back up.

Restore: start processd with ``--data-dir`` on the copy (or on a copy of it: keep the backup itself pristine).
See docs/operations.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb

from common.envconfig import ConfigError, add_version_flag
from processd.config import knobs as processd_knobs
from processd.storage.eventlog import (
    DAMAGE_ERRORS,
    DB_NAMES,
    META_LAST_SEQ,
    META_SCHEMA,
    SCHEMA_VERSION,
    U32,
    U64,
    StorageError,
)
from processd.storage.logcheck import DATA_FILE, MARKER_FILE, check_db_names, check_log_files, read_meta

log = logging.getLogger(__name__)

#: As processd opens the environment (the reader table's size is fixed by whoever creates lock.mdb).
MAX_DBS = 16
MAX_READERS = 256
#: How often the copy is retried when processd grows the map between our open and our read transaction.
MAP_RESIZED_RETRIES = 5


class BackupError(StorageError):
    """The backup could not be taken (one line for the operator; exit status 2)."""


@dataclass(frozen=True, slots=True)
class BackupConfig:
    """What to copy and where."""

    #: processd's ``--data-dir`` (the LMDB environment: data.mdb, lock.mdb).
    data_dir: Path
    #: Where the copy goes: a directory that does not exist yet, or an empty one.
    out: Path


@dataclass(frozen=True, slots=True)
class BackupResult:
    """What the copy holds: the log up to ``last_seq`` (events ``first_seq..last_seq``, fewer when retention
    pruned the oldest), as of one commit."""

    out: Path
    last_seq: int
    first_seq: int
    events: int
    backup_bytes: int
    source_bytes: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the tool's last stdout line)."""
        return {"backup": str(self.out), "last_seq": self.last_seq, "first_seq": self.first_seq,
                "events": self.events, "backup_bytes": self.backup_bytes, "source_bytes": self.source_bytes,
                "seconds": round(self.seconds, 3)}


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_destination(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BackupError(f"{out} exists and is not an empty directory: give --out a new directory")
    if not out.parent.is_dir():
        raise BackupError(f"{out.parent} does not exist: create it first")


def _copy_live(data_dir: Path, dest: Path) -> None:
    """``mdb_env_copy`` (compacting) of the live environment into the empty directory ``dest``."""
    for attempt in range(MAP_RESIZED_RETRIES):
        # The map as large as processd's, so the pages of the transaction we copy fit in it; when processd grows
        # its map in between, LMDB says MAP_RESIZED and we open again with the new size.
        map_size = read_meta(data_dir / DATA_FILE).map_size
        try:
            env = lmdb.open(str(data_dir), readonly=True, lock=True, map_size=map_size, max_dbs=MAX_DBS,
                            max_readers=MAX_READERS, create=False, readahead=False)
        except DAMAGE_ERRORS as exc:
            raise BackupError(f"{data_dir / DATA_FILE} is not a readable LMDB file: {exc}") from None
        except lmdb.Error as exc:
            raise BackupError(f"cannot open the event log at {data_dir}: {exc}") from None
        try:
            cleared = env.reader_check()
            if cleared:
                log.info("cleared %d reader slots of dead processes", cleared)
            env.copy(str(dest), compact=True)
            return
        except lmdb.MapResizedError:
            log.info("processd grew its map during the copy (attempt %d): copying again", attempt + 1)
            for leftover in dest.iterdir():
                leftover.unlink()
        except DAMAGE_ERRORS as exc:
            raise BackupError(f"{data_dir / DATA_FILE} is damaged: {exc}") from None
        except lmdb.Error as exc:
            raise BackupError(f"copy of {data_dir} into {dest} failed: {exc}") from None
        finally:
            env.close()
    raise BackupError(f"processd kept growing its map during {MAP_RESIZED_RETRIES} copy attempts: retry later")


def inspect_copy(path: Path) -> tuple[int, int, int]:
    """Checks a copied log the way processd does at start (files, databases, schema version) and returns its
    ``(last_seq, first_seq, events)``; raises :class:`BackupError` when processd would refuse it."""
    try:
        check_log_files(path)
        env = lmdb.open(str(path), readonly=True, lock=False, max_dbs=MAX_DBS, create=False)
    except (StorageError, lmdb.Error) as exc:
        raise BackupError(f"the copy in {path} does not open: {exc}") from None
    try:
        with env.begin() as txn:
            check_db_names(path, {bytes(key) for key, _ in txn.cursor()}, DB_NAMES)
            meta_db = env.open_db(b"meta", txn=txn, create=False)
            events_db = env.open_db(b"events", txn=txn, create=False)
            schema = txn.get(META_SCHEMA, db=meta_db)
            if schema is None or U32.unpack(schema)[0] != SCHEMA_VERSION:
                found = U32.unpack(schema)[0] if schema else None
                raise BackupError(f"the copy in {path} has schema version {found}, this processd reads "
                                  f"{SCHEMA_VERSION}")
            raw = txn.get(META_LAST_SEQ, db=meta_db)
            last_seq = U64.unpack(raw)[0] if raw else 0
            cursor = txn.cursor(db=events_db)
            first_seq = U64.unpack(cursor.key())[0] if cursor.first() else 0
            events = int(txn.stat(events_db)["entries"])
    except BackupError:
        raise
    except (StorageError, lmdb.Error) as exc:
        raise BackupError(f"the copy in {path} is not a readable event log: {exc}") from None
    finally:
        env.close()
    return last_seq, first_seq, events


def backup(config: BackupConfig) -> BackupResult:
    """Takes the hot copy of ``config.data_dir`` into ``config.out`` (see the module docstring)."""
    started = time.monotonic()
    data_dir, out = config.data_dir, config.out
    if not (data_dir / DATA_FILE).is_file():
        raise BackupError(f"{data_dir / DATA_FILE} does not exist: --data-dir must be processd's data dir")
    try:
        check_log_files(data_dir)
    except StorageError as exc:
        raise BackupError(f"refusing to back up a damaged log: {exc}") from None
    _check_destination(out)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        _copy_live(data_dir, staging)
        last_seq, first_seq, events = inspect_copy(staging)
        # Restoring from this directory must not later start empty over a lost data.mdb: the marker says a log
        # existed, as it does in processd's own data dir.
        (staging / MARKER_FILE).write_text(
            f"mempulse event log backup of {data_dir.resolve()} taken "
            f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} (last seq {last_seq})\n")
        for name in (DATA_FILE, MARKER_FILE):
            _fsync_path(staging / name)
        _fsync_path(staging)
        if out.exists():
            out.rmdir()  # empty (checked above): the rename takes its place
        os.replace(staging, out)
        _fsync_path(out.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BackupResult(out=out, last_seq=last_seq, first_seq=first_seq, events=events,
                        backup_bytes=(out / DATA_FILE).stat().st_size,
                        source_bytes=(data_dir / DATA_FILE).stat().st_size,
                        seconds=time.monotonic() - started)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mempulse-backup",
        description="Hot, consistent, compacted copy of processd's LMDB event log while processd runs. Restore: "
                    "start processd with --data-dir on the copy.")
    p.add_argument("--data-dir", help="processd's data dir (env MEMPULSE_PROCESSD_DATA_DIR)")
    p.add_argument("--out", required=True, help="the backup's directory: new, or empty")
    add_version_flag(p)
    return p


def load_config(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> BackupConfig:
    """Flags, then ``MEMPULSE_PROCESSD_DATA_DIR`` (as processd reads it); raises ConfigError without a data dir."""
    args = build_parser().parse_args(argv)
    source = processd_knobs(env)
    data_dir = args.data_dir or source.get_str("data_dir", "")
    if not data_dir:
        raise ConfigError(f"--data-dir (or {source.name('data_dir')}) is required")
    return BackupConfig(data_dir=Path(data_dir), out=Path(args.out))


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: prints the result as one JSON line; exit 2 with one line on error."""
    logging.basicConfig(level=logging.INFO, format="mempulse-backup: %(message)s", stream=sys.stderr)
    try:
        result = backup(load_config(argv))
    except (ConfigError, StorageError, OSError) as exc:
        print(f"mempulse-backup: error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(result.as_dict()), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
