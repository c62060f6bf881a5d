"""The per-chain source log: which later sources announced a transaction, bounded, released behind the envelope."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from common.pb.v1 import tx_pb2
from ingestd.chains.worker import ChainWorker
from ingestd.config import ChainConfig, IngestConfig, Source
from ingestd.metrics import Histograms
from ingestd.notifications import PendingHash, PendingTx
from ingestd.sourcelog import SightingOutcome, SourceLog

H1, H2, H3 = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32


def test_later_sources_recorded_once_bounded_and_held_until_the_envelope_is_sent() -> None:
    log = SourceLog(137, capacity=2, max_sources=3)
    log.first(H1, "a", 1000)
    outcome, now, lag = log.later(H1, "b", 1250)
    assert (outcome, now, lag) == (SightingOutcome.RECORDED, None, 250)  # held: the envelope is not out yet
    assert log.later(H1, "b", 1300)[0] == SightingOutcome.REPEAT
    assert log.later(H1, "a", 1300)[0] == SightingOutcome.REPEAT  # the first source itself
    assert log.later(H1, "c", 1400)[0] == SightingOutcome.RECORDED
    assert log.later(H1, "d", 1500)[0] == SightingOutcome.OVER_LIMIT  # a, b, c: at the bound of 3
    held = log.sent(H1)
    assert [(s.source_id, s.seen_unix_ns, s.hash, s.chain_id) for s in held] == [("b", 1250, H1, 137),
                                                                                 ("c", 1400, H1, 137)]
    assert log.sent(H1) == []  # released once
    log2 = SourceLog(137, capacity=2, max_sources=8)
    log2.first(H1, "a", 1000)
    log2.sent(H1)
    outcome, now, _ = log2.later(H1, "b", 1100)  # the envelope is out: the sighting goes at once
    assert outcome == SightingOutcome.RECORDED and now is not None and now.source_id == "b"


def test_dropped_envelope_discards_its_sightings_and_eviction_counts_them() -> None:
    log = SourceLog(1, capacity=2, max_sources=8)
    log.first(H1, "a", 1)
    log.later(H1, "b", 2)
    assert log.dropped(H1) == 1  # fetch failed: the held sighting is lost (counted by the caller)
    assert log.later(H1, "c", 3)[0] == SightingOutcome.NOT_DELIVERED
    log.first(H2, "a", 4)
    log.later(H2, "b", 5)
    assert log.first(H3, "a", 6) == 0 and len(log) == 2  # H1 out (nothing held)
    assert log.first(b"\x04" * 32, "a", 7) == 1  # H2 out with its held sighting
    outcome, now, lag = log.later(H1, "b", 8)  # no longer held here: sent unchecked (processd decides)
    assert outcome == SightingOutcome.UNTRACKED and now is not None and lag == -1
    log.first(H3, "a", 9)  # announced again after a failed fetch: starts over
    assert log.later(H3, "b", 10)[2] == 1


def _worker(**cfg: Any) -> ChainWorker:
    chain = ChainConfig(137, "polygon", (Source("a", "ws://a"), Source("b", "ws://b")), ("http://x",))
    # raw_tx off: these unsigned test transactions would otherwise wait for the node's raw bytes (a fetch).
    cfg.setdefault("raw_tx", "off")
    return ChainWorker(chain, IngestConfig(chains=(chain,), outbound_batch_size=1, **cfg), "sess",
                       Histograms(CollectorRegistry()))


def _tx(tx_hash: bytes) -> dict[str, Any]:
    return {"hash": "0x" + tx_hash.hex(), "from": "0x" + "11" * 20, "to": None, "nonce": "0x1", "gas": "0x5208",
            "value": "0x0", "gasPrice": "0x1", "input": "0x"}


def _drain(worker: ChainWorker) -> list[tuple[str, bytes, str]]:
    """(kind, hash, source) of everything the worker's batches carry, in batch order."""
    out: list[tuple[str, bytes, str]] = []
    while (item := worker.outbound._next_batch(with_stats=False)) is not None:
        batch, _ = item
        out += [("envelope", e.hash, e.source_id) for e in batch.envelopes]
        out += [("sighting", s.hash, s.source_id) for s in batch.sightings]
    return out


async def test_worker_sends_each_sighting_behind_its_envelope() -> None:
    worker = _worker()
    # Hash announcements: the envelope waits for its fetch while the second source announces the hash.
    worker.on_notification("a", PendingHash("s", H1), 1_000)
    worker.on_notification("b", PendingHash("s", H1), 2_000)
    worker.on_notification("b", PendingHash("s", H1), 3_000)  # a repeat of b
    assert _drain(worker) == []  # nothing before the envelope
    worker._send(tx_pb2.TxEnvelope(chain_id=137, hash=H1, source_id="a", first_seen_unix_ns=1_000), "a")
    # Full transactions: the envelope is queued at once, the later sighting right behind it.
    worker.on_notification("b", PendingTx("s", H2, _tx(H2)), 4_000)
    worker.on_notification("a", PendingTx("s", H2, _tx(H2)), 5_000)
    assert _drain(worker) == [("envelope", H1, "a"), ("sighting", H1, "b"), ("envelope", H2, "b"),
                              ("sighting", H2, "a")]
    a, b = worker.stats.sources["a"], worker.stats.sources["b"]
    assert (a.first_seen_wins, b.first_seen_wins) == (1, 1)
    assert dict(b.sightings) == {"recorded": 1, "repeat": 1} and dict(a.sightings) == {"recorded": 1}


async def test_single_source_chain_keeps_no_source_log() -> None:
    chain = ChainConfig(1, "ethereum", (Source("a", "ws://a"),), ("http://x",))
    worker = ChainWorker(chain, IngestConfig(chains=(chain,)), "sess", Histograms(CollectorRegistry()))
    assert worker.source_log is None and worker.stats.source_log_capacity == 0
