"""One supervised child process: started with its output captured to a log file, stopped cleanly.

Used by :mod:`common.testing.stack` for the daemons; reusable by any script that needs to run, kill and restart a
daemon (reliability loops, benchmarks). Children run in their own session, so a Ctrl-C in the terminal
reaches only the supervisor, which then stops them in order; on Linux they also receive SIGTERM if the
supervisor dies (``PR_SET_PDEATHSIG`` through ``setpriv``), so a killed supervisor leaves no daemon behind.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from common.errors import MempulseError

log = logging.getLogger(__name__)

class ProcessError(MempulseError, RuntimeError):
    """A supervised process failed to start, exited early, or did not become ready."""


def die_with_parent_prefix() -> list[str]:
    """argv prefix that makes Linux SIGTERM the child when the thread that started it dies (``[]`` elsewhere).

    util-linux ``setpriv --pdeathsig`` sets ``PR_SET_PDEATHSIG`` and execs the command (same pid, same
    cmdline after exec). Deliberately not a ``preexec_fn``: that forces a plain fork, and a child forked from
    a process with live gRPC threads can abort before its exec (seen here: SIGABRT, "epoll_wait error: Bad
    file descriptor"), whereas without preexec_fn CPython spawns with vfork and nothing runs in between.
    """
    if sys.platform != "linux":
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


class ManagedProcess:
    """A child process whose stdout and stderr go to ``log_path`` (appended across restarts).

    With ``die_with_parent`` (default, Linux with util-linux ``setpriv``) the child gets SIGTERM when the
    thread that started it exits: start children from a thread that outlives them (normally the main thread).

    ``start()`` launches it and waits for ``ready`` (a callable returning True once the process serves)
    and/or ``ready_log`` (a regex searched in its log). ``stop()`` sends SIGTERM, then SIGKILL after
    ``stop_timeout_s``; it is idempotent. ``kill()`` and a later ``start()`` restart it with the same
    command (same ports), which is what crash-recovery tests need.
    """

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, *, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None, ready: Callable[[], bool] | None = None, ready_log: str | None = None,
                 ready_timeout_s: float = 30.0, stop_timeout_s: float = 10.0, die_with_parent: bool = True) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.ready = ready
        self.ready_log = re.compile(ready_log) if ready_log else None
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.die_with_parent = die_with_parent
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0  # where the current run's output starts in the log file

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit status of the last run (None while running or never started); -N means killed by signal N."""
        return self._proc.poll() if self._proc is not None else None

    def start(self, wait_ready: bool = True) -> ManagedProcess:
        """Starts the process (no-op if running) and, by default, waits until it is ready."""
        if self.alive:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as fh:
            fh.write(f"---- {time.strftime('%H:%M:%S')} start: {' '.join(self.argv)}\n".encode())
            fh.flush()
            self._log_offset = fh.tell()  # output() and readiness look at this run's output only
            prefix = die_with_parent_prefix() if self.die_with_parent else []
            self._proc = subprocess.Popen(
                [*prefix, *self.argv], stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, env=self.env,
                cwd=self.cwd, start_new_session=True)
        self.starts += 1
        log.debug("%s started (pid %s): %s", self.name, self._proc.pid, self.argv)
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Blocks until the readiness checks pass; raises :class:`ProcessError` with the log tail otherwise."""
        deadline = time.monotonic() + (self.ready_timeout_s if timeout_s is None else timeout_s)
        log_ok = self.ready_log is None
        while True:
            if not self.alive:
                raise ProcessError(f"{self.name} exited with status {self.returncode} while starting; "
                                   f"log {self.log_path}:\n{self.log_tail()}")
            if not log_ok:
                log_ok = self.ready_log.search(self.output()) is not None  # type: ignore[union-attr]
            if log_ok and (self.ready is None or self._probe()):
                return
            if time.monotonic() > deadline:
                raise ProcessError(f"{self.name} not ready within {self.ready_timeout_s:.0f}s; "
                                   f"log {self.log_path}:\n{self.log_tail()}")
            time.sleep(0.05)

    def _probe(self) -> bool:
        try:
            return bool(self.ready()) if self.ready is not None else True
        except Exception:  # a probe that raises means "not yet"
            return False

    def send_signal(self, signum: int) -> None:
        """Sends ``signum`` to the process (ignored when it is not running)."""
        if self.alive:
            assert self._proc is not None
            self._proc.send_signal(signum)

    def kill(self, signum: int = signal.SIGKILL) -> int | None:
        """Kills the process abruptly (default SIGKILL) and reaps it; returns its exit status."""
        if self._proc is None:
            return None
        self.send_signal(signum)
        try:
            return self._proc.wait(timeout=self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            return self._proc.wait()

    def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit status. Idempotent."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=self.stop_timeout_s if timeout_s is None else timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop on SIGTERM within %.0fs: SIGKILL", self.name,
                            self.stop_timeout_s if timeout_s is None else timeout_s)
                proc.kill()
                proc.wait()
        return proc.returncode

    def wait(self, timeout_s: float | None = None) -> int | None:
        """Waits for the process to exit on its own; returns its status (None on timeout)."""
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def output(self) -> str:
        """Everything the current run has written so far."""
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(self._log_offset)
                return fh.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the current run's output."""
        return "\n".join(self.output().splitlines()[-lines:])

    def __repr__(self) -> str:
        return f"ManagedProcess({self.name!r}, pid={self.pid}, alive={self.alive})"


def python_module_argv(module: str, *args: str) -> list[str]:
    """``[sys.executable, "-m", module, *args]``: runs a daemon with the current interpreter (the venv's)."""
    return [sys.executable, "-m", module, *args]


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for daemons: ours, unbuffered output, plus ``extra``."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env
