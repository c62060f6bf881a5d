"""Readers of ``/proc`` for one process: resident memory (all of it, and the anonymous part), CPU time used (in
clock ticks, or exact from the scheduler's per-thread figures), and its descendants. The benchmarks' RSS sampler
(scripts/bench/harness.py) and the reliability tests' memory plateaus read processes through these. Each returns None
(or nothing) for a process that is gone."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def rss_bytes(pid: int) -> int | None:
    """Resident set size of ``pid`` from ``/proc/<pid>/statm`` (None when the process is gone)."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


def rss_anon_bytes(pid: int) -> int | None:
    """Anonymous resident memory of ``pid`` (``RssAnon`` in ``/proc/<pid>/status``): heap and stacks, without
    file-backed pages. processd maps its LMDB file, whose touched pages count in RSS and grow with the log;
    growth of the anonymous part is what a leak or an unbounded queue looks like."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds ``pid`` has used so far (None when the process is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            raw = fh.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after the closing parenthesis are fixed.
    fields = raw[raw.rfind(")") + 2:].split()
    try:
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    except (IndexError, ValueError):
        return None


def cpu_seconds_exact(pid: int) -> float | None:
    """CPU seconds ``pid``'s live threads have run, to the nanosecond (the first field of each
    ``/proc/<pid>/task/<tid>/schedstat``); None when the process is gone or the kernel keeps no schedstat.

    :func:`cpu_seconds` counts clock ticks (10 ms here): a measure of ~100 ms of CPU is off by up to a tenth, which
    is noise in a short benchmark's ratio. This one is exact, but a thread that exits takes its time with it: use it
    over a span in which the process's threads live throughout (a server under a load generator)."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as fh:
                total += int(fh.read().split()[0])
        except FileNotFoundError:  # (the thread exited since the listing)
            continue
        except (OSError, IndexError, ValueError):
            return None
    return total / 1e9


@functools.cache
def exact_cpu_available() -> bool:
    """Whether the kernel keeps per-thread schedstat, which :func:`cpu_seconds_exact` reads."""
    return os.path.exists("/proc/self/schedstat")


def cpu_reader(exact: bool) -> Callable[[int], float | None]:
    """:func:`cpu_seconds_exact` when ``exact`` and the kernel has it (:func:`exact_cpu_available`), else
    :func:`cpu_seconds`."""
    return cpu_seconds_exact if exact and exact_cpu_available() else cpu_seconds


def descendants(pid: int) -> list[int]:
    """Every descendant pid of ``pid`` (children of all its threads, recursively) from /proc."""
    out: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            tids = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{current}/task/{tid}/children", encoding="ascii") as fh:
                    kids = [int(k) for k in fh.read().split()]
            except (OSError, ValueError):
                continue
            out.extend(kids)
            todo.extend(kids)
    return out
