"""gatewayd's lock-free request stats exposed through the Prometheus text format."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from gatewayd.metrics import GatewayMetrics


def test_request_counts_and_histogram_in_exposition() -> None:
    m = GatewayMetrics()
    m.observe("transactions", 200, 0.001)  # exactly on a bound: counted in that bucket (le)
    m.observe("transactions", 200, 0.2)
    m.observe("transactions", 429, 0.0001)
    m.count("events_stream", 200)
    m.error("rate_limited")
    families = {f.name: f for f in text_string_to_metric_families(m.render().decode())}
    requests = {
        (s.labels["route"], s.labels["status"]): s.value
        for s in families["mempulse_gatewayd_requests"].samples
        if s.name.endswith("_total")
    }
    assert requests == {("transactions", "200"): 2, ("transactions", "429"): 1, ("events_stream", "200"): 1}
    buckets = {
        s.labels["le"]: s.value
        for s in families["mempulse_gatewayd_request_duration_seconds"].samples
        if s.name.endswith("_bucket")
    }
    assert buckets["0.001"] == 2 and buckets["0.1"] == 2 and buckets["0.25"] == 3 and buckets["+Inf"] == 3
    errors = [s for s in families["mempulse_gatewayd_errors"].samples if s.name.endswith("_total")]
    assert errors[0].labels == {"code": "rate_limited"} and errors[0].value == 1
