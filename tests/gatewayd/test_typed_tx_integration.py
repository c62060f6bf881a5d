"""Typed transactions (EIP-2718 types 0-4) through a real processd (LMDB) and gatewayd: the signature, access
list, blob fields and authorization list on every route that renders transactions, and the signed raw bytes only
with ``?include=raw`` (REST and SSE), hashing to the transaction hash."""

from __future__ import annotations

from typing import Any

import pytest

from common.pb.v1 import tx_pb2
from common.rawtx import keccak256
from common.testing.synth import typed_envelopes

from .conftest import CHAINS
from .test_sse_integration import SSEReader, stream

pytestmark = pytest.mark.integration

RAW_KEYS = {"raw_tx", "raw_tx_origin"}


def expected_fields(env: tx_pb2.TxEnvelope) -> dict[str, Any]:
    """What the REST representation says about an envelope's typed fields (the conventions of serializers.py)."""
    def dec(raw: bytes) -> str:
        return str(int.from_bytes(raw, "big"))

    return {
        "type": env.tx_type,
        "v": dec(env.v) if env.HasField("v") else None,
        "y_parity": env.y_parity if env.HasField("y_parity") else None,
        "r": dec(env.r) if env.HasField("r") else None,
        "s": dec(env.s) if env.HasField("s") else None,
        "access_list": [{"address": "0x" + e.address.hex(), "storage_keys": ["0x" + k.hex() for k in e.storage_keys]}
                        for e in env.access_list],
        "max_fee_per_blob_gas": dec(env.max_fee_per_blob_gas) if env.HasField("max_fee_per_blob_gas") else None,
        "blob_versioned_hashes": ["0x" + h.hex() for h in env.blob_versioned_hashes],
        "authorization_list": [{"chain_id": dec(a.chain_id), "address": "0x" + a.address.hex(), "nonce": str(a.nonce),
                                "y_parity": a.y_parity, "r": dec(a.r), "s": dec(a.s)} for a in env.authorization_list],
    }


def check_tx(tx: dict[str, Any], env: tx_pb2.TxEnvelope, raw: bool) -> None:
    assert {k: tx[k] for k in expected_fields(env)} == expected_fields(env)
    if not raw:
        assert RAW_KEYS.isdisjoint(tx)
        return
    if env.raw_tx:
        assert tx["raw_tx"] == "0x" + env.raw_tx.hex() and tx["raw_tx_origin"] == "reencoded"
        assert "0x" + keccak256(bytes.fromhex(tx["raw_tx"][2:])).hex() == tx["hash"]
    else:
        assert tx["raw_tx"] is None and tx["raw_tx_origin"] is None


def test_typed_fields_everywhere_and_raw_only_when_asked(processd_factory, gateway_factory) -> None:
    p = processd_factory()
    envelopes = typed_envelopes(30, seed=3, chain_ids=CHAINS)
    assert {e.tx_type for e in envelopes} == {0, 1, 2, 3, 4} and any(not e.raw_tx for e in envelopes)
    assert p.push(envelopes) == len(envelopes)
    by_hash = {"0x" + e.hash.hex(): e for e in envelopes}
    g = gateway_factory(p.addr)
    with g.client() as http:
        for raw in (False, True):
            params: dict[str, Any] = {"include": "raw"} if raw else {}
            pages = {
                "/transactions": http.get("/transactions", params={**params, "limit": 100}).json()["transactions"],
                "/transactions/all": http.get("/transactions/all", params=params).json()["transactions"],
                "/dashboard/snapshot": http.get("/dashboard/snapshot", params={**params, "tx_limit": 100}).json()[
                    "recent_transactions"],
                "/events": [e["tx"] for e in
                            http.get("/events", params={**params, "kinds": "tx_seen"}).json()["events"]],
            }
            for route, txs in pages.items():
                assert sorted(t["hash"] for t in txs) == sorted(by_hash), route
                for tx in txs:
                    check_tx(tx, by_hash[tx["hash"]], raw)
            for h, env in list(by_hash.items())[:5]:
                detail = http.get(f"/transactions/{h}", params=params).json()
                check_tx(detail["transaction"], env, raw)
            # the render cache keeps both renderings apart: ask again, the other way round comes next
            again = http.get("/transactions", params={**params, "limit": 100}).json()["transactions"]
            assert again == pages["/transactions"]
        bad = http.get("/transactions", params={"include": "bytes"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_include"
        assert http.get("/events/stream", params={"include": "RAW"}).status_code == 400

        for raw in (False, True):
            params = {"from_seq_id": 1, "kinds": "tx_seen", **({"include": "raw"} if raw else {})}
            with stream(http, params=params) as resp:
                assert resp.status_code == 200
                messages, _ = SSEReader(resp).events(len(envelopes))
            assert sorted(m.data["tx"]["hash"] for m in messages) == sorted(by_hash)
            for m in messages:
                check_tx(m.data["tx"], by_hash[m.data["tx"]["hash"]], raw)
