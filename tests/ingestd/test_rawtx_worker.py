"""ChainWorker's raw-bytes paths with the node played by httpx.MockTransport (real worker, fetcher and outbound
queue; nothing is started): a re-encoding that does not hash to the hash falls back to the node's
``eth_getRawTransactionByHash`` (kept only when those bytes hash to it), ``--raw-tx fetch`` always asks the node,
``off`` never has raw bytes, and a missing raw_tx never costs the transaction."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import httpx
import orjson
from prometheus_client import CollectorRegistry

from common.pb.v1 import tx_pb2
from ingestd.chains.worker import ChainWorker
from ingestd.config import ChainConfig, IngestConfig, Source
from ingestd.fetcher import BatchFetcher
from ingestd.metrics import Histograms
from ingestd.notifications import PendingHash, PendingTx

from .test_rawtx import IMPERSONATED, SIGNED

CHAIN = ChainConfig(31337, "anvil", (Source("ws-0", "ws://node.invalid"),), ("http://node.invalid",))


def make_worker(raw_tx: str, raw_answers: dict[str, Any]) -> tuple[ChainWorker, list[list[str]]]:
    """A worker whose node answers ``eth_getRawTransactionByHash`` from ``raw_answers`` (hash -> result)."""
    requests: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        items = orjson.loads(request.content)
        requests.append([i["method"] for i in items])
        return httpx.Response(200, content=orjson.dumps(
            [{"jsonrpc": "2.0", "id": i["id"], "result": raw_answers.get(i["params"][0])} for i in items]))

    cfg = IngestConfig(chains=(CHAIN,), raw_tx=raw_tx, fetch_queue_size=2)
    worker = ChainWorker(CHAIN, cfg, "test", Histograms(CollectorRegistry()))
    worker.fetcher = BatchFetcher(CHAIN.fetch_urls, retries=0, client=httpx.AsyncClient(
        transport=httpx.MockTransport(handler)))
    return worker, requests


def announce(worker: ChainWorker, tx: dict[str, Any]) -> None:
    worker.on_notification("ws-0", PendingTx("sub", bytes.fromhex(tx["hash"][2:]), tx), 1)


def drain(worker: ChainWorker) -> list[tx_pb2.TxEnvelope]:
    """Runs the queued fetches as the batcher would (one batch), then returns what reached the outbound queue."""
    batch = list(worker._fetch_queue)
    worker._fetch_queue.clear()
    if batch:
        asyncio.run(worker._fetch_batch(batch))
    return list(worker.outbound._queue)


def tampered(v: dict[str, Any]) -> dict[str, Any]:
    """The node's object with a field other than what was signed (re-encoding then misses the hash)."""
    return {**v["tx"], "gas": hex(int(v["tx"]["gas"], 16) + 1)}


def test_encode_falls_back_to_the_node_bytes_and_keeps_only_bytes_that_hash() -> None:
    good, bad, gone = SIGNED[1], SIGNED[2], SIGNED[3]
    worker, requests = make_worker("encode", {good["tx"]["hash"]: good["raw"], bad["tx"]["hash"]: "0x02c0",
                                              gone["tx"]["hash"]: None})
    announce(worker, SIGNED[0]["tx"])  # re-encodes: sent at once, no request
    announce(worker, IMPERSONATED[0]["tx"])  # r = s = 0: no bytes can hash to its hash, nothing fetched
    assert [e.raw_tx_origin for e in worker.outbound._queue] == [tx_pb2.RAW_TX_ORIGIN_REENCODED,
                                                                 tx_pb2.RAW_TX_ORIGIN_UNSPECIFIED]
    for v in (good, bad):
        announce(worker, tampered(v))
    announce(worker, tampered(gone))  # the fetch queue (2) is full: sent on without raw bytes
    sent = drain(worker)
    assert requests == [["eth_getRawTransactionByHash"] * 2]
    by_hash = {"0x" + e.hash.hex(): e for e in sent}
    assert len(sent) == 5 and len(by_hash) == 5  # every transaction went on, with or without raw bytes
    assert by_hash[good["tx"]["hash"]].raw_tx == bytes.fromhex(good["raw"][2:])
    assert by_hash[good["tx"]["hash"]].raw_tx_origin == tx_pb2.RAW_TX_ORIGIN_NODE
    assert by_hash[bad["tx"]["hash"]].raw_tx == b"" and by_hash[gone["tx"]["hash"]].raw_tx == b""
    assert dict(worker.stats.raw_tx) == {"reencoded": 1, "unsigned": 1, "node": 1, "node_hash_mismatch": 1,
                                         "fetch_queue_full": 1}
    assert dict(worker.stats.raw_tx_reencode_failures) == {"hash_mismatch": 3}
    assert not worker.stats.drops.by_reason()


def test_fetch_mode_asks_the_node_for_every_transaction_and_off_never_has_raw_bytes() -> None:
    answers = {v["tx"]["hash"]: v["raw"] for v in SIGNED + IMPERSONATED}
    worker, requests = make_worker("fetch", answers)
    worker.cfg = replace(worker.cfg, fetch_queue_size=100)
    for v in SIGNED + IMPERSONATED:
        announce(worker, v["tx"])
    sent = drain(worker)
    assert requests == [["eth_getRawTransactionByHash"] * 7]
    assert [e.raw_tx_origin for e in sent] == [tx_pb2.RAW_TX_ORIGIN_NODE] * 5 + [tx_pb2.RAW_TX_ORIGIN_UNSPECIFIED] * 2
    assert [e.raw_tx.hex() for e in sent[:5]] == [v["raw"][2:] for v in SIGNED]
    assert dict(worker.stats.raw_tx) == {"node": 5, "node_hash_mismatch": 2}  # anvil's impersonated bytes

    worker, requests = make_worker("off", answers)
    for v in SIGNED:
        announce(worker, v["tx"])
    assert not requests and all(not e.raw_tx for e in drain(worker)) and not worker.stats.raw_tx


def test_hash_announcements_fetch_the_transaction_then_its_raw_bytes() -> None:
    v = SIGNED[4]
    tx = tampered(v)
    raw_answers = {v["tx"]["hash"]: v["raw"]}
    worker, requests = make_worker("encode", raw_answers)

    def handler(request: httpx.Request) -> httpx.Response:
        items = orjson.loads(request.content)
        requests.append([i["method"] for i in items])
        return httpx.Response(200, content=orjson.dumps(
            [{"jsonrpc": "2.0", "id": i["id"], "result": tx if i["method"] == "eth_getTransactionByHash"
              else raw_answers[i["params"][0]]} for i in items]))

    worker.fetcher = BatchFetcher(CHAIN.fetch_urls, retries=0, client=httpx.AsyncClient(
        transport=httpx.MockTransport(handler)))
    worker.on_notification("ws-0", PendingHash("sub", bytes.fromhex(v["tx"]["hash"][2:])), 1)
    sent = drain(worker)
    assert requests == [["eth_getTransactionByHash"], ["eth_getRawTransactionByHash"]]
    assert len(sent) == 1 and sent[0].raw_tx_origin == tx_pb2.RAW_TX_ORIGIN_NODE
    assert sent[0].authorization_list and sent[0].raw_tx == bytes.fromhex(v["raw"][2:])


def test_shutdown_during_the_raw_fetch_sends_the_envelopes_without_raw_bytes() -> None:
    worker, _ = make_worker("fetch", {})
    started = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        started.set()
        await asyncio.sleep(3600)  # a node that never answers
        raise AssertionError("not reached")

    async def go() -> None:
        worker.fetcher = BatchFetcher(CHAIN.fetch_urls, retries=0, client=httpx.AsyncClient(
            transport=httpx.MockTransport(handler)))
        announce(worker, SIGNED[0]["tx"])
        batch = list(worker._fetch_queue)
        worker._fetch_queue.clear()
        task = asyncio.create_task(worker._fetch_batch(batch))
        await started.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(go())
    assert [e.raw_tx for e in worker.outbound._queue] == [b""]  # sent on, not dropped
    assert dict(worker.stats.raw_tx) == {"node_unavailable": 1} and not worker.stats.drops.by_reason()
