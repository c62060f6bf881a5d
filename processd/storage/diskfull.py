"""Disk full: a commit LMDB could not write is refused like a full map, and retried once space may be back.

LMDB reports a full disk as ``mdb_txn_commit: Input/output error``: its page flush turns a short ``pwrite``
(the filesystem ran out of blocks part-way) into EIO; a failing ``fsync`` also gives EIO, and quotas give
EDQUOT. The write transaction is aborted and the meta page was not written, so the log stays at its last commit
and stays usable. Crashing there only makes a supervisor restart processd into the same full disk; instead the
writer answers the group ``storage_full`` (nothing of it acked as stored, ingestd resends), keeps serving reads,
and lets the next group try a commit again once ``retry_ms`` have passed. The free space of the filesystem
(``statvfs``) tells "disk full" from another I/O error in the log line.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path

import lmdb

log = logging.getLogger(__name__)

_WRITE_ERRNOS = (errno.EIO, errno.ENOSPC, errno.EDQUOT)
#: Below this many free bytes on the log's filesystem a failed write is called "disk full".
FULL_BELOW_BYTES = 16 << 20


def is_write_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is LMDB failing to write (EIO / ENOSPC / EDQUOT), as opposed to a bug or a corrupt log.

    py-lmdb raises plain :class:`lmdb.Error` with the strerror text for system errors (no errno attribute)."""
    return type(exc) is lmdb.Error and any(os.strerror(code) in str(exc) for code in _WRITE_ERRNOS)


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on ``path``'s filesystem (-1 when unknown)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return -1
    return st.f_bavail * st.f_frsize


class DiskFullGate:
    """Whether commits are paused for lack of disk space, and when the next one may try again."""

    def __init__(self, data_dir: Path, retry_ms: int) -> None:
        self.data_dir = data_dir
        self.retry_s = retry_ms / 1000
        #: True from a failed commit until a commit succeeds again.
        self.full = False
        self._retry_at = 0.0
        #: Commits that failed for lack of space (or another write error) since start.
        self.failures = 0

    def blocked(self) -> bool:
        """True while a commit failed less than ``retry_ms`` ago: refuse without touching the disk."""
        return self.full and time.monotonic() < self._retry_at

    def failed(self, exc: BaseException) -> str:
        """Records a failed commit; returns the reason to log with the refused envelopes."""
        self.failures += 1
        self._retry_at = time.monotonic() + self.retry_s
        free = free_bytes(self.data_dir)
        what = "disk full" if 0 <= free < FULL_BELOW_BYTES else "write error (disk full?)"
        reason = f"{what} writing {self.data_dir / 'data.mdb'}: {exc} ({free} bytes free)"
        if not self.full:
            log.error("%s: refusing ingest as storage_full, serving reads, retrying every %.1f s", reason,
                      self.retry_s)
        self.full = True
        return reason

    def succeeded(self) -> None:
        """A commit went through: ingest is accepted again."""
        if self.full:
            log.warning("event log writable again at %s (%d bytes free) after %d failed commits: accepting ingest",
                        self.data_dir, free_bytes(self.data_dir), self.failures)
            self.full = False
