"""processd.wire.encoding.block_value: the BLOCK value written by hand around the block's serialization is the
value the protobuf library's deterministic serialization of the same Event gives, byte for byte."""

from __future__ import annotations

import pytest

from common.pb.v1 import block_pb2, events_pb2
from processd.storage.layout import decode_event
from processd.wire.encoding import block_value


def _library(block: block_pb2.BlockEnvelope, received_ns: int, seen_pending: int, latency: int, tracked: int) -> bytes:
    body = events_pb2.BlockSeen(block=block, seen_pending=seen_pending, inclusion_latency_p50_ms=latency,
                                included_tracked=tracked)
    event = events_pb2.Event(chain_id=block.chain_id, kind=events_pb2.EVENT_KIND_BLOCK,
                             first_seen_unix_ns=block.seen_unix_ns, received_unix_ns=received_ns,
                             source_id=block.source_id, block=body)
    return bytes((events_pb2.EVENT_KIND_BLOCK,)) + event.SerializeToString(deterministic=True)


def _block(chain_id: int, txs: int, source: str, seen_ns: int) -> block_pb2.BlockEnvelope:
    return block_pb2.BlockEnvelope(
        chain_id=chain_id, number=19_000_000 + txs, hash=bytes(range(32)), parent_hash=b"\x07" * 32,
        timestamp=1_700_000_000, source_id=source, seen_unix_ns=seen_ns, tx_count=txs,
        txs=[block_pb2.IncludedTx(hash=i.to_bytes(32, "big"), index=i, sender=(i % 7).to_bytes(20, "big"),
                                  nonce=i * 3, status=block_pb2.TX_STATUS_OK if i % 5 else block_pb2.TX_STATUS_REVERTED,
                                  gas_used=21000 + i) for i in range(txs)])


@pytest.mark.parametrize(("chain_id", "txs", "source", "seen_ns"), [
    (1, 0, "", 0), (137, 3, "node-a", 1_700_000_000_123_456_789), (42161, 500, "ingestd-β", 2**63 - 1),
    (0, 1, "x" * 200, 5)])
@pytest.mark.parametrize(("received_ns", "seen_pending", "latency", "tracked"), [
    (0, 0, 0, 0), (1_700_000_001_000_000_000, 3, 1234, 2), (1, 2**32 - 1, 2**64 - 1, 2**32 - 1)])
def test_block_value_is_the_library_encoding(chain_id: int, txs: int, source: str, seen_ns: int, received_ns: int,
                                             seen_pending: int, latency: int, tracked: int) -> None:
    block = _block(chain_id, txs, source, seen_ns)
    value = block_value(block, received_ns, seen_pending, latency, tracked)
    assert value == _library(block, received_ns, seen_pending, latency, tracked)
    event = decode_event(value, 9)
    assert event.block.block == block and event.block.seen_pending == seen_pending


def test_block_value_keeps_unknown_fields_of_the_block() -> None:
    """A block from a newer ingestd (a field this build does not know) is stored with it, as the library does."""
    block = _block(1, 2, "s", 10)
    raw = block.SerializeToString() + b"\xf8\x3e\x05"  # field 999, varint 5: unknown here
    newer = block_pb2.BlockEnvelope.FromString(raw)
    assert block_value(newer, 1, 1, 1, 1) == _library(newer, 1, 1, 1, 1)
