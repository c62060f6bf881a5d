"""The ingest benchmark's metric arithmetic (histogram quantiles, deltas between scrapes, settledness)."""

from __future__ import annotations

import math

from scripts.bench.ingest_bench import delta, hist_quantile, settled

L = {"chain": "polygon"}


def _hist(counts: dict[float, float]) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {"h_bucket": [({**L, "le": str(le) if not math.isinf(le) else "+Inf"}, c) for le, c in counts.items()]}


def test_quantile_interpolates_within_the_bucket() -> None:
    m = _hist({0.01: 0, 0.02: 50, 0.05: 100, math.inf: 100})
    assert hist_quantile(m, "h", 0.5, chain="polygon") == 0.02
    assert abs(hist_quantile(m, "h", 0.75, chain="polygon") - 0.035) < 1e-9  # type: ignore[operator]
    assert hist_quantile(m, "h", 0.5, chain="other") is None


def test_quantile_of_a_delta_ignores_earlier_observations() -> None:
    before = _hist({0.01: 100, 0.1: 100, math.inf: 100})
    after = _hist({0.01: 100, 0.1: 200, math.inf: 200})
    assert hist_quantile(after, "h", 0.5, chain="polygon") == 0.01
    assert hist_quantile(after, "h", 0.5, since=before, chain="polygon") > 0.01  # type: ignore[operator]
    d = delta({"x_total": [(L, 7.0)], "g": [(L, 3.0)]}, {"x_total": [(L, 5.0)], "g": [(L, 1.0)]})
    assert d == {"x_total": [(L, 2.0)], "g": [(L, 3.0)]}  # counters subtract, gauges stay


def test_settled_requires_every_seen_tx_accounted_and_nothing_queued() -> None:
    m = {"mempulse_ingestd_seen_total": [(L, 10.0)], "mempulse_ingestd_delivered_total": [(L, 7.0)],
         "mempulse_ingestd_drops_total": [({**L, "reason": "gone_before_fetch", "source": "s"}, 3.0),
                                 ({**L, "reason": "dedup", "source": "s"}, 9.0)],
         "mempulse_ingestd_unacked_batches": [(L, 0.0)],
         "mempulse_ingestd_queue_depth": [({**L, "queue": "fetch"}, 0.0)]}
    assert settled(m, "polygon")
    m["mempulse_ingestd_unacked_batches"] = [(L, 1.0)]
    assert not settled(m, "polygon")
    m["mempulse_ingestd_unacked_batches"] = [(L, 0.0)]
    m["mempulse_ingestd_delivered_total"] = [(L, 6.0)]
    assert not settled(m, "polygon")
