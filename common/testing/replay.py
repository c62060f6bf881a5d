"""Traffic generator: replays real mainnet calls into a local anvil node as pending transactions.

Each call is sent with ``eth_sendTransaction`` from its real mainnet sender (anvil's
``--auto-impersonate``), after ``anvil_setBalance`` gives the sender enough ether for value and gas. Sends
go out in JSON-RPC batches, paced to a target rate. Hashes differ from mainnet's (anvil assigns nonces and
signs), so the generator returns the hashes anvil reported, with the call each one carries.

Impersonated transactions carry no real signature: anvil reports r = s = 0 and hashes them as
keccak256(encoding || sender), so no signed bytes exist for them (docs/ingestd.md, "Raw signed transactions").
``Replayer(signed=True)`` sends each call properly signed instead, from anvil's unlocked dev accounts (the
mnemonic accounts ``eth_accounts`` lists): anvil signs it (``eth_signTransaction``) and it goes in with
``eth_sendRawTransaction``, cycling through EIP-2718 types 0-4 (:data:`SIGNED_TX_TYPES`). The call's calldata,
value, recipient and gas are kept; the sender is the dev account.
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

from common.testing.fixtures import MainnetCall

log = logging.getLogger(__name__)

_RICH_BALANCE = hex(10**30)  # enough wei for any fixture value plus gas
_DEFAULT_GAS_PRICE = 30 * 10**9
#: Fee bump of a replacement, in percent (geth and anvil want at least 10 % more).
REPLACEMENT_BUMP_PERCENT = 25
#: The transaction types a signed replay cycles through: legacy, access list, dynamic fee, blob, set-code.
SIGNED_TX_TYPES = (0, 1, 2, 3, 4)
_ONE_KEY = "0x" + "00" * 31 + "01"


@dataclass(frozen=True, slots=True)
class SentTx:
    """A transaction anvil accepted: its hash and the fixture call it replays; the sender, nonce and gas price (or
    max fee) it was sent with, and its ``kind``: ``original``, or a replacement of an accepted one (same sender and
    nonce, higher fee): ``speedup`` (the same call) or ``cancel`` (a 0-value transfer to the sender itself)."""

    tx_hash: str
    call: MainnetCall
    sender: str = ""
    nonce: int = -1
    fee: int = 0
    kind: str = "original"


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


def typed_send_params(params: dict[str, str], tx_type: int, chain_id: int) -> dict[str, str | list]:
    """``params`` (:func:`call_to_send_params`) as a transaction of EIP-2718 type ``tx_type``: a one-entry access
    list from type 1 on, the legacy gas price as max fee from type 2 on (tip 1 wei), one blob hash (type 3) or
    one authorization (type 4; a made-up signature: nodes skip an authorization that does not verify). A blob or
    set-code transaction cannot create a contract: a call without ``to`` stays type 2."""
    out: dict[str, str | list] = dict(params)
    if tx_type == 0:
        return out
    out["accessList"] = [{"address": params.get("to", params["from"]), "storageKeys": [_ONE_KEY]}]
    if tx_type == 1 or (tx_type >= 3 and "to" not in params):
        tx_type = min(tx_type, 2)
        if tx_type == 1:
            return out
    out["maxFeePerGas"] = out.pop("gasPrice")
    out["maxPriorityFeePerGas"] = "0x1"
    if tx_type == 3:
        out["maxFeePerBlobGas"] = hex(10**9)
        out["blobVersionedHashes"] = ["0x01" + str(params["input"])[2:64].ljust(62, "0")]
    elif tx_type == 4:
        out["authorizationList"] = [{"chainId": hex(chain_id), "address": params["to"], "nonce": "0x0",
                                     "yParity": "0x1", "r": "0x" + "11" * 32, "s": "0x" + "22" * 32}]
    return out


class Replayer:
    """Sends fixture calls to one anvil node over HTTP JSON-RPC batches (see the module doc for ``signed``)."""

    def __init__(self, http_url: str, batch_size: int = 50, timeout_s: float = 30.0, signed: bool = False) -> None:
        self.http_url = http_url
        self.batch_size = batch_size
        self.signed = signed
        self._dev_accounts: list[str] = []
        self._chain_id = 0
        self._sent_signed = 0  # signed sends so far: picks the dev account and the type of the next one
        self.stats = ReplayStats()
        self._nonces: dict[str, int] = {}  # next nonce per funded sender (explicit: batches race otherwise)
        self._last_sent: list[tuple[int, int]] = []  # (nonce, fee) of each call of the last chunk sent
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
            if self.signed:
                senders, results = await self._send_signed(chunk)
            else:
                await self.fund(c.sender for c in chunk)
                senders = [c.sender for c in chunk]
                params = [call_to_send_params(c, self._next_nonce(c.sender)) for c in chunk]
                self._last_sent = [(int(p["nonce"], 16), int(p["gasPrice"], 16)) for p in params]
                results = await self._rpc_batch([("eth_sendTransaction", [p]) for p in params])
            self.stats.sent += len(chunk)
            for call, sender, item, (nonce, fee) in zip(chunk, senders, results, self._last_sent, strict=True):
                if "result" in item and isinstance(item["result"], str):
                    accepted.append(SentTx(item["result"], call, sender.lower(), nonce, fee))
                    self.stats.accepted += 1
                else:
                    self.stats.rejected += 1
                    self._nonces.pop(sender.lower(), None)  # re-learn: the unused nonce left a gap
                    msg = str((item.get("error") or {}).get("message", "unknown"))[:80]
                    self.stats.errors_by_message[msg] = self.stats.errors_by_message.get(msg, 0) + 1
        return accepted

    async def replace(self, originals: Sequence[SentTx], kinds: Sequence[str]) -> list[SentTx]:
        """Sends a replacement of each accepted ``originals[i]`` (impersonated sends only): same sender and nonce,
        a fee :data:`REPLACEMENT_BUMP_PERCENT` higher; ``kinds[i]`` is ``speedup`` (the same call) or ``cancel``
        (a 0-value transfer to the sender). Returns the replacements the node accepted (one may be refused when
        the original was mined meanwhile: counted as rejected)."""
        params = []
        for sent, kind in zip(originals, kinds, strict=True):
            fee = sent.fee * (100 + REPLACEMENT_BUMP_PERCENT) // 100 + 1
            if kind == "cancel":
                p = {"from": sent.sender, "to": sent.sender, "value": "0x0", "gas": hex(21_000), "input": "0x"}
            else:
                p = call_to_send_params(sent.call)
                p["from"] = sent.sender
            p.update(nonce=hex(sent.nonce), gasPrice=hex(fee))
            params.append((p, fee))
        out: list[SentTx] = []
        for i in range(0, len(params), self.batch_size):
            chunk = params[i:i + self.batch_size]
            results = await self._rpc_batch([("eth_sendTransaction", [p]) for p, _ in chunk])
            self.stats.sent += len(chunk)
            for (_, fee), item, sent, kind in zip(chunk, results, originals[i:], kinds[i:], strict=False):
                if "result" in item and isinstance(item["result"], str):
                    out.append(SentTx(item["result"], sent.call, sent.sender, sent.nonce, fee, kind))
                    self.stats.accepted += 1
                else:
                    self.stats.rejected += 1
                    msg = str((item.get("error") or {}).get("message", "unknown"))[:80]
                    self.stats.errors_by_message[msg] = self.stats.errors_by_message.get(msg, 0) + 1
        return out

    async def _send_signed(self, chunk: Sequence[MainnetCall]) -> tuple[list[str], list[dict]]:
        """Sends ``chunk`` signed by anvil's dev accounts (module doc); the sender and the send answer of each."""
        if not self._dev_accounts:
            accounts, chain = await self._rpc_batch([("eth_accounts", []), ("eth_chainId", [])])
            self._dev_accounts = [a.lower() for a in accounts.get("result") or []]
            if not self._dev_accounts:
                raise RuntimeError(f"{self.http_url} has no unlocked dev accounts to sign with")
            self._chain_id = int(chain.get("result") or "0x0", 16)
        senders, txs = [], []
        self._last_sent = []
        for call in chunk:
            n = self._sent_signed
            self._sent_signed += 1
            sender = self._dev_accounts[n % len(self._dev_accounts)]
            senders.append(sender)
            await self.fund([sender])
            params = call_to_send_params(call, self._next_nonce(sender))
            params["from"] = sender
            tx_type = SIGNED_TX_TYPES[n // len(self._dev_accounts) % len(SIGNED_TX_TYPES)]
            txs.append(typed_send_params(params, tx_type, self._chain_id))
            self._last_sent.append((int(params["nonce"], 16), int(params["gasPrice"], 16)))
        signed = await self._rpc_batch([("eth_signTransaction", [tx]) for tx in txs])
        raws = [item.get("result") for item in signed]
        sends = await self._rpc_batch([("eth_sendRawTransaction", [raw]) for raw in raws if isinstance(raw, str)])
        answers = iter(sends)
        return senders, [next(answers) if isinstance(raw, str) else item for raw, item in zip(raws, signed,
                                                                                           strict=True)]

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
