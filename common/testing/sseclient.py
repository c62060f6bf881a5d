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
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import grpc

from common.limits import EVENT_KINDS
from common.pb.v1 import query_pb2, query_pb2_grpc

_ID = re.compile(rb"^id: (\d+)$", re.M)
_HEAD = re.compile(rb": stream from seq_id \d+, head (\d+)")
_ERROR = re.compile(rb'event: error\ndata: \{"error":\{"code":"([a-z_]+)"')
_MOD = (1 << 61) - 1


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


async def _read_head(reader: asyncio.StreamReader, tally: Tally) -> bool:
    head = await reader.readuntil(b"\r\n\r\n")
    tally.status = int(head[9:12])
    return tally.status == 200 and b"chunked" in head.lower()


async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """Yields the payload of each chunk of a chunked body until its end."""
    while True:
        size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
        if size == 0:
            return
        data = await reader.readexactly(size + 2)
        yield data[:-2]


async def run_client(host: str, port: int, tally: Tally, *, sample: bool = False, slow: bool = False,
                     headers: Sequence[str] = ()) -> Tally:
    """Streams ``tally.path`` until the server ends the stream or the task is cancelled."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if slow:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 22)
    extra = "".join(f"{h}\r\n" for h in headers)
    writer.write(f"GET {tally.path} HTTP/1.1\r\nhost: {host}:{port}\r\n{extra}\r\n".encode())
    try:
        if not await _read_head(reader, tally):
            return tally
        if slow:
            cast(asyncio.Transport, writer.transport).pause_reading()  # else the reader buffers 8 MiB
            await asyncio.Event().wait()  # never reads again; ends when cancelled
        async for payload in _chunks(reader):
            now_ns = time.time_ns()
            if tally.head is None:
                m = _HEAD.search(payload)
                if m:
                    tally.head = int(m.group(1))
            ids = [int(x) for x in _ID.findall(payload)]
            if ids:
                tally.add(ids, now_ns, sample)
            err = _ERROR.search(payload)
            if err:
                tally.error_code = err.group(1).decode()
        tally.closed = True
    except (asyncio.IncompleteReadError, ConnectionError):
        tally.closed = True
    finally:
        writer.close()
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
