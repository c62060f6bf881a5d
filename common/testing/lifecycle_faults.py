"""What the lifecycle run (:mod:`common.testing.lifecycle_run`) does to the nodes and daemons of its stack, and the
JSON-RPC calls it reads the nodes with: pausing and resuming anvil's interval mining, evicting pending transactions
mempulse stored (``anvil_dropTransaction``), a reorg that re-mines the same transactions in blocks with other hashes
(``anvil_reorg``), a kill -9 and restart of a daemon.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from common.testing.stack import Stack

log = logging.getLogger(__name__)

#: Funds the senders a reorg took their (anvil_setBalance) ether from (:func:`reorg`).
FUNDER = "0x000000000000000000000000000000000000f00d"
_FUNDER_BALANCE = 10**40
_RICH = hex(10**30)  # what common.testing.replay gives each sender
#: Fields of a block's transaction object that are not part of the request that re-sends it in ``anvil_reorg``.
_NOT_REQUEST = frozenset({"hash", "blockHash", "blockNumber", "transactionIndex", "r", "s", "v", "yParity",
                          "blockTimestamp"})


def rpc(url: str, method: str, params: list[Any], timeout_s: float = 30.0) -> Any:
    """One JSON-RPC call; an error answer raises RuntimeError."""
    answer = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
                        timeout=timeout_s).json()
    if "error" in answer:
        raise RuntimeError(f"{method} failed: {answer['error']}")
    return answer.get("result")

def pause_mining(url: str) -> None:
    """Stops anvil's interval mining (so a test acts on a block that stays the newest)."""
    rpc(url, "evm_setIntervalMining", [0])


def resume_mining(url: str, block_time_s: float) -> None:
    """Starts anvil's interval mining again."""
    rpc(url, "evm_setIntervalMining", [max(1, round(block_time_s))])


def evict(stack: Stack, chain_id: int, count: int) -> list[str]:
    """Drops ``count`` pending transactions of ``chain_id`` that mempulse has stored as pending (mining paused
    meanwhile, for at least a second so that some are sent and stored, and they stay pending), newest first;
    returns their hashes."""
    spec = next(s for s in stack.config.chains if s.chain_id == chain_id)
    url = stack.anvils[chain_id].http_url
    pause_mining(url)
    try:
        time.sleep(max(1.0, spec.block_time_s))
        records = stack.generators[chain_id].records()
        evicted: list[str] = []
        seen: dict[str, int] = {}
        for rec in reversed(records):
            if len(evicted) >= count:
                break
            if rec.chain_id != chain_id or rec.kind != "original":
                continue
            resp = stack.get(f"/transactions/{rec.tx_hash}", chain_id=chain_id)
            status = str(resp.json().get("status")) if resp.status_code == 200 else str(resp.status_code)
            seen[status] = seen.get(status, 0) + 1
            if status != "pending":
                continue
            tx = rpc(url, "eth_getTransactionByHash", [rec.tx_hash])
            if isinstance(tx, dict) and tx.get("blockNumber") is None:
                rpc(url, "anvil_dropTransaction", [rec.tx_hash])
                evicted.append(rec.tx_hash.lower())
        log.info("lifecycle run: chain %s: evicted %d (mempulse statuses looked at: %s)", chain_id, len(evicted), seen)
        return evicted
    finally:
        resume_mining(url, spec.block_time_s)


def _as_request(tx: Mapping[str, Any]) -> dict[str, Any]:
    """A mined transaction object as the request that sends it again (impersonated: anvil --auto-impersonate)."""
    out = {k: v for k, v in tx.items() if k not in _NOT_REQUEST and v is not None}
    if "maxFeePerGas" in out:
        out.pop("gasPrice", None)
    return out


def fund_funder(url: str) -> None:
    """Gives :data:`FUNDER` the ether a reorg's funding transfers need; call it before any block a reorg replaces."""
    rpc(url, "anvil_setBalance", [FUNDER, hex(_FUNDER_BALANCE)])


def batch_rpc(url: str, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
    """JSON-RPC batches of 200; an error item raises."""
    out: list[Any] = []
    with httpx.Client(timeout=30.0) as client:
        for start in range(0, len(calls), 200):
            chunk = calls[start:start + 200]
            body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(chunk)]
            by_id = {item["id"]: item for item in client.post(url, json=body).json()}
            for i in range(len(chunk)):
                if "error" in by_id[i]:
                    raise RuntimeError(f"{chunk[i][0]} failed: {by_id[i]['error']}")
                out.append(by_id[i].get("result"))
    return out


def reorg(stack: Stack, chain_id: int, depth: int) -> dict[str, Any]:
    """Replaces the newest ``depth`` blocks of ``chain_id`` by blocks with the same transactions (``anvil_reorg``):
    a real reorg (new hashes at those heights) that keeps every hash mined and every sender's nonce. Returns what
    it did; raises when a transaction did not make it into the new branch.

    The generator funds its senders with ``anvil_setBalance``, which a reorg undoes for the senders funded after the
    fork point: the new branch's first block funds them again (transfers from :data:`FUNDER`, ahead of the
    re-mined transactions; :func:`fund_funder` first), and after the reorg they get their balance back."""
    spec = next(s for s in stack.config.chains if s.chain_id == chain_id)
    url = stack.anvils[chain_id].http_url
    pause_mining(url)
    try:
        time.sleep(0.2)  # a block being mined as mining stopped
        head = int(rpc(url, "eth_blockNumber", []), 16)
        fork = hex(head - depth)
        old = [rpc(url, "eth_getBlockByNumber", [hex(n), True]) for n in range(head - depth + 1, head + 1)]
        senders = sorted({r.sender.lower() for r in stack.generators[chain_id].records()})
        balances = batch_rpc(url, [("eth_getBalance", [s, fork]) for s in senders])
        unfunded = [s for s, b in zip(senders, balances, strict=True) if int(b, 16) == 0]
        nonce = int(rpc(url, "eth_getTransactionCount", [FUNDER, fork]), 16)
        funding = [[{"from": FUNDER, "to": s, "value": _RICH, "gas": hex(21_000), "gasPrice": hex(10**9),
                     "nonce": hex(nonce + i)}, 0] for i, s in enumerate(unfunded)]
        txs = [[_as_request(tx), offset] for offset, block in enumerate(old) for tx in block["transactions"]]
        rpc(url, "anvil_reorg", [depth, funding + txs])
        batch_rpc(url, [("anvil_setBalance", [s, _RICH]) for s in unfunded])
        new = [rpc(url, "eth_getBlockByNumber", [hex(n), False]) for n in range(head - depth + 1, head + 1)]
    finally:
        resume_mining(url, spec.block_time_s)
    before = {tx["hash"] for block in old for tx in block["transactions"]}
    after = {h for block in new for h in block["transactions"]}
    if not before <= after or any(o["hash"] == n["hash"] for o, n in zip(old, new, strict=True)):
        raise RuntimeError(f"anvil_reorg on chain {chain_id} did not re-mine the same transactions in new blocks: "
                           f"{len(before - after)} lost")
    return {"chain_id": chain_id, "depth": depth, "head": head, "txs": len(before), "funded_again": len(unfunded),
            "old_hashes": [b["hash"] for b in old], "new_hashes": [b["hash"] for b in new]}


def kill9(stack: Stack, name: str) -> dict[str, Any]:
    """kill -9 of the daemon ``name`` and its restart (on the same ports); returns when it is ready again."""
    down = time.time()
    stack.process(name).kill()
    stack.process(name).start()
    return {"name": name, "down_unix_s": round(down, 3), "ready_unix_s": round(time.time(), 3)}
