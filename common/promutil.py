"""Prometheus helpers shared by the daemons: the standard process collectors and counters read at scrape time.

Metric naming (docs/operations.md#metrics): every series of a daemon starts with its prefix
(``mempulse_ingestd_``, ``mempulse_processd_``, ``mempulse_gatewayd_``, each defined once in the daemon's
``metrics`` module), counters end in ``_total``, durations are in seconds and sizes in bytes, and labelled series
whose label values are known at start are created at zero. Beside them every registry a daemon serves carries
prometheus-client's ``process_*`` (RSS, CPU, open fds of the serving process), ``python_info`` and
``python_gc_*`` collectors.
"""

from __future__ import annotations

import bisect
import functools
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector


def add_process_collectors(registry: CollectorRegistry) -> None:
    """Registers ``process_*`` (RSS, CPU seconds, open fds, ... of this process), ``python_info`` and
    ``python_gc_*`` on ``registry``, and turns off prometheus-client's ``<name>_created`` series.

    The daemons keep registries of their own (tests run several servers in one process), so the collectors
    prometheus-client puts on its global registry would not be served: each registry gets its own. They read
    ``/proc/self`` at scrape time, so they describe the process that serves the scrape.

    The ``_created`` series (a counter's or histogram's creation time, written as a separate gauge family in
    the text format) double the series count for nothing Prometheus uses, and are gauges named after a counter:
    the switch is process-wide, and every daemon's registry goes through here.
    """
    disable_created_metrics()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


class FunctionCounter(Collector):
    """A counter whose value is read from ``value()`` at scrape time (a count another object keeps).

    For counts that are plain attributes of the object that owns them (restarts, evictions): exposing them as
    a gauge with ``set_function`` would type a counter as a gauge, so ``rate()`` would not handle its resets.
    """

    def __init__(self, name: str, documentation: str, value: Callable[[], float] = lambda: 0,
                 registry: CollectorRegistry | None = None) -> None:
        self.name = name.removesuffix("_total")
        self.documentation = documentation
        self.value = value
        if registry is not None:
            registry.register(self)

    def set_function(self, value: Callable[[], float]) -> None:
        """Reads the count from ``value()`` from now on (it is 0 until then)."""
        self.value = value

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation)

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.value())


def observe_many(histogram: Any, values: list[float]) -> None:
    """``histogram.observe(v)`` for each of ``values`` (a Histogram, or a labelled child of one), with one
    increment per bucket touched and one of the sum: a commit may hold thousands of observations (processd's
    inclusion latencies), and ``observe`` takes the bucket's lock and walks the bounds once per value. Uses the
    client's per-bucket values (``_upper_bounds``, ``_buckets``, ``_sum``, as in prometheus-client 0.2x); with
    another layout it falls back to ``observe`` (``tests/test_common.py`` holds both to the same samples)."""
    bounds, buckets, total = (getattr(histogram, name, None) for name in ("_upper_bounds", "_buckets", "_sum"))
    if not isinstance(bounds, list) or not isinstance(buckets, list) or total is None or len(bounds) != len(buckets):
        for value in values:
            histogram.observe(value)
        return
    for index, count in Counter(map(functools.partial(bisect.bisect_left, bounds), values)).items():
        buckets[index].inc(count)  # bisect_left: the first bound >= the value, the bucket observe() picks
    total.inc(sum(values))
