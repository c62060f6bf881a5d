"""The cyclic collector's settings of mempulse's Python processes that hold many long-lived objects: processd, its
lifecycle process, the exporter and its mapping workers.

Their hot paths allocate (and free) tens of thousands of short-lived tuples, messages and column lists per group
commit or per page, and create no reference cycles. With CPython's default thresholds (700, 10, 10) the collector
ran every few hundred transactions (or rows) and its full collections walked every long-lived object (decoder
registries, read-model windows, the lifecycle tracker's tuples, a batch held for its insert): about 10% of
processd's CPU and 8% of the exporter's (docs/processd.md, docs/export.md#benchmark). Rarer collections cost no
memory growth there; memory stays bounded by the read models', queues' and batches' bounds.
"""

from __future__ import annotations

import gc

#: Collector thresholds (generation 0 allocations, then generations 1 and 2 collections).
GC_THRESHOLDS = (50_000, 50, 100)


def tune_gc() -> None:
    """Moves everything allocated so far (start-up) out of the collector's reach and makes collections rarer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
