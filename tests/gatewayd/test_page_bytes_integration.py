"""Pages of big transactions through the real gatewayd and processd: cut by size, never a 503 (issue 14).

Seeded with legal transactions of 127 KiB calldata each (the limit is 128 KiB), `/transactions?limit=200`,
`/transactions/all`, `/events?limit=1000` and `/dashboard/snapshot?tx_limit=200` used to answer 503 with
Retry-After forever (processd's answer passed its 16 MiB gRPC send limit), and `/events/stream` over that stretch
failed on every reconnect. Each page now ends early with `truncated: true` and a cursor, and walking the
cursors returns every record exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.pb.v1 import tx_pb2
from common.testing.synth import synthetic_envelopes

from .conftest import Gateway, Processd, seeded_stack
from .test_sse_integration import SSEReader, stream

pytestmark = pytest.mark.integration

CALLDATA_BYTES = 127 * 1024
BIG_TXS = 140  # 17.4 MiB of calldata: more than one 16 MiB gRPC message


def big_envelopes(count: int, seed: int) -> list[tx_pb2.TxEnvelope]:
    """Legal envelopes with 127 KiB of calldata each."""
    envelopes = synthetic_envelopes(count, seed=seed, chain_ids=(1, 137))
    for i, e in enumerate(envelopes):
        e.input = bytes([i % 251]) * CALLDATA_BYTES
    return envelopes


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with seeded_stack(tmp_path_factory.mktemp("bytes"), big_envelopes(BIG_TXS, seed=1403), batch_size=70) as (_, g):
        with g.client() as http:
            yield http


def get(http: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    resp = http.get(path, params=params)
    assert resp.status_code == 200, (path, params, resp.status_code, resp.text[:300])
    body: dict[str, Any] = resp.json()
    return body


def test_newest_transactions_are_cut_by_size_and_go_on_by_cursor(big: httpx.Client) -> None:
    seqs: list[int] = []
    flags: list[bool] = []
    before = 0
    while True:
        # The first page is the attack's URL exactly: /transactions?limit=200.
        body = get(big, "/transactions", limit=200, **({"before_seq_id": before} if before else {}))
        assert body["transactions"], "a page always holds at least one transaction"
        seqs += [t["seq_id"] for t in body["transactions"]]
        flags.append(body["truncated"])
        if not body["next_before_seq_id"]:
            break
        before = body["next_before_seq_id"]
    assert len(seqs) == BIG_TXS == len(set(seqs)) and seqs == sorted(seqs, reverse=True)
    assert flags == [True, True, False]  # about 64 transactions (8 MiB of protobuf) per page
    assert get(big, "/transactions", limit=10)["truncated"] is False


def test_transactions_all_is_cut_by_size(big: httpx.Client) -> None:
    seqs: list[int] = []
    flags: list[bool] = []
    cursor = 0
    while True:
        body = get(big, "/transactions/all", from_seq_id=cursor, limit=5000)
        seqs += [t["seq_id"] for t in body["transactions"]]
        flags.append(body["truncated"])
        assert body["has_more"] or not body["truncated"]
        cursor = body["next_from_seq_id"]
        if not body["has_more"]:
            break
    assert len(seqs) == BIG_TXS == len(set(seqs)) and seqs == sorted(seqs)
    assert flags == [True, True, False]


def test_events_are_cut_by_size(big: httpx.Client) -> None:
    seqs: list[int] = []
    truncated = 0
    cursor = 0
    while True:
        body = get(big, "/events", from_seq_id=cursor, limit=1000)
        if not body["events"]:
            break
        seqs += [e["seq_id"] for e in body["events"]]
        truncated += body["truncated"]
        cursor = body["next_from_seq_id"]
    assert seqs == list(range(1, body["last_seq_id"] + 1))
    assert truncated == 2


def test_snapshot_transactions_are_cut_by_size(big: httpx.Client) -> None:
    snap = get(big, "/dashboard/snapshot", tx_limit=200)
    recent = [t["seq_id"] for t in snap["recent_transactions"]]
    assert snap["recent_transactions_truncated"] is True and 0 < len(recent) < BIG_TXS
    older = get(big, "/transactions", limit=200, before_seq_id=recent[-1])["transactions"]
    assert older and older[0]["seq_id"] < recent[-1]
    assert get(big, "/dashboard/snapshot", tx_limit=5)["recent_transactions_truncated"] is False


def test_event_stream_resumes_over_big_events_and_reaches_live(tmp_path: Path) -> None:
    with seeded_stack(tmp_path, big_envelopes(BIG_TXS, seed=1404), batch_size=70) as (p, g):
        head = get_head(g)
        got: list[int] = []
        with g.client() as http:
            # First connection: part of the catch-up, then the client goes away (as a browser tab might).
            with stream(http, params={"from_seq_id": 1}) as resp:
                assert resp.status_code == 200
                msgs, _ = SSEReader(resp).events(50)
                got += [m.id for m in msgs if m.id is not None]
            # Reconnect with Last-Event-ID: the rest of the stretch, then live events.
            with stream(http, headers={"last-event-id": str(got[-1])}) as resp:
                assert resp.status_code == 200
                reader = SSEReader(resp)
                msgs, _ = reader.events(head - len(got))
                got += [m.id for m in msgs if m.id is not None]
                assert got == list(range(1, head + 1))
                push_live(p)
                live, _ = reader.events(4)
        assert [m.id for m in live] == list(range(head + 1, head + 5))
        assert live[0].event == "tx_seen" and len(live[0].data["tx"]["input"]) == 2 + 2 * CALLDATA_BYTES


def get_head(g: Gateway) -> int:
    with g.client() as http:
        return int(get(http, "/events", from_seq_id=2**62, limit=1)["last_seq_id"])


def push_live(p: Processd) -> None:
    assert p.push(big_envelopes(20, seed=1405), batch_size=20, session="live") == 20
