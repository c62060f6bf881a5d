"""One chain's pool state path (issue 17): the reserves of the Uniswap V2-style pairs that pending swaps touch,
read from the node once per block and sent to processd as ``PoolState`` (``TxBatch.pools``).

A pending transaction to a configured V2 router (``--v2-router``: router, its factory and the factory's pair init
code hash) calling one of the router's swap methods names its token path; each hop's pair is CREATE2(factory,
keccak(token0 ++ token1), init code hash), computed here, no call needed. A pair seen for the first time waits
(``pool_queue_size``) for the next block: then, after the block itself went on the outbound queue,

1. one ``eth_getLogs`` by block hash for the ``Sync(uint112,uint112)`` topic: the last Sync of a tracked pair in
   that block carries its full reserves after the block (source ``SYNC_LOG``);
2. one batch of ``eth_call getReserves()`` at that block hash for the pairs not read yet (at most
   ``pool_reads_per_block``; the rest wait for the next block) (source ``GET_RESERVES``).

So the cost is at most two requests per block, whatever the traffic. A block that does not follow the last one
(a gap or a reorg: its parent is not the last block handled) queues every tracked pair for a new read, because
Sync logs of the blocks in between were never seen. Bounds: tracked pairs (``pool_max_pairs``, least recently
touched evicted), pairs waiting for their first read (``pool_queue_size``), addresses found to hold no pair
(``pool_max_pairs`` too); every drop is counted by reason
(:class:`ingestd.metrics.PoolStats`), a bad answer is counted, never a crash.
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from common.pb.v1 import pool_pb2, tx_pb2
from common.rawtx import keccak256
from ingestd.config import V2Router
from ingestd.errors import IngestdError
from ingestd.fetcher import BatchFetcher, FetchError
from ingestd.metrics import PoolStats

log = logging.getLogger(__name__)

#: The router methods whose path is read, with the index of their ``address[] path`` argument.
V2_SWAP_METHODS: dict[str, int] = {
    "swapExactTokensForTokens(uint256,uint256,address[],address,uint256)": 2,
    "swapTokensForExactTokens(uint256,uint256,address[],address,uint256)": 2,
    "swapExactETHForTokens(uint256,address[],address,uint256)": 1,
    "swapTokensForExactETH(uint256,uint256,address[],address,uint256)": 2,
    "swapExactTokensForETH(uint256,uint256,address[],address,uint256)": 2,
    "swapETHForExactTokens(uint256,address[],address,uint256)": 1,
    "swapExactTokensForTokensSupportingFeeOnTransferTokens(uint256,uint256,address[],address,uint256)": 2,
    "swapExactETHForTokensSupportingFeeOnTransferTokens(uint256,address[],address,uint256)": 1,
    "swapExactTokensForETHSupportingFeeOnTransferTokens(uint256,uint256,address[],address,uint256)": 2,
}
#: Longest path read (a router path is 2-4 tokens in practice); a longer one is counted ``path_too_long``.
MAX_PATH = 8
_GET_RESERVES = "getReserves()"
_SYNC = "Sync(uint112,uint112)"


class PathError(IngestdError, ValueError):
    """Calldata of a V2 swap method whose path argument does not decode (not retriable: the calldata is what it is;
    still a ValueError, as it was)."""


def swap_selectors() -> dict[bytes, int]:
    """4-byte selector -> index of the path argument, for :data:`V2_SWAP_METHODS`."""
    return {keccak256(sig.encode())[:4]: index for sig, index in V2_SWAP_METHODS.items()}


def swap_path(data: bytes, path_index: int) -> list[bytes]:
    """The token path (20-byte addresses) of a V2 swap call's calldata (selector included)."""
    try:
        offset = int.from_bytes(data[4 + 32 * path_index:4 + 32 * path_index + 32], "big")
        start = 4 + offset
        count = int.from_bytes(data[start:start + 32], "big")
    except (IndexError, ValueError):
        raise PathError("short calldata") from None
    if count < 2 or count > MAX_PATH:
        raise PathError(f"path of {count} tokens")
    words = data[start + 32:start + 32 + 32 * count]
    if len(words) != 32 * count or offset % 32:
        raise PathError("path outside the calldata")
    path = []
    for i in range(count):
        word = words[32 * i:32 * i + 32]
        if any(word[:12]):
            raise PathError("not an address")
        path.append(bytes(word[12:]))
    return path


def pair_for(router: V2Router, a: bytes, b: bytes) -> tuple[bytes, bytes, bytes]:
    """(pair, token0, token1) of tokens ``a`` and ``b`` on ``router``'s factory (UniswapV2Library.pairFor)."""
    token0, token1 = (a, b) if a < b else (b, a)
    salt = keccak256(token0 + token1)
    return keccak256(b"\xff" + router.factory + salt + router.init_code_hash)[12:], token0, token1


def _uint(value: int) -> bytes:
    """A quantity as tx.proto's minimal big-endian bytes (empty = 0)."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


@dataclass(slots=True)
class _Pair:
    factory: bytes
    token0: bytes
    token1: bytes


class PoolTracker:
    """The pool state path of one chain (module doc). :meth:`on_pending` is called for every mapped pending
    transaction (synchronous, bounded), :meth:`on_block` after each followed block was queued for processd."""

    def __init__(self, chain_id: int, routers: Sequence[V2Router], fetcher: BatchFetcher, stats: PoolStats,
                 send: Callable[[pool_pb2.PoolState], bool], *, max_pairs: int = 10_000, queue_size: int = 1_000,
                 reads_per_block: int = 100) -> None:
        self.chain_id = chain_id
        self.routers = {r.router: r for r in routers if r.chain_id == chain_id}
        self.fetcher = fetcher
        self.stats = stats
        self._send = send
        self.max_pairs = max_pairs
        self.queue_size = queue_size
        self.reads_per_block = reads_per_block
        self._selectors = swap_selectors()
        self._sync_topic = "0x" + keccak256(_SYNC.encode()).hex()
        self._get_reserves = "0x" + keccak256(_GET_RESERVES.encode())[:4].hex()
        #: Tracked pairs, least recently touched first.
        self.pairs: OrderedDict[bytes, _Pair] = OrderedDict()
        #: Tracked pairs waiting for a getReserves read, oldest first.
        self.unread: OrderedDict[bytes, None] = OrderedDict()
        #: Addresses that turned out to hold no pair (never created), so swaps naming them are not read again.
        self.missing: OrderedDict[bytes, None] = OrderedDict()
        self._last: tuple[int, bytes] | None = None  # (number, hash) of the last block handled

    # -- pending transactions (synchronous, never blocks) ------------------------------------------------------

    def on_pending(self, envelope: tx_pb2.TxEnvelope) -> None:
        """Tracks the pairs of a pending V2 router swap (anything else returns at the first check)."""
        router = self.routers.get(envelope.to)
        if router is None:
            return
        data = envelope.input
        index = self._selectors.get(data[:4])
        if index is None:
            return
        self.stats.swaps += 1
        try:
            path = swap_path(data, index)
        except PathError:
            self.stats.drops["bad_path"] += 1
            return
        for a, b in itertools.pairwise(path):
            pair, token0, token1 = pair_for(router, a, b)
            self._touch(pair, _Pair(router.factory, token0, token1))

    def _touch(self, pair: bytes, info: _Pair) -> None:
        if pair in self.pairs:
            self.pairs.move_to_end(pair)
            return
        if pair in self.missing:
            return
        if len(self.unread) >= self.queue_size:
            self.stats.drops["queue_full"] += 1
            return
        if len(self.pairs) >= self.max_pairs:
            evicted, _ = self.pairs.popitem(last=False)
            self.unread.pop(evicted, None)
            self.stats.drops["evicted"] += 1
        self.pairs[pair] = info
        self.unread[pair] = None

    # -- blocks ---------------------------------------------------------------------------------------------

    async def on_block(self, number: int, block_hash: bytes, parent_hash: bytes) -> None:
        """Sends the tracked pairs' states after block ``number`` (module doc); at most two requests."""
        if self._last is not None and (number != self._last[0] + 1 or parent_hash != self._last[1]):
            self.stats.resyncs += 1  # blocks missed or replaced: their Sync logs were never seen
            for pair in self.pairs:
                self.unread[pair] = None
        self._last = (number, block_hash)
        if not self.pairs:
            return
        tag = "0x" + block_hash.hex()
        synced = await self._sync_logs(number, block_hash, tag)
        for pair in synced:
            self.unread.pop(pair, None)
        if self.unread:
            await self._read_reserves(number, block_hash, tag)

    async def _sync_logs(self, number: int, block_hash: bytes, tag: str) -> set[bytes]:
        """The last Sync of each tracked pair in the block, sent; the pairs sent."""
        self.stats.rpc_calls["eth_getLogs"] += 1
        try:
            logs = await self.fetcher.call("eth_getLogs", [{"blockHash": tag, "topics": [self._sync_topic]}])
        except FetchError as exc:
            self.stats.drops["rpc_error"] += 1
            log.warning("pool_sync_logs_failed chain=%s block=%d code=%s", self.chain_id, number, exc.code)
            return set()
        last: dict[bytes, tuple[int, int]] = {}
        for entry in logs if isinstance(logs, list) else ():
            try:
                pair = bytes.fromhex(entry["address"][2:])
                data = bytes.fromhex(entry["data"][2:])
            except (KeyError, TypeError, ValueError, AttributeError):
                self.stats.drops["bad_log"] += 1
                continue
            if pair in self.pairs and len(data) == 64:
                last[pair] = (int.from_bytes(data[:32], "big"), int.from_bytes(data[32:], "big"))  # log order
        for pair, (r0, r1) in last.items():
            self._emit(pair, r0, r1, number, block_hash, pool_pb2.POOL_STATE_SOURCE_SYNC_LOG)
        self.stats.sync_logs += len(last)
        return set(last)

    async def _read_reserves(self, number: int, block_hash: bytes, tag: str) -> None:
        """getReserves() at the block for the oldest ``reads_per_block`` unread pairs (one batch)."""
        todo = list(self.unread)[:self.reads_per_block]
        self.stats.rpc_calls["eth_call"] += len(todo)
        try:
            answers = await self.fetcher.call_batch(
                [("eth_call", [{"to": "0x" + p.hex(), "data": self._get_reserves}, {"blockHash": tag}]) for p in todo])
        except FetchError as exc:
            self.stats.drops["rpc_error"] += 1
            log.warning("pool_reserves_failed chain=%s block=%d pairs=%d code=%s", self.chain_id, number, len(todo),
                        exc.code)
            return
        for pair, answer in zip(todo, answers, strict=True):
            if isinstance(answer, FetchError):
                self.stats.drops["rpc_error"] += 1
                continue  # stays unread: asked again at the next block
            self.unread.pop(pair, None)
            data = bytes.fromhex(answer[2:]) if isinstance(answer, str) and answer.startswith("0x") else b""
            if len(data) != 96:  # no contract there (a pair never created), or not a pair
                self.stats.drops["no_pair"] += 1
                self.pairs.pop(pair, None)
                self.missing[pair] = None
                if len(self.missing) > self.max_pairs:
                    self.missing.popitem(last=False)
                continue
            self.stats.reads += 1
            self._emit(pair, int.from_bytes(data[:32], "big"), int.from_bytes(data[32:64], "big"), number, block_hash,
                       pool_pb2.POOL_STATE_SOURCE_GET_RESERVES)

    def _emit(self, pair: bytes, r0: int, r1: int, number: int, block_hash: bytes, source: Any) -> None:
        info = self.pairs[pair]
        state = pool_pb2.PoolState(chain_id=self.chain_id, pair=pair, factory=info.factory, token0=info.token0,
                                   token1=info.token1, reserve0=_uint(r0), reserve1=_uint(r1), block_number=number,
                                   block_hash=block_hash, source=source)
        if self._send(state):
            self.stats.sent += 1
        else:
            self.stats.drops["outbound_queue_full"] += 1
