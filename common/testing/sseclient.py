"""Many cheap ``/events/stream`` clients on raw asyncio streams, and the expected streams to check them against.

One process can hold a thousand of these: a client decodes the chunked body and, per chunk (gatewayd writes
whole SSE messages per chunk), takes the ids with one regex call instead of parsing every message, keeping a
running digest of the ids in order (:class:`Tally`). :func:`expected_tally` computes the same digest from
processd's ScanEvents, so each client is checked for exactly its matching events, in order, no gap, no extra.

A "slow" client sets a small receive buffer, reads the response head and then never reads again: the gateway
must cut it (counted) instead of buffering for it.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import grpc

from common.limits import EVENT_KINDS
from common.pb.v1 import query_pb2, query_pb2_grpc

_HEAD = re.compile(rb": stream from seq_id \d+, head (\d+)")
_ERROR = re.compile(rb'event: error\ndata: \{"error":\{"code":"([a-z_]+)"')
_MOD = (1 << 61) - 1


def message_ids(payload: bytes) -> list[int]:
    """The ``id:`` of every SSE message in ``payload`` (whole messages), in order.

    Split on the message boundary rather than a regex over every byte: a client of the unfiltered stream reads
    megabytes a second, and the regex scan was most of a 1,000-client process's CPU. JSON data lines hold no raw
    newline, so ``\n\nid: `` only ever starts a message.
    """
    parts = (b"\n\n" + payload).split(b"\n\nid: ")
    return [int(part[:part.index(b"\n")]) for part in parts[1:]]


def digest_step(digest: int, seq: int) -> int:
    """The running digest of a sequence of ids (order-sensitive)."""
    return (digest * 1_000_003 + seq) % _MOD


@dataclass
class Tally:
    """What one client received: ids counted and digested in order, where it started, how it ended."""

    name: str
    path: str
    status: int = 0
    head: int | None = None
    count: int = 0
    first: int = 0
    last: int = 0
    digest: int = 0
    in_order: bool = True
    error_code: str = ""
    closed: bool = False
    #: (seq_id, arrival unix ns) of every event, kept only by sampling clients (latency).
    arrivals: list[tuple[int, int]] = field(default_factory=list)

    def add(self, ids: Sequence[int], now_ns: int, sample: bool) -> None:
        """Takes the ids of one chunk."""
        for seq in ids:
            if seq <= self.last:
                self.in_order = False
            if not self.count:
                self.first = seq
            self.count += 1
            self.last = seq
            self.digest = digest_step(self.digest, seq)
        if sample:
            self.arrivals.extend((seq, now_ns) for seq in ids)

    def summary(self) -> dict[str, object]:
        return {"name": self.name, "path": self.path, "status": self.status, "head": self.head, "count": self.count,
                "first": self.first, "last": self.last, "digest": self.digest, "in_order": self.in_order,
                "error_code": self.error_code, "closed": self.closed}


class _StreamProtocol(asyncio.Protocol):
    """Parses one streamed response in ``data_received``: the head, then the chunked body, chunk by chunk.

    A protocol rather than a StreamReader: with 1,000 clients in one process the reader's two awaits per chunk
    were most of the client's CPU, and a client process short of CPU makes every latency it measures longer.
    """

    def __init__(self, tally: Tally, sample: bool, slow: bool, done: asyncio.Future[None]) -> None:
        self.tally, self.sample, self.slow, self.done = tally, sample, slow, done
        self.buf = bytearray()
        self.in_body = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        now_ns = time.time_ns()
        self.buf += data
        if not self.in_body:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end])
            del self.buf[:end + 4]
            self.tally.status = int(head[9:12])
            self.in_body = True
            assert self.transport is not None
            if self.tally.status != 200 or b"chunked" not in head.lower():
                self.transport.close()
                return
            if self.slow:
                self.transport.pause_reading()  # never reads again: the gateway must cut it
                return
        self._chunks(now_ns)

    def _chunks(self, now_ns: int) -> None:
        buf, pos = self.buf, 0
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                break
            size = int(buf[pos:line_end], 16)
            if size == 0:  # the end of the body
                self.tally.closed = True
                assert self.transport is not None
                self.transport.close()
                break
            end = line_end + 2 + size
            if len(buf) < end + 2:
                break
            self._payload(bytes(buf[line_end + 2:end]), now_ns)
            pos = end + 2
        del buf[:pos]

    def _payload(self, payload: bytes, now_ns: int) -> None:
        tally = self.tally
        if tally.head is None:
            m = _HEAD.search(payload)
            if m:
                tally.head = int(m.group(1))
        ids = message_ids(payload)
        if ids:
            tally.add(ids, now_ns, self.sample)
        if b"event: error" in payload:
            err = _ERROR.search(payload)
            tally.error_code = err.group(1).decode() if err else "unknown"

    def connection_lost(self, exc: Exception | None) -> None:
        self.tally.closed = True
        if not self.done.done():
            self.done.set_result(None)


async def run_client(host: str, port: int, tally: Tally, *, sample: bool = False, slow: bool = False,
                     headers: Sequence[str] = ()) -> Tally:
    """Streams ``tally.path`` until the server ends the stream or the task is cancelled."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if slow:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, (host, port))
    done: asyncio.Future[None] = loop.create_future()
    transport, _ = await loop.create_connection(lambda: _StreamProtocol(tally, sample, slow, done), sock=sock)
    extra = "".join(f"{h}\r\n" for h in headers)
    transport.write(f"GET {tally.path} HTTP/1.1\r\nhost: {host}:{port}\r\n{extra}\r\n".encode())
    try:
        await done
    finally:
        transport.close()
    return tally


def scan(addr: str, chain_id: int, kinds: Sequence[str], from_seq: int) -> list[query_pb2.ScanEventsResponse]:
    """Every page of ScanEvents for a filter from ``from_seq`` to the end of the log."""
    pages = []
    with grpc.insecure_channel(addr, options=[("grpc.max_receive_message_length", 64 << 20)]) as ch:
        stub = query_pb2_grpc.QueryStub(ch)
        cursor = from_seq
        values = cast(Any, [EVENT_KINDS[k] for k in kinds])
        while True:
            resp = stub.ScanEvents(query_pb2.ScanEventsRequest(
                from_seq_id=cursor, limit=1000, chain_id=chain_id, kinds=values), timeout=30)
            pages.append(resp)
            if not resp.events or resp.next_seq_id <= cursor:
                return pages
            cursor = resp.next_seq_id


def expected_ids(addr: str, chain_id: int, kinds: Sequence[str], after: int) -> list[tuple[int, int]]:
    """(seq_id, received_unix_ms) of every stored event matching the filter with a seq_id above ``after``."""
    return [(e.seq_id, e.received_unix_ns // 1_000_000)
            for page in scan(addr, chain_id, kinds, after + 1) for e in page.events]


def expected_tally(ids: Sequence[int]) -> tuple[int, int, int, int]:
    """(count, first, last, digest) of an id sequence, as a :class:`Tally` of exactly those ids has them."""
    digest = 0
    for seq in ids:
        digest = digest_step(digest, seq)
    return len(ids), (ids[0] if ids else 0), (ids[-1] if ids else 0), digest
