"""Background traffic generator: replays the bundled real mainnet calls into one anvil node at a steady rate.

:class:`TrafficGenerator` runs a :class:`common.testing.replay.Replayer` on its own thread and event loop, so a
synchronous caller (the stack supervisor, the demo, a benchmark script) can start, observe and stop it
without owning an event loop. Pacing is by wall clock: after ``t`` seconds about ``rate_tx_s * t``
transactions have been sent; if anvil falls behind, the generator sends larger batches (up to
``batch_size``) and never builds an unbounded backlog (it skips what it could not send in time and counts
it as ``behind``).

For the transaction lifecycle (issue 16) it also replaces some of what it sent: for a share of the senders
(``replace_share``, picked by a hash of the address, so the same senders every run), each accepted transaction is
followed, in the next batch, by a replacement with the same sender and nonce and a higher fee, alternately a
speed-up (the same call) and a cancel (a 0-value transfer to the sender); and it records every transaction it sent
(:class:`~common.testing.lifecycle_truth.SentRecord`: hash, chain, sender, nonce, fee, kind), at most
``max_records`` of them (the oldest leave first, counted as ``records_dropped``), for the node's truth
(:mod:`common.testing.lifecycle_truth`).

With a :class:`common.testing.swaps.SwapMaker` (a deployed Uniswap V2 world, common/testing/uniswap.py), a share
``swap_share`` of the sends are real router swaps from the world's traders instead of replayed calls, quoted on
the pools' reserves as last read from the node (at most once a second); ``mine_interval_s`` mines a block
(``evm_mine``) that often, so that swaps execute and move the pools (anvil runs ``--no-mining``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from common.testing.fixtures import MainnetCall, load_mainnet_calls
from common.testing.lifecycle_truth import SentRecord
from common.testing.replay import Replayer, SentTx
from common.testing.swaps import SwapMaker

log = logging.getLogger(__name__)

#: Called on the generator thread with the transactions anvil accepted and the send time (unix ns).
AcceptedCallback = Callable[[list[SentTx], int], None]

# How far (in seconds of traffic) the generator may lag before it skips ahead instead of catching up.
_MAX_LAG_S = 2.0
# What common.testing.replay sends as gas price when the fixture has none (a pool epoch adds to it).
_DEFAULT_GAS_PRICE_WEI = 30 * 10**9
# How old the swap quotes' reserves may get before the generator reads them again (one batched eth_call).
_RESERVES_MAX_AGE_S = 1.0


@dataclass(frozen=True, slots=True)
class TrafficStats:
    """A snapshot of one generator's counters."""

    chain_id: int
    target_rate_tx_s: float
    sent: int
    accepted: int
    rejected: int
    behind: int
    send_errors: int
    elapsed_s: float
    pool_resets: int = 0
    #: Replacements (same sender and nonce, higher fee) the node accepted, by kind.
    speedups: int = 0
    cancels: int = 0
    #: Records that left the bounded record list (max_records).
    records_dropped: int = 0
    #: Router swaps among ``sent`` (0 without a swap maker).
    swaps: int = 0
    #: Blocks this generator mined (``mine_interval_s``).
    blocks_mined: int = 0

    @property
    def accepted_rate_tx_s(self) -> float:
        """Average accepted transactions per second since the start."""
        return self.accepted / self.elapsed_s if self.elapsed_s > 0 else 0.0


class TrafficGenerator:
    """Replays fixture calls into ``http_url`` at ``rate_tx_s`` on a background thread.

    ``start()`` returns once the thread runs; ``stop()`` (idempotent) ends it and waits for the in-flight
    batch. ``on_accepted`` lets benchmarks record the accepted hashes with their send time. ``gas_salt``
    adds that many gas units to every call's gas limit, so that runs against fresh anvils (which hand out the
    same nonces each time) produce different transaction hashes.

    ``max_pending`` bounds anvil's pending pool: anvil (``--no-mining``) slows down as its pool grows (measured
    here: about 1,100 tx/s accepted into an empty pool, 400 at 3,000 pending, 100 at 6,000), so after that
    many accepted transactions the generator empties the pool with ``anvil_dropAllTransactions`` (what a
    real mempool does as blocks are mined) and goes on from the senders' nonces again, one wei of gas price
    higher so that no hash repeats. 0 = never.

    ``swaps`` and ``swap_share`` (0..1): that share of the sends are router swaps drawn by the maker (module
    doc); ``mine_interval_s`` > 0 mines a block that often. Swaps come from the world's traders, so they cannot
    be combined with ``signed`` (which sends from anvil's dev accounts, which hold no tokens).
    """

    def __init__(self, http_url: str, rate_tx_s: float, *, chain_id: int = 0, batch_size: int = 50,
                 calls: Sequence[MainnetCall] | None = None, start_offset: int = 0,
                 on_accepted: AcceptedCallback | None = None, duration_s: float | None = None,
                 gas_salt: int = 0, max_pending: int = 0, signed: bool = False, replace_share: float = 0.0,
                 max_records: int = 200_000, swaps: SwapMaker | None = None, swap_share: float = 0.0,
                 mine_interval_s: float = 0.0) -> None:
        if rate_tx_s <= 0:
            raise ValueError(f"rate_tx_s must be > 0, got {rate_tx_s}")
        if not 0.0 <= replace_share <= 1.0:
            raise ValueError(f"replace_share must be within 0..1, got {replace_share}")
        if not 0.0 <= swap_share <= 1.0 or (swap_share > 0 and swaps is None) or mine_interval_s < 0:
            raise ValueError(f"swap_share must be in [0, 1] with a swap maker, mine_interval_s >= 0; got "
                             f"{swap_share}, {mine_interval_s}")
        if signed and swap_share > 0:
            raise ValueError("swaps are sent from the world's traders: not with signed=True")
        self.http_url = http_url
        self.rate_tx_s = rate_tx_s
        self.chain_id = chain_id
        self.batch_size = batch_size
        self.duration_s = duration_s
        self._calls = calls
        self.gas_salt = gas_salt
        self.max_pending = max_pending
        self.signed = signed  # send from anvil's dev accounts, properly signed (common.testing.replay, module doc)
        # Replacements need the sender's nonce in our hands: impersonated sends only (signed ones use dev accounts).
        self.replace_share = 0.0 if signed else replace_share
        self._records: deque[SentRecord] = deque(maxlen=max_records)
        self._records_dropped = 0
        self._replaced = {"speedup": 0, "cancel": 0}
        self._epoch = 0  # pool resets so far; each adds 1 wei of gas price so hashes never repeat
        self._in_pool = 0  # accepted since the last pool reset
        self._start_offset = start_offset
        self._on_accepted = on_accepted
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._started_mono = 0.0
        self._stopped_mono: float | None = None
        self._replayer: Replayer | None = None
        self._behind = 0
        self._send_errors = 0
        self._ready = threading.Event()
        self.error: BaseException | None = None
        self.swaps = swaps
        self.swap_share = swap_share if swaps is not None else 0.0
        self.mine_interval_s = mine_interval_s
        self._swap_credit = 0.0  # accumulates swap_share per send; a swap goes out each time it reaches 1
        self._swaps_sent = 0
        self._blocks_mined = 0
        self._rpc: httpx.AsyncClient | None = None  # reserves reads and mining

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> TrafficGenerator:
        """Starts the generator thread (no-op when already running)."""
        if self.running:
            return self
        self._ready.clear()
        self._thread = threading.Thread(target=self._thread_main, name=f"traffic-{self.chain_id}", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=10)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stops sending and joins the thread. Idempotent."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # loop closed between the check and the call: the thread is ending
                pass
        thread.join(timeout=timeout_s)
        if thread.is_alive():
            log.warning("traffic generator for chain %s did not stop within %.0fs", self.chain_id, timeout_s)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Waits for a generator with ``duration_s`` to finish; returns whether it did."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout=timeout_s)
        return not thread.is_alive()

    def stats(self) -> TrafficStats:
        """Current counters (safe to call from any thread: plain integer reads)."""
        rs = self._replayer.stats if self._replayer is not None else None
        end = self._stopped_mono if self._stopped_mono is not None else time.monotonic()
        elapsed = max(0.0, end - self._started_mono) if self._started_mono else 0.0
        return TrafficStats(
            chain_id=self.chain_id, target_rate_tx_s=self.rate_tx_s,
            sent=rs.sent if rs else 0, accepted=rs.accepted if rs else 0, rejected=rs.rejected if rs else 0,
            behind=self._behind, send_errors=self._send_errors, elapsed_s=elapsed, pool_resets=self._epoch,
            speedups=self._replaced["speedup"], cancels=self._replaced["cancel"],
            records_dropped=self._records_dropped, swaps=self._swaps_sent, blocks_mined=self._blocks_mined)

    def records(self) -> list[SentRecord]:
        """Every transaction sent and accepted so far (at most ``max_records``, the newest), oldest first."""
        for _ in range(5):  # the generator thread may append meanwhile: copy again (deque iteration would fail)
            try:
                return list(self._records)
            except RuntimeError:
                continue
        return list(self._records)

    def replaces(self, sender: str) -> bool:
        """Whether this generator replaces ``sender``'s transactions (a stable pick of ``replace_share``)."""
        return zlib.crc32(sender.lower().encode()) % 10_000 < self.replace_share * 10_000

    def _record(self, sent: Sequence[SentTx]) -> None:
        records = self._records
        for s in sent:
            if len(records) == records.maxlen:
                self._records_dropped += 1
            records.append(SentRecord(s.tx_hash, self.chain_id, s.sender, s.nonce, s.fee, s.kind))

    async def _replace_some(self, accepted: Sequence[SentTx]) -> list[SentTx]:
        """Replacements of the accepted transactions of the senders this generator replaces (alternately a speed-up
        and a cancel, by nonce)."""
        assert self._replayer is not None
        chosen = [s for s in accepted if s.nonce >= 0 and self.replaces(s.sender)]
        if not chosen:
            return []
        done = await self._replayer.replace(chosen, ["speedup" if s.nonce % 2 == 0 else "cancel" for s in chosen])
        for s in done:
            self._replaced[s.kind] += 1
        return done

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported through .error; the thread must not die silently
            self.error = exc
            log.error("traffic generator for chain %s failed: %s", self.chain_id, exc)
        finally:
            self._stopped_mono = time.monotonic()
            self._ready.set()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        calls = list(self._calls) if self._calls is not None else load_mainnet_calls()
        if not calls:
            raise ValueError("no calls to replay")
        offset = self._start_offset % len(calls)
        self._replayer = Replayer(self.http_url, batch_size=self.batch_size, signed=self.signed)
        self._rpc = httpx.AsyncClient(timeout=30.0)
        self._started_mono = time.monotonic()
        self._ready.set()
        miner = asyncio.create_task(self._mine()) if self.mine_interval_s > 0 else None
        try:
            await self._pace(calls[offset:] + calls[:offset])
        finally:
            if miner is not None:
                miner.cancel()
                await asyncio.gather(miner, return_exceptions=True)
            await self._replayer.aclose()
            await self._rpc.aclose()

    async def _mine(self) -> None:
        """Mines a block every ``mine_interval_s`` (anvil runs ``--no-mining``)."""
        assert self._rpc is not None
        while True:
            await asyncio.sleep(self.mine_interval_s)
            try:
                resp = await self._rpc.post(self.http_url, json={"jsonrpc": "2.0", "id": 0, "method": "evm_mine",
                                                                 "params": []})
                resp.raise_for_status()
                self._blocks_mined += 1
            except httpx.HTTPError as exc:
                self._send_errors += 1
                log.warning("evm_mine on %s failed: %s", self.http_url, exc)

    async def _batch(self, calls: list[MainnetCall], position: int, n: int) -> list[MainnetCall]:
        """The next ``n`` sends: replayed calls from ``position``, a ``swap_share`` of them swapped for swaps."""
        batch = []
        for i in range(n):
            self._swap_credit += self.swap_share
            if self._swap_credit >= 1.0 and self.swaps is not None:
                if time.monotonic() - self.swaps.refreshed_mono > _RESERVES_MAX_AGE_S:
                    await self._refresh_reserves()
                if self.swaps.refreshed_mono:  # reserves known: otherwise a replayed call goes instead
                    self._swap_credit -= 1.0
                    self._swaps_sent += 1
                    batch.append(self._salted(self.swaps.next_swap().call))
                    continue
            batch.append(self._salted(calls[(position + i) % len(calls)]))
        return batch

    async def _refresh_reserves(self) -> None:
        assert self.swaps is not None and self._rpc is not None
        try:
            await self.swaps.refresh(self._rpc)
        except (httpx.HTTPError, ValueError) as exc:
            self._send_errors += 1
            log.warning("reading pool reserves from %s failed: %s", self.http_url, exc)

    def _salted(self, call: MainnetCall) -> MainnetCall:
        """The call as this run and pool epoch send it (see the class docstring)."""
        if not self.gas_salt and not self._epoch:
            return call
        # A fresh anvil assigns the same nonces every run, so the same call would get the same hash as in an
        # earlier run (and a processd keeping that run's log would rightly deduplicate it): a few units of
        # gas limit, and one wei of gas price per pool reset, make every transaction distinct.
        price = (call.effective_gas_price or _DEFAULT_GAS_PRICE_WEI) + self._epoch if self._epoch else \
            call.effective_gas_price
        return dataclasses.replace(call, gas=call.gas + self.gas_salt, effective_gas_price=price)

    async def _pace(self, calls: list[MainnetCall]) -> None:
        assert self._stop_event is not None and self._replayer is not None
        scheduled = 0  # transactions due so far (sent or skipped)
        position = 0
        while not self._stop_event.is_set():
            elapsed = time.monotonic() - self._started_mono
            if self.duration_s is not None and elapsed >= self.duration_s:
                return
            due = int(elapsed * self.rate_tx_s) + 1 - scheduled
            lag_limit = max(self.batch_size, int(self.rate_tx_s * _MAX_LAG_S))
            if due > lag_limit:  # anvil cannot keep up: skip ahead rather than queue without bound
                self._behind += due - lag_limit
                scheduled += due - lag_limit
                due = lag_limit
            if due <= 0:
                wait_s = (scheduled / self.rate_tx_s) - elapsed
                try:
                    await asyncio.wait_for(self._stop_event.wait(), timeout=max(0.001, min(0.2, wait_s)))
                except TimeoutError:
                    pass
                continue
            n = min(due, self.batch_size)
            batch = await self._batch(calls, position, n)
            position = (position + n) % len(calls)
            scheduled += n
            sent_ns = time.time_ns()
            try:
                accepted = await self._replayer.send(batch)
                self._record(accepted)
                if self.replace_share:
                    replacements = await self._replace_some(accepted)
                    self._record(replacements)
                    accepted = accepted + replacements
                self._in_pool += len(accepted)
                if self.max_pending and self._in_pool >= self.max_pending:
                    await self._reset_pool()
            except httpx.HTTPError as exc:
                self._send_errors += 1
                log.warning("replay to %s failed: %s", self.http_url, exc)
                await self._renew_replayer()
                await asyncio.sleep(0.5)
                continue
            if self._on_accepted is not None and accepted:
                self._on_accepted(accepted, sent_ns)

    async def _reset_pool(self) -> None:
        """Empties anvil's pending pool and starts the next epoch from the senders' mined nonces."""
        async with httpx.AsyncClient(timeout=30.0) as client:
            resp = await client.post(self.http_url, json={
                "jsonrpc": "2.0", "id": 0, "method": "anvil_dropAllTransactions", "params": []})
        resp.raise_for_status()
        if "error" in resp.json():
            log.warning("anvil_dropAllTransactions failed on %s: %s; pool reset disabled", self.http_url,
                        resp.json()["error"])
            self.max_pending = 0
            return
        self._epoch += 1
        self._in_pool = 0
        await self._renew_replayer()

    async def _renew_replayer(self) -> None:
        """After a failed batch the node may or may not have taken some of its nonces: a fresh replayer
        (same counters) learns every sender's pending nonce again instead of leaving a nonce gap."""
        assert self._replayer is not None
        old = self._replayer
        fresh = Replayer(self.http_url, batch_size=self.batch_size, signed=self.signed)
        fresh.stats = old.stats
        self._replayer = fresh
        await old.aclose()
