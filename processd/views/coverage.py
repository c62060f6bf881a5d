"""Decode coverage by selector: how the recent calls of each selector decoded (decoded / failed / unknown), so users
see which selectors remain unknown and which a user ABI (``processd --abi-dir``) would cover.

Computed on demand from a chain's recent-features window (``recent_features`` transactions, rebuilt from the log at
start), not counted per commit: the commit path does no per-transaction work in the read models
(:mod:`processd.views.windows`), and the window needs no new storage counter, so the event log is unchanged. The
answer is bounded twice: the window's size, and the ``top_n`` busiest selectors returned (at most
:data:`MAX_COVERAGE_SELECTORS`).
"""

from __future__ import annotations

from collections.abc import Iterable

from common.limits import MAX_COVERAGE_SELECTORS
from common.pb.v1 import events_pb2

__all__ = ["MAX_COVERAGE_SELECTORS", "selector_coverage"]


def selector_coverage(features: Iterable[events_pb2.TxFeatures], top_n: int) -> list[events_pb2.SelectorCoverage]:
    """The ``top_n`` (at most :data:`MAX_COVERAGE_SELECTORS`) selectors most called in ``features``, busiest first
    (ties by selector), with their decoded / failed / unknown counts. Calls without calldata have no selector and
    are left out."""
    counts: dict[bytes, list[int]] = {}
    methods: dict[bytes, str] = {}
    for f in features:
        selector = f.selector
        if not selector:
            continue
        row = counts.get(selector)
        if row is None:
            row = counts[selector] = [0, 0, 0]
        if f.decoded:
            row[0] += 1
            methods.setdefault(selector, f.method)
        elif f.method:  # a known selector: the decoder named the method, its arguments did not decode
            row[1] += 1
        else:
            row[2] += 1
    busiest = sorted(counts.items(), key=lambda item: (-sum(item[1]), item[0]))[:min(top_n, MAX_COVERAGE_SELECTORS)]
    return [events_pb2.SelectorCoverage(selector=s, method=methods.get(s, ""), decoded=d, failed=f, unknown=u)
            for s, (d, f, u) in busiest]
