"""Every REST route against a real processd (real LMDB, real gRPC) through the real gatewayd process."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.pb.v1 import tx_pb2
from common.testing.synth import synthetic_envelopes

from .conftest import CHAINS, Gateway, Processd, seeded_stack

pytestmark = pytest.mark.integration

N_TX = 600


@dataclass(repr=False)
class Seeded:
    processd: Processd
    gateway: Gateway
    envelopes: list[tx_pb2.TxEnvelope]
    http: httpx.Client

    def get(self, path: str, **params: Any) -> Any:
        resp = self.http.get(path, params=params)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def hashes(self, chain_id: int | None = None) -> set[str]:
        return {"0x" + e.hash.hex() for e in self.envelopes if chain_id is None or e.chain_id == chain_id}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    d: Path = tmp_path_factory.mktemp("gw-routes")
    envelopes = synthetic_envelopes(N_TX, seed=5, chain_ids=CHAINS)
    with seeded_stack(d, envelopes) as (p, g), g.client() as http:
        yield Seeded(p, g, envelopes, http)


def walk_all(s: Seeded, chain: int | str | None, page: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = 0
    for _ in range(10_000):
        params: dict[str, Any] = {"from_seq_id": cursor, "limit": page}
        if chain is not None:
            params["chain_id"] = chain
        body = s.get("/transactions/all", **params)
        assert len(body["transactions"]) <= page
        rows += body["transactions"]
        assert body["next_from_seq_id"] >= cursor
        cursor = body["next_from_seq_id"]
        if not body["has_more"]:
            return rows
    raise AssertionError("pagination did not end")


def test_pagination_walks_whole_log_without_gap_or_duplicate(seeded: Seeded) -> None:
    rows = walk_all(seeded, None, page=37)
    seqs = [r["seq_id"] for r in rows]
    assert seqs == sorted(set(seqs)), "seq ids strictly increasing: no duplicate, no reordering"
    assert [r["hash"] for r in rows] == ["0x" + e.hash.hex() for e in seeded.envelopes]  # every one, in order
    for chain in CHAINS:
        per_chain = walk_all(seeded, chain, page=29)
        assert {r["hash"] for r in per_chain} == seeded.hashes(chain) and len(per_chain) == N_TX // len(CHAINS)
    # The last page's cursor polls for new ones: nothing new yet.
    tail = seeded.get("/transactions/all", from_seq_id=seqs[-1] + 1)
    assert tail["transactions"] == [] and tail["has_more"] is False and tail["next_from_seq_id"] == seqs[-1] + 1


def test_event_log_scan_is_gap_free(seeded: Seeded) -> None:
    seqs: list[int] = []
    cursor = 0
    while True:
        body = seeded.get("/events", from_seq_id=cursor, limit=101)
        seqs += [e["seq_id"] for e in body["events"]]
        if not body["events"]:
            break
        cursor = body["next_from_seq_id"]
    assert seqs == list(range(1, body["last_seq_id"] + 1))
    kinds = seeded.get("/events", kinds="tx_seen", limit=1000)["events"]
    assert len(kinds) == N_TX and {e["kind"] for e in kinds} == {"tx_seen"}
    assert all(e["tx"]["hash"] == e["tx_hash"] for e in kinds)


def chain_ids_of(body: Any) -> set[int]:
    if isinstance(body, dict):
        found = {body["chain_id"]} if isinstance(body.get("chain_id"), int) else set()
        for key, value in body.items():
            if key not in ("replay",):
                found |= chain_ids_of(value)
        return found
    if isinstance(body, list):
        return set().union(*(chain_ids_of(v) for v in body)) if body else set()
    return set()


LIST_ROUTES = [
    ("/transactions", {"limit": 200}),
    ("/transactions/all", {"limit": 5000}),
    ("/features/recent", {"limit": 200}),
    ("/opps/recent", {"limit": 200}),
    ("/events", {"limit": 1000}),
    ("/dashboard/snapshot", {"tx_limit": 200, "opp_limit": 200, "feature_limit": 200}),
]


@pytest.mark.parametrize("path,params", LIST_ROUTES)
def test_chain_filter_on_every_route(seeded: Seeded, path: str, params: dict[str, Any]) -> None:
    everything = seeded.get(path, **params)
    if path != "/opps/recent":  # opportunities depend on the searcher finding any in this data set
        assert chain_ids_of(everything) == set(CHAINS), "unfiltered view has every chain"
    for chain, name in [(1, "ethereum"), (137, "polygon"), (56, "bsc")]:
        by_id = seeded.get(path, chain_id=chain, **params)
        assert chain_ids_of(by_id) <= {chain}
        if path != "/opps/recent":
            assert chain_ids_of(by_id) == {chain}
        assert seeded.get(path, chain_id=name, **params) == by_id or path == "/dashboard/snapshot"
    assert chain_ids_of(seeded.get(path, chain_id=10, **params)) <= {10}


def test_snapshot_per_chain_totals(seeded: Seeded) -> None:
    snap = seeded.get("/dashboard/snapshot")
    totals = {c["chain_id"]: c for c in snap["chains"]}
    assert {cid: totals[cid]["tx_count"] for cid in CHAINS} == {cid: N_TX // 3 for cid in CHAINS}
    assert snap["last_seq_id"] >= N_TX and snap["replay"]["seq_high_water"] == snap["last_seq_id"]
    only = seeded.get("/dashboard/snapshot", chain_id="polygon", tx_limit=5)
    assert [c["chain_id"] for c in only["chains"]] == [137] and len(only["recent_transactions"]) == 5


def test_transactions_newest_first_and_limits(seeded: Seeded) -> None:
    body = seeded.get("/transactions")
    assert len(body["transactions"]) == 25  # default
    seqs = [t["seq_id"] for t in body["transactions"]]
    assert seqs == sorted(seqs, reverse=True) and seqs[0] == max(r["seq_id"] for r in walk_all(seeded, None, 5000))
    assert len(seeded.get("/transactions", limit=200)["transactions"]) == 200
    newest_polygon = seeded.get("/transactions", chain_id=137, limit=1)["transactions"][0]
    last_polygon = [e for e in seeded.envelopes if e.chain_id == 137][-1]
    assert newest_polygon["hash"] == "0x" + last_polygon.hash.hex()


def test_transaction_representation_matches_envelope(seeded: Seeded) -> None:
    env = seeded.envelopes[10]
    h = "0x" + env.hash.hex()
    for params in ({"chain_id": env.chain_id}, {}):  # chain_id optional: looked up on every chain
        detail = seeded.get(f"/transactions/{h.upper().replace('0X', '0x')}", **params)
        tx = detail["transaction"]
        assert tx["hash"] == h and tx["chain_id"] == env.chain_id
        assert tx["from"] == "0x" + env.sender.hex() and tx["to"] == ("0x" + env.to.hex() if env.to else None)
        assert tx["value"] == str(int.from_bytes(env.value, "big")) and tx["input"] == "0x" + env.input.hex()
        assert tx["gas"] == str(env.gas) and tx["nonce"] == str(env.nonce)
        assert tx["max_fee_per_gas"] == str(int.from_bytes(env.max_fee_per_gas, "big"))
        assert tx["first_seen_unix_ms"] == env.first_seen_unix_ns // 1_000_000
        assert detail["features"] is None or detail["features"]["tx_hash"] == h
        assert isinstance(detail["opportunities"], list)
    other_chain = next(c for c in CHAINS if c != env.chain_id)
    resp = seeded.http.get(f"/transactions/{h}", params={"chain_id": other_chain})
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "tx_not_found"
    resp = seeded.http.get("/transactions/0x" + "ee" * 32)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "tx_not_found"


BAD_VALUES: list[tuple[str, str, list[str]]] = [
    ("/transactions", "limit", ["0", "201", "-1", "abc", "", "1.5", "1e2"]),
    ("/transactions", "chain_id", ["", "0", "nochain", "-137", "99999999999999999999999"]),
    ("/transactions/all", "limit", ["0", "5001", "x"]),
    ("/transactions/all", "from_seq_id", ["-1", "abc", str(2**64), "0x10"]),
    ("/transactions/all", "chain_id", ["ethereum2", "\u00b2", "\u2460", "\u0661\u0663\u0667", "\uff11\uff13\uff17",
                                       "1" * 4301]),
    ("/features/recent", "limit", ["0", "201"]),
    ("/features/recent", "chain_id", ["?"]),
    ("/opps/recent", "limit", ["0", "201"]),
    ("/opps/recent", "min_score", ["101", "-1", "high"]),
    ("/opps/recent", "chain_id", ["0"]),
    ("/events", "limit", ["0", "1001"]),
    ("/events", "from_seq_id", ["x", str(2**64)]),
    ("/events", "kinds", ["", "nope", "tx_seen,bogus"]),
    ("/events", "chain_id", ["1.0"]),
    ("/dashboard/snapshot", "tx_limit", ["0", "201"]),
    ("/dashboard/snapshot", "opp_limit", ["0", "201"]),
    ("/dashboard/snapshot", "feature_limit", ["0", "abc"]),
    ("/dashboard/snapshot", "min_score", ["101"]),
    ("/dashboard/snapshot", "chain_id", ["mars"]),
    ("/transactions/0x" + "ab" * 32, "chain_id", ["mars", "0"]),
    ("/events/stream", "from_seq_id", ["x", "-5"]),
    ("/events/stream", "chain_id", ["mars"]),
    ("/events/stream", "kinds", ["all"]),
]


@pytest.mark.parametrize("path,param,values", BAD_VALUES)
def test_bad_values_get_400_naming_the_parameter(seeded: Seeded, path: str, param: str, values: list[str]) -> None:
    for value in values:
        resp = seeded.http.get(path, params={param: value})
        assert resp.status_code == 400, (path, param, value, resp.text)
        err = resp.json()["error"]
        assert err["parameter"] == param and param in err["message"] and err["code"]
        if param == "chain_id":
            assert "polygon=137" in err["message"], "unknown chain errors list the known chains"


@pytest.mark.parametrize(
    "path",
    [
        "/healthz",
        "/openapi.json",
        "/docs",
        "/dashboard/snapshot",
        "/transactions",
        "/transactions/all",
        "/transactions/0x" + "ab" * 32,
        "/features/recent",
        "/opps/recent",
        "/events",
        "/events/stream",
    ],
)
def test_unknown_and_repeated_parameters_rejected(seeded: Seeded, path: str) -> None:
    resp = seeded.http.get(path, params={"limt": "5"})
    assert resp.status_code == 400 and resp.json()["error"] == {
        "code": "unknown_parameter",
        "parameter": "limt",
        "message": resp.json()["error"]["message"],
    }
    if path in ("/transactions", "/events"):
        resp = seeded.http.get(f"{path}?limit=1&limit=2")
        assert resp.status_code == 400 and resp.json()["error"]["code"] == "duplicate_parameter"


@pytest.mark.parametrize("bad", ["0x12", "0x" + "zz" * 32, "ab" * 32, "0x" + "ab" * 33, "%00"])
def test_malformed_hash_400(seeded: Seeded, bad: str) -> None:
    resp = seeded.http.get(f"/transactions/{bad}")
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_hash"
    assert resp.json()["error"]["parameter"] == "hash"


def test_unknown_route_and_method_are_json_errors(seeded: Seeded) -> None:
    resp = seeded.http.get("/nope")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "route_not_found"
    resp = seeded.http.post("/transactions", content=b"{}")
    assert resp.status_code == 405 and resp.json()["error"]["code"] == "method_not_allowed"


def test_request_and_header_size_limits(seeded: Seeded) -> None:
    resp = seeded.http.get("/transactions", headers={"x-padding": "a" * 9000})
    assert resp.status_code == 431 and resp.json()["error"]["code"] == "header_too_large"
    resp = seeded.http.request("GET", "/transactions", content=b"x" * 20000)
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "payload_too_large"
    assert seeded.http.get("/transactions", params={"limit": 1}).status_code == 200  # still serving


QUERY_CHARS = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
ROUTES_FOR_FUZZ = [
    "/dashboard/snapshot",
    "/transactions",
    "/transactions/all",
    "/features/recent",
    "/opps/recent",
    "/blocks/recent",
    "/events",
    "/transactions/0x" + "ab" * 32,
]
PARAM_NAMES = ["chain_id", "limit", "from_seq_id", "kinds", "min_score", "tx_limit", "opp_limit", "feature_limit"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(ROUTES_FOR_FUZZ),
    params=st.lists(
        st.tuples(
            st.one_of(st.sampled_from(PARAM_NAMES), QUERY_CHARS),
            st.one_of(QUERY_CHARS, st.integers(-(2**70), 2**70).map(str), st.sampled_from(["polygon", "137"])),
        ),
        max_size=4,
    ),
)
def test_fuzz_parameters_never_500(seeded: Seeded, path: str, params: list[tuple[str, str]]) -> None:
    resp = seeded.http.get(path, params=params)
    assert resp.status_code in (200, 400, 404), (path, params, resp.status_code, resp.text)
    body = resp.json()
    if resp.status_code != 200:
        assert set(body) == {"error"} and body["error"]["code"] and body["error"]["message"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    segment=st.one_of(QUERY_CHARS, st.from_regex(r"0[xX][0-9a-fA-F]{60,68}", fullmatch=True)),
    key=st.one_of(st.none(), st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=255), max_size=40)),
    last_event_id=st.one_of(
        st.none(), st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=25)
    ),
)
def test_fuzz_paths_and_headers_never_500(
    seeded: Seeded, segment: str, key: str | None, last_event_id: str | None
) -> None:
    headers: dict[str, bytes] = {"x-api-key": key.encode("latin-1")} if key else {}
    resp = seeded.http.get("/transactions/" + quote(segment, safe=""), headers=headers)
    assert resp.status_code in (200, 400, 404), (segment, resp.status_code, resp.text)
    assert resp.status_code == 200 or resp.json()["error"]["code"]
    # HTTP header values have no leading or trailing white space (RFC 9110 5.5): a client cannot send
    # "0 ", so the server never sees one; send what a client would.
    if last_event_id is not None and last_event_id.strip():
        headers["last-event-id"] = last_event_id.strip().encode()
        with seeded.http.stream("GET", "/events/stream", headers=headers) as stream:
            assert stream.status_code in (200, 400), (last_event_id, stream.status_code)
            if stream.status_code == 400:
                assert orjson.loads(stream.read())["error"]["parameter"] == "Last-Event-ID"
