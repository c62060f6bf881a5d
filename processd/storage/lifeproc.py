"""The lifecycle process (``--lifecycle-process``, on by default): a :class:`~processd.storage.lifeengine.LifeEngine`
in a child process, so the tracker's work and the encoding of lifecycle events run outside processd's GIL.

The single writer's thread calls :class:`LifeProcess` as it would the engine, synchronously, in the order of a
commit's inputs: each call is one request on a pipe (pickle of lists, bytes and ints) and one answer; the writer's
thread waits for it in ``recv``, which releases the GIL, so the event loop runs meanwhile. The log is written only
by the writer (the child puts nothing: it answers encoded values), so every guarantee of the write transaction
holds as before; the child's state is rebuilt from the log (:meth:`LifeEngine.rebuild_path`, the environment
opened read-only) at start and whenever the writer marks it stale.

A child that dies, or does not answer a call within :data:`CALL_TIMEOUT_S`, is a :class:`LifeProcessLost`
(retriable): the writer aborts the write transaction, starts a new child (:meth:`LifeProcess.restart`, from the
event loop's thread, so ``PR_SET_PDEATHSIG`` ties it to processd), which rebuilds from the log, and commits the
group again. An exception inside the engine is a :class:`LifeEngineError` (a bug: the writer fails, as it would
with the engine in its thread). The child dies with processd (``PR_SET_PDEATHSIG``), also after kill -9.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import multiprocessing
import pickle
import signal
import sys
import threading
import traceback
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from processd.errors import ProcessdError
from processd.storage.lifeengine import Gone, LifeEngine, LifeGroup, LifeStats

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
#: The lifecycle process's name in /proc/<pid>/comm (``ps``, ``top``): it tells it apart from the analysis workers,
#: which are spawned the same way.
PROCESS_NAME = b"processd-life"
#: A call the child has not answered in this long (a rebuild excepted) counts as the child lost: it is killed and
#: replaced. Far above any one commit's lifecycle work (a 5,000-transaction block: ~15 ms).
CALL_TIMEOUT_S = 60.0


class LifeProcessLost(ProcessdError):
    """The lifecycle process died or stopped answering; the write transaction is aborted and redone."""

    retriable = True


class LifeEngineError(ProcessdError):
    """The lifecycle engine raised in its process (a bug, as it would be in the writer's thread)."""


def _child_main(conn: Connection, knobs: tuple[int, int, int]) -> None:
    """The lifecycle process: answers engine calls until its pipe closes."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            libc.prctl(_PR_SET_NAME, ctypes.c_char_p(PROCESS_NAME))
    # processd decides when its children stop (as the analysis workers: pool.py).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # processd's collector settings (processd.__main__.GC_THRESHOLDS): the tracker holds a tuple per tracked
    # transaction for up to the TTL, and makes no cycles; with the default thresholds the collector walked them
    # every few hundred transactions.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    engine = LifeEngine(*knobs)
    while True:
        try:
            name, args = pickle.loads(conn.recv_bytes())
        except EOFError:
            return
        try:
            answer: tuple[bool, Any] = (True, getattr(engine, name)(*args))
        except Exception:
            answer = (False, traceback.format_exc())
        try:
            conn.send_bytes(pickle.dumps(answer, pickle.HIGHEST_PROTOCOL))
        except BrokenPipeError:
            return


class LifeProcess:
    """The engine's methods, answered by the lifecycle process (module doc)."""

    def __init__(self, ttl_ms: int, max_pending: int, max_reorg_depth: int) -> None:
        self.knobs = (ttl_ms, max_pending, max_reorg_depth)
        self._conn: Connection | None = None
        self._process: BaseProcess | None = None
        #: One call at a time on the pipe (the writer's thread makes them; a test's check may too).
        self._lock = threading.Lock()
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        """The child's pid (None when not running)."""
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Starts the child (call from the event loop's thread: PR_SET_PDEATHSIG fires when the thread that forked
        the child ends). Its state is empty until :meth:`rebuild_path`."""
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        process = ctx.Process(target=_child_main, name="processd-lifecycle", daemon=True, args=(child, self.knobs))
        process.start()
        child.close()
        self._conn, self._process = parent, process

    def restart(self) -> None:
        """Replaces a lost child with a new one (its state is rebuilt by the writer's next commit)."""
        self._kill()
        self.restarts += 1
        self.start()

    def stop(self) -> None:
        """Ends the child (idempotent): EOF on its pipe, then a kill if it lingers."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._process is not None:
            self._process.join(5)
            self._kill()

    def _kill(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        process, self._process = self._process, None
        if process is not None:
            if process.is_alive():
                with contextlib.suppress(OSError, ValueError):
                    process.kill()
            process.join(5)

    def _call(self, name: str, *args: Any, bounded: bool = True) -> Any:
        """One request and its answer; ``bounded``: lost after :data:`CALL_TIMEOUT_S` without an answer."""
        with self._lock:
            return self._call_locked(name, args, CALL_TIMEOUT_S if bounded else None)

    def _call_locked(self, name: str, args: tuple[Any, ...], timeout: float | None) -> Any:
        conn = self._conn
        if conn is None:
            raise LifeProcessLost("the lifecycle process is not running")
        try:
            conn.send_bytes(pickle.dumps((name, args), pickle.HIGHEST_PROTOCOL))
            if timeout is not None and not conn.poll(timeout):
                raise LifeProcessLost(f"the lifecycle process did not answer {name} within {timeout:.0f} s")
            ok, answer = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError) as exc:
            raise LifeProcessLost(f"the lifecycle process is gone ({name}: {exc!r})") from None
        if not ok:
            raise LifeEngineError(f"lifecycle engine failed in {name}:\n{answer}")
        return answer

    # ---- the engine's methods (processd.storage.lifeengine.LifeEngine) ----------------------------------------

    def stored(self, chain_col: list[int], seen_at: list[int], life: bytes, seen_values: list[bytes] | None,
               first: int, received_ns: int) -> tuple[LifeGroup | None, dict[int, list[bytes]]]:
        """:meth:`LifeEngine.stored`."""
        answer: tuple[LifeGroup | None, dict[int, list[bytes]]] = self._call(
            "stored", chain_col, seen_at, life, seen_values, first, received_ns)
        return answer

    def block(self, raw: bytes, seq: int, received_ns: int
              ) -> tuple[int, int, list[bytes], LifeGroup | None, list[bytes] | None]:
        """:meth:`LifeEngine.block`."""
        answer: tuple[int, int, list[bytes], LifeGroup | None, list[bytes] | None] = self._call(
            "block", raw, seq, received_ns)
        return answer

    def gone(self, reports: list[Gone], received_ns: int) -> tuple[int, list[LifeGroup]]:
        """:meth:`LifeEngine.gone`."""
        answer: tuple[int, list[LifeGroup]] = self._call("gone", reports, received_ns)
        return answer

    def finish(self, last_seq: int) -> tuple[dict[int, int], dict[int, int], LifeStats]:
        """:meth:`LifeEngine.finish`."""
        answer: tuple[dict[int, int], dict[int, int], LifeStats] = self._call("finish", last_seq)
        return answer

    def pending_sets(self) -> dict[int, list[bytes]]:
        """:meth:`LifeEngine.pending_sets`."""
        answer: dict[int, list[bytes]] = self._call("pending_sets")
        return answer

    def stats(self) -> LifeStats:
        """:meth:`LifeEngine.stats`."""
        answer: LifeStats = self._call("stats")
        return answer

    def rebuild_path(self, path: str, counters: dict[bytes, int]) -> tuple[float, int]:
        """:meth:`LifeEngine.rebuild_path` (no timeout: it walks up to the TTL's worth of the log)."""
        answer: tuple[float, int] = self._call("rebuild_path", path, counters, bounded=False)
        return answer
