"""A small async client that feeds envelopes to a processd over ``Ingest.Stream`` and collects the acks.

Used by tests, benchmarks and tools; ingestd has its own resilient client. Acks may arrive out of order, so
they are returned sorted by batch_seq.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import grpc

from common.pb.v1 import ingest_pb2, ingest_pb2_grpc, tx_pb2

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def channel(target: str, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> grpc.aio.Channel:
    """An insecure grpc.aio channel with large message limits (the server enforces its own)."""
    return grpc.aio.insecure_channel(target, options=[
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ])


async def push_batches(target: str, batches: Sequence[ingest_pb2.TxBatch], max_inflight: int = 32,
                       timeout_s: float = 300.0) -> list[ingest_pb2.IngestAck]:
    """Streams prepared batches over one Ingest.Stream call (at most ``max_inflight`` unacked) and returns
    every ack, sorted by batch_seq. Raises ``grpc.aio.AioRpcError`` if the stream fails."""
    window = asyncio.Semaphore(max_inflight)
    acks: list[ingest_pb2.IngestAck] = []

    async def requests() -> AsyncIterator[ingest_pb2.TxBatch]:
        for batch in batches:
            await window.acquire()
            yield batch

    async with channel(target) as ch:
        stub = ingest_pb2_grpc.IngestStub(ch)
        call = stub.Stream(requests(), timeout=timeout_s)
        async for ack in call:
            acks.append(ack)
            window.release()
            if len(acks) == len(batches):
                break
    acks.sort(key=lambda a: a.batch_seq)
    return acks


async def push_envelopes(target: str, envelopes: Sequence[tx_pb2.TxEnvelope], batch_size: int = 500,
                         session_id: str = "push", first_batch_seq: int = 1, max_inflight: int = 32,
                         timeout_s: float = 300.0) -> list[ingest_pb2.IngestAck]:
    """Sends ``envelopes`` in batches of ``batch_size`` and returns one ack per batch, sorted by batch_seq."""
    batches = [
        ingest_pb2.TxBatch(session_id=session_id, batch_seq=first_batch_seq + i // batch_size,
                           envelopes=envelopes[i:i + batch_size])
        for i in range(0, len(envelopes), batch_size)
    ]
    return await push_batches(target, batches, max_inflight=max_inflight, timeout_s=timeout_s)
