"""Traffic generator: replays real mainnet calls into a local anvil node as pending transactions.

Each call is sent with ``eth_sendTransaction`` from its real mainnet sender (anvil's
``--auto-impersonate``), after ``anvil_setBalance`` gives the sender enough ether for value and gas. Sends
go out in JSON-RPC batches, paced to a target rate. Hashes differ from mainnet's (anvil assigns nonces and
signs), so the generator returns the hashes anvil reported, with the call each one carries.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import httpx
import orjson

from common.fixtures import MainnetCall

log = logging.getLogger(__name__)

_RICH_BALANCE = hex(10**30)  # enough wei for any fixture value plus gas
_DEFAULT_GAS_PRICE = 30 * 10**9


@dataclass(frozen=True, slots=True)
class SentTx:
    """A transaction anvil accepted: its hash and the fixture call it replays."""

    tx_hash: str
    call: MainnetCall


@dataclass
class ReplayStats:
    """Counters of one generator."""

    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    errors_by_message: dict[str, int] = field(default_factory=dict)


def intrinsic_gas(input_hex: str) -> int:
    """Intrinsic gas of a call: 21,000 plus 16 per non-zero and 4 per zero calldata byte.

    The fixture records the gas of the top-level call frame, which excludes intrinsic gas, so a replay
    adds it back to get a gas limit the node accepts.
    """
    data = bytes.fromhex(input_hex[2:]) if len(input_hex) > 2 else b""
    zeros = data.count(0)
    return 21_000 + 4 * zeros + 16 * (len(data) - zeros)


def call_to_send_params(call: MainnetCall, nonce: int | None = None) -> dict[str, str]:
    """The ``eth_sendTransaction`` object that replays ``call`` (legacy gas price = the real one paid)."""
    params = {
        "from": call.sender,
        "value": hex(call.value),
        "gas": hex(call.gas + intrinsic_gas(call.input) + (32_000 if not call.to else 0)),
        "input": call.input,
        "gasPrice": hex(call.effective_gas_price or _DEFAULT_GAS_PRICE),
    }
    if call.to:
        params["to"] = call.to
    if nonce is not None:
        params["nonce"] = hex(nonce)
    return params


class Replayer:
    """Sends fixture calls to one anvil node over HTTP JSON-RPC batches."""

    def __init__(self, http_url: str, batch_size: int = 50, timeout_s: float = 30.0) -> None:
        self.http_url = http_url
        self.batch_size = batch_size
        self.stats = ReplayStats()
        self._nonces: dict[str, int] = {}  # next nonce per funded sender (explicit: batches race otherwise)
        self._client = httpx.AsyncClient(timeout=timeout_s)
        self._ids = itertools.count(1)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Replayer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _rpc_batch(self, calls: list[tuple[str, list]]) -> list[dict]:
        payload = [{"jsonrpc": "2.0", "id": next(self._ids), "method": m, "params": p} for m, p in calls]
        resp = await self._client.post(self.http_url, content=orjson.dumps(payload),
                                       headers={"content-type": "application/json"})
        resp.raise_for_status()
        by_id = {item.get("id"): item for item in orjson.loads(resp.content)}
        return [by_id.get(req["id"], {"error": {"message": "missing response"}}) for req in payload]

    async def fund(self, senders: Iterable[str]) -> None:
        """Gives every not-yet-funded sender a large balance and learns its pending nonce."""
        todo = sorted({s.lower() for s in senders} - self._nonces.keys())
        for i in range(0, len(todo), 200):
            chunk = todo[i:i + 200]
            await self._rpc_batch([("anvil_setBalance", [s, _RICH_BALANCE]) for s in chunk])
            counts = await self._rpc_batch([("eth_getTransactionCount", [s, "pending"]) for s in chunk])
            for sender, item in zip(chunk, counts, strict=True):
                self._nonces[sender] = int(item.get("result") or "0x0", 16)

    def _next_nonce(self, sender: str) -> int:
        key = sender.lower()
        nonce = self._nonces[key]
        self._nonces[key] = nonce + 1
        return nonce

    async def send(self, calls: Sequence[MainnetCall]) -> list[SentTx]:
        """Sends ``calls`` in batches; returns the accepted ones with their anvil hashes."""
        accepted: list[SentTx] = []
        for i in range(0, len(calls), self.batch_size):
            chunk = calls[i:i + self.batch_size]
            await self.fund(c.sender for c in chunk)
            results = await self._rpc_batch(
                [("eth_sendTransaction", [call_to_send_params(c, self._next_nonce(c.sender))]) for c in chunk])
            self.stats.sent += len(chunk)
            for call, item in zip(chunk, results, strict=True):
                if "result" in item and isinstance(item["result"], str):
                    accepted.append(SentTx(item["result"], call))
                    self.stats.accepted += 1
                else:
                    self.stats.rejected += 1
                    self._nonces.pop(call.sender.lower(), None)  # re-learn: the unused nonce left a gap
                    msg = str((item.get("error") or {}).get("message", "unknown"))[:80]
                    self.stats.errors_by_message[msg] = self.stats.errors_by_message.get(msg, 0) + 1
        return accepted

    async def run(self, calls: Sequence[MainnetCall], rate_per_s: float, duration_s: float | None = None,
                  stop: asyncio.Event | None = None) -> None:
        """Replays ``calls`` in a loop at about ``rate_per_s`` until ``duration_s`` passes or ``stop`` is set."""
        if not calls:
            raise ValueError("no calls to replay")
        started = time.monotonic()
        cycle = itertools.cycle(calls)
        sent = 0
        while True:
            if stop is not None and stop.is_set():
                return
            elapsed = time.monotonic() - started
            if duration_s is not None and elapsed >= duration_s:
                return
            due = int(elapsed * rate_per_s) + 1 - sent
            if due <= 0:
                await asyncio.sleep(min(0.05, 1.0 / max(rate_per_s, 1.0)))
                continue
            batch = [next(cycle) for _ in range(min(due, self.batch_size))]
            try:
                await self.send(batch)
            except httpx.HTTPError as exc:
                log.warning("replay to %s failed: %s", self.http_url, exc)
                await asyncio.sleep(0.5)
            sent += len(batch)
