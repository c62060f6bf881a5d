"""Shared helpers of the exporter tests: the log as processd serves it, and what ClickHouse holds of it."""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Sequence

import grpc
import pytest

from common.pb.v1 import block_pb2, events_pb2, ingest_pb2, pool_pb2, query_pb2, query_pb2_grpc, tx_pb2
from common.testing.clickhouse import clickhouse_binary
from common.testing.ingest_push import push_batches, push_envelopes
from common.testing.synth import synthetic_envelopes
from processd.export.mapper import KIND_NAMES
from processd.export.schema import DATA_TABLES, EVENTS

#: Event kind -> the table holding its details (a kind not listed has none: only its events row).
KIND_TABLE = {1: "transactions", 2: "features", 3: "opportunities", 4: "tx_sources", 5: "inclusions",
              6: "replacements", 7: "drops", 8: "blocks", 9: "reorgs", 10: "pool_states"}
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
        table = KIND_TABLE.get(ev.kind)  # a kind without a detail table: its events row only
        if table is not None:
            want[table].add((ev.chain_id, ev.seq_id))
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


def _u(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def block_batch(envs: Sequence[tx_pb2.TxEnvelope], batch_seq: int, per_block: int = 7,
                session_id: str = "blocks") -> ingest_pb2.TxBatch:
    """A batch of blocks (BLOCK events) per chain, each including ``per_block`` of ``envs`` (seen pending: the
    envelopes are stored first) and one transaction never seen, seen by ingestd 2 s after the last of them; every
    third block without a base fee, every second truncated (tx_count one more than sent)."""
    blocks = []
    for chain in sorted({e.chain_id for e in envs}):
        mine = [e for e in envs if e.chain_id == chain]
        for n, start in enumerate(range(0, len(mine), per_block)):
            number = 1000 * batch_seq + n
            hashes = [e.hash for e in mine[start:start + per_block]] + [bytes([chain % 256, n % 256, 9]) * 10 + b"\0\0"]
            seen = max(e.first_seen_unix_ns for e in mine[start:start + per_block]) + 2 * 10**9 + n * 10**6
            blocks.append(block_pb2.BlockEnvelope(
                chain_id=chain, number=number, hash=number.to_bytes(8, "big") * 3 + chain.to_bytes(8, "big"),
                parent_hash=(number - 1).to_bytes(8, "big") * 3 + chain.to_bytes(8, "big"),
                timestamp=seen // 10**9 - 1, base_fee=b"" if n % 3 == 2 else _u(10**9 + number), source_id="node",
                seen_unix_ns=seen, tx_count=len(hashes) + n % 2, truncated=bool(n % 2),
                txs=[block_pb2.IncludedTx(hash=h, index=i, sender=b"\x05" * 20, nonce=i, gas_used=21000,
                                          status=block_pb2.TX_STATUS_OK) for i, h in enumerate(hashes)]))
    return ingest_pb2.TxBatch(session_id=session_id, batch_seq=batch_seq, blocks=blocks)


def pool_batch(batch_seq: int, pairs: int = 5, session_id: str = "pools") -> ingest_pb2.TxBatch:
    """A batch of pool states (POOL_STATE events): ``pairs`` pairs per chain, reserves up to uint256's max."""
    pools = []
    for chain in CHAINS:
        for p in range(pairs):
            reserve0 = 2**256 - 1 if p == 0 else 10**18 * (p + 1) + batch_seq
            pools.append(pool_pb2.PoolState(
                chain_id=chain, pair=bytes([p + 1, chain % 256]) * 10, factory=b"\x02" * 20, token0=b"\x03" * 20,
                token1=bytes([4 + p]) * 20, reserve0=_u(reserve0), reserve1=_u(7 * p + batch_seq),
                block_number=batch_seq, block_hash=batch_seq.to_bytes(8, "big") * 4,
                source=pool_pb2.POOL_STATE_SOURCE_SYNC_LOG if p % 2 else pool_pb2.POOL_STATE_SOURCE_GET_RESERVES))
    return ingest_pb2.TxBatch(session_id=session_id, batch_seq=batch_seq, pools=pools)


def first_blocks(envs: Sequence[tx_pb2.TxEnvelope], batch_seq: int = 1) -> ingest_pb2.TxBatch:
    """One block per chain of ``envs`` (number 1, one transaction never seen, its timestamp the first sighting of
    the earliest of ``envs``): processd tracks the lifecycle of a chain's transactions from its first block, so
    the transactions stored after it get TX_INCLUDED (and TX_DROPPED) events."""
    start = min(e.first_seen_unix_ns for e in envs) // 10**9
    return ingest_pb2.TxBatch(session_id="first-blocks", batch_seq=batch_seq, blocks=[
        block_pb2.BlockEnvelope(chain_id=chain, number=1, hash=b"\x0f" * 24 + chain.to_bytes(8, "big"),
                                parent_hash=b"\x0e" * 32, timestamp=start, base_fee=_u(10**9), source_id="node",
                                seen_unix_ns=start * 10**9, tx_count=1,
                                txs=[block_pb2.IncludedTx(hash=b"\x0d" * 24 + chain.to_bytes(8, "big"), index=0,
                                                          sender=b"\x06" * 20, status=block_pb2.TX_STATUS_OK)])
        for chain in sorted({e.chain_id for e in envs})])


async def fill_query_log(addr: str) -> None:
    """The log the documented queries run on (tests/export/test_queries_doc.py, and on a newer ClickHouse engine
    tests/export/test_newer_server_sql.py): a first block per chain, 1,500 transactions, sightings from two more
    sources, blocks including every other transaction (their TX_INCLUDED events), and pool states."""
    envs = envelopes(1500, seed=3)
    await push_batches(addr, [first_blocks(envs)])
    await push_envelopes(addr, envs)
    await push_batches(addr, [sighting_batch(envs[::3], 1), sighting_batch(envs[1::5], 2, "third")])
    await push_batches(addr, [block_batch(envs[::2], 1), pool_batch(1)])
