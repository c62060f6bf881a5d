"""Every example query of docs/export.md runs against a real ClickHouse holding an export of a synthetic log, and
returns what the same figure computed in Python from the log's events says (an independent oracle per query)."""

from __future__ import annotations

import asyncio
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from common.pb.v1 import block_pb2, events_pb2
from common.testing.clickhouse import ClickHouseServer
from processd.api.server import ProcessdServer
from processd.export.config import ExportConfig
from processd.export.exporter import Exporter
from tests.export._helpers import fill_query_log, log_events
from tests.processd._helpers import make_config

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "export.md"
Rows = list[tuple[Any, ...]]


def doc_queries() -> dict[str, str]:
    """``-- query: <name>`` SQL blocks of docs/export.md, by name."""
    blocks = re.findall(r"```sql\n-- query: (\w+)\n(.*?)```", DOC.read_text(), re.S)
    return {name: sql for name, sql in blocks}


@pytest.fixture(scope="module")
def exported(clickhouse: ClickHouseServer, tmp_path_factory: pytest.TempPathFactory) -> list[events_pb2.Event]:
    """A log of 1500 transactions on three chains (plus later sightings, blocks including half of them and pool
    states) exported into database ``mempulse``."""

    async def build() -> list[events_pb2.Event]:
        server = ProcessdServer(make_config(tmp_path_factory.mktemp("lmdb"), analysis_workers=0))
        await server.start()
        try:
            addr = f"127.0.0.1:{server.port}"
            await fill_query_log(addr)
            cfg = replace(ExportConfig(), processd=addr, clickhouse_host=clickhouse.host,
                          clickhouse_port=clickhouse.port, exit_at_head=True)
            async with Exporter(cfg) as exporter:
                await asyncio.wait_for(exporter.wait_closed(), 60)
            return await asyncio.to_thread(log_events, addr)
        finally:
            await server.stop(grace_s=0.5)

    return asyncio.run(build())


# ---- oracles: the same figures from the log's events --------------------------------------------------------

def _u(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def _hour(ns: int) -> int:
    return ns // 10**9 // 3600 * 3600


def _qexact(values: Sequence[float], level: float) -> float:
    """ClickHouse's quantileExact: the element at index floor(level * n) of the sorted values."""
    ordered = sorted(values)
    return ordered[min(int(level * len(ordered)), len(ordered) - 1)]


def _by_kind(events: Sequence[events_pb2.Event], kind: int) -> list[events_pb2.Event]:
    return [e for e in events if e.kind == kind]


def _txs(events: Sequence[events_pb2.Event]) -> dict[tuple[int, bytes], Any]:
    return {(e.chain_id, e.tx_hash): e.tx_seen.tx for e in _by_kind(events, 1)}


def transactions_by_chain_hour(events: Sequence[events_pb2.Event]) -> Rows:
    counts = Counter((e.chain_id, _hour(e.first_seen_unix_ns)) for e in _by_kind(events, 1))
    return sorted((c, h, n) for (c, h), n in counts.items())


def decode_coverage_by_selector(events: Sequence[events_pb2.Event]) -> Rows:
    txs: Counter[str] = Counter()
    decoded: Counter[str] = Counter()
    for e in _by_kind(events, 2):
        f = e.tx_decoded.features
        if f.selector:
            txs[f.selector.hex()] += 1
            decoded[f.selector.hex()] += int(f.decoded)
    rows = [(s, n, decoded[s], round(decoded[s] / n, 4)) for s, n in txs.items()]
    return sorted(rows, key=lambda r: (-r[1], r[0]))[:20]


def top_opportunity_senders(events: Sequence[events_pb2.Event]) -> Rows:
    txs = _txs(events)
    count: Counter[str] = Counter()
    best: dict[str, int] = {}
    for e in _by_kind(events, 3):
        sender = txs[(e.chain_id, e.tx_hash)].sender.hex()
        count[sender] += 1
        best[sender] = max(best.get(sender, 0), e.opp_detected.opportunity.score)
    return sorted(((s, n, best[s]) for s, n in count.items()), key=lambda r: (-r[1], r[0]))[:10]


def sandwich_volume_by_router(events: Sequence[events_pb2.Event]) -> Rows:
    txs = _txs(events)
    count: Counter[str] = Counter()
    volume: dict[str, float] = defaultdict(float)
    for e in _by_kind(events, 3):
        o = e.opp_detected.opportunity
        if o.kind == events_pb2.OPPORTUNITY_KIND_SANDWICH_CANDIDATE and o.HasField("notional_wei"):
            router = txs[(e.chain_id, e.tx_hash)].to.hex()
            count[router] += 1
            volume[router] += float(_u(o.notional_wei))
    rows = [(r, n, round(volume[r] / 1e18, 6)) for r, n in count.items()]
    return sorted(rows, key=lambda r: (-r[2], r[0]))[:10]


def opportunities_by_kind_protocol(events: Sequence[events_pb2.Event]) -> Rows:
    scores: dict[tuple[str, str], list[int]] = defaultdict(list)
    for e in _by_kind(events, 3):
        o = e.opp_detected.opportunity
        kind = events_pb2.OpportunityKind.Name(o.kind).removeprefix("OPPORTUNITY_KIND_")
        scores[(kind, o.protocol)].append(o.score)
    rows = [(k, p, len(s), round(sum(s) / len(s), 2), _qexact(s, 0.9)) for (k, p), s in scores.items()]
    return sorted(rows, key=lambda r: (-r[2], r[0], r[1]))


def value_by_chain_hour(events: Sequence[events_pb2.Event]) -> Rows:
    count: Counter[tuple[int, int]] = Counter()
    wei: dict[tuple[int, int], float] = defaultdict(float)
    for e in _by_kind(events, 1):
        key = (e.chain_id, _hour(e.first_seen_unix_ns))
        value = _u(e.tx_seen.tx.value)
        count[key] += int(value != 0)
        wei[key] += float(value)
    return sorted((c, h, count[(c, h)], round(wei[(c, h)] / 1e18, 6)) for (c, h) in wei)


def gas_price_by_chain_hour(events: Sequence[events_pb2.Event]) -> Rows:
    prices: dict[tuple[int, int], list[float]] = defaultdict(list)
    for e in _by_kind(events, 2):
        prices[(e.chain_id, _hour(e.first_seen_unix_ns))].append(_u(e.tx_decoded.features.gas_price) / 1e9)
    return sorted((c, h, [_qexact(v, q) for q in (0.5, 0.9, 0.99)]) for (c, h), v in prices.items())


def source_delay(events: Sequence[events_pb2.Event]) -> Rows:
    delays: dict[tuple[int, str], list[int]] = defaultdict(list)
    for e in _by_kind(events, 4):
        s = e.tx_source_seen.sighting
        delays[(e.chain_id, s.source_id)].append((s.seen_unix_ns - e.first_seen_unix_ns) // 1000)
    return sorted((c, s, len(v), _qexact(v, 0.5)) for (c, s), v in delays.items())


def top_token_pairs(events: Sequence[events_pb2.Event]) -> Rows:
    swaps = [f for e in _by_kind(events, 2)
             if (f := e.tx_decoded.features).category == events_pb2.TX_CATEGORY_SWAP and f.token_in and f.token_out]
    pairs = Counter((f.token_in.hex(), f.token_out.hex()) for f in swaps)
    return sorted(((a, b, n) for (a, b), n in pairs.items()), key=lambda r: (-r[2], r[0], r[1]))[:10]


def protocol_category_mix(events: Sequence[events_pb2.Event]) -> Rows:
    lens: dict[tuple[str, str], list[int]] = defaultdict(list)
    for e in _by_kind(events, 2):
        f = e.tx_decoded.features
        lens[(f.protocol, events_pb2.TxCategory.Name(f.category).removeprefix("TX_CATEGORY_"))].append(f.calldata_len)
    rows = [(p, c, len(v), float(round(sum(v) / len(v)))) for (p, c), v in lens.items()]
    return sorted(rows, key=lambda r: (-r[2], r[0], r[1]))


def blocks_by_chain_hour(events: Sequence[events_pb2.Event]) -> Rows:
    per: dict[tuple[int, int], list[events_pb2.BlockSeen]] = defaultdict(list)
    for e in _by_kind(events, events_pb2.EVENT_KIND_BLOCK):
        per[(e.chain_id, e.block.block.timestamp // 3600 * 3600)].append(e.block)
    return sorted((c, h, len(v), sum(b.block.tx_count for b in v),
                   round(sum(b.seen_pending for b in v) / sum(len(b.block.txs) for b in v), 4))
                  for (c, h), v in per.items())


def _int_div(a: int, b: int) -> int:
    """ClickHouse's intDiv: rounds toward zero."""
    return abs(a) // b * (1 if a >= 0 else -1)


def inclusion_latency_by_chain(events: Sequence[events_pb2.Event]) -> Rows:
    included: dict[tuple[int, bytes], int] = {}
    for e in _by_kind(events, events_pb2.EVENT_KIND_BLOCK):
        for tx in e.block.block.txs:
            key = (e.chain_id, tx.hash)
            included[key] = min(included.get(key, e.first_seen_unix_ns), e.first_seen_unix_ns)
    latency: dict[int, list[int]] = defaultdict(list)
    for e in _by_kind(events, 1):
        at = included.get((e.chain_id, e.tx_hash))
        if at is not None:
            latency[e.chain_id].append(_int_div(at - e.first_seen_unix_ns, 1_000_000))
    return sorted((c, len(v), _qexact(v, 0.5), _qexact(v, 0.9)) for c, v in latency.items())


def inclusion_latency_by_chain_hour(events: Sequence[events_pb2.Event]) -> Rows:
    per: dict[tuple[int, int], list[int]] = defaultdict(list)
    reverted: Counter[tuple[int, int]] = Counter()
    for e in _by_kind(events, events_pb2.EVENT_KIND_TX_INCLUDED):
        b = e.tx_included
        if not b.reincluded:
            key = (e.chain_id, _hour(e.first_seen_unix_ns))
            per[key].append(b.inclusion_latency_ms)
            reverted[key] += b.status == block_pb2.TX_STATUS_REVERTED
    return sorted((c, h, len(v), _qexact(v, 0.5), _qexact(v, 0.9), reverted[(c, h)]) for (c, h), v in per.items())


def completeness_by_chain(events: Sequence[events_pb2.Event]) -> Rows:
    per: dict[int, list[events_pb2.Event]] = defaultdict(list)
    for e in events:
        per[e.chain_id].append(e)
    return sorted((c, len(v), len(v), sum(1 for e in v if e.kind == 1)) for c, v in per.items())


def export_position(events: Sequence[events_pb2.Event]) -> Rows:
    return [("default", events[-1].seq_id)]


ORACLES: dict[str, Callable[[Sequence[events_pb2.Event]], Rows]] = {f.__name__: f for f in (
    transactions_by_chain_hour, decode_coverage_by_selector, top_opportunity_senders, sandwich_volume_by_router,
    opportunities_by_kind_protocol, value_by_chain_hour, gas_price_by_chain_hour, source_delay, top_token_pairs,
    protocol_category_mix, blocks_by_chain_hour, inclusion_latency_by_chain, inclusion_latency_by_chain_hour,
    completeness_by_chain, export_position)}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _close(got: Any, want: Any) -> bool:
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(_close, got, want))
    if isinstance(want, float) or isinstance(got, float):
        return math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-6)
    return bool(got == want)


def test_the_doc_has_thirteen_user_queries_and_an_oracle_for_each() -> None:
    queries = doc_queries()
    assert set(queries) == set(ORACLES), (set(queries) ^ set(ORACLES))
    assert len(queries) - 2 == 13  # thirteen for users, two for operators


def _names() -> Iterator[str]:
    yield from doc_queries()


@pytest.mark.parametrize("name", list(_names()))
def test_doc_query_matches_the_log(name: str, clickhouse: ClickHouseServer, exported: list[events_pb2.Event]) -> None:
    got = [[_plain(v) for v in row] for row in clickhouse.query(doc_queries()[name])]
    want = [list(row) for row in ORACLES[name](exported)]
    assert want, f"{name}: the oracle finds nothing in the synthetic log: the test would prove nothing"
    assert len(got) == len(want) and all(map(_close, got, want)), f"{name}:\n got {got[:5]}\nwant {want[:5]}"
