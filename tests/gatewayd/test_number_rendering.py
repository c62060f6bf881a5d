"""Every stored value renders, exactly, on every read path: the full uint256 range and zero-vs-absent.

A real processd (real LMDB, real gRPC) is fed transactions whose every quantity takes one of the boundary
values below (the fee fields, the value, the nonce and gas limit, and through real router calldata the
decoded amounts and the deadline), then every REST route, the event pages and the SSE catch-up of the real
gatewayd are read back: each answers 200, and each number is the exact value sent, as a decimal string, with
"0" for a known zero and null for an absent field. Opportunities (whose notional processd derives) are
compared with what processd itself returns over gRPC.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import eth_abi
import grpc
import httpx
import orjson
import pytest

from common.pb.v1 import query_pb2, query_pb2_grpc, tx_pb2
from gatewayd.serializers import JS_SAFE_MAX

from .conftest import Gateway, Processd, seeded_stack

pytestmark = pytest.mark.integration

U64_MAX = 2**64 - 1
#: The boundaries of every number type a record carries: zero, one, JavaScript's exact-integer limit,
#: uint64's and uint256's ends.
VALUES = (0, 1, 2**53 - 1, 2**53, 2**53 + 1, 2**64 - 1, 2**64, 2**64 + 1, 2**255, 2**256 - 1)
CHAIN = 1
V2_ROUTER = bytes.fromhex("7a250d5630b4cf539739df2c5dacb4c659f2488d")
USDC = bytes.fromhex("a0b86991c6218b36c1d19d4a2e9eb0ce3606eb48")
WETH = bytes.fromhex("c02aaa39b223fe8d0a0e5c4f27ead9083c756cc2")
RECIPIENT = b"\x0e" * 20
#: swapExactTokensForTokens(amountIn, amountOutMin, path, to, deadline) and
#: swapTokensForExactTokens(amountOut, amountInMax, path, to, deadline): between them, all four amounts.
EXACT_IN = ("38ed1739", ("amount_in", "amount_out_min"))
EXACT_OUT = ("8803dbee", ("amount_out", "amount_in_max"))


def u256(v: int) -> bytes:
    return v.to_bytes((v.bit_length() + 7) // 8, "big")


@dataclass(frozen=True)
class Sent:
    """One transaction sent and the numbers every read path must give back."""

    envelope: tx_pb2.TxEnvelope
    value: int
    amounts: tuple[str, str]

    @property
    def hash(self) -> str:
        return "0x" + self.envelope.hash.hex()


def sent_transactions() -> list[Sent]:
    out = []
    for i, v in enumerate(VALUES):
        for j, (selector, amounts) in enumerate((EXACT_IN, EXACT_OUT)):
            data = bytes.fromhex(selector) + eth_abi.encode(
                ["uint256", "uint256", "address[]", "address", "uint256"], [v, v, [USDC, WETH], RECIPIENT, v])
            env = tx_pb2.TxEnvelope(
                chain_id=CHAIN, hash=bytes([0xA0, i, j]) + b"\x5a" * 29, sender=bytes([0x51, i, j]) + b"\x00" * 17,
                to=V2_ROUTER, nonce=min(v, U64_MAX), value=u256(v), gas_price=u256(v), max_fee_per_gas=u256(v),
                max_priority_fee_per_gas=u256(v), gas=min(v, U64_MAX), tx_type=2, input=data, source_id="edge",
                first_seen_unix_ns=1_700_000_000_000_000_000 + i)
            out.append(Sent(env, v, amounts))
    return out


def legacy_transaction() -> tx_pb2.TxEnvelope:
    """A legacy transfer: no EIP-1559 fee fields at all (absent, not zero), no calldata, no deadline."""
    return tx_pb2.TxEnvelope(chain_id=CHAIN, hash=b"\xb0" * 32, sender=b"\x52" * 20, to=RECIPIENT, nonce=3,
                             value=u256(5), gas_price=u256(7), gas=21000, tx_type=0, source_id="edge",
                             first_seen_unix_ns=1_700_000_000_000_000_100)


@dataclass(repr=False)
class Stack:
    processd: Processd
    gateway: Gateway
    http: httpx.Client
    sent: list[Sent]
    legacy: tx_pb2.TxEnvelope

    def get(self, path: str, **params: Any) -> Any:
        resp = self.http.get(path, params=params)
        assert resp.status_code == 200, (path, params, resp.text)
        return resp.json()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    d: Path = tmp_path_factory.mktemp("gw-numbers")
    sent = sent_transactions()
    legacy = legacy_transaction()
    with seeded_stack(d, [s.envelope for s in sent] + [legacy], batch_size=7) as (p, g), g.client() as http:
        yield Stack(p, g, http, sent, legacy)


# -- what each record must say ------------------------------------------------------------------------------


def check_tx(tx: dict[str, Any], s: Sent) -> None:
    v = s.value
    assert tx["hash"] == s.hash and "render_error" not in tx
    assert tx["value"] == str(v) and tx["gas_price"] == str(v)
    assert tx["max_fee_per_gas"] == str(v) and tx["max_priority_fee_per_gas"] == str(v)
    assert tx["nonce"] == str(min(v, U64_MAX)) and tx["gas"] == str(min(v, U64_MAX))


def check_features(f: dict[str, Any], s: Sent) -> None:
    v = s.value
    assert "render_error" not in f and f["decoded"] is True and f["category"] == "swap"
    given, other = s.amounts
    assert f[given] == str(v) and f[other] == str(v)  # "0" for a zero amountOutMin, never null
    for name in {"amount_in", "amount_out_min", "amount_out", "amount_in_max"} - set(s.amounts):
        assert f[name] is None  # not part of this call
    deadline = min(v, U64_MAX)  # a uint256 deadline is stored saturated at 2**64-1
    assert f["deadline"] == str(deadline)
    assert f["deadline_unix_ms"] == (deadline * 1000 if deadline * 1000 <= JS_SAFE_MAX else None)
    assert f["value"] == str(v) and f["gas_price"] == str(v) and f["priority_fee"] == str(v)


def check_legacy(tx: dict[str, Any], legacy: tx_pb2.TxEnvelope) -> None:
    assert tx["hash"] == "0x" + legacy.hash.hex()
    assert tx["gas_price"] == "7" and tx["max_fee_per_gas"] is None and tx["max_priority_fee_per_gas"] is None


def stored_opportunities(stack: Stack, s: Sent) -> list[query_pb2.GetTransactionResponse]:
    with grpc.insecure_channel(stack.processd.addr) as channel:
        resp = query_pb2_grpc.QueryStub(channel).GetTransaction(
            query_pb2.GetTransactionRequest(chain_id=CHAIN, hash=s.envelope.hash), timeout=10)
    return list(resp.opportunities)


def check_opportunity(o: dict[str, Any], stored: Any) -> None:
    assert "render_error" not in o and o["seq_id"] == stored.seq_id and o["score"] == stored.score
    expected = str(int.from_bytes(stored.notional_wei, "big")) if stored.HasField("notional_wei") else None
    assert o["notional_wei"] == expected
    assert o["slippage_bps"] == (stored.slippage_bps or None)


def by_hash(records: list[dict[str, Any]], key: str = "hash") -> dict[str, dict[str, Any]]:
    return {r[key]: r for r in records}


# -- every read path ----------------------------------------------------------------------------------------


def test_transaction_detail_renders_every_boundary_exactly(stack: Stack) -> None:
    for s in stack.sent:
        for params in ({"chain_id": CHAIN}, {}):
            detail = stack.get(f"/transactions/{s.hash}", **params)
            check_tx(detail["transaction"], s)
            check_features(detail["features"], s)
            stored = {o.seq_id: o for o in stored_opportunities(stack, s)}
            assert {o["seq_id"] for o in detail["opportunities"]} == set(stored)
            for o in detail["opportunities"]:
                check_opportunity(o, stored[o["seq_id"]])
    legacy = stack.get("/transactions/0x" + stack.legacy.hash.hex())
    check_legacy(legacy["transaction"], stack.legacy)
    assert legacy["features"]["amount_in"] == "5" and legacy["features"]["deadline"] is None


def test_transaction_lists_render_every_boundary_exactly(stack: Stack) -> None:
    newest = by_hash(stack.get("/transactions", chain_id=CHAIN, limit=200)["transactions"])
    walked = by_hash(stack.get("/transactions/all", limit=5000)["transactions"])
    snapshot = stack.get("/dashboard/snapshot", tx_limit=200, feature_limit=200, opp_limit=200)
    in_snapshot = by_hash(snapshot["recent_transactions"])
    for records in (newest, walked, in_snapshot):
        assert len(records) == len(stack.sent) + 1
        for s in stack.sent:
            check_tx(records[s.hash], s)
        check_legacy(records["0x" + stack.legacy.hash.hex()], stack.legacy)
    for features in (stack.get("/features/recent", limit=200)["features"], snapshot["recent_features"]):
        found = by_hash(features, "tx_hash")
        for s in stack.sent:
            check_features(found[s.hash], s)


def test_opportunity_views_render_notional_exactly(stack: Stack) -> None:
    stored = {o.seq_id: o for s in stack.sent for o in stored_opportunities(stack, s)}
    assert stored, "the boundary swaps must give opportunities to render"
    assert any(o.HasField("notional_wei") and len(o.notional_wei) > 8 for o in stored.values()), \
        "a notional beyond 2**64 must be among them"
    recent = stack.get("/opps/recent", limit=200)["opportunities"]
    top = stack.get("/dashboard/snapshot", opp_limit=200)["top_opportunities"]
    for rendered in (recent, top):
        assert {o["seq_id"] for o in rendered} == set(stored)
        for o in rendered:
            check_opportunity(o, stored[o["seq_id"]])


def check_events(events: list[dict[str, Any]], stack: Stack) -> None:
    sent = {s.hash: s for s in stack.sent}
    kinds: dict[str, int] = {}
    for e in events:
        assert "render_error" not in e
        kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
        s = sent.get(e["tx_hash"])
        if s is None:
            continue
        if e["kind"] == "tx_seen":
            check_tx(e["tx"], s)
        elif e["kind"] == "tx_decoded":
            check_features(e["features"], s)
    assert kinds["tx_seen"] == kinds["tx_decoded"] == len(stack.sent) + 1


def test_event_pages_render_every_boundary_exactly(stack: Stack) -> None:
    events: list[dict[str, Any]] = []
    cursor = 0
    while True:  # small pages: every record is on some page, none takes its page down
        page = stack.get("/events", from_seq_id=cursor, limit=5)
        events += page["events"]
        if not page["events"]:
            break
        cursor = page["next_from_seq_id"]
    check_events(events, stack)


def test_sse_catch_up_renders_every_boundary_exactly(stack: Stack) -> None:
    last = stack.get("/events", from_seq_id=0, limit=1)["last_seq_id"]
    events: list[dict[str, Any]] = []
    with stack.http.stream("GET", "/events/stream", params={"from_seq_id": 1}, timeout=30) as stream:
        assert stream.status_code == 200
        frame: dict[str, str] = {}
        for line in stream.iter_lines():
            if line:
                field, _, rest = line.partition(": ")
                frame[field] = rest
                continue
            if "data" in frame and "id" in frame:
                doc = orjson.loads(frame["data"])
                assert frame["event"] == doc["kind"] and int(frame["id"]) == doc["seq_id"]
                events.append(doc)
                if doc["seq_id"] >= last:
                    break
            frame = {}
    assert [e["seq_id"] for e in events] == list(range(1, last + 1))
    check_events(events, stack)


def test_nothing_was_rendered_as_an_error_marker(stack: Stack) -> None:
    test_sse_catch_up_renders_every_boundary_exactly(stack)  # every record through every renderer once more
    metrics = stack.http.get("/metrics").text
    lines = [line for line in metrics.splitlines() if line.startswith("mempulse_gatewayd_render_errors_total{")]
    assert sorted(line.split('"')[1] for line in lines) == ["event", "feature", "opportunity", "transaction"]
    assert all(line.endswith(" 0.0") for line in lines), lines
