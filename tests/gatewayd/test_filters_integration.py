"""Filter parameters through the real gatewayd and processd: /events/stream and the list routes against the
reference (``tests/processd/_filter_reference.py``) applied to the whole log, and the 400s of bad parameters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from common.pb.v1 import events_pb2, query_pb2, query_pb2_grpc
from common.testing.synth import synthetic_envelopes
from tests.processd._filter_reference import DECODED, OPP, SEEN, group_transactions, reference_filter, tx_matches

from .conftest import CHAINS, seeded_stack
from .test_sse_integration import SSEReader, stream

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, httpx.Client, list[events_pb2.Event]]]:
    d: Path = tmp_path_factory.mktemp("gw-filters")
    with seeded_stack(d, synthetic_envelopes(900, seed=81, chain_ids=CHAINS)) as (p, g), g.client() as http:
        with grpc.insecure_channel(p.addr) as ch:
            stub = query_pb2_grpc.QueryStub(ch)
            events: list[events_pb2.Event] = []
            cursor = 1
            while True:
                page = stub.ScanEvents(query_pb2.ScanEventsRequest(from_seq_id=cursor, limit=5000))
                events.extend(page.events)
                if page.next_seq_id > page.last_seq_id:
                    break
                cursor = page.next_seq_id
        yield g, http, events


def _hex(raw: bytes) -> str:
    return "0x" + raw.hex()


def _cases(events: list[events_pb2.Event]) -> list[tuple[dict[str, str], query_pb2.EventFilter]]:
    """(REST parameters, the EventFilter they mean), from values that occur in the log."""
    seen = [e.tx_seen.tx for e in events if e.kind == SEEN]
    feats = [e.tx_decoded.features for e in events if e.kind == DECODED]
    to = [a for a, _ in Counter(t.to for t in seen if t.to).most_common(3)][1:]
    sender = Counter(t.sender for t in seen).most_common(1)[0][0]
    token = Counter(f.token_in for f in feats if f.token_in).most_common(1)[0][0]
    selector = Counter(t.input[:4] for t in seen if len(t.input) >= 4).most_common(2)[1][0]
    return [
        ({"to": ",".join(map(_hex, to))}, query_pb2.EventFilter(to=to)),
        ({"from": _hex(sender).upper().replace("0X", "0x")}, query_pb2.EventFilter(senders=[sender])),
        ({"method": f"transfer,{_hex(selector)}"}, query_pb2.EventFilter(methods=["transfer"], selectors=[selector])),
        ({"protocol": "uniswap_v2,sushiswap", "min_score": "20"},
         query_pb2.EventFilter(protocols=["uniswap_v2", "sushiswap"], min_score=20)),
        ({"token_in": _hex(token)}, query_pb2.EventFilter(tokens_in=[token])),
        ({"min_value_wei": str(10**17)}, query_pb2.EventFilter(min_value=(10**17).to_bytes(8, "big"))),
    ]


def test_list_routes_return_what_the_reference_picks(stack: Any) -> None:
    _, http, events = stack
    txs = [t for t in group_transactions(events) if t[0].kind == SEEN]
    for params, f in _cases(events):
        matching = [t for t in txs if tx_matches(f, t)]
        assert 0 < len(matching) < len(txs), params
        body = http.get("/transactions", params={**params, "limit": 200}).json()
        assert [t["seq_id"] for t in body["transactions"]] == [t[0].seq_id for t in matching][::-1][:200], params
        feats = http.get("/features/recent", params={**params, "limit": 200}).json()["features"]
        assert [r["seq_id"] for r in feats] == [t[1].seq_id for t in matching][::-1][:200], params
        opp_params = {k: v for k, v in params.items() if k != "min_score"}
        opps = http.get("/opps/recent", params={**opp_params, "limit": 200, "min_score": 20}).json()
        expected = sorted(((e.opp_detected.opportunity.score, e.seq_id) for t in matching for e in t
                           if e.kind == OPP and e.opp_detected.opportunity.score >= 20), reverse=True)
        assert [o["seq_id"] for o in opps["opportunities"]] == [s for _, s in expected][:200], params


def test_event_stream_takes_only_matching_transactions(stack: Any) -> None:
    _, http, events = stack
    for params, f in _cases(events)[:3]:
        expected = reference_filter(f, events, kinds=[SEEN, OPP])
        with stream(http, params={**params, "from_seq_id": 1, "kinds": "tx_seen,opp_detected"},
                    timeout=30) as resp:
            assert resp.status_code == 200
            got, _ = SSEReader(resp).events(len(expected))
        assert [m.id for m in got] == expected, params
        assert {m.data["kind"] for m in got} <= {"tx_seen", "opp_detected"}


def test_events_and_transactions_all_walk_only_matching_transactions(stack: Any) -> None:
    """/events and /transactions/all with filters, walked page by page to the end, give what the reference picks
    (no gap, no duplicate): the events of matching transactions, and their records."""
    _, http, events = stack
    txs = [t for t in group_transactions(events) if t[0].kind == SEEN]
    for params, f in _cases(events):
        expected = reference_filter(f, events)
        got: list[int] = []
        cursor = 1
        while True:
            body = http.get("/events", params={**params, "from_seq_id": cursor, "limit": 40}).json()
            got.extend(e["seq_id"] for e in body["events"])
            assert body["next_from_seq_id"] > cursor or body["next_from_seq_id"] > body["last_seq_id"], params
            cursor = body["next_from_seq_id"]
            if cursor > body["last_seq_id"]:
                break
        assert got == expected and 0 < len(got) < len(events), params
        seen: list[int] = []
        cursor = 0
        while True:
            body = http.get("/transactions/all", params={**params, "from_seq_id": cursor, "limit": 30}).json()
            seen.extend(t["seq_id"] for t in body["transactions"])
            cursor = body["next_from_seq_id"]
            if not body["has_more"]:
                break
        assert seen == [t[0].seq_id for t in txs if tx_matches(f, t)], params


@pytest.mark.parametrize(("path", "params", "param"), [
    ("/events/stream", {"to": "0x1234"}, "to"),
    ("/transactions", {"from": ",".join(["0x" + "11" * 20] * 65)}, "from"),
    ("/features/recent", {"method": "0xzz"}, "method"),
    ("/opps/recent", {"protocol": "UNI"}, "protocol"),
    ("/transactions", {"min_value_wei": str(2**256)}, "min_value_wei"),
    ("/events/stream", {"token_out": "0x" + "11" * 20 + ","}, "token_out"),
    ("/events", {"to": "0x12"}, "to"),
    ("/transactions/all", {"min_score": "101"}, "min_score"),
])
def test_bad_filter_parameters_are_400(stack: Any, path: str, params: dict[str, str], param: str) -> None:
    _, http, _ = stack
    resp = http.get(path, params=params)
    assert resp.status_code == 400, resp.text
    assert param in resp.json()["error"]["message"]
