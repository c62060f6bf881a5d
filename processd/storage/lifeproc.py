"""The lifecycle process (``--lifecycle-process``, on by default): a :class:`~processd.storage.lifeengine.LifeEngine`
in a child process, so the tracker's work and the encoding of lifecycle events run outside processd's GIL.

The single writer's thread calls :class:`LifeProcess` as it would the engine, in the order of a commit's inputs: each
call is one request on a pipe (pickle of lists, bytes and ints) and one answer. A batch's stored transactions and a
block are sent as the writer meets them (:meth:`LifeProcess.send`) and their answers taken at the commit's end
(:meth:`LifeProcess.receive`), so the child works while the writer's thread puts the commit's other events; the
other calls wait for their answer. Neither side ever blocks the other on a full pipe: a thread of this process
writes the requests, and a thread of the child writes the answers. Waiting for an answer (``recv``) releases the
GIL, so the event loop runs meanwhile. The log is written only
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
import logging
import multiprocessing
import pickle
import queue
import signal
import sys
import threading
import traceback
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from common.gctune import tune_gc
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
#: A request of at most this many bytes sent when the pipe is empty is written by the calling thread (it fits the
#: socket's buffer, ~200 KiB on Linux: the write cannot block); any other goes through the request thread.
_DIRECT_MAX_BYTES = 64 * 1024


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
    # processd's collector settings: the tracker holds a tuple per tracked transaction for up to the TTL, and makes
    # no cycles; with the default thresholds the collector walked them every few hundred transactions.
    tune_gc()
    engine = LifeEngine(*knobs)
    # The answers are written by a thread: while the writer sends a commit's requests and takes their answers only at
    # its end, this loop keeps reading requests (the answers wait here, at most one commit's worth). A small answer to
    # a call sent when nothing else was owed (every earlier answer was read, so that thread has nothing left to
    # write) is written at once: no thread switch on a quiet commit's path.
    answers: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    sender = threading.Thread(target=_send_all, args=(conn, answers), name="life-answers", daemon=True)
    sender.start()
    while True:
        try:
            name, args, alone = pickle.loads(conn.recv_bytes())
        except EOFError:
            answers.put(None)
            sender.join()
            return
        try:
            answer: tuple[bool, Any] = (True, getattr(engine, name)(*args))
        except Exception:
            answer = (False, traceback.format_exc())
        data = pickle.dumps(answer, pickle.HIGHEST_PROTOCOL)
        if not alone or len(data) > _DIRECT_MAX_BYTES:  # (a big one could fill the pipe before the writer reads)
            answers.put(data)
            continue
        try:
            conn.send_bytes(data)
        except OSError:  # (processd is gone: EOF on the next read)
            continue


def _send_all(conn: Connection, messages: queue.SimpleQueue[bytes | None]) -> None:
    """Writes ``messages`` on ``conn`` in order until a None (or the other side is gone: its reader learns it from
    the pipe)."""
    while True:
        data = messages.get()
        if data is None:
            return
        try:
            conn.send_bytes(data)
        except OSError:
            return


class LifeProcess:
    """The engine's methods, answered by the lifecycle process (module doc)."""

    def __init__(self, ttl_ms: int, max_pending: int, max_reorg_depth: int) -> None:
        self.knobs = (ttl_ms, max_pending, max_reorg_depth)
        self._conn: Connection | None = None
        self._process: BaseProcess | None = None
        #: The requests, written by a thread (:func:`_send_all`), so that :meth:`send` never blocks on the pipe.
        self._requests: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._sender: threading.Thread | None = None
        #: Held by a thread from its first call until the answers of all the calls it sent are received: one
        #: conversation at a time on the pipe (the writer's thread makes them; a test's check may too).
        self._lock = threading.Lock()
        self._owner: int | None = None
        #: Calls sent whose answers were not received.
        self._owed = 0
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
        self._requests = queue.SimpleQueue()
        self._sender = threading.Thread(target=_send_all, args=(parent, self._requests), name="processd-life-requests",
                                        daemon=True)
        self._sender.start()

    def restart(self) -> None:
        """Replaces a lost child with a new one (its state is rebuilt by the writer's next commit)."""
        self._kill()
        self.restarts += 1
        self.start()

    def stop(self) -> None:
        """Ends the child (idempotent): EOF on its pipe once the requests are written, then a kill if it lingers."""
        self._stop_sender(5)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._process is not None:
            self._process.join(5)
            self._kill()

    def _stop_sender(self, timeout: float) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            self._requests.put(None)
            sender.join(timeout)

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            if process.is_alive():
                with contextlib.suppress(OSError, ValueError):
                    process.kill()
            process.join(5)
        # (after the kill: a request the sender thread was blocked writing fails, and its fd is closed only then)
        self._stop_sender(5)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._owner is not None:  # a conversation the lost child left unanswered
            self._owner, self._owed = None, 0
            self._lock.release()

    def _call(self, name: str, *args: Any, bounded: bool = True) -> Any:
        """One request and its answer; ``bounded``: lost after :data:`CALL_TIMEOUT_S` without an answer."""
        self.send(name, args)
        return self._receive(name, CALL_TIMEOUT_S if bounded else None)

    def send(self, name: str, args: tuple[Any, ...]) -> None:
        """Sends the call ``name(*args)``; its answer is :meth:`receive` 's, in the order of the calls (module doc)."""
        if self._conn is None:
            raise LifeProcessLost("the lifecycle process is not running")
        me = threading.get_ident()
        if self._owner != me:
            self._lock.acquire()
            self._owner = me
        alone = not self._owed  # (every earlier request was answered, so read: the pipe to the child is empty)
        self._owed += 1
        data = pickle.dumps((name, args, alone), pickle.HIGHEST_PROTOCOL)
        if alone and len(data) <= _DIRECT_MAX_BYTES:
            try:
                self._conn.send_bytes(data)  # (fits the empty pipe: it cannot block, even on a stopped child)
            except OSError as exc:
                raise LifeProcessLost(f"the lifecycle process is gone ({name}: {exc!r})") from None
        else:
            self._requests.put(data)

    def receive(self) -> Any:
        """The answer of the oldest call sent and not received (lost after :data:`CALL_TIMEOUT_S` without it)."""
        return self._receive("a call", CALL_TIMEOUT_S)

    def discard(self) -> None:
        """Receives and drops the answers owed (their write transaction was aborted)."""
        while self._owed:
            with contextlib.suppress(LifeEngineError):
                self.receive()

    def _receive(self, name: str, timeout: float | None) -> Any:
        conn = self._conn
        if conn is None or not self._owed:
            raise LifeProcessLost("the lifecycle process is not running")
        try:
            if timeout is not None and not conn.poll(timeout):
                raise LifeProcessLost(f"the lifecycle process did not answer {name} within {timeout:.0f} s")
            ok, answer = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError) as exc:
            raise LifeProcessLost(f"the lifecycle process is gone ({name}: {exc!r})") from None
        self._owed -= 1
        if not self._owed:
            self._owner = None
            self._lock.release()
        if not ok:
            raise LifeEngineError(f"lifecycle engine failed in {name}:\n{answer}")
        return answer

    # ---- the engine's methods (processd.storage.lifeengine.LifeEngine) ----------------------------------------

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
