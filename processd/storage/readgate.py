"""Reads of the event log in other threads than the event loop's, against growing the map.

LMDB's ``mdb_env_set_mapsize`` may only run while no transaction of the process is open. The writer grows the map
on the event loop's thread (after a commit failed with MapFull), and most reads run synchronously on that same
thread, so they can never overlap. The long reads (a ScanEvents or ListTransactions page: up to
``scan_max_examined`` events) run in worker threads instead, so that ingest acks and the other requests are not
held behind them (``processd.api.query_service``); each goes through :meth:`ReadGate.read`, and the growth through
:meth:`ReadGate.exclusive`, which waits for the reads in progress to end and holds new ones back until the map is
grown. Growth is rare (the map doubles), and a read is bounded (a page), so neither waits long.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")


class ReadGate:
    """Counts the reads in progress in worker threads; :meth:`exclusive` runs a function while none is."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._exclusive = False

    @property
    def readers(self) -> int:
        """Reads in progress now."""
        return self._readers

    def read(self, fn: Callable[[], _T]) -> _T:
        """``fn()`` as a read: it waits while :meth:`exclusive` runs, and :meth:`exclusive` waits for it."""
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._readers += 1
        try:
            return fn()
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    def exclusive(self, fn: Callable[[], _T]) -> _T:
        """``fn()`` while no read runs: new reads wait, then it waits for those in progress."""
        with self._cond:
            self._exclusive = True
            try:
                while self._readers:
                    self._cond.wait()
                return fn()
            finally:
                self._exclusive = False
                self._cond.notify_all()
