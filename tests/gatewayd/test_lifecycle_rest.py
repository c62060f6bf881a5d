"""The transaction lifecycle over REST (issue 16), real processd and real gatewayd: a transaction's status and
history, /transactions?status=, /blocks/recent's median inclusion latency, the snapshot's lifecycle figures and
the new event kinds of /events, each answer checked against the served OpenAPI document."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gatewayd.openapi import build_openapi
from tests.gatewayd.test_openapi import schema_validator
from tests.processd.test_lifecycle import CHAIN, B, C, D, F, G, _scenario

pytestmark = pytest.mark.integration


def _check(doc: dict[str, Any], name: str, body: Any) -> None:
    errors = sorted(schema_validator(doc, name).iter_errors(body), key=str)
    assert not errors, errors[:3]


def test_lifecycle_over_rest(processd_factory: Any, gateway_factory: Any) -> None:
    p = processd_factory()
    asyncio.run(_scenario(p.addr))
    g = gateway_factory(p.addr, "--rate-limit-rps", "0")
    doc = build_openapi(auth=False, rate_limit=False)
    with g.client() as http:
        got = http.get(f"/transactions/0x{bytes([B]).hex() * 32}")
        assert got.status_code == 200
        detail = got.json()
        _check(doc, "TransactionDetail", detail)
        assert detail["status"] == "included"
        assert [(e["kind"], e["tx_included"]["block_number"], e["tx_included"]["reincluded"])
                for e in detail["history"]] == [("tx_included", 2, False), ("tx_included", 3, True)]
        assert http.get(f"/transactions/0x{bytes([D]).hex() * 32}").json()["status"] == "pending"

        dropped = http.get("/transactions", params={"chain_id": CHAIN, "status": "dropped"})
        assert dropped.status_code == 200
        _check(doc, "TransactionList", dropped.json())
        assert sorted(t["hash"][2:4] for t in dropped.json()["transactions"]) == sorted(
            bytes([x]).hex() for x in (C, F, G))
        bad = http.get("/transactions", params={"status": "gone"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_status"

        blocks = http.get("/blocks/recent", params={"chain_id": CHAIN}).json()
        _check(doc, "BlockList", blocks)
        assert [(b["number"], b["inclusion_latency_p50_ms"]) for b in blocks["blocks"]][:3] == [
            (3, 35000), (2, None), (2, 23000)]

        snap = http.get("/dashboard/snapshot", params={"chain_id": CHAIN}).json()
        _check(doc, "Snapshot", snap)
        life = snap["chains"][0]["lifecycle"]
        assert (life["pending"], life["included"], life["replaced"], life["dropped"], life["reorgs"]) == (1, 2, 2, 3, 1)
        assert life["private_share"] == pytest.approx(0.6)

        events = http.get("/events", params={"kinds": "tx_included,tx_replaced,tx_dropped,reorg",
                                             "chain_id": CHAIN}).json()
        _check(doc, "EventPage", events)
        kinds = [e["kind"] for e in events["events"]]
        assert kinds.count("tx_dropped") == 3 and kinds.count("reorg") == 1
        reorg = next(e for e in events["events"] if e["kind"] == "reorg")
        assert reorg["tx_hash"] == "0x" and reorg["reorg"]["depth"] == 1 and reorg["reorg"]["unincluded"] == 1
        reasons = sorted(e["tx_dropped"]["reason"] for e in events["events"] if e["kind"] == "tx_dropped")
        assert reasons == ["evicted", "expired", "nonce_passed"]
