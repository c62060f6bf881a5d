"""Raw signed bytes against a real anvil: every bundled fixture call sent as a signed pending transaction (types
0-4, anvil's dev keys) re-encodes to the node's own ``eth_getRawTransactionByHash`` bytes, which hash to the
transaction hash; then end to end through real ingestd and processd (LMDB) in both raw modes, with impersonated
senders (r = s = 0) in the same stream."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from common.pb.v1 import tx_pb2
from common.rawtx import RawTxError, keccak256, verified_raw
from common.testing.anvil import AnvilNode
from common.testing.fixtures import load_mainnet_calls
from common.testing.replay import Replayer, SentTx
from ingestd.fetcher import RAW_METHOD, BatchFetcher
from ingestd.mapping import tx_to_envelope
from tests.ingestd.conftest import Daemon, Ingestd, Processd

pytestmark = pytest.mark.integration

CHAIN_ID = 31337


def send(url: str, calls: list, signed: bool) -> list[SentTx]:
    async def go() -> list[SentTx]:
        async with Replayer(url, batch_size=200, signed=signed) as r:
            sent = await r.send(calls)
            assert r.stats.rejected == 0, r.stats.errors_by_message
            return sent
    return asyncio.run(go())


def fetch_both(url: str, hashes: list[bytes]) -> tuple[dict[bytes, dict], dict[bytes, str]]:
    async def go() -> tuple[dict[bytes, dict], dict[bytes, str]]:
        async with BatchFetcher([url], retries=0) as f:
            txs, raws = {}, {}
            for i in range(0, len(hashes), 500):
                chunk = hashes[i:i + 500]
                txs.update((await f.fetch(chunk)).found)
                raws.update((await f.fetch(chunk, RAW_METHOD)).found)
            return txs, raws
    return asyncio.run(go())


def test_every_fixture_call_reencodes_to_the_nodes_signed_bytes() -> None:
    calls = load_mainnet_calls()
    with AnvilNode(chain_id=CHAIN_ID) as node:
        sent = send(node.http_url, calls, signed=True)
        hashes = [bytes.fromhex(s.tx_hash[2:]) for s in sent]
        txs, raws = fetch_both(node.http_url, hashes)
    assert len(sent) == len(calls) and len(txs) == len(raws) == len(calls)
    types: Counter[int] = Counter()
    for h in hashes:
        env = tx_to_envelope(txs[h], CHAIN_ID, "anvil", 1, expected_hash=h)
        node_bytes = bytes.fromhex(raws[h][2:])
        assert keccak256(node_bytes) == h
        assert verified_raw(env) == node_bytes, (env.tx_type, "0x" + h.hex())
        types[env.tx_type] += 1
    assert set(types) == {0, 1, 2, 3, 4} and min(types.values()) > 300, types


def _stored_raw(processd: Processd, hashes: set[str]) -> dict[str, tx_pb2.TxEnvelope]:
    return {"0x" + s.tx.hash.hex(): s.tx for s in processd.stored(CHAIN_ID) if "0x" + s.tx.hash.hex() in hashes}


@pytest.mark.parametrize("raw_mode,full_tx,origin,impersonated_outcome", [
    ("encode", "on", tx_pb2.RAW_TX_ORIGIN_REENCODED, "unsigned"),
    ("fetch", "off", tx_pb2.RAW_TX_ORIGIN_NODE, "node_hash_mismatch"),
])
def test_raw_tx_end_to_end_through_ingestd_and_processd(tmp_path: Path, processd: Processd, daemons: list[Daemon],
                                                         raw_mode: str, full_tx: str, origin: int,
                                                         impersonated_outcome: str) -> None:
    calls = load_mainnet_calls()
    with AnvilNode(chain_id=CHAIN_ID) as node:
        ing = Ingestd(["--chain", f"{CHAIN_ID}={node.ws_url},{node.http_url}"], processd.addr,
                      tmp_path / "ingestd.log", "--full-tx", full_tx, "--raw-tx", raw_mode)
        daemons.append(ing)
        ing.wait_ready(sources=1)
        signed = {s.tx_hash for s in send(node.http_url, calls[:50], signed=True)}
        impersonated = {s.tx_hash for s in send(node.http_url, calls[50:60], signed=False)}
        ing.wait_for(lambda: ing.metric("mempulse_ingestd_raw_tx_total") >= 60
                     and ing.metric("mempulse_ingestd_delivered_total") >= 60, what="60 transactions delivered")
        stored = _stored_raw(processd, signed | impersonated)
    assert stored.keys() == signed | impersonated
    for h in signed:
        env = stored[h]
        assert env.raw_tx_origin == origin and "0x" + keccak256(env.raw_tx).hex() == h
        assert verified_raw(env) == env.raw_tx  # the stored fields re-encode to the stored bytes
    assert {stored[h].tx_type for h in signed} == {0, 1, 2, 3, 4}
    for h in impersonated:
        env = stored[h]
        assert env.raw_tx == b"" and env.raw_tx_origin == tx_pb2.RAW_TX_ORIGIN_UNSPECIFIED
        assert env.HasField("r") and env.r == b"" and env.s == b""
        with pytest.raises(RawTxError, match="unsigned"):
            verified_raw(env)
    outcomes = {k: ing.metric("mempulse_ingestd_raw_tx_total", outcome=k)
                for k in ("reencoded", "node", "unsigned", "node_hash_mismatch", "node_unavailable")}
    assert outcomes[impersonated_outcome] == 10 and sum(outcomes.values()) == 60
    assert outcomes["reencoded" if raw_mode == "encode" else "node"] == 50
