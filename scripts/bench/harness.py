"""Shared benchmark harness: machine description, JSON artifacts, RSS/CPU sampling, percentiles, rate search.

Every benchmark module under ``scripts/bench/`` writes its results with :func:`write_artifact`, which wraps
them in a common envelope (name, time, command, machine description) at ``artifacts/perf/<name>.json``.
The machine here is small and shared (2 cores, other work running), so benchmarks report ratios measured in
the same run next to absolute figures; :func:`machine_description` records the load average at the start so
a reader can tell a noisy run from a slow build.

Run from the repository root as ``python -m scripts.bench.<module>``.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from common.testing.procfs import cpu_reader, cpu_seconds, descendants, rss_anon_bytes, rss_bytes

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACT_DIR = REPO_ROOT / "artifacts" / "perf"
# The load average when the benchmark process started (this module is imported first thing): with the one
# at write time, a reader can tell a run that shared the cores with other work.
try:
    _LOAD_AT_START: float | None = os.getloadavg()[0]
except OSError:
    _LOAD_AT_START = None
_VERSIONED_PACKAGES = ("grpcio", "protobuf", "lmdb", "orjson", "sanic", "websockets", "httpx", "uvloop", "locust")


# --------------------------------------------------------------------------------------------- machine

def _read_first(path: str, prefix: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_description() -> dict[str, Any]:
    """What ran the benchmark: CPU model and count, memory, OS, Python and key library versions, git commit,
    and the 1-minute load average when the benchmark started and now (high load = other work shared the
    cores; on 2 cores anything above ~2 means the figures are pessimistic)."""
    mem_kib = _read_first("/proc/meminfo", "MemTotal")
    versions: dict[str, str | None] = {}
    for pkg in _VERSIONED_PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        load1 = None
    return {
        "cpu_model": _read_first("/proc/cpuinfo", "model name") or platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "mem_total_gib": round(int(mem_kib.split()[0]) / 2**20, 1) if mem_kib else None,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": versions,
        "git_commit": _git_commit(),
        "load_avg_1m_at_start": round(_LOAD_AT_START, 2) if _LOAD_AT_START is not None else None,
        "load_avg_1m_at_end": round(load1, 2) if load1 is not None else None,
    }


# --------------------------------------------------------------------------------------------- artifacts

def artifact_path(name: str, directory: Path | None = None) -> Path:
    """Where the artifact ``name`` lives: ``artifacts/perf/<name>.json``."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad artifact name {name!r}")
    return (directory or ARTIFACT_DIR) / f"{name}.json"


def write_artifact(name: str, results: Mapping[str, Any], *, directory: Path | None = None,
                   command: str | None = None, mode: str | None = None) -> Path:
    """Writes ``results`` to ``artifacts/perf/<name>.json`` inside the common envelope; returns the path.

    The write is atomic (temp file + rename), so a reader (the regression check, the README table) never
    sees a half-written artifact.
    """
    path = artifact_path(name, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "name": name,
        "schema": 1,
        "created_unix": round(time.time(), 3),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command or " ".join([Path(sys.executable).name, *sys.argv]),
        "mode": mode,
        "machine": machine_description(),
        "results": dict(results),
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
                                 | orjson.OPT_SERIALIZE_DATACLASS | orjson.OPT_NON_STR_KEYS))
    tmp.replace(path)
    return path


def read_artifact(name_or_path: str | Path, directory: Path | None = None) -> dict[str, Any]:
    """Loads an artifact by name (``pipeline``) or path."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = artifact_path(str(name_or_path), directory)
    return dict(orjson.loads(path.read_bytes()))


# --------------------------------------------------------------------------------------------- statistics

def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values`` with linear interpolation between closest ranks
    (numpy's default); NaN for an empty sequence. ``values`` need not be sorted."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    if not values:
        return math.nan
    data = sorted(values)
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summarize(values: Sequence[float], digits: int = 3) -> dict[str, float | int | None]:
    """Count, mean, p50, p90, p99 and max of ``values`` (None when empty), rounded to ``digits``."""
    if not values:
        return {"n": 0, "mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    data = sorted(values)
    return {
        "n": len(data),
        "mean": round(sum(data) / len(data), digits),
        "p50": round(percentile(data, 50), digits),
        "p90": round(percentile(data, 90), digits),
        "p99": round(percentile(data, 99), digits),
        "max": round(data[-1], digits),
    }


def linear_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ``ys`` over ``xs`` (0.0 with fewer than two distinct x values)."""
    n = len(xs)
    if n != len(ys):
        raise ValueError("xs and ys differ in length")
    if n < 2:
        return 0.0
    mx = sum(xs) / n
    my = sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def ratio(numerator: float | None, denominator: float | None, digits: int = 3) -> float | None:
    """numerator / denominator rounded, or None when either is missing or the denominator is not positive."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return round(numerator / denominator, digits)


# --------------------------------------------------------------------------------------------- /proc sampling
# (the readers of one process: common/testing/procfs.py)

def tree_cpu_seconds(pid: int, *, exact: bool = False) -> float | None:
    """:func:`cpu_seconds` of ``pid`` and all its descendants (processd with its analysis worker processes: its
    main process alone is ~70% of its CPU). A descendant that exits between two readings takes its CPU with it.
    ``exact``: :func:`cpu_seconds_exact` instead (nanoseconds, not 10 ms ticks, of live threads: for short spans over
    which no thread exits); ticks when the kernel keeps no schedstat."""
    read = cpu_reader(exact)
    return _sum_or_none(read(p) for p in _tree(pid, True))


def _tree(pid: int, tree: bool) -> list[int]:
    return [pid, *descendants(pid)] if tree else [pid]


def _sum_or_none(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


@dataclass
class RssSeries:
    """RSS samples of one process: seconds since sampling started and MiB."""

    name: str
    pid: int
    #: Sum over the process and its descendants (e.g. a launcher script and the real binary it runs).
    tree: bool = False
    t_s: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    anon_mib: list[float] = field(default_factory=list)
    cpu_s_start: float | None = None
    cpu_s_end: float | None = None

    def summary(self, warmup_fraction: float = 0.25) -> dict[str, Any]:
        """Start/max/end RSS, the slopes of RSS and of anonymous RSS in MiB per minute after the first
        ``warmup_fraction`` of the run (allocators and bounded caches fill up first, which is not growth), and
        CPU seconds used meanwhile."""
        if not self.rss_mib:
            return {"pid": self.pid, "samples": 0}
        cut = int(len(self.t_s) * warmup_fraction)
        xs, ys = self.t_s[cut:], self.rss_mib[cut:]
        anon = self.anon_mib[cut:]
        cpu = (self.cpu_s_end - self.cpu_s_start
               if self.cpu_s_start is not None and self.cpu_s_end is not None else None)
        return {
            "pid": self.pid,
            "samples": len(self.rss_mib),
            "start_mib": round(self.rss_mib[0], 1),
            "max_mib": round(max(self.rss_mib), 1),
            "end_mib": round(self.rss_mib[-1], 1),
            "max_anon_mib": round(max(self.anon_mib), 1) if self.anon_mib else None,
            "end_anon_mib": round(self.anon_mib[-1], 1) if self.anon_mib else None,
            "slope_mib_per_min_after_warmup": round(linear_slope(xs, ys) * 60.0, 3),
            "anon_slope_mib_per_min_after_warmup": (round(linear_slope(xs, anon) * 60.0, 3)
                                                    if len(anon) == len(xs) else None),
            "cpu_s": round(cpu, 2) if cpu is not None else None,
        }


class RssSampler:
    """Samples RSS (and CPU time at start/stop) of named processes from ``/proc`` in a background thread.

    ``RssSampler({"processd": pid, ...}, interval_s=1.0)`` as a context manager, or :meth:`start` /
    :meth:`stop`. A process that exits simply stops getting samples. Reading /proc costs microseconds per
    sample, so sampling does not disturb the benchmark.
    """

    def __init__(self, pids: Mapping[str, int], interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.series = {name: RssSeries(name, pid) for name, pid in pids.items()}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def add(self, name: str, pid: int, tree: bool = False) -> None:
        """Samples one more process (also while running); ``tree`` sums it with its descendants."""
        series = RssSeries(name, pid, tree=tree)
        if self._thread is not None:
            series.cpu_s_start = _sum_or_none(cpu_seconds(p) for p in _tree(pid, tree))
        self.series[name] = series

    def _sample(self) -> None:
        now = time.monotonic() - self._t0
        for series in list(self.series.values()):
            pids = _tree(series.pid, series.tree)
            rss = _sum_or_none(rss_bytes(p) for p in pids)
            anon = _sum_or_none(rss_anon_bytes(p) for p in pids)
            if rss is not None and anon is not None:
                series.t_s.append(round(now, 3))
                series.rss_mib.append(rss / 2**20)
                series.anon_mib.append(anon / 2**20)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def start(self) -> RssSampler:
        if self._thread is not None:
            return self
        self._t0 = time.monotonic()
        for series in self.series.values():
            series.cpu_s_start = _sum_or_none(cpu_seconds(p) for p in _tree(series.pid, series.tree))
        self._sample()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Takes a last sample and stops; idempotent."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join()
        self._sample()
        for series in self.series.values():
            series.cpu_s_end = _sum_or_none(cpu_seconds(p) for p in _tree(series.pid, series.tree))

    def __enter__(self) -> RssSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def summary(self, warmup_fraction: float = 0.25) -> dict[str, Any]:
        """Per-process summary (see :meth:`RssSeries.summary`)."""
        return {name: s.summary(warmup_fraction) for name, s in self.series.items()}

    def timeline(self, max_points: int = 120) -> dict[str, dict[str, list[float]]]:
        """Per-process samples, thinned to at most ``max_points`` each, for plotting from the artifact."""
        out: dict[str, dict[str, list[float]]] = {}
        for name, s in self.series.items():
            step = max(1, math.ceil(len(s.t_s) / max_points))
            out[name] = {"t_s": s.t_s[::step], "rss_mib": [round(v, 1) for v in s.rss_mib[::step]],
                         "anon_mib": [round(v, 1) for v in s.anon_mib[::step]]}
        return out


# --------------------------------------------------------------------------------------------- rate search

@dataclass
class StepResult:
    """Outcome of running the system at one target rate."""

    target_rate: float
    offered: int          # transactions the generator tried to send
    accepted: int         # transactions the node (or the first stage) accepted
    delivered: int        # transactions that came out at the far end
    duration_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def drop_ratio(self) -> float:
        """Share of accepted transactions that never came out (0 when nothing was accepted)."""
        return 0.0 if self.accepted <= 0 else max(0, self.accepted - self.delivered) / self.accepted

    @property
    def achieved_rate(self) -> float:
        """Delivered transactions per second."""
        return self.delivered / self.duration_s if self.duration_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["drop_ratio"] = round(self.drop_ratio, 6)
        out["achieved_rate"] = round(self.achieved_rate, 1)
        out["accepted_rate"] = round(self.accepted / self.duration_s, 1) if self.duration_s > 0 else 0.0
        return out


def stepped_rate_search(run_step: Callable[[float], StepResult], rates: Iterable[float],
                        max_drop_ratio: float = 0.005, min_accept_fraction: float = 0.5,
                        log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Runs ``run_step`` at each target rate in increasing order and returns the highest passing one.

    A step passes when its drop ratio is below ``max_drop_ratio``. The search stops at the first failing
    step, or when the source accepted less than ``min_accept_fraction`` of the offered rate (the node, not
    the pipeline, is then the limit: going higher measures the node only).
    """
    steps: list[StepResult] = []
    best: StepResult | None = None
    stop_reason = "all rates passed"
    for rate in sorted(rates):
        step = run_step(rate)
        steps.append(step)
        if log:
            log(f"rate {rate:g}/s: accepted {step.accepted} delivered {step.delivered} "
                f"drop {step.drop_ratio:.4%} achieved {step.achieved_rate:.0f}/s")
        if step.drop_ratio >= max_drop_ratio:
            stop_reason = f"drop ratio {step.drop_ratio:.4%} >= {max_drop_ratio:.2%} at {rate:g}/s"
            break
        best = step
        if step.offered and step.accepted < min_accept_fraction * rate * step.duration_s:
            stop_reason = f"source saturated at {rate:g}/s (accepted {step.accepted / step.duration_s:.0f}/s)"
            break
    return {
        "max_drop_ratio": max_drop_ratio,
        "best_target_rate": best.target_rate if best else None,
        "best_achieved_rate": round(best.achieved_rate, 1) if best else None,
        "best_drop_ratio": round(best.drop_ratio, 6) if best else None,
        "stop_reason": stop_reason,
        "steps": [s.as_dict() for s in steps],
    }


def now_ns() -> int:
    """Wall-clock unix nanoseconds (the clock ingestd stamps ``first_seen_unix_ns`` with)."""
    return time.time_ns()
