"""Shared helpers of the exporter tests: the log as processd serves it, and what ClickHouse holds of it."""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Sequence

import grpc
import pytest

from common.pb.v1 import events_pb2, ingest_pb2, query_pb2, query_pb2_grpc, tx_pb2
from common.testing.clickhouse import clickhouse_binary
from common.testing.synth import synthetic_envelopes
from processd.export.mapper import KIND_NAMES
from processd.export.schema import DATA_TABLES, EVENTS

#: Event kind -> the table holding its details.
KIND_TABLE = {1: "transactions", 2: "features", 3: "opportunities", 4: "tx_sources"}
CHAINS = (1, 137, 56)


def require_clickhouse() -> str:
    """The clickhouse-server binary; skips without it (fails under CI=true, where scripts/_env.sh installs it)."""
    binary = clickhouse_binary()
    if binary is None or not os.access(binary, os.X_OK):
        message = "clickhouse-server not installed (scripts/_env.sh installs Debian's clickhouse-server as root)"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"{message}; CI=true, so the export must be tested")
        pytest.skip(message)
    return binary


def log_events(addr: str) -> list[events_pb2.Event]:
    """Every event of processd's log, in seq order (ScanEvents pages)."""
    out: list[events_pb2.Event] = []
    with grpc.insecure_channel(addr, options=[("grpc.max_receive_message_length", 64 << 20)]) as ch:
        stub = query_pb2_grpc.QueryStub(ch)
        seq = 1
        while True:
            resp = stub.ScanEvents(query_pb2.ScanEventsRequest(from_seq_id=seq, limit=5000), timeout=30)
            out.extend(resp.events)
            seq = resp.next_seq_id
            if seq > resp.last_seq_id:
                return out


def expected_keys(events: Sequence[events_pb2.Event]) -> dict[str, set[tuple[int, int]]]:
    """Per table, the (chain_id, seq) rows the export of ``events`` must hold."""
    want: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for ev in events:
        want[EVENTS.name].add((ev.chain_id, ev.seq_id))
        want[KIND_TABLE[ev.kind]].add((ev.chain_id, ev.seq_id))
    return want


def check_export(query, database: str, events: Sequence[events_pb2.Event]) -> None:  # type: ignore[no-untyped-def]
    """Asserts every table equals the log per chain: the same (chain_id, seq) set, with no duplicate row even
    before merges (count() == uniqExact), and the same with FINAL."""
    want = expected_keys(events)
    for table in DATA_TABLES:
        rows = query(f"SELECT chain_id, seq FROM {database}.{table.name}")
        counts = Counter((int(c), int(s)) for c, s in rows)
        dups = {k: n for k, n in counts.items() if n > 1}
        assert not dups, f"{table.name}: duplicate rows {sorted(dups.items())[:10]}"
        have = set(counts)
        missing, extra = want[table.name] - have, have - want[table.name]
        assert not missing and not extra, (f"{table.name}: missing {sorted(missing)[:10]} ({len(missing)}), "
                                           f"extra {sorted(extra)[:10]} ({len(extra)})")
        final = query(f"SELECT chain_id, count(), uniqExact(seq) FROM {database}.{table.name} FINAL GROUP BY chain_id")
        per_chain = Counter(c for c, _ in want[table.name])
        assert {int(c): (int(n), int(u)) for c, n, u in final} == {c: (n, n) for c, n in per_chain.items()}
    kinds = query(f"SELECT seq, kind FROM {database}.events")
    assert {int(s): k for s, k in kinds} == {ev.seq_id: KIND_NAMES[ev.kind] for ev in events}


def envelopes(count: int, seed: int = 7, start: int = 0) -> list[tx_pb2.TxEnvelope]:
    return synthetic_envelopes(count, seed=seed, chain_ids=CHAINS, start=start)


def sighting_batch(envs: Sequence[tx_pb2.TxEnvelope], batch_seq: int, source_id: str = "second") -> ingest_pb2.TxBatch:
    """A batch of later-source sightings of stored transactions (each becomes a TX_SOURCE_SEEN event)."""
    return ingest_pb2.TxBatch(session_id="sightings", batch_seq=batch_seq, sightings=[
        tx_pb2.TxSighting(chain_id=e.chain_id, hash=e.hash, source_id=source_id,
                          seen_unix_ns=e.first_seen_unix_ns + 5_000) for e in envs])
